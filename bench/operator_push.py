"""How long from applying a policy to every injected sidecar running it, at 20, 100 or 500 pods,
and how many reconciles the operator ran for it (issue 13: apply -> 100 sidecars applied p99
< 2 s; 500 pods without a reconcile storm).

Starts the real local control plane (e2e/k8s/build must have run), the operator under its
least-privilege ServiceAccount with its /metrics served, and a Deployment of ``--replicas``
pods, injected by the webhook, that the e2e fake kubelet runs as stand-ins: the sidecar's
admin API for every pod served by one thread of this process (``e2e/harness/standins.py``),
which records when each push arrived. Then, ``--rounds`` times: patch the policy through the
API (no kubectl start-up in the figure) and wait until every stand-in took the new version.

Prints, with the load average: the scale-up (pods created -> all configured) and the
reconciles it took; per round the time until all sidecars applied (p50, p99, max) and each
sidecar's own time (p50, p99 over all of them); reconciles, pushes and the CPU time of the
operator and the API server per round.

    .venv/bin/python -m bench.operator_push [--replicas 20] [--rounds 20]   # from the repo root
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from e2e.harness import processes
from e2e.harness.binaries import find_binaries
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import FakeKubelet, IpAllocator
from e2e.harness.standins import StandIns
from e2e.operator_replicas import Replica, install, start_replica
from e2e.workloads import deployment
from sluice_operator.workloads import VERSION_ANNOTATION

NAMESPACE = "bench"
POLICIES = f"/apis/sluice.dev/v1alpha1/namespaces/{NAMESPACE}/llmpolicies"
TICKS = os.sysconf("SC_CLK_TCK")
COUNTED = ("reconciles_total", "events_ignored_total", "pushes_total")


def policy(timeout_seconds: int) -> dict[str, object]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LlmPolicy",
        "metadata": {"name": "bench"},
        "spec": {
            "selector": {"matchLabels": {"app": "studio"}},
            "providers": [{"name": "openai", "type": "openai"}],
            "defaults": {"timeoutSeconds": timeout_seconds},
        },
    }


def unseen(versions: set[str]) -> Callable[[str], bool]:
    """A version none of the earlier rounds produced."""
    known = frozenset(versions)
    return lambda version: version not in known


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 20 values is the largest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def cpu_seconds(pid: int) -> float:
    """user + sys of one process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def counts(replica: Replica) -> dict[str, float]:
    """The operator's reconcile, ignored-event and push counters, by their labels."""
    return {
        name.removeprefix("sluice_operator_"): value
        for name, value in replica.scrape().items()
        if any(name.startswith(f"sluice_operator_{c}") for c in COUNTED)
    }


def settle(cp: ControlPlane, versions: set[str]) -> None:
    """Wait until the operator has finished with a change (every pod annotated with the
    version it runs, off the push's critical path), so each round measures one change
    applied to a settled cluster rather than its predecessor's tail."""
    (version,) = versions

    def annotated() -> bool:
        listing = cp.api.get(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector="app=studio")
        return all(
            (p["metadata"].get("annotations") or {}).get(VERSION_ANNOTATION) == version
            for p in listing["items"]
        )

    processes.wait_until(annotated, 60, what="every pod annotated with its version")


def policy_reconciles(counted: Mapping[str, float]) -> float:
    return sum(v for k, v in counted.items() if 'kind="LlmPolicy"' in k and "reconciles" in k)


def delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def summary(changes: Mapping[str, float], per: int = 1) -> str:
    """Counter changes, short: 'reconciles Pod success 3, ...' (divided by ``per``)."""
    parts = []
    for name, value in sorted(changes.items()):
        family, _, labels = name.partition("{")
        values = " ".join(v.split("=")[1].strip('"') for v in labels.rstrip("}").split(",") if v)
        parts.append(f"{family.removesuffix('_total')} {values} {value / per:g}".replace("  ", " "))
    return ", ".join(parts)


def versions_line(cp: ControlPlane) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"commit {commit or '?'}, Kubernetes {cp.version_string}, kopf "
        f"{importlib.metadata.version('kopf')}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores"
    )


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextmanager
def cluster(workdir: Path) -> Iterator[tuple[ControlPlane, Replica]]:
    binaries = find_binaries("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
    with ControlPlane(binaries, workdir / "cp") as cp:
        replica = start_replica(install(cp, workdir))
        try:
            yield cp, replica
        finally:
            replica.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60, help="per round, seconds")
    args = parser.parse_args()
    processes.install_cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-push-"))
    with cluster(workdir) as (cp, replica):
        assert replica.deployment.operator is not None
        operator_pid = replica.deployment.operator.pid
        apiserver_pid = cp.processes["kube-apiserver"].pid
        cp.kubectl("create", "namespace", NAMESPACE)
        standins = StandIns(cp.api).start()
        kubelet = FakeKubelet(
            cp.api,
            NAMESPACE,
            "sluice.dev/injected=true",
            standins.launch,
            workdir / "logs",
            IpAllocator(),
        ).start()
        try:
            print(versions_line(cp))
            cp.api.create(POLICIES, policy(30))
            before = counts(replica)
            started = time.monotonic()
            cp.kubectl(
                "apply", "-n", NAMESPACE, "-f", "-", input=deployment("studio", args.replicas)
            )
            processes.wait_until(
                lambda: len(kubelet.slots()) == args.replicas,
                600,
                what=f"{args.replicas} stand-ins running",
            )
            names = set(kubelet.slots())
            standins.wait_for(names, lambda version: True, 600)
            print(
                f"{args.replicas} pods created, injected, run and configured in "
                f"{time.monotonic() - started:.1f} s: {summary(delta(counts(replica), before))}"
                f" (load {load()})"
            )
            versions = {a[-1].version for a in standins.applied().values()}
            rounds: list[float] = []
            each: list[float] = []
            before = counts(replica)
            cpu_before = cpu_seconds(operator_pid), cpu_seconds(apiserver_pid)
            for number in range(args.rounds):
                t0 = time.monotonic()
                patch = {"spec": {"defaults": {"timeoutSeconds": 31 + number}}}
                cp.api.patch(f"{POLICIES}/bench", patch)
                took = standins.wait_for(names, unseen(versions), args.timeout)
                versions |= {a.version for a in took.values()}
                times = [a.at - t0 for a in took.values()]
                rounds.append(max(times))
                each.extend(times)
                settle(cp, {a.version for a in took.values()})
            # A reconcile is counted once its status writes are done, after the pushes.
            processes.wait_until(
                lambda: (
                    policy_reconciles(counts(replica)) - policy_reconciles(before) >= args.rounds
                ),
                30,
                what="every round's reconcile counted",
            )
            operator_cpu = cpu_seconds(operator_pid) - cpu_before[0]
            apiserver_cpu = cpu_seconds(apiserver_pid) - cpu_before[1]
            per_round = delta(counts(replica), before)
        finally:
            kubelet.stop()
            standins.stop()
    ms = 1000
    print(
        f"apply -> all {args.replicas} sidecars applied, {args.rounds} rounds: "
        f"p50 {statistics.median(rounds) * ms:.0f} ms, p99 {percentile(rounds, 0.99) * ms:.0f} ms, "
        f"max {max(rounds) * ms:.0f} ms; each sidecar p50 {statistics.median(each) * ms:.0f} ms, "
        f"p99 {percentile(each, 0.99) * ms:.0f} ms"
    )
    print(
        f"per round: {summary(per_round, args.rounds)}; CPU operator "
        f"{operator_cpu / args.rounds * ms:.0f} ms, kube-apiserver "
        f"{apiserver_cpu / args.rounds * ms:.0f} ms (load {load()})"
    )


if __name__ == "__main__":
    main()
