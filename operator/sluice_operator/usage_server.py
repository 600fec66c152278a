"""A small HTTP endpoint where stopping sidecars POST their final usage (``/usage``).

Authenticated with the namespace's sidecar admin token (the same Secret the sidecars mount),
so one namespace's pods cannot write into another's budgets.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from pydantic import ValidationError

from sluice_operator.aggregator import BudgetAggregator
from sluice_operator.kube import Kube
from sluice_operator.settings import OperatorSettings
from sluice_sidecar.contract.model import config_problems
from sluice_sidecar.contract.usage import FinalUsage

logger = logging.getLogger("sluice.operator.usage")
MAX_REPORT_BYTES = 1024 * 1024


def build_usage_app(
    kube: Kube, aggregator: BudgetAggregator, settings: OperatorSettings
) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        try:
            report = FinalUsage.model_validate_json(await request.read())
        except ValidationError as error:
            problems = config_problems(error)
            return web.json_response(
                {"error": "body must be a usage report", "problems": problems}, status=400
            )
        namespace = report.namespace
        if namespace is None:
            return web.json_response(
                {"error": "body must be a usage report", "problems": ["namespace: missing"]},
                status=400,
            )
        token = await kube.read_admin_token(namespace, settings.admin_token_secret)
        offered = request.headers.get("authorization", "")
        if token is None or not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "wrong token for this namespace"}, status=401)
        touched = await aggregator.report_final(namespace, report)
        return web.json_response({"budgets": touched})

    app = web.Application(client_max_size=MAX_REPORT_BYTES)
    app.router.add_post("/usage", receive)
    return app


async def start_usage_server(
    kube: Kube, aggregator: BudgetAggregator, settings: OperatorSettings
) -> web.AppRunner:
    runner = web.AppRunner(build_usage_app(kube, aggregator, settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.usage_addr, settings.usage_port).start()
    logger.info("usage reports accepted on %s:%d", settings.usage_addr, settings.usage_port)
    return runner
