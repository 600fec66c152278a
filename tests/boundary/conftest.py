"""Fixtures of the boundary tests: real sidecars (tests/proxy's factory) and a simulator."""

from __future__ import annotations

from tests.proxy.conftest import sidecar, sidecar_factory

__all__ = ["sidecar", "sidecar_factory"]
