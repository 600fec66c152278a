"""Image tests: both images built by scripts/images (see e2e/image_fixtures.py)."""

from e2e.image_fixtures import images

__all__ = ["images"]
