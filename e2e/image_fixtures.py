"""The ``images`` fixture: both images built by ``scripts/images``, once per test session.

Imported by ``e2e/conftest.py`` and ``tests/images/conftest.py``; the build result is kept in
the session's stash, so both folders share one build. A failed build fails every test that
needs an image, with the build's reason; only a machine without the image tools at all skips
(loudly, naming them: ``scripts/system-packages`` installs them, and ``scripts/test`` fails
when it cannot).
"""

from __future__ import annotations

import pytest

from e2e.harness.images import Image, ImageBuildFailed, build_images, missing_tools

BUILT_KEY = pytest.StashKey[dict[str, Image] | str]()


@pytest.fixture(scope="session")
def images(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Image]:
    """``{"operator": Image, "sidecar": Image}``, freshly built (cached layers)."""
    stash = request.config.stash
    if BUILT_KEY not in stash:
        missing = missing_tools()
        if missing:
            pytest.skip(
                f"IMAGE TESTS NOT RUN: {', '.join(missing)} not installed "
                "(scripts/system-packages installs them)"
            )
        try:
            stash[BUILT_KEY] = build_images(tmp_path_factory.mktemp("images") / "build.log")
        except ImageBuildFailed as exc:
            stash[BUILT_KEY] = str(exc)
    built = stash[BUILT_KEY]
    if isinstance(built, str):
        pytest.fail(f"image build failed: {built}", pytrace=False)
    return built
