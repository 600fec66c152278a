"""The egress proxy of each upstream URL, from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``.

Read once, when the transport starts, and looked up once per origin: aiohttp's own
``trust_env`` re-reads the environment and ``~/.netrc`` in worker threads on every request,
two thread hops per call on the data path.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

MAX_ORIGINS = 1024  # providers come from the configuration; the bound is only a backstop


class EnvProxies:
    def __init__(self, proxies: Mapping[str, str] | None = None) -> None:
        """``proxies``: scheme -> proxy URL and ``no`` -> the NO_PROXY list, as
        ``urllib.request.getproxies_environment`` gives them; None: read the environment."""
        self._proxies = dict(
            urllib.request.getproxies_environment() if proxies is None else proxies
        )
        self._by_origin: dict[str, str | None] = {}

    def for_url(self, url: str) -> str | None:
        """The proxy URL to reach ``url`` through, or None to connect directly."""
        end = url.find("/", url.find("//") + 2)
        origin = url if end < 0 else url[:end]
        try:
            return self._by_origin[origin]
        except KeyError:
            pass
        parts = urlsplit(url)
        proxy = None
        # proxy_bypass_environment: public in urllib.request, missing from typeshed.
        if parts.hostname and not urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
            parts.netloc, self._proxies
        ):
            proxy = self._proxies.get(parts.scheme)
        if len(self._by_origin) < MAX_ORIGINS:
            self._by_origin[origin] = proxy
        return proxy
