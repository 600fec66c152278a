"""Merged embeddings calls against a hostile upstream: every caller answered at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.hostile.conftest import leaked, open_fds
from tests.hostile.outcomes import ROUTES, call_route, check_answer
from tests.support.hostile_deadlines import SLACK_S, deadline_for, sidecars_by_deadline
from tests.support.hostile_upstream import BEHAVIOURS, HostileUpstream
from tests.support.sidecar import SidecarHandle, close_test_sidecar
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

CALLERS = 3
EMBEDDINGS = next(r for r in ROUTES if r.name == "embeddings")
BATCHING = {"embeddings": {"enabled": True, "maxBatchSize": CALLERS, "maxWaitMs": 200}}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sidecars(
    hostile: HostileUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[float, SidecarHandle]]:
    handles = await sidecars_by_deadline(
        hostile, tmp_path_factory.mktemp("secrets"), batching=BATCHING
    )
    yield handles
    for handle in handles.values():
        await close_test_sidecar(handle)


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
async def test_every_caller_of_a_merged_call_gets_its_answer_in_time(
    sidecars: dict[float, SidecarHandle],
    hostile: HostileUpstream,
    caplog: pytest.LogCaptureFixture,
    behaviour: str,
) -> None:
    caplog.set_level(logging.DEBUG, "sluice")
    # Relative levels: a connection left open by an earlier (xfail) case may close meanwhile.
    fds, connections = open_fds(), hostile.open_connections
    sent = len(hostile.requests)
    deadline = deadline_for(behaviour)
    sidecar = sidecars[deadline]
    loop = asyncio.get_running_loop()
    started = loop.time()
    answers = await asyncio.gather(
        *(call_route(sidecar, EMBEDDINGS, behaviour, input=f"text {n}") for n in range(CALLERS))
    )
    assert loop.time() - started < deadline + SLACK_S
    assert len(hostile.requests) - sent in (1, 2)  # one merged call (and its retry)
    assert leaked(caplog.text) == []
    for status, answer in answers:
        assert leaked(answer.decode("utf-8", "replace")) == []
        # A merged answer that cannot be split back into the callers' answers is a 502.
        expect = "html-200" if behaviour == "malformed-answer" else behaviour
        check_answer(expect, EMBEDDINGS, status, answer)
    # Connections close when the loop gets to them: a generous limit for a busy machine.
    await wait_until(lambda: hostile.open_connections <= connections and open_fds() <= fds)
