"""Start and stop a local control plane: etcd, kube-apiserver and kube-controller-manager,
all on loopback with free ports, a throwaway CA and an admin token (group
system:masters). Readiness is polled (/health, /readyz, /healthz), never slept for.

Used by the ``control_plane`` fixture in ``e2e/conftest.py``; can also run by hand:
``python -m e2e.harness.controlplane`` starts one and prints its admin kubeconfig.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e2e.harness import certs, net, processes
from e2e.harness.binaries import Binaries, find_binaries
from e2e.harness.client import ApiClient, ApiError, JsonObject
from e2e.harness.kubeconfig import write_kubeconfig

START_TIMEOUT = 90.0
# Services get ClusterIPs on loopback: the harness plays kube-proxy for them (``services.py``),
# so the API server reaches a webhook through its Service as in a cluster.
SERVICE_CIDR = "127.0.100.0/24"

# What kube-apiserver logs when etcd cannot do RequestWatchProgress (etcd too old):
# watches then fail inside the stream or hang, so the harness refuses to go on.
_WATCH_PROGRESS_UNSUPPORTED = re.compile(
    r"RequestWatchProgress feature is not supported"
    r"|Failed to check if RequestWatchProgress is supported"
    r"|storage feature RequestWatchProgress is disabled"
)


class ControlPlaneError(RuntimeError):
    """The control plane could not start or is unhealthy; the message has the log tails."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; ``str()`` includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}"


class ControlPlane:
    """A running etcd + kube-apiserver (+ kube-controller-manager) for one test session.

    Attributes for tests: ``server`` (https URL), ``ca`` / ``ca_file`` (the throwaway CA,
    which can also sign certificates for webhook servers), ``admin_token``,
    ``admin_kubeconfig``, ``api`` (an admin ApiClient), ``workdir`` (logs, data, certs).
    """

    def __init__(self, binaries: Binaries, workdir: Path, controller_manager: bool = True) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self.with_controller_manager = controller_manager
        self.processes: dict[str, processes.ManagedProcess] = {}
        self.log_dir = workdir / "logs"
        self.ca = certs.CertificateAuthority(workdir / "pki")
        self.ca_file = self.ca.cert_file
        self.admin_token = secrets.token_urlsafe(24)
        self.apiserver_port = net.free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.admin_kubeconfig = write_kubeconfig(
            workdir / "admin.kubeconfig", self.server, self.ca_file, self.admin_token, "admin"
        )
        self.api = ApiClient(self.server, self.ca_file, self.admin_token)
        self.start_seconds: float | None = None
        self.version_string = "not started"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Start every component and wait until each is ready; stop all on failure."""
        began = time.monotonic()
        try:
            self._start_etcd()
            self._start_apiserver()
            if self.with_controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        self.version_string = str(self.version().get("gitVersion", "?"))
        return self

    def stop(self) -> None:
        """Stop the components in reverse start order (safe to call twice)."""
        for name in reversed(list(self.processes)):
            self.processes[name].stop()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- components ------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str]) -> processes.ManagedProcess:
        proc = processes.ManagedProcess(
            name, argv, self.log_dir / f"{name}.log", die_with_parent=True
        )
        self.processes[name] = proc
        return proc

    def _wait_ready(self, name: str, probe: Any) -> None:
        proc = self.processes[name]

        def ready() -> bool:
            if not proc.running():
                raise ControlPlaneError(
                    f"{name} exited with {proc.popen.returncode}:\n{proc.tail()}"
                )
            return bool(probe())

        try:
            processes.wait_until(ready, START_TIMEOUT, what=f"{name} to be ready")
        except TimeoutError as exc:
            raise ControlPlaneError(f"{exc}\n--- {name} log ---\n{proc.tail()}") from None

    def _start_etcd(self) -> None:
        client, peer = net.free_port(), net.free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=e2e=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_ready("etcd", lambda: _http_ok(f"{self.etcd_url}/health", '"health":"true"'))

    def _start_apiserver(self) -> None:
        pki = self.workdir / "pki"
        serving = self.ca.issue("apiserver")
        self.sa_keys = certs.service_account_keys(pki)
        tokens = pki / "tokens.csv"
        tokens.write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n')
        tokens.chmod(0o600)
        argv = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={serving.cert_file}",
            f"--tls-private-key-file={serving.key_file}",
            f"--client-ca-file={self.ca_file}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={self.sa_keys.cert_file}",
            f"--service-account-signing-key-file={self.sa_keys.key_file}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            # The default reconciler publishes 127.0.0.1 as the kubernetes Service's endpoint,
            # which validation rejects (loopback), logging an error every 10 s.
            "--endpoint-reconciler-type=none",
        ]
        if not self.with_controller_manager:
            argv.append("--disable-admission-plugins=ServiceAccount")
        self._spawn("kube-apiserver", argv)
        self._wait_ready("kube-apiserver", self._apiserver_ready)
        self.check_watch_progress()

    def _apiserver_ready(self) -> bool:
        try:
            return self.api.request("GET", "/readyz", timeout=5) == "ok"
        except (ApiError, OSError):
            return False

    def _start_controller_manager(self) -> None:
        port = net.free_port()
        serving = self.ca.issue("kube-controller-manager")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.admin_kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kcm'}",
                f"--tls-cert-file={serving.cert_file}",
                f"--tls-private-key-file={serving.key_file}",
                f"--service-account-private-key-file={self.sa_keys.key_file}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                "--profiling=false",
            ],
        )
        healthz = ApiClient(f"https://127.0.0.1:{port}", self.ca_file, self.admin_token)
        self._wait_ready("kube-controller-manager", lambda: _client_ok(healthz, "/healthz"))

    # -- checks and diagnostics ------------------------------------------------------

    def check_watch_progress(self) -> None:
        """Raise ControlPlaneError if the apiserver logged that etcd lacks
        RequestWatchProgress (watches would fail or hang)."""
        log = self.processes["kube-apiserver"].log_path.read_text(errors="replace")
        match = _WATCH_PROGRESS_UNSUPPORTED.search(log)
        if match:
            line = log[log.rfind("\n", 0, match.start()) + 1 : log.find("\n", match.end())]
            raise ControlPlaneError(
                "kube-apiserver reports etcd without RequestWatchProgress support; watches "
                f"will break. Use etcd >= 3.5.13 (e2e/k8s/build pins 3.6.x). Log: {line}"
            )

    def check_running(self) -> None:
        """Raise ControlPlaneError naming any component that has exited."""
        dead = [p for p in self.processes.values() if not p.running()]
        if dead:
            raise ControlPlaneError(
                "\n".join(f"{p.name} exited ({p.popen.returncode}):\n{p.tail()}" for p in dead)
            )

    def log_tails(self, lines: int = 30) -> dict[str, str]:
        """The last lines of each component's log, by component name."""
        return {name: proc.tail(lines) for name, proc in self.processes.items()}

    # -- helpers for tests -----------------------------------------------------------

    def client(self, token: str) -> ApiClient:
        """An ApiClient for this server with another bearer token."""
        return ApiClient(self.server, self.ca_file, token)

    def request(self, method: str, path: str, body: JsonObject | None = None, **kw: Any) -> Any:
        """An admin JSON request (see ApiClient.request)."""
        return self.api.request(method, path, body, **kw)

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl (admin credentials unless ``kubeconfig`` is given)."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}"]
        argv += args
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def apply(
        self, yaml_text: str, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` with ``yaml_text`` (may hold several documents)."""
        return self.kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=yaml_text)

    def version(self) -> JsonObject:
        """The server's /version answer (gitVersion is the pinned release)."""
        result: JsonObject = self.api.get("/version")
        return result


def _http_ok(url: str, expect: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return expect in resp.read().decode()
    except OSError:
        return False


def _client_ok(client: ApiClient, path: str) -> bool:
    try:
        return client.request("GET", path, timeout=5) == "ok"
    except (ApiError, OSError):
        return False


def main() -> None:
    """Start a control plane by hand and keep it until Ctrl-C."""
    processes.install_cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-cp-"))
    with ControlPlane(
        find_binaries("etcd", "kube-apiserver", "kube-controller-manager"), workdir
    ) as cp:
        print(f"ready in {cp.start_seconds:.1f}s; export KUBECONFIG={cp.admin_kubeconfig}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
