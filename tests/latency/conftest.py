"""The latency behaviours run against a real sidecar: the proxy suite's fixtures, shared."""

from __future__ import annotations

from tests.proxy.conftest import sidecar, sidecar_factory

__all__ = ["sidecar", "sidecar_factory"]
