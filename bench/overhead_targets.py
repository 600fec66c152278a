"""The servers ``proxy_overhead.py`` measures: start, probe, measure memory, and stop them.

``Fleet`` owns every subprocess (each in its own session, so it is stopped by process group)
and stops them all, newest first, when its ``with`` block ends for any reason. Each ``start_*``
function starts one server on a loopback port and returns once it answers.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
HOST = "127.0.0.1"
CACHE = Path(os.environ.get("SLUICE_CACHE_DIR") or Path.home() / ".cache" / "sluice") / "bench"
LITELLM_VENV = CACHE / "litellm-venv"


@dataclasses.dataclass
class Server:
    """A started server: its process, the base URL of its OpenAI API, and how it started."""

    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path
    ready_s: float = 0.0

    @property
    def chat_url(self) -> str:
        return self.base_url + "/chat/completions"


class Fleet:
    """Every subprocess of one benchmark run; ``with Fleet(...)`` stops them all on the way out."""

    def __init__(self, workdir: Path, cpu: int | None) -> None:
        self.workdir = workdir
        self.cpu = cpu
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def spawn(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None, pipe: bool = False
    ) -> tuple[subprocess.Popen[bytes], Path]:
        if self.cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(self.cpu), *argv]
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE if pipe else out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=REPO,
                start_new_session=True,  # its own process group: stopped as one
            )
        self.procs.append(proc)
        return proc, log

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)
        self.procs.clear()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_ready(server: Server, url: str, timeout_s: float, started: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the process exits."""
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{log_tail(server.log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    server.ready_s = time.monotonic() - started
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{server.name} not ready after {timeout_s}s:\n{log_tail(server.log)}")


def rss_kib(pid: int) -> int:
    """Resident memory of one process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _group_stats(pgid: int) -> list[tuple[int, list[str]]]:
    """(pid, /proc/PID/stat fields after the command name) of every process in a group."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                found.append((int(stat.parent.name), fields))
        except (OSError, IndexError, ValueError):
            continue
    return found


def group_rss_kib(pgid: int) -> int:
    """Resident memory summed over a process group (e.g. nginx master and worker)."""
    return sum(rss_kib(pid) for pid, _ in _group_stats(pgid))


def group_cpu_s(pgid: int) -> float:
    """User plus system CPU time used so far by a process group's live processes, in seconds.

    Unlike throughput, this does not depend on what else the machine is doing.
    """
    ticks = sum(int(fields[11]) + int(fields[12]) for _, fields in _group_stats(pgid))
    return ticks / os.sysconf("SC_CLK_TCK")


def start_simulator(fleet: Fleet) -> Server:
    argv = [str(VENV_BIN / "python"), "-m", "tests.support.simulator", "--host", HOST,
            "--port", "0", "--name", "sim"]  # fmt: skip
    started = time.monotonic()
    proc, log = fleet.spawn("simulator", argv, env={"PYTHONPATH": str(REPO)}, pipe=True)
    assert proc.stdout is not None
    line = _read_line(proc, 30.0)
    if not line.startswith("simulator listening on "):
        raise RuntimeError(f"simulator did not start: {line!r}\n{log_tail(log)}")
    server = Server("simulator", proc, line.split()[-1] + "/v1", log)
    server.ready_s = time.monotonic() - started
    return server


def _read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            return ""
    return proc.stdout.readline().decode().strip()


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream llm {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://llm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def start_nginx(fleet: Fleet, upstream: Server) -> Server:
    tmp = fleet.workdir / "nginx"
    tmp.mkdir()
    port = free_port()
    # As root nginx would hand its worker to "nobody"; keep it on the current user instead.
    user = "user root;" if os.geteuid() == 0 else ""
    hostport = upstream.base_url.removeprefix("http://").removesuffix("/v1")
    conf = NGINX_CONF.format(tmp=tmp, user=user, upstream=hostport, host=HOST, port=port)
    (tmp / "nginx.conf").write_text(conf)
    argv = [_nginx(), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "err.log")]
    started = time.monotonic()
    proc, log = fleet.spawn("nginx", argv)
    server = Server("nginx", proc, f"http://{HOST}:{port}/v1", log)
    wait_ready(server, server.base_url + "/models", 30, started)
    return server


def _nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


POLICY = """\
apiVersion: sluice.dev/v1alpha1
kind: LlmPolicy
metadata: {{name: bench}}
spec:
  providers:
    - {{name: sim, type: openai-compatible, baseUrl: "{upstream}"}}
  retry: {{strategy: exponential, maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000}}
"""


def sidecar_missing() -> str | None:
    """Why the sidecar cannot be benchmarked here, or None when it can."""
    if not (REPO / "sidecar" / "sluice_sidecar" / "__main__.py").exists():
        return "sidecar/sluice_sidecar/__main__.py does not exist yet"
    if not (VENV_BIN / "sluice-sidecar").exists():
        return ".venv/bin/sluice-sidecar is not installed (run scripts/bootstrap)"
    return None


def start_passthrough(
    fleet: Fleet, upstream: Server, name: str = "aiohttp", loop: str = "asyncio",
    client: str = "aiohttp", python: Path | None = None,
) -> Server:  # fmt: skip
    """The bare proxy of ``passthrough_proxy.py``: the floor under the sidecar, on ``loop``
    (asyncio or uvloop) relaying through ``client`` (aiohttp or reqwest), run by ``python``
    (this interpreter by default)."""
    port = free_port()
    origin = upstream.base_url.removesuffix("/v1")
    argv = [str(python or sys.executable), str(REPO / "bench" / "passthrough_proxy.py"),
            "--host", HOST, "--port", str(port), "--upstream", origin,
            "--loop", loop, "--client", client]  # fmt: skip
    started = time.monotonic()
    proc, log = fleet.spawn(name, argv)
    server = Server(name, proc, f"http://{HOST}:{port}/v1", log)
    wait_ready(server, server.base_url + "/models", 30, started)
    return server


def start_sidecar(
    fleet: Fleet,
    upstream: Server,
    name: str = "sidecar",
    env: dict[str, str] | None = None,
    tree: Path = REPO,
    profile: Path | None = None,
    python: Path | None = None,
) -> Server:
    """The sidecar of ``tree``'s sources (this checkout by default, not whichever one the
    venv's editable install points at), so two trees can be measured side by side.

    With ``profile`` it runs under pyinstrument, which writes its session there on exit.
    With ``python`` (a venv of ``interpreters.prepare``) it runs as ``python -m sluice_sidecar``
    under that interpreter instead of the project venv's.
    """
    env = {"PYTHONPATH": os.pathsep.join([str(tree / "sidecar"), str(tree)]), **(env or {})}
    policy_dir = fleet.workdir / f"policies-{name}"
    policy_dir.mkdir()
    (policy_dir / "bench.yaml").write_text(POLICY.format(upstream=upstream.base_url))
    data_port, admin_port = free_port(), free_port()
    argv = [str(VENV_BIN / "sluice-sidecar"), "--policy-dir", str(policy_dir), "--host", HOST,
            "--data-port", str(data_port), "--admin-port", str(admin_port)]  # fmt: skip
    if profile is not None:
        argv[:1] = [str(python or VENV_BIN / "python"), "-m", "pyinstrument", "-r", "session",
                    "-o", str(profile), "-m", "sluice_sidecar"]  # fmt: skip
    elif python is not None:
        argv[:1] = [str(python), "-m", "sluice_sidecar"]
    started = time.monotonic()
    proc, log = fleet.spawn(name, argv, env=env)
    server = Server(name, proc, f"http://{HOST}:{data_port}/v1", log)
    wait_ready(server, f"http://{HOST}:{admin_port}/readyz", 60, started)
    return server


LITELLM_CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: "{upstream}"
      api_key: test
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  # No key checks, like nginx and the sidecar here (newer LiteLLM refuses that by default).
  dangerously_permit_weak_or_unset_master_key: true
"""


def ensure_litellm(echo: Callable[[str], None]) -> Path:
    """The ``litellm`` command in its own venv under the cache dir, installed on first use."""
    command = LITELLM_VENV / "bin" / "litellm"
    if command.exists():
        return command
    echo(f"installing litellm[proxy] into {LITELLM_VENV} (first run only)")
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=300)
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True, timeout=600)
    subprocess.run([*pip, "litellm[proxy]"], check=True, timeout=1800)
    return command


def start_litellm(fleet: Fleet, upstream: Server, command: Path) -> Server:
    config = fleet.workdir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(upstream=upstream.base_url))
    port = free_port()
    argv = [str(command), "--config", str(config), "--host", HOST, "--port", str(port),
            "--num_workers", "1"]  # fmt: skip
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start-up
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "NO_DOCS": "True",
    }
    started = time.monotonic()
    proc, log = fleet.spawn("litellm", argv, env=env)
    server = Server("litellm", proc, f"http://{HOST}:{port}/v1", log)
    wait_ready(server, f"http://{HOST}:{port}/health/liveliness", 180, started)
    return server


def ensure_tools(echo: Callable[[str], None]) -> None:
    """Install wrk and nginx with apt-get when they are missing (needs root)."""
    missing = [pkg for pkg, exe in (("wrk", "wrk"), ("nginx", "nginx")) if not _has(exe)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing {' '.join(missing)}: install them (apt-get install {missing})")
    echo(f"installing {' '.join(missing)} with apt-get")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=apt_env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=apt_env,
        timeout=900,
    )


def _has(exe: str) -> bool:
    return shutil.which(exe) is not None or Path("/usr/sbin", exe).exists()


def versions(litellm: Path | None) -> dict[str, str]:
    """Versions of what was measured, for the record."""

    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        return (
            (done.stdout or done.stderr).strip().splitlines()[0]
            if done.stdout or done.stderr
            else ""
        )

    found = {
        "nginx": first_line([_nginx(), "-v"]).removeprefix("nginx version: "),
        "wrk": first_line(["wrk", "-v"]).split(" [")[0],
    }
    if litellm is not None:
        python = str(litellm.parent / "python")
        query = "import importlib.metadata as m; print(m.version('litellm'))"
        found["litellm"] = first_line([python, "-c", query])
    return found


def describe_cpu() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return textwrap.shorten(f"{os.cpu_count()} CPUs, {model}", 100)
