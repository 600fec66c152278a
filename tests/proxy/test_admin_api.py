"""The admin port: token auth, health and readiness, config swap, stats, metrics exposition."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import httpx2
import openai
import pytest

from tests.support.sidecar import SidecarHandle, compile_policy, policy, provider_for
from tests.support.simulator import SimulatedLLM
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "hello"}]


async def test_admin_api_needs_the_token(sidecar: SidecarHandle) -> None:
    for path in ("/admin/config", "/admin/stats", "/admin/circuits"):
        status, _ = await sidecar.admin("GET", path, headers={})
        assert status == 401
        status, _ = await sidecar.admin("GET", path, headers={"Authorization": "Bearer wrong"})
        assert status == 401
    status, _ = await sidecar.admin("GET", "/admin/stats")
    assert status == 200


async def test_admin_api_refused_without_configured_token(sidecar_factory, llm) -> None:
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)]), admin_token=None)
    status, body = await sidecar.admin("GET", "/admin/config", headers={})
    assert status == 403 and "no admin token is configured" in body["error"]


async def test_health_and_readiness(sidecar_factory, llm) -> None:
    sidecar = await sidecar_factory()  # started without any configuration
    assert (await sidecar.admin("GET", "/healthz", headers={}))[0] == 200
    status, body = await sidecar.admin("GET", "/readyz", headers={})
    assert status == 503 and body["reason"] == "no configuration loaded"
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0) as c:
        with pytest.raises(openai.InternalServerError, match="no configuration"):
            await c.chat.completions.create(model="m", messages=MESSAGES)
    document = compile_policy(policy(providers=[provider_for(llm)])).model_dump(by_alias=True)
    status, body = await sidecar.admin("PUT", "/admin/config", json=document)
    assert status == 200 and body["changed"] is True
    status, ready = await sidecar.admin("GET", "/readyz", headers={})
    assert status == 200 and ready["version"] == body["version"]


async def test_invalid_config_is_refused_with_every_problem(sidecar: SidecarHandle) -> None:
    _, before = await sidecar.admin("GET", "/admin/config")
    bad = before["config"] | {
        "retry": {"strategy": "sometimes", "maxAttempts": 0},
        "providers": [{"name": "Bad Name", "type": "openai-compatible"}],
    }
    status, body = await sidecar.admin("PUT", "/admin/config", json=bad)
    assert status == 400
    problems = "\n".join(body["problems"])
    assert "retry.strategy" in problems and "retry.maxAttempts" in problems
    assert "providers.0.name" in problems
    assert body["activeVersion"] == before["version"]
    _, after = await sidecar.admin("GET", "/admin/config")
    assert after == before


async def test_config_naming_an_unreadable_key_is_refused(sidecar: SidecarHandle, tmp_path) -> None:
    _, current = await sidecar.admin("GET", "/admin/config")
    document = current["config"]
    document["providers"][0]["apiKeyFile"] = str(tmp_path / "missing")
    status, body = await sidecar.admin("PUT", "/admin/config", json=document)
    assert status == 400 and "cannot read apiKeyFile" in body["problems"][0]


async def test_same_config_again_is_unchanged(sidecar: SidecarHandle) -> None:
    _, current = await sidecar.admin("GET", "/admin/config")
    status, body = await sidecar.admin("PUT", "/admin/config", json=current["config"])
    assert status == 200 and body == {
        "version": current["version"],
        "previousVersion": current["version"],
        "changed": False,
    }


async def test_config_swap_under_200_in_flight_calls_fails_none(
    llm_factory, sidecar_factory
) -> None:
    release_old = asyncio.Event()  # the old upstream answers only once the swap is done
    old = await llm_factory(name="old", gate=release_old)
    new = await llm_factory(name="new")
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(old, name="llm")], circuitBreaker={"maxConcurrent": 1000})
    )
    limits = httpx2.Limits(max_connections=400, max_keepalive_connections=400)
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url,
        api_key="k",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpx2Client(limits=limits),
    ) as client:
        calls = [
            asyncio.create_task(
                client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
            )
            for _ in range(200)
        ]
        await wait_until(lambda: old.in_flight == 200, limit_s=20)
        swapped = compile_policy(
            policy(
                providers=[provider_for(new, name="llm")], circuitBreaker={"maxConcurrent": 1000}
            )
        )
        status, body = await sidecar.admin(
            "PUT", "/admin/config", json=swapped.model_dump(by_alias=True)
        )
        assert status == 200 and body["changed"]
        after = await client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        release_old.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    # In-flight calls finished under the configuration they started with; new ones use the new.
    assert {r.headers["x-sim-name"] for r in results} == {"old"}  # type: ignore[union-attr]
    assert after.headers["x-sim-name"] == "new"


async def test_stats_report_latency_percentiles_and_retries(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    from tests.support.simulator import Fail

    llm.enqueue(Fail(503))
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k") as client:
        for _ in range(4):
            await client.chat.completions.create(
                model="m", messages=MESSAGES, extra_headers={"X-LLM-Operation": "Planning"}
            )
    _, stats = await sidecar.admin("GET", "/admin/stats")
    (row,) = stats["calls"]
    assert row["provider"] == "sim" and row["operation"] == "Planning"
    assert row["count"] == 4 and row["successRate"] == 1.0 and row["averageRetries"] == 0.25
    assert 0 < row["latencyMs"]["p50"] <= row["latencyMs"]["p95"] <= row["latencyMs"]["p99"]


async def test_metrics_exposition_has_the_reference_names_and_passes_promtool(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    from tests.support.simulator import Fail

    llm.enqueue(Fail(429, retry_after=0.01))
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k") as client:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    text = await sidecar.metrics_text()
    for name in (
        "llm_requests_total",
        "llm_request_duration_seconds_bucket",
        "llm_requests_in_flight",
        "llm_upstream_attempts_total",
        "llm_retries_total",
        "llm_errors_by_type_total",
        "llm_circuit_breaker_state",
        "llm_circuit_breaker_trips_total",
        "llm_timeout_warnings_total",
    ):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text or name in text, name
    assert (
        'llm_requests_total{model="gpt-4o",operation="Completion",provider="sim",status="200"} 1.0'
        in text
    )
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/system-packages installs Debian's prometheus)")
    process = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await process.communicate(text.encode())
    assert process.returncode == 0, output.decode()
