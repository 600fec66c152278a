"""The built images: what they contain, and their own entrypoints started inside them.

``scripts/images`` builds both Dockerfiles (``e2e/image_fixtures.py``); each test here runs
commands in the image with ``buildah run --isolation chroot`` (host network, so a sidecar in
the image answers on 127.0.0.1). The operator image against a control plane: ``e2e/``.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

import aiohttp
import openai
import pytest

from e2e.harness import net
from e2e.harness.images import Container, Image
from tests.support.image_exec import exec_in
from tests.support.sidecar import compile_policy, policy, provider_for
from tests.support.simulator import SimulatedLLM

# The first test here may build the images (minutes when cold); the build is its setup.
pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
NON_ROOT = "65532:65532"
IMPORT_EVERY_MODULE = (
    "import importlib, pkgutil, sys; package = importlib.import_module(sys.argv[1]); "
    "names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.')]; "
    "[importlib.import_module(name) for name in names]; print(len(names))"
)
FIND_SPECS = (
    "import importlib.util, sys; "
    "print(' '.join(name for name in sys.argv[1:] if importlib.util.find_spec(name)))"
)


def test_operator_image_imports_every_operator_module(images: dict[str, Image]) -> None:
    result = exec_in(images["operator"], ["python3", "-c", IMPORT_EVERY_MODULE, "sluice_operator"])
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 10  # every module of the package, handlers included


def test_sidecar_image_imports_every_sidecar_module(images: dict[str, Image]) -> None:
    result = exec_in(images["sidecar"], ["python3", "-c", IMPORT_EVERY_MODULE, "sluice_sidecar"])
    assert result.returncode == 0, result.stderr


def test_sidecar_image_ships_neither_the_operator_nor_build_tools(
    images: dict[str, Image],
) -> None:
    present = exec_in(
        images["sidecar"],
        ["python3", "-c", FIND_SPECS, "sluice_operator", "kopf", "kubernetes_asyncio", "pip"],
    )
    assert present.returncode == 0, present.stderr
    assert present.stdout.split() == []
    for image in images.values():
        tools = exec_in(image, ["sh", "-c", "command -v gcc cc make pip pip3 || true"])
        assert tools.stdout.split() == [], f"{image.name} ships {tools.stdout.split()}"


def test_images_run_as_a_numeric_non_root_user_and_carry_oci_labels(
    images: dict[str, Image],
) -> None:
    for role, image in images.items():
        config = image.config()
        assert config["User"] == NON_ROOT
        labels = config["Labels"]
        assert labels["org.opencontainers.image.title"] == f"sluice-{role}"
        assert labels["org.opencontainers.image.version"] == VERSION
        assert labels["org.opencontainers.image.source"].startswith("https://")
        whoami = exec_in(image, ["id", "-u"])
        assert whoami.stdout.strip() == "65532", whoami.stderr


async def test_sidecar_image_entrypoint_serves_health_and_proxies_a_call(
    images: dict[str, Image], llm: SimulatedLLM, tmp_path: Path
) -> None:
    image = images["sidecar"]
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    config = compile_policy(policy(providers=[provider_for(llm, name="openai")]))
    (config_dir / "config.json").write_text(
        json.dumps(config.model_dump(mode="json", by_alias=True))
    )
    (tmp_path / "token").write_text("image-test-token")
    data_port, admin_port = net.free_port(), net.free_port()
    # The image's own Entrypoint and Cmd (which reads /etc/sluice/config/config.json, where the
    # chart mounts the ConfigMap), plus loopback ports so the test can reach it.
    argv = [
        *image.entrypoint(),
        *("--host", "127.0.0.1", "--data-port", str(data_port)),
        *("--admin-host", "127.0.0.1", "--admin-port", str(admin_port)),
        *("--admin-token-file", "/etc/sluice/admin/token", "--no-watch"),
    ]
    volumes = {config_dir: "/etc/sluice/config", tmp_path / "token": "/etc/sluice/admin/token"}
    with image.run(argv, tmp_path / "sidecar.log", volumes=volumes) as container:
        async with aiohttp.ClientSession() as session:
            health = await wait_for_health(session, container, admin_port)
        assert health == 200
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{data_port}/v1", api_key="k")
        answer = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello from the image"}]
        )
        await client.close()
    assert answer.choices[0].message.content
    assert len(llm.requests) == 1


async def wait_for_health(session: aiohttp.ClientSession, container: Container, port: int) -> int:
    """Poll /healthz until the sidecar in the container answers (or the container exits)."""
    async with asyncio.timeout(60):
        while True:
            assert container.running(), f"sidecar exited:\n{container.tail()}"
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    return answer.status
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)  # nothing to await: the process is starting
