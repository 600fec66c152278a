"""Fixtures for the admin API tests: the proxy tests' real sidecar in front of a simulator."""

from __future__ import annotations

from tests.proxy.conftest import sidecar, sidecar_factory

__all__ = ["sidecar", "sidecar_factory"]
