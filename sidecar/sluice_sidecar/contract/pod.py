"""How the sidecar runs in a Pod: its ports, the ``SLUICE_*`` variables the injector sets, and
where the injector mounts what the sidecar reads.

Defined once, here: the sidecar's settings take their defaults from these, and the operator's
injector writes them into every Pod. The ports sit outside what the common meshes and runtimes
claim inside a Pod (Istio 15000-15090, Linkerd 4140-4191, Dapr 3500/3501/9090/50001-50002,
Consul 8500-8503/19000/20000-21255); docs/operator.md, "Ports", has the survey.
"""

from __future__ import annotations

from typing import Final

DATA_PORT = 17100  # the OpenAI/Anthropic API the app calls, on 127.0.0.1 in the Pod
ADMIN_PORT = 17190  # health, metrics and the admin API the operator pushes to
ADMIN_PORT_NAME = "sluice-admin"  # its containerPort's name: the operator's push, the scrapes

# Where the injector mounts what the sidecar reads (and the emptyDir it writes).
CONFIG_DIR = "/etc/sluice/config"  # the ConfigMap sluice-config-<workload>
CONFIG_FILE = f"{CONFIG_DIR}/config.json"
TOKEN_DIR = "/var/run/secrets/sluice/admin"  # the namespace's admin-token Secret
TOKEN_FILE = f"{TOKEN_DIR}/token"
SECRETS_DIR = "/var/run/secrets/sluice/providers"  # provider keys as <secret>/<key> files
STATE_DIR = "/var/lib/sluice"  # the spend state file, kept across sidecar restarts
PRICES_DIR = "/etc/sluice/prices"  # the chart's price-table ConfigMap (prices.configMap)


class PodEnv:
    """The variables the injector sets on the sidecar container (the settings read them);
    plain strings, so the Pod bodies they go into stay plain JSON."""

    DATA_PORT: Final = "SLUICE_DATA_PORT"
    ADMIN_PORT: Final = "SLUICE_ADMIN_PORT"
    ADMIN_TOKEN_FILE: Final = "SLUICE_ADMIN_TOKEN_FILE"
    SECRETS_DIR: Final = "SLUICE_SECRETS_DIR"
    STATE_DIR: Final = "SLUICE_STATE_DIR"
    USAGE_REPORT_URL: Final = "SLUICE_USAGE_REPORT_URL"
    POD_UID: Final = "SLUICE_POD_UID"
    NAMESPACE: Final = "SLUICE_NAMESPACE"
    WORKLOAD: Final = "SLUICE_WORKLOAD"
