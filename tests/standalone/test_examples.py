"""Examples are tests: every examples/ folder compiles and serves in standalone mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice_sidecar.service.settings import ConfigOverrides
from tests.support.sidecar import close_test_sidecar, start_test_sidecar

EXAMPLES = sorted(p for p in (Path(__file__).parents[2] / "examples").iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", EXAMPLES, ids=[p.name for p in EXAMPLES])
async def test_example_loads_in_standalone_mode(folder: Path, tmp_path: Path) -> None:
    # Example Secrets, as the operator would mount them.
    (tmp_path / "openai-credentials").mkdir()
    (tmp_path / "openai-credentials" / "apiKey").write_text("sk-example")
    sidecar = await start_test_sidecar(
        policy_dir=folder, secrets_dir=tmp_path, watch=False, overrides=ConfigOverrides()
    )
    try:
        assert sidecar.state.runtime is not None, f"{folder.name} did not load"
        status, _ = await sidecar.admin("GET", "/readyz", headers={})
        assert status == 200
    finally:
        await close_test_sidecar(sidecar)
