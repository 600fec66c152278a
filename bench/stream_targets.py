"""The proxies ``streaming.py`` measures, started in front of its in-process paced upstream.

Each ``start_*`` returns a ``overhead_targets.Server`` once the proxy answers; they run under
the ``Fleet`` (own process groups, pinned to the proxy core, stopped at the end). Readiness is
polled from a worker thread because the upstream they probe runs on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import overhead_targets as targets

HOST = targets.HOST
REPO = targets.REPO

NGINX_STREAM_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
worker_rlimit_nofile 20000;
{user}
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    upstream llm {{
        server {upstream};
        keepalive 1024;
        keepalive_requests 100000;
    }}
    server {{
        listen {host}:{port} backlog=8192;
        location / {{
            proxy_pass http://llm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""

POLICY = """\
apiVersion: sluice.dev/v1alpha1
kind: LlmPolicy
metadata: {{name: bench}}
spec:
  providers:
    - {{name: sim, type: openai-compatible, baseUrl: "{upstream}/v1"}}
    - {{name: claude, type: anthropic, baseUrl: "{upstream}"}}
  retry: {{strategy: exponential, maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000}}
"""


async def _ready(server: targets.Server, url: str, timeout_s: float, started: float) -> None:
    await asyncio.to_thread(targets.wait_ready, server, url, timeout_s, started)


async def start_nginx(fleet: targets.Fleet, upstream: str) -> targets.Server:
    tmp = fleet.workdir / "nginx"
    tmp.mkdir()
    port = targets.free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    hostport = upstream.removeprefix("http://")
    conf = NGINX_STREAM_CONF.format(tmp=tmp, user=user, upstream=hostport, host=HOST, port=port)
    (tmp / "nginx.conf").write_text(conf)
    argv = [
        targets._nginx(),
        "-p",
        str(tmp),
        "-c",
        str(tmp / "nginx.conf"),
        "-e",
        str(tmp / "err.log"),
    ]
    started = time.monotonic()
    proc, log = fleet.spawn("nginx", argv)
    server = targets.Server("nginx", proc, f"http://{HOST}:{port}", log)
    await _ready(server, server.base_url + "/v1/models", 30, started)
    return server


async def start_relay(
    fleet: targets.Fleet,
    upstream: str,
    loop: str,
    client: str = "aiohttp",
    python: Path | None = None,
    name: str = "",
) -> targets.Server:
    """``passthrough_proxy.py``: the bare relay on asyncio's loop or uvloop, aiohttp or reqwest,
    run by ``python`` (this interpreter by default)."""
    port = targets.free_port()
    script = str(REPO / "bench" / "passthrough_proxy.py")
    options = {
        "--host": HOST,
        "--port": str(port),
        "--upstream": upstream,
        "--loop": loop,
        "--client": client,
    }
    argv = [str(python or sys.executable), script, *(i for pair in options.items() for i in pair)]
    started = time.monotonic()
    name = name or (f"relay-{loop}" if client == "aiohttp" else f"relay-{client}-{loop}")
    proc, log = fleet.spawn(name, argv)
    server = targets.Server(name, proc, f"http://{HOST}:{port}", log)
    await _ready(server, server.base_url + "/v1/models", 30, started)
    return server


async def start_sidecar(
    fleet: targets.Fleet,
    upstream: str,
    name: str,
    env: dict[str, str],
    profile: Path | None = None,
    tree: Path = REPO,
    python: Path | None = None,
) -> targets.Server:
    """The sidecar of ``tree`` (``python -m sluice_sidecar``; by default this checkout's), with
    ``env`` for its settings, run by ``python`` (this interpreter by default).

    With ``profile``, it runs under pyinstrument (a sampling profiler), which writes its text
    report there when the sidecar stops.
    """
    policy_dir = fleet.workdir / f"policies-{name}"
    policy_dir.mkdir()
    policy = POLICY.format(upstream=upstream)
    (policy_dir / "bench.yaml").write_text(policy)
    data_port, admin_port = targets.free_port(), targets.free_port()
    argv = [
        str(python or sys.executable),
        "-m",
        "sluice_sidecar",
        "--policy-dir",
        str(policy_dir),
        "--host",
        HOST,
        "--data-port",
        str(data_port),
        "--admin-port",
        str(admin_port),
    ]
    if profile is not None:
        argv[1:1] = ["-m", "pyinstrument", "-r", "session", "-o", str(profile)]
    pythonpath = os.pathsep.join([str(tree / "sidecar"), str(tree)])
    started = time.monotonic()
    proc, log = fleet.spawn(name, argv, env={"PYTHONPATH": pythonpath, **env})
    server = targets.Server(name, proc, f"http://{HOST}:{data_port}", log)
    await _ready(server, f"http://{HOST}:{admin_port}/readyz", 60, started)
    return server


def group_fds(pgid: int) -> int:
    """Open file descriptors summed over a process group."""
    total = 0
    for pid, _ in targets._group_stats(pgid):
        try:
            total += len(os.listdir(Path(f"/proc/{pid}/fd")))
        except OSError:
            continue
    return total
