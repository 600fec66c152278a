"""The admin API's OpenAPI document is true: complete, served, and real answers fit it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx2
import schemathesis
from aiohttp import web

from sluice_sidecar.api.admin_openapi import openapi_document
from tests.admin.checks import CHECKS
from tests.support.sidecar import SidecarHandle


def admin_routes(sidecar: SidecarHandle) -> set[tuple[str, str]]:
    """(path template, method) of every route the running admin app serves."""
    admin_app: web.Application = sidecar.running._runners[1].app  # the admin listener
    routes = set()
    for route in admin_app.router.routes():
        if route.method == "HEAD":  # aiohttp adds HEAD beside each GET
            continue
        routes.add((route.resource.canonical, route.method.lower()))  # type: ignore[union-attr]
    return routes


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


async def test_every_admin_route_is_documented_and_every_documented_route_exists(
    sidecar: SidecarHandle,
) -> None:
    assert admin_routes(sidecar) == documented(openapi_document())


async def test_the_document_is_served_behind_the_token(sidecar: SidecarHandle) -> None:
    status, _ = await sidecar.admin("GET", "/admin/openapi.json", headers={})
    assert status == 401
    status, served = await sidecar.admin("GET", "/admin/openapi.json")
    assert status == 200 and served == openapi_document()
    assert served["openapi"].startswith("3.1")
    assert served["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"


# (method, path as documented, path sent, query, JSON body): each documented status that a
# caller can cause here, so every response schema meets a real answer.
CALLS: list[tuple[str, str, str, dict[str, str], Any]] = [
    ("GET", "/healthz", "/healthz", {}, None),
    ("GET", "/readyz", "/readyz", {}, None),
    ("GET", "/metrics", "/metrics", {}, None),
    ("GET", "/admin/openapi.json", "/admin/openapi.json", {}, None),
    ("GET", "/admin/config", "/admin/config", {}, None),
    ("PUT", "/admin/config", "/admin/config", {}, {"providers": "none"}),
    ("GET", "/admin/stats", "/admin/stats", {}, None),
    ("GET", "/admin/usage", "/admin/usage", {}, None),
    ("GET", "/admin/budgets", "/admin/budgets", {}, None),
    ("PUT", "/admin/budgets/external", "/admin/budgets/external", {}, {"budgets": []}),
    ("PUT", "/admin/budgets/external", "/admin/budgets/external", {}, {"budgets": [7]}),
    ("GET", "/admin/cache", "/admin/cache", {}, None),
    ("GET", "/admin/batching", "/admin/batching", {}, None),
    (
        "GET",
        "/admin/estimate",
        "/admin/estimate",
        {"provider": "sim", "operation": "Completion", "promptTokens": "100"},
        None,
    ),
    ("GET", "/admin/estimate", "/admin/estimate", {"promptTokens": "-1"}, None),
    ("GET", "/admin/inflight", "/admin/inflight", {}, None),
    ("GET", "/admin/suggestions", "/admin/suggestions", {}, None),
    ("GET", "/admin/sessions", "/admin/sessions", {}, None),
    ("GET", "/admin/sessions/{session}", "/admin/sessions/job-1", {}, None),
    ("GET", "/admin/sessions/{session}", "/admin/sessions/nobody", {}, None),
    ("GET", "/admin/circuits", "/admin/circuits", {}, None),
    ("GET", "/admin/circuits/transitions", "/admin/circuits/transitions", {"after": "0"}, None),
    ("GET", "/admin/circuits/transitions", "/admin/circuits/transitions", {"after": "-1"}, None),
    ("POST", "/admin/circuits/reset", "/admin/circuits/reset", {"provider": "sim"}, None),
    ("POST", "/admin/circuits/reset", "/admin/circuits/reset", {"model": ""}, None),
]


async def test_real_answers_validate_against_their_response_schemas(busy: SidecarHandle) -> None:
    schema = schemathesis.openapi.from_dict(openapi_document())
    seen: set[tuple[str, str, int]] = set()
    async with httpx2.AsyncClient(base_url=busy.admin_url, headers=busy.auth) as http:
        _, current = await busy.admin("GET", "/admin/config")
        calls = [*CALLS, ("PUT", "/admin/config", "/admin/config", {}, current["config"])]
        for method, template, path, query, body in calls:
            answer = await http.request(method, path, params=query, json=body)
            given: dict[str, Any] = {} if body is None else {"body": body}
            if "{session}" in template:
                given["path_parameters"] = {"session": path.rsplit("/", 1)[1]}
            case = schema[template][method].Case(query=query or None, **given)
            case.validate_response(answer, checks=CHECKS)
            seen.add((method, template, answer.status_code))
    # Every documented answer except the token refusals (the guard's own tests) was met.
    expected = {
        (method.upper(), path, int(status))
        for path, item in openapi_document()["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
        if status not in ("401", "403", "413", "503")
    }
    assert expected - seen == set()


async def test_an_unconfigured_sidecar_answers_as_documented(sidecar_factory) -> None:
    sidecar = await sidecar_factory()
    schema = schemathesis.openapi.from_dict(openapi_document())
    async with httpx2.AsyncClient(base_url=sidecar.admin_url, headers=sidecar.auth) as http:
        answer = await http.get("/readyz")
        assert answer.status_code == 503  # documented: not ready is not a server error here
        schema["/readyz"]["GET"].Case().validate_response(answer, checks=CHECKS[1:])
        for path in ("/admin/config", "/admin/usage", "/admin/cache", "/admin/stats"):
            answer = await http.get(path)
            schema[path]["GET"].Case().validate_response(answer, checks=CHECKS)
        for path in ("/admin/stats", "/admin/openapi.json"):
            answer = await http.get(path, headers={"Authorization": "Bearer wrong"})
            assert answer.status_code == 401
            schema[path]["GET"].Case().validate_response(answer, checks=CHECKS)


def test_the_admin_section_of_the_docs_lists_every_documented_operation() -> None:
    text = (Path(__file__).parents[2] / "docs" / "sidecar.md").read_text()
    section = text.split("## Admin API", 1)[1].split("\n## ", 1)[0]
    # `GET /admin/estimate?provider=...`, `POST /admin/circuits/reset[?...]`: method and path.
    listed = {
        (path, method.lower())
        for method, path in re.findall(r"`(GET|PUT|POST|DELETE|PATCH) (/[^`?\[ ]*)", section)
    }
    assert listed == documented(openapi_document())
