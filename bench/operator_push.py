"""How long from `kubectl apply` of a policy to every sidecar running it (issue target: p99 < 1 s
for 20 sidecars).

Starts the real local control plane (e2e/k8s/build must have run), the operator under its
least-privilege ServiceAccount, and a 20-replica workload whose pods are real sidecar processes
at 127.0.0.N (the e2e fake kubelet). Then, ``--rounds`` times: apply a changed policy and time
until all sidecars' ``GET /admin/config`` report the new version. Prints p50, p99 and max.

    .venv/bin/python -m bench.operator_push [--replicas 20] [--rounds 20]   # from the repo root
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import yaml

from e2e.harness import processes, rbac
from e2e.harness.binaries import find_binaries
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import FakeKubelet, IpAllocator
from e2e.sluice import SluiceDeployment, sidecar_config, sidecar_launch
from e2e.workloads import admin_token, deployment

NAMESPACE = "bench"


def policy(round_number: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LlmPolicy",
            "metadata": {"name": "bench"},
            "spec": {
                "selector": {"matchLabels": {"app": "studio"}},
                "providers": [{"name": "openai", "type": "openai"}],
                "defaults": {"timeoutSeconds": 30 + round_number},
            },
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    processes.install_cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-push-"))
    binaries = find_binaries("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
    with ControlPlane(binaries, workdir / "cp") as cp:
        make_kubeconfig = partial(
            rbac.service_account_kubeconfig, cp.api, cp.server, cp.ca_file, workdir
        )
        sluice = SluiceDeployment.install(cp, make_kubeconfig, workdir)
        cp.kubectl("create", "namespace", "sluice-system", check=False)
        cp.kubectl("create", "namespace", NAMESPACE)
        sluice.start_operator()
        kubelet = FakeKubelet(
            cp.api,
            NAMESPACE,
            "sluice.dev/injected=true",
            sidecar_launch(cp, workdir / "pods"),
            workdir / "logs",
            IpAllocator(),
        ).start()
        try:
            started = time.monotonic()
            cp.kubectl(
                "apply", "-n", NAMESPACE, "-f", "-", input=deployment("studio", args.replicas)
            )
            processes.wait_until(
                lambda: len(kubelet.slots()) == args.replicas,
                300,
                what=f"{args.replicas} sidecars",
            )
            print(
                f"{args.replicas} injected sidecars running after {time.monotonic() - started:.1f}s"
            )
            token = admin_token(cp, NAMESPACE)
            slots = list(kubelet.slots().values())

            def all_answer() -> bool:
                try:
                    return all(sidecar_config(s, token)["version"] for s in slots)
                except OSError:
                    return False

            processes.wait_until(all_answer, 120, what="every sidecar to answer")
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(slots))

            def versions() -> set[str]:
                return set(pool.map(lambda s: sidecar_config(s, token)["version"], slots))

            durations = []
            for round_number in range(args.rounds):
                before = versions()
                t0 = time.monotonic()
                cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=policy(round_number))
                while True:
                    now = versions()
                    if len(now) == 1 and now != before:
                        break
                    if time.monotonic() - t0 > 30:
                        raise SystemExit(f"round {round_number}: not converged: {now}")
                    # Poll gently: 20 sidecars queried back to back would take the CPU the
                    # operator and the sidecars need (2 cores for everything here).
                    time.sleep(0.02)
                durations.append(time.monotonic() - t0)
            durations.sort()
            p99 = durations[min(len(durations) - 1, round(0.99 * len(durations)))]
            print(
                f"apply -> all {args.replicas} sidecars applied, {args.rounds} rounds: "
                f"p50 {statistics.median(durations) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
                f"max {durations[-1] * 1000:.0f} ms (includes kubectl start-up, ~100 ms)"
            )
        finally:
            kubelet.stop()
            sluice.stop_operator()


if __name__ == "__main__":
    main()
