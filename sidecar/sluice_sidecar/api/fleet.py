"""Budgets across the replicas of a workload, without Redis: the operator's side channel.

The operator collects each sidecar's own spend (``GET /admin/usage``), sums it per budget and
pushes back, to every sidecar, what the *other* replicas spent (``PUT /admin/budgets/external``),
so a hard limit holds across replicas between collections. On shutdown a sidecar POSTs its
final usage to the operator (``SLUICE_USAGE_REPORT_URL``), so a deleted pod's spend is not lost.
With Redis the counters are shared directly and external reports are ignored.

A report is validated whole (``contract.usage.ExternalUsage``): a spend that is negative, not
finite or absurdly large would corrupt every later budget decision, so the body is refused with
400. The final report is a ``contract.usage.FinalUsage``.
"""

from __future__ import annotations

import datetime as dt
import logging

import orjson
from aiohttp import web
from pydantic import ValidationError

from sluice_sidecar.api.keys import STATE
from sluice_sidecar.contract.model import config_problems
from sluice_sidecar.contract.periods import period_of
from sluice_sidecar.contract.usage import ExternalUsage, FinalUsage, SpendRow
from sluice_sidecar.economics.budgets import MemoryBudgetStore
from sluice_sidecar.service.state import SidecarState
from sluice_sidecar.transports.report import post_report

logger = logging.getLogger("sluice.fleet")
REPORT_TIMEOUT_S = 3.0


def apply_external(state: SidecarState, rows: list[SpendRow]) -> int:
    """Note other replicas' spend per budget; returns how many rows applied."""
    store, runtime = state.budgets.store, state.runtime
    if not isinstance(store, MemoryBudgetStore) or runtime is None:
        return 0  # a shared store (Redis) already counts every replica
    rules = {rule.identity: rule for rule in runtime.budget_rules}
    now = dt.datetime.now(dt.UTC)
    applied = 0
    for row in rows:
        rule = rules.get(row.budget)
        if rule is None:
            continue
        period = period_of(rule.spec.period, now)
        if row.period_start != period.start.isoformat():
            continue  # about another period: stale or early, either way not ours
        store.note_external(rule.identity, period.key, row.spent_usd, row.tokens)
        applied += 1
    return applied


async def put_external(request: web.Request) -> web.Response:
    try:
        usage = ExternalUsage.model_validate_json(await request.read())
    except ValidationError as error:
        problems = config_problems(error)
        return web.json_response({"error": "invalid body", "problems": problems}, status=400)
    return web.json_response({"applied": apply_external(request.app[STATE], usage.budgets)})


def add_routes(admin_app: web.Application) -> None:
    admin_app.router.add_put("/admin/budgets/external", put_external)


async def usage_document(state: SidecarState) -> FinalUsage:
    runtime = state.runtime
    rules = runtime.budget_rules if runtime else ()
    return FinalUsage(
        pod_uid=state.settings.pod_uid,
        namespace=state.settings.namespace,
        workload=runtime.config.workload.identity if runtime else state.settings.workload,
        budgets=await state.budgets.status(rules),
    )


async def report_final_usage(state: SidecarState) -> bool:
    """POST this process's last usage to the operator; False when not configured or failed."""
    settings = state.settings
    if not settings.usage_report_url or settings.admin_token is None:
        return False
    body = orjson.dumps((await usage_document(state)).as_json())
    token = settings.admin_token.get_secret_value()
    outcome = await post_report(settings.usage_report_url, body, token, REPORT_TIMEOUT_S)
    if outcome == 200:
        logger.info("final usage reported to %s", settings.usage_report_url)
        return True
    if isinstance(outcome, int):
        logger.warning("final usage report refused: HTTP %d", outcome)
    else:
        logger.warning("final usage report to %s failed: %s", settings.usage_report_url, outcome)
    return False
