"""Budgets through a real sidecar: refusal, remaining header, restart, concurrency bound."""

from __future__ import annotations

import asyncio
import datetime
from decimal import Decimal

import anthropic
import openai
import orjson
import pytest
import redis.asyncio

from sluice_sidecar.contract import LlmBudget, LlmPolicy, compile_policies
from sluice_sidecar.contract.periods import period_of
from tests.economics.conftest import budget
from tests.support.redis_server import free_port
from tests.support.sidecar import (
    SidecarHandle,
    anthropic_provider_for,
    close_test_sidecar,
    policy,
    provider_for,
)
from tests.support.simulator import SimulatedLLM
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Name three rivers"}]
GAUGES = ("llm_budget_spent_usd", "llm_budget_limit_usd", "llm_budget_spent_tokens")
# $1 per token makes the arithmetic readable: a call's cost is its token count in dollars.
DOLLAR_PER_TOKEN = {"m": {"inputPer1M": 1_000_000, "outputPer1M": 1_000_000}}


def priced_policy(llm: SimulatedLLM, **spec: object) -> dict:
    return policy(providers=[provider_for(llm)], pricing=DOLLAR_PER_TOKEN, **spec)


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


async def spent(sidecar: SidecarHandle) -> Decimal:
    status, body = await sidecar.admin("GET", "/admin/budgets")
    assert status == 200
    return Decimal(body["budgets"][0]["spentUSD"])


async def test_hard_budget_refuses_with_budget_exceeded(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await economics_sidecar(
        priced_policy(llm), [budget(limits={"costUSD": 100}, period="daily")]
    )
    async with client(sidecar) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, max_tokens=10
        )
        remaining = Decimal(raw.headers["x-sluice-budget-remaining"])
        assert 0 < remaining < 100
        answer = raw.parse()
        assert await spent(sidecar) == answer.usage.total_tokens
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=100)
    error = caught.value.body
    assert caught.value.status_code == 429
    assert error["type"] == "budget_exceeded" and error["code"] == "budget_exceeded"
    assert error["budget"] == "tests/team" and error["limit"] == "100"
    assert error["resetsAt"].endswith("T00:00:00+00:00")
    assert int(caught.value.response.headers["retry-after"]) > 0
    left = 100 - answer.usage.total_tokens
    assert error["message"].startswith(
        f"budget tests/team: this call could cost up to $112 (100 output tokens at most, from"
        f" max_tokens), more than the ${left} that remains of its cost limit of $100;"
        " set max_tokens to fit; resets "
    )
    assert error["callCostUSD"] == "112" and error["maxOutputTokens"] == 100
    assert len(llm.requests) == 1, "the refused call must not reach the provider"
    metrics = await sidecar.metrics_text()
    assert (
        'llm_budget_refusals_total{budget="tests/team",enforcement="hard",reason="cost"} 1.0'
        in metrics
    )


@pytest.mark.parametrize(
    ("body", "operation", "bound"),
    [
        ({}, "ScriptGeneration", "4096 output tokens at most, from the default"),
        ({}, "Completion", "2000 output tokens at most, from the operation preset"),
        ({"max_completion_tokens": 300}, "Completion", "300 output tokens at most, from max_comp"),
    ],
)
async def test_a_call_dearer_than_what_remains_is_told_its_worst_case(
    llm: SimulatedLLM, economics_sidecar, body: dict, operation: str, bound: str
) -> None:
    sidecar = await economics_sidecar(priced_policy(llm), [budget(limits={"costUSD": 40})])
    async with client(sidecar) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(
                model="m", messages=MESSAGES, extra_headers={"X-LLM-Operation": operation}, **body
            )
    message = caught.value.body["message"]
    assert "could cost up to $" in message and bound in message
    assert "more than the $40 that remains of its cost limit of $40" in message
    assert "set max_tokens to fit" in message and "exceeded" not in message
    assert not llm.requests


async def test_a_used_up_budget_says_it_is_exceeded(llm: SimulatedLLM, economics_sidecar):
    sidecar = await economics_sidecar(priced_policy(llm), [budget(limits={"costUSD": 1})])
    sidecar.state.budget_memory.note_external("tests/team", *await _period_key(sidecar), 1, 0)
    async with client(sidecar) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=1)
    assert "budget tests/team exceeded: cost limit 1 USD, spent 1 USD" in caught.value.message


async def _period_key(sidecar: SidecarHandle) -> tuple[str]:
    [rule] = sidecar.state.runtime.budget_rules
    return (period_of(rule.spec.period, datetime.datetime.now(datetime.UTC)).key,)


async def test_anthropic_caller_gets_its_own_error_format(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    document = policy(
        providers=[anthropic_provider_for(llm, "claude")],
        pricing={"claude-x": {"inputPer1M": 1_000_000, "outputPer1M": 1_000_000}},
    )
    sidecar = await economics_sidecar(document, [budget(limits={"perRequestCostUSD": 50})])
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="k", max_retries=0
    ) as c:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await c.messages.create(model="claude-x", max_tokens=100, messages=MESSAGES)
    assert caught.value.body["error"]["type"] == "budget_exceeded"
    assert caught.value.body["error"]["limitKind"] == "perRequest"


async def test_soft_budget_lets_calls_through_and_counts(
    llm: SimulatedLLM, economics_sidecar, caplog
) -> None:
    sidecar = await economics_sidecar(
        priced_policy(llm), [budget(limits={"costUSD": 1}, enforcement="soft")]
    )
    async with client(sidecar) as c:
        for _ in range(5):
            await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    _, body = await sidecar.admin("GET", "/admin/budgets")
    assert body["budgets"][0]["state"] == "Exceeded"
    metrics = await sidecar.metrics_text()
    assert (
        'llm_budget_refusals_total{budget="tests/team",enforcement="soft",reason="cost"} 5.0'
        in metrics
    )
    warned = [r for r in caplog.records if "soft enforcement, call allowed" in r.getMessage()]
    assert len(warned) == 1, "an exceeded soft budget warns once a minute, not on every call"
    assert 'llm_budget_threshold_crossings_total{budget="tests/team",level="Exceeded"} 1.0' in (
        metrics
    )


async def test_session_cap(llm: SimulatedLLM, economics_sidecar) -> None:
    sidecar = await economics_sidecar(
        priced_policy(llm), [budget(limits={"perSessionCostUSD": 30})]
    )
    async with client(sidecar) as c:
        job = {"X-LLM-Session": "job-1"}
        await c.chat.completions.create(
            model="m", messages=MESSAGES, max_tokens=10, extra_headers=job
        )
        with pytest.raises(openai.RateLimitError):
            await c.chat.completions.create(
                model="m", messages=MESSAGES, max_tokens=10, extra_headers=job
            )
        other = {"X-LLM-Session": "job-2"}
        await c.chat.completions.create(
            model="m", messages=MESSAGES, max_tokens=10, extra_headers=other
        )


async def test_spend_survives_a_restart(llm: SimulatedLLM, economics_sidecar, tmp_path) -> None:
    document = priced_policy(llm)
    budgets = [budget(limits={"costUSD": 1000}, period="monthly")]
    first = await economics_sidecar(document, budgets, state_dir=tmp_path)
    async with client(first) as c:
        await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    before = await spent(first)
    assert before > 0
    await close_test_sidecar(first)  # flushes the state file
    assert (tmp_path / "budgets.json").exists()
    second = await economics_sidecar(document, budgets, state_dir=tmp_path)
    assert await spent(second) == before


async def test_scope_narrows_to_a_model(llm: SimulatedLLM, economics_sidecar) -> None:
    sidecar = await economics_sidecar(
        priced_policy(llm), [budget(scope={"model": "gpt-*"}, limits={"costUSD": 1})]
    )
    async with client(sidecar) as c:
        await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)  # $ tokens
        answer = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5)
    expected = (
        Decimal(answer.usage.prompt_tokens) * Decimal("2.5")
        + Decimal(answer.usage.completion_tokens) * 10
    ) / 1_000_000
    assert await spent(sidecar) == expected  # the out-of-scope model did not count


async def test_hundred_parallel_calls_never_overspend(llm: SimulatedLLM, economics_sidecar):
    """A nearly exhausted budget and 100 concurrent calls: reservations keep spend <= limit."""
    limit = Decimal(400)
    slow = SimulatedLLM(name="slow", latency_s=0.05)
    await slow.start()
    try:
        sidecar = await economics_sidecar(
            policy(providers=[provider_for(slow)], pricing=DOLLAR_PER_TOKEN),
            [budget(limits={"costUSD": limit})],
        )
        async with client(sidecar) as c:
            while await spent(sidecar) < limit * Decimal("0.8"):  # nearly exhausted
                await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
            before = await spent(sidecar)

            async def one() -> bool:
                try:
                    await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
                except openai.RateLimitError:
                    return False
                return True

            results = await asyncio.gather(*(one() for _ in range(100)))
        after = await spent(sidecar)
        passed = sum(results)
        assert 0 < passed < 100
        assert after <= limit, f"overspent: {after} > {limit}"
        _, body = await sidecar.admin("GET", "/admin/budgets")
        assert body["budgets"][0]["reservedUSD"] == "0"
        print(f"100 parallel calls at {before}/{limit} USD: {passed} passed, spent {after}")
    finally:
        await slow.close()


async def test_replicas_share_budget_counters_in_redis(redis_url: str, economics_sidecar) -> None:
    """Two sidecars, one Redis: 100 parallel calls split across both never overspend."""
    limit = Decimal(400)
    slow = SimulatedLLM(name="slow", latency_s=0.05)
    await slow.start()
    try:
        document = policy(providers=[provider_for(slow)], pricing=DOLLAR_PER_TOKEN)
        budgets = [budget(limits={"costUSD": limit})]
        replicas = [
            await economics_sidecar(document, budgets, redis_url=redis_url) for _ in range(2)
        ]
        clients = [client(r) for r in replicas]
        while await spent(replicas[0]) < limit * Decimal("0.8"):
            await clients[0].chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
            await replicas[0].state.budgets.store.drain()
        assert await spent(replicas[1]) == await spent(replicas[0])  # one shared counter

        async def one(i: int) -> bool:
            try:
                await clients[i % 2].chat.completions.create(
                    model="m", messages=MESSAGES, max_tokens=10
                )
            except openai.RateLimitError:
                return False
            return True

        results = await asyncio.gather(*(one(i) for i in range(100)))
        for replica in replicas:
            await replica.state.budgets.store.drain()
        after = await spent(replicas[0])
        assert 0 < sum(results) < 100
        assert after <= limit, f"overspent across replicas: {after} > {limit}"
        print(f"2 replicas, 100 parallel calls: {sum(results)} passed, spent {after}/{limit}")
        for c in clients:
            await c.close()
    finally:
        await slow.close()


async def test_redis_down_keeps_serving_and_counts(llm: SimulatedLLM, economics_sidecar):
    sidecar = await economics_sidecar(
        priced_policy(llm),
        [budget(limits={"costUSD": 1000})],
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    )
    async with client(sidecar) as c:
        answer = await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    assert answer.choices
    metrics = await sidecar.metrics_text()
    assert 'sluice_redis_errors_total{use="budget"}' in metrics
    status, body = await sidecar.admin("GET", "/admin/budgets")  # falls back to local counters
    assert status == 200 and Decimal(body["budgets"][0]["spentUSD"]) == answer.usage.total_tokens


async def test_external_spend_counts_in_redis(redis_url: str, llm: SimulatedLLM, economics_sidecar):
    sidecar = await economics_sidecar(
        priced_policy(llm), [budget(limits={"costUSD": 100})], redis_url=redis_url
    )
    store = sidecar.state.budgets.store
    [rule] = sidecar.state.runtime.budget_rules
    period = period_of(rule.spec.period, datetime.datetime.now(datetime.UTC))
    await store.note_external(rule, period, Decimal(95), 0)  # e.g. other replicas, per operator
    async with client(sidecar) as c:
        with pytest.raises(openai.RateLimitError):
            await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    _, body = await sidecar.admin("GET", "/admin/budgets")
    assert body["budgets"][0]["externalUSD"] == "95"


async def test_spend_is_saved_after_a_session_id_the_file_cannot_hold(
    llm: SimulatedLLM, economics_sidecar, tmp_path
) -> None:
    sidecar = await economics_sidecar(
        priced_policy(llm), [budget(limits={"costUSD": 1000})], state_dir=tmp_path
    )
    ledger, rules = sidecar.state.budgets, sidecar.state.runtime.budget_rules
    # A lone surrogate: what a non-UTF-8 X-LLM-Session byte decodes to, however it got here.
    ledger.settle(await ledger.admit(rules, Decimal(1), 1, "job-\udcff"), Decimal(1), 1)
    async with client(sidecar) as c:
        await c.chat.completions.create(
            model="m", messages=MESSAGES, max_tokens=10, extra_headers={"X-LLM-Session": "ok"}
        )
    total = await spent(sidecar)
    await close_test_sidecar(sidecar)  # the final flush must not raise either
    saved = orjson.loads((tmp_path / "budgets.json").read_bytes())
    [row] = saved["periods"].values()
    assert Decimal(row["spent"]) == total > 1
    assert list(row["sessions"]) == ["ok"]
    written_without = sidecar.state.metrics.registry.get_sample_value(
        "sluice_state_write_errors_total", {"reason": "encode"}
    )
    assert written_without is not None and written_without >= 1


async def test_a_settlement_redis_missed_is_sent_again(
    redis_url: str, llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await economics_sidecar(
        priced_policy(llm), [budget(limits={"costUSD": 1000})], redis_url=redis_url
    )
    store = sidecar.state.budgets.store
    control = redis.asyncio.Redis.from_url(redis_url)
    llm.gate = asyncio.Event()  # the provider answers only once Redis has stopped answering
    async with client(sidecar) as c:
        call = asyncio.create_task(
            c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
        )
        await wait_until(lambda: llm.in_flight == 1)  # reserved in Redis, now at the provider
        await control.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # Redis stops answering
        llm.gate.set()
        answer = await call
        await wait_until(lambda: store.unsent == 1)  # the settlement timed out: kept
        await wait_until(lambda: store.unsent == 0)  # and sent once Redis answers again
    await control.aclose()
    _, body = await sidecar.admin("GET", "/admin/budgets")
    row = body["budgets"][0]
    assert Decimal(row["spentUSD"]) == answer.usage.total_tokens
    assert row["reservedUSD"] == "0"


async def test_a_budget_the_configuration_drops_leaves_the_metrics(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await economics_sidecar(
        priced_policy(llm), [budget("team", limits={"costUSD": 100}), budget("other")]
    )
    async with client(sidecar) as c:
        await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    before = await sidecar.metrics_text()
    assert 'llm_budget_spent_usd{budget="tests/team"' in before
    assert 'llm_budget_limit_usd{budget="tests/team"' in before
    without_team = compile_policies(
        [LlmPolicy.model_validate(priced_policy(llm))], [LlmBudget.model_validate(budget("other"))]
    )
    status, _ = await sidecar.admin(
        "PUT", "/admin/config", json=without_team.model_dump(mode="json", by_alias=True)
    )
    assert status == 200
    after = await sidecar.metrics_text()
    # Its spend and limit are no longer reported as if it were still enforced.
    gauges = [line for line in after.splitlines() if line.startswith(GAUGES)]
    assert gauges and not [line for line in gauges if 'budget="tests/team"' in line]
