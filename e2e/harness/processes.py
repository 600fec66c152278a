"""Child processes for the harness: each runs in its own process group with its output in a
log file, and is stopped (SIGTERM, then SIGKILL) by ``stop()``, by ``stop_all()`` at
interpreter exit, or by the kernel if the test process dies (PR_SET_PDEATHSIG on Linux).

Used by ``controlplane`` for etcd/apiserver/controller-manager and by ``kubelet`` for the
processes it starts on behalf of Pods.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1
_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


# Loaded once here, so the child does no dlopen between fork and exec.
_LIBC = _load_libc()


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask for SIGKILL when the thread that
    started it dies (the pytest process, or a fake kubelet's watch thread)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    """One started program, its log file and how to stop it and its whole group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **(env or {})}
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            # preexec_fn is only used from the main thread (control plane components);
            # processes started from other threads rely on stop_all() instead.
            preexec = (
                _die_with_parent if die_with_parent and sys.platform.startswith("linux") else None
            )
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=preexec,
            )
        with _live_lock:
            _live.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        try:
            if self.running():
                self._signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.popen.wait(5)
            # Reap helpers the program may have left in its group.
            self._signal_group(signal.SIGKILL)
            return self.popen.returncode
        finally:
            with _live_lock:
                _live.discard(self)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log, for failure reports."""
        return tail_file(self.log_path, lines)

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.popen.pid} log={self.log_path}>"


def tail_file(path: Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """Last lines of a (possibly large) text file; empty when it does not exist."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def stop_all() -> None:
    """Stop every process still running (newest first); safe to call more than once."""
    with _live_lock:
        procs = sorted(_live, key=lambda p: p.popen.pid, reverse=True)
    for proc in procs:
        proc.stop(timeout=5)


def _on_terminate(signum: int, _frame: object) -> None:
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_cleanup() -> None:
    """Make sure children die with the test run: at exit, on SIGTERM and on SIGHUP.

    Ctrl-C reaches only pytest (children live in their own process groups); pytest then
    runs its finalizers and the interpreter runs the atexit hook.
    """
    atexit.register(stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_terminate)


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll ``predicate()`` until it returns a truthy value and return it; raise
    TimeoutError after ``timeout`` seconds. The interval grows to at most one second."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # keep polling; report the last error on timeout
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)
