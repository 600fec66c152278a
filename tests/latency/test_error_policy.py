"""errorPolicy: which classes of upstream failure are retried, fall back, and open the breaker."""

from __future__ import annotations

import openai
import pytest

from sluice_sidecar.errors import PermanentUpstreamError, TransientUpstreamError, UpstreamError
from sluice_sidecar.resilience.error_classes import error_class
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import Fail, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Outline the episode"}]


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


async def test_an_auth_failure_falls_back_when_the_policy_says_so(
    llm_factory, sidecar_factory
) -> None:
    primary = await llm_factory(name="primary")
    backup = await llm_factory(name="backup")
    providers = [provider_for(primary), provider_for(backup)]
    default = await sidecar_factory(policy(providers=providers))
    primary.enqueue(Fail(401, message="key revoked"), Fail(401, message="key revoked"))
    async with client(default) as c:
        with pytest.raises(openai.AuthenticationError, match="key revoked"):
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert not backup.requests  # by default a 401 is the caller's: relayed, no fallback
    lenient = await sidecar_factory(
        policy(providers=providers, errorPolicy={"auth": {"fallback": True}})
    )
    async with client(lenient) as c:
        answer = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES
        )
    assert answer.headers["x-sluice-provider"] == "backup"
    assert len(backup.requests) == 1


async def test_rate_limits_need_not_open_the_breaker(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            retry={"maxAttempts": 1},
            circuitBreaker={"failureThreshold": 2, "failureRateThreshold": None},
            errorPolicy={"rateLimit": {"openBreaker": False}},
        )
    )
    llm.enqueue(*[Fail(429, retry_after=0.01)] * 3)
    async with client(sidecar) as c:
        for _ in range(3):
            with pytest.raises(openai.RateLimitError):
                await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    _, body = await sidecar.admin("GET", "/admin/circuits")
    assert [circuit["state"] for circuit in body["circuits"]] == ["closed"]
    assert len(llm.requests) == 4  # never refused by an open breaker


async def test_server_errors_need_not_be_retried(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(llm)], errorPolicy={"serverError": {"retry": False}})
    )
    llm.enqueue(Fail(500, message="boom"), Fail(503))
    async with client(sidecar) as c:
        with pytest.raises(openai.InternalServerError, match="boom"):
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # 503 still retried
    assert len(llm.requests) == 3


def upstream(status: int | None, body: bytes = b"", reason: str = "x") -> UpstreamError:
    kind = TransientUpstreamError if status in (None, 429, 500, 502, 503, 504) else None
    kind = kind or PermanentUpstreamError
    return kind("failed", reason=reason, upstream_status=status, body=body)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (upstream(429), "rate_limit"),
        (upstream(503), "overload"),
        (upstream(504), "timeout"),
        (upstream(None, reason="attempt timeout"), "timeout"),
        (upstream(None, reason="connection error"), "connection"),
        (upstream(500), "server_error"),
        (upstream(None, reason="invalid response"), "invalid_answer"),
        (upstream(400, b'{"error": {"code": "context_length_exceeded"}}'), "context_length"),
        (upstream(400, b'{"error": {"message": "prompt is too long: 300000"}}'), "context_length"),
        (upstream(400, b'{"error": {"code": "content_filter"}}'), "content_filter"),
        (upstream(401), "auth"),
        (upstream(404), "other"),
    ],
)
def test_failures_are_classed_by_status_reason_and_provider_code(
    error: UpstreamError, expected: str
) -> None:
    assert error_class(error) == expected


async def test_a_prompt_too_long_moves_to_the_larger_window_model_the_policy_names(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(llm)], errorPolicy={"largerWindowModel": "gpt-4o-long"})
    )
    too_long = "This model's maximum context length is 8192 tokens"
    llm.enqueue(Fail(400, message=too_long))
    async with client(sidecar) as c:
        answer = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES
        )
        assert answer.headers["x-sluice-model"] == "gpt-4o-long"
        llm.enqueue(Fail(400, message=too_long))
        with pytest.raises(openai.BadRequestError, match="maximum context length"):
            # already the larger model: its own context-length error is relayed
            await c.chat.completions.create(model="gpt-4o-long", messages=MESSAGES)
    first, second, third = (request.json["model"] for request in llm.requests)
    assert (first, second, third) == ("gpt-4o", "gpt-4o-long", "gpt-4o-long")
