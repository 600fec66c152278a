"""A started sidecar has imported only what its configuration uses.

The OpenTelemetry SDK with its OTLP exporters (grpc, protobuf) and redis-py are most of an idle
sidecar's memory and start-up time (docs/performance.md, "Footprint"): they are imported by the
start-up branch that enables them. Each case starts a standalone sidecar in a fresh interpreter
(this process has imported everything already) and reads that interpreter's ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.sidecar import policy

ROOT = Path(__file__).resolve().parents[2]
# Starts a sidecar from the settings of argv and the environment, prints the top modules it
# imported as JSON and leaves at once (no exporter is meant to reach anything).
DRIVER = """
import asyncio, json, os, sys
from sluice_sidecar.api.server import start_sidecar
from sluice_sidecar.service.settings import load_settings

async def main():
    running = await start_sidecar(load_settings(sys.argv[1:]))
    assert running.state.version is not None, "the policy folder was not applied"
    print(json.dumps(sorted(sys.modules)), flush=True)
    os._exit(0)

asyncio.run(main())
"""
OTLP_SDK = ("opentelemetry.sdk", "opentelemetry.exporter", "grpc", "google.protobuf")


def started_modules(tmp_path: Path, *argv: str, **env: str) -> set[str]:
    (tmp_path / "policies").mkdir(exist_ok=True)
    document = policy(
        providers=[{"name": "p", "type": "openai-compatible", "baseUrl": "http://127.0.0.1:9/v1"}]
    )
    (tmp_path / "policies" / "p.yaml").write_text(yaml.safe_dump(document))
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "SLUICE_"))  # only what the case sets
    }
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "sidecar"), str(ROOT)])
    argv = (
        "--policy-dir",
        str(tmp_path / "policies"),
        "--data-port",
        "0",
        "--admin-port",
        "0",
        *argv,
    )
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *argv],
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def loaded(modules: set[str], *packages: str) -> set[str]:
    return {
        name for name in modules if name.partition(".")[0] in packages or name.startswith(packages)
    }


def test_without_otlp_or_redis_neither_is_imported(tmp_path: Path) -> None:
    modules = started_modules(tmp_path)
    assert "sluice_sidecar.api.proxy" in modules
    assert loaded(modules, *OTLP_SDK, "redis") == set()


def test_a_sidecar_that_does_not_watch_its_folder_has_not_imported_watchfiles(
    tmp_path: Path,
) -> None:
    modules = started_modules(tmp_path, "--no-watch")
    assert loaded(modules, "watchfiles", "anyio") == set()


def test_otlp_over_http_imports_the_sdk_but_not_grpc(tmp_path: Path) -> None:
    modules = started_modules(
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
    )
    assert "opentelemetry.sdk.trace" in modules
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in modules
    assert loaded(modules, "grpc", "opentelemetry.exporter.otlp.proto.grpc") == set()


def test_redis_is_imported_when_a_redis_url_is_set(tmp_path: Path) -> None:
    # The client connects lazily, so no server is needed to start.
    modules = started_modules(tmp_path, "--redis-url", "redis://127.0.0.1:9/0")
    assert "redis.asyncio" in modules
    assert "sluice_sidecar.economics.budget_redis" in modules
    # redis-py itself imports parts of the OpenTelemetry SDK (its own observability), not gRPC.
    assert loaded(modules, "grpc", "opentelemetry.exporter") == set()
