"""Run an aiohttp application over HTTPS on loopback in a background thread with its own
event loop, so that synchronous test code (and the API server calling back, e.g. an
admission webhook) can reach it while the test blocks on other calls.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from e2e.harness import net
from e2e.harness.certs import KeyPair


class BackgroundHttpsServer:
    """``with BackgroundHttpsServer(app, keypair) as srv: srv.url`` serves ``app``."""

    def __init__(self, app: web.Application, keypair: KeyPair, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self.port = net.free_port(host)
        self.url = f"https://{host}:{self.port}"
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(keypair.cert_file, keypair.key_file)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> BackgroundHttpsServer:
        self._thread.start()
        self._call(self._start()).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._call(self._runner.cleanup()).result(timeout=10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BackgroundHttpsServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, None]) -> Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl).start()
