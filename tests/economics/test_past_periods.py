"""Past periods: a budget's status keeps the totals of its previous periods (at most
``PAST_PERIODS``, newest first), in ``GET /admin/budgets`` and in the usage report the operator
collects, from the memory store, the state file and Redis alike."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import openai

from sluice_sidecar.economics.budgets import PAST_PERIODS
from tests.economics.conftest import budget
from tests.support.sidecar import SidecarHandle, close_test_sidecar, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Count the locks"}]
DOLLAR_PER_TOKEN = {"m": {"inputPer1M": 1_000_000, "outputPer1M": 1_000_000}}
TODAY = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def day(offset: int) -> dt.datetime:
    return TODAY - dt.timedelta(days=offset)


async def spend_on(sidecar: SidecarHandle, when: dt.datetime, calls: int = 1) -> int:
    """Calls made while the budget clock says ``when`` (virtual time); their tokens = dollars."""
    sidecar.state.budgets.now = lambda: when
    total = 0
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0) as c:
        for _ in range(calls):
            answer = await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)
            assert answer.usage is not None
            total += answer.usage.total_tokens
    return total


async def daily_sidecar(llm: SimulatedLLM, economics_sidecar, **settings) -> SidecarHandle:
    return await economics_sidecar(
        policy(providers=[provider_for(llm)], pricing=DOLLAR_PER_TOKEN),
        [budget(period="daily", limits={"costUSD": 1000})],
        **settings,
    )


def start_of(when: dt.datetime) -> str:
    return when.replace(hour=0, minute=0, second=0, microsecond=0).isoformat()


async def test_budget_status_lists_the_previous_periods_newest_first(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await daily_sidecar(llm, economics_sidecar)
    before_yesterday = await spend_on(sidecar, day(2))
    yesterday = await spend_on(sidecar, day(1), calls=2)
    today = await spend_on(sidecar, day(0))
    _, body = await sidecar.admin("GET", "/admin/budgets")
    [row] = body["budgets"]
    assert Decimal(row["spentUSD"]) == today
    assert row["pastPeriods"] == [
        {"periodStart": start_of(day(1)), "spentUSD": str(yesterday), "tokens": yesterday},
        {
            "periodStart": start_of(day(2)),
            "spentUSD": str(before_yesterday),
            "tokens": before_yesterday,
        },
    ]
    _, usage = await sidecar.admin("GET", "/admin/usage")
    assert usage["budgets"][0]["pastPeriods"] == row["pastPeriods"]


async def test_past_periods_are_bounded_and_skip_idle_ones(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await daily_sidecar(llm, economics_sidecar)
    for offset in range(PAST_PERIODS + 3, 0, -1):
        if offset != 2:  # one idle day
            await spend_on(sidecar, day(offset))
    sidecar.state.budgets.now = lambda: day(0)
    _, body = await sidecar.admin("GET", "/admin/budgets")
    starts = [p["periodStart"] for p in body["budgets"][0]["pastPeriods"]]
    assert len(starts) == PAST_PERIODS - 1  # the last PAST_PERIODS periods, one of them idle
    assert starts[0] == start_of(day(1)) and start_of(day(2)) not in starts


async def test_past_periods_survive_a_restart(
    llm: SimulatedLLM, economics_sidecar, tmp_path
) -> None:
    first = await daily_sidecar(llm, economics_sidecar, state_dir=tmp_path)
    yesterday = await spend_on(first, day(1))
    await close_test_sidecar(first)
    second = await daily_sidecar(llm, economics_sidecar, state_dir=tmp_path)
    _, body = await second.admin("GET", "/admin/budgets")
    assert body["budgets"][0]["pastPeriods"][0]["spentUSD"] == str(yesterday)


async def test_past_periods_come_from_redis_shared_by_replicas(
    redis_url: str, llm: SimulatedLLM, economics_sidecar
) -> None:
    first = await daily_sidecar(llm, economics_sidecar, redis_url=redis_url)
    yesterday = await spend_on(first, day(1))
    await first.state.budgets.store.drain()
    second = await daily_sidecar(llm, economics_sidecar, redis_url=redis_url)
    _, body = await second.admin("GET", "/admin/budgets")
    assert body["budgets"][0]["pastPeriods"] == [
        {"periodStart": start_of(day(1)), "spentUSD": str(yesterday), "tokens": yesterday}
    ]
