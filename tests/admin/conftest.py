"""Fixtures for the admin API tests: the proxy and economics tests' real sidecars."""

from __future__ import annotations

from tests.economics.conftest import economics_sidecar, redis_server, redis_url
from tests.proxy.conftest import sidecar, sidecar_factory

__all__ = ["economics_sidecar", "redis_server", "redis_url", "sidecar", "sidecar_factory"]
