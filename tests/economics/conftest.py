"""Economics behaviour tests reuse the proxy tests' real-sidecar fixtures."""

from tests.proxy.conftest import sidecar, sidecar_factory

__all__ = ["sidecar", "sidecar_factory"]
