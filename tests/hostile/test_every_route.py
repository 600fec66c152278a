"""Every hostile behaviour against every API route, streaming and not.

Whatever the upstream does, the caller gets an answer within the operation's deadline: the
answer itself, or an error in its own API format (a 4xx/5xx JSON error, or, once a stream has
started, a final error event), never a 500; no provider key in the answer or in the log; and
every connection closed afterwards (file descriptors back to their level).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.hostile.conftest import leaked
from tests.hostile.outcomes import ROUTES, Route, call_route, check_answer
from tests.support.hostile_deadlines import SLACK_S, deadline_for, sidecars_by_deadline
from tests.support.hostile_upstream import BEHAVIOURS, HostileUpstream
from tests.support.sidecar import SidecarHandle, close_test_sidecar

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sidecars(
    hostile: HostileUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[float, SidecarHandle]]:
    handles = await sidecars_by_deadline(hostile, tmp_path_factory.mktemp("secrets"))
    yield handles
    for handle in handles.values():
        await close_test_sidecar(handle)


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.usefixtures("settled_fds")
async def test_hostile_upstream_gets_a_prompt_answer_in_the_callers_format(
    sidecars: dict[float, SidecarHandle],
    caplog: pytest.LogCaptureFixture,
    behaviour: str,
    route: Route,
) -> None:
    caplog.set_level(logging.DEBUG, "sluice")
    deadline = deadline_for(behaviour)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, answer = await call_route(sidecars[deadline], route, behaviour)
    assert loop.time() - started < deadline + SLACK_S
    assert leaked(answer.decode("utf-8", "replace")) == []
    assert leaked(caplog.text) == []
    check_answer(behaviour, route, status, answer)
