"""The OpenAPI 3.1 document of the admin port, served at ``GET /admin/openapi.json``.

Request bodies and query parameters come from the pydantic models that validate them
(``SidecarConfig``, ``contract.usage.ExternalUsage``, ``admin_queries``), so they cannot drift
from the checks; answers, which are plain dictionaries built by the handlers, are described here.
``tests/admin/test_openapi.py`` keeps the document true: every route of the admin app is in it,
every path in it exists, and real answers validate against it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from sluice_sidecar.api.admin_queries import (
    CircuitResetQuery,
    CircuitTransitionsQuery,
    EstimateQuery,
    Query,
)
from sluice_sidecar.contract import BudgetLimits, SidecarConfig
from sluice_sidecar.contract.economics import BudgetPeriod, Enforcement
from sluice_sidecar.contract.usage import ExternalUsage

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"

STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
COUNT: Schema = {"type": "integer", "minimum": 0}
NUMBER: Schema = {"type": "number"}
SHARE: Schema = {"type": "number", "minimum": 0, "maximum": 1}
EPOCH: Schema = {"type": "number", "description": "Seconds since the epoch."}
TIME: Schema = {"type": "string", "format": "date-time"}
USD: Schema = {  # str(Decimal): exact, never a float
    "type": "string",
    "pattern": r"^-?[0-9]+(\.[0-9]+)?(E[+-]?[0-9]+)?$",
    "description": "Exact decimal amount of US dollars.",
}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def ref(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


def obj(**properties: Schema) -> Schema:
    """An object with every listed property required (the handlers always send them all)."""
    return {"type": "object", "required": list(properties), "properties": properties}


def _with_optional(schema: Schema, **properties: Schema) -> Schema:
    """``schema`` with more properties that an answer sends only sometimes."""
    return {**schema, "properties": {**schema["properties"], **properties}}


def _answers() -> dict[str, Schema]:
    """Schemas of the answers, by component name."""
    totals = obj(
        requests=COUNT,
        inputTokens=COUNT,
        outputTokens=COUNT,
        cachedInputTokens=COUNT,
        costUSD=USD,
        unknownUsageCalls=COUNT,
        unpricedCalls=COUNT,
        cacheHits=COUNT,
        savedUSD=USD,
        unanswered=obj(calls=COUNT, cancelledCalls=COUNT, attempts=COUNT, possibleCostUSD=USD),
    )
    series = {"allOf": [obj(provider=STR, model=STR, operation=STR), ref("Totals")]}
    call = obj(
        at=EPOCH,
        operation=STR,
        provider=STR,
        model=STR,
        inputTokens=nullable(COUNT),
        outputTokens=nullable(COUNT),
        latencyMs=NUMBER,
        retries=COUNT,
        costUSD=nullable(USD),
        savedUSD=nullable(USD),
        cache={"enum": ["hit", "miss", "bypass", "off"]},
    )
    suggestion = obj(
        kind={"enum": ["enable-caching", "cheaper-model", "shorter-prompts", "batching"]},
        message=STR,
        estimatedSavingsUSD=USD,
    )
    by_name = {"type": "object", "additionalProperties": ref("Totals")}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": STR, "problems": array(STR)},
        },
        "ConfigError": {
            "type": "object",
            "required": ["error", "problems"],
            "properties": {
                "error": STR,
                "problems": array(STR),
                "activeVersion": nullable(STR),
                "missingKeys": array(ref("MissingKey")),
            },
        },
        # A provider key the configuration names that the Pod has not mounted (names only).
        "MissingKey": obj(provider=STR, secret=STR, key=STR),
        "Totals": totals,
        "BudgetStatus": obj(
            budget=STR,
            period=TypeAdapter(BudgetPeriod).json_schema(),
            periodStart=TIME,
            resetsAt=nullable(TIME),
            enforcement=TypeAdapter(Enforcement).json_schema(),
            limits=ref("BudgetLimits"),
            spentUSD=USD,
            tokens=COUNT,
            reservedUSD=USD,
            externalUSD=USD,
            utilization={"type": "number", "minimum": 0},
            state={"enum": ["OK", "Warning", "Alert", "Exceeded"]},
            pastPeriods=array(obj(periodStart=TIME, spentUSD=USD, tokens=COUNT)),
        ),
        "Usage": obj(
            workload=nullable(STR),
            bootId=STR,
            startedAt=EPOCH,
            totals=ref("Totals"),
            series=array(series),
            budgets=array(ref("BudgetStatus")),
            prices=nullable(ref("PriceSources")),
            missingKeys=array(ref("MissingKey")),
        ),
        "PriceSources": obj(
            bundledAsOf={"type": "string", "format": "date"},
            file=nullable(STR),
            fileAsOf=nullable({"type": "string", "format": "date"}),
            fileModels=COUNT,
            policyModels=COUNT,
        ),
        "SessionReport": obj(
            session=STR,
            firstCallAt=EPOCH,
            lastCallAt=EPOCH,
            totals=ref("Totals"),
            cacheHitRate=SHARE,
            byOperation=by_name,
            byProvider=by_name,
            byModel=by_name,
            calls=array(call),
            callsListed=COUNT,
            suggestions=array(suggestion),
        ),
        "Circuit": obj(
            provider=STR,
            model=STR,
            state={"enum": ["closed", "half-open", "open"]},
            inFlight=COUNT,
            trips=COUNT,
            consecutiveFailures=COUNT,
            failureRate=SHARE,
            retryAfterSeconds={"type": "number", "minimum": 0},
        ),
        "CircuitTransition": obj(
            sequence={"type": "integer", "minimum": 1},
            time=TIME,
            provider=STR,
            model=STR,
            **{
                "from": {"enum": ["closed", "half-open", "open"]},
                "to": {"enum": ["closed", "half-open", "open"]},
            },
            reason=STR,
        ),
    }


def _answer_bodies() -> dict[str, Schema]:
    """Schemas of the answers that only one operation gives, by operation."""
    latency = obj(average=NUMBER, p50=NUMBER, p75=NUMBER, p90=NUMBER, p95=NUMBER, p99=NUMBER)
    return {
        "stats": obj(
            version=nullable(STR),
            uptimeSeconds=NUMBER,
            calls=array(
                obj(
                    provider=STR,
                    operation=STR,
                    count=COUNT,
                    successRate=SHARE,
                    averageRetries={"type": "number", "minimum": 0},
                    latencyMs=latency,
                )
            ),
        ),
        "cache": obj(
            enabled=BOOL,
            backend=nullable({"enum": ["memory", "redis"]}),
            memory=obj(entries=COUNT, bytes=COUNT, maxEntries=COUNT, maxBytes=COUNT),
            hits=COUNT,
            misses=COUNT,
            bypasses=COUNT,
            stores=COUNT,
            hitRate=SHARE,
            evictions=COUNT,
            errors=COUNT,
            staleServed=COUNT,
            savedUSD=USD,
        ),
        "batching": obj(
            coalesced=COUNT,
            batches=COUNT,
            requestsBatched=COUNT,
            inputsBatched=COUNT,
            averageBatchSize={"type": "number", "minimum": 0},
            batchEfficiency=SHARE,
            queue=obj(depth=COUNT, inFlight=COUNT, queued=COUNT, rejected=COUNT, waitP95Ms=NUMBER),
        ),
        "inflight": obj(
            count=COUNT,
            calls=array(
                obj(
                    id=COUNT,
                    operation=STR,
                    provider=STR,
                    model=STR,
                    stream=BOOL,
                    attempts=COUNT,
                    elapsedMs=COUNT,
                    estimatedMs=nullable(COUNT),
                    timeoutMs=COUNT,
                    warning={"enum": ["ok", "slow"]},
                )
            ),
        ),
        "estimate": obj(
            provider=STR,
            operation=STR,
            promptTokens=COUNT,
            estimatedMs=COUNT,
            rangeMs={"type": "array", "items": COUNT, "minItems": 2, "maxItems": 2},
            confidence=SHARE,
            points=COUNT,
            message=STR,
        ),
    }


def _model_schemas() -> tuple[dict[tuple[type[Any], JsonSchemaMode], Schema], dict[str, Schema]]:
    """The pydantic models' schemas, their definitions hoisted into the components."""
    # type[Any]: pydantic keys by model or dataclass class, its dataclass type being private.
    keys, definitions = models_json_schema(
        [
            (SidecarConfig, "validation"),
            (SidecarConfig, "serialization"),
            (BudgetLimits, "serialization"),
            (ExternalUsage, "validation"),
        ],
        by_alias=True,
        ref_template=REF,
    )
    return keys, definitions.get("$defs", {})


def _parameters(model: type[Query]) -> list[Schema]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        field = {k: v for k, v in field.items() if k not in ("title", "default", "description")}
        if "anyOf" in field:  # an optional parameter is absent, never null
            [field] = [branch for branch in field["anyOf"] if branch.get("type") != "null"]
        description = schema["properties"][name].get("description", "")
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": description,
                "schema": field,
            }
        )
    return parameters


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, name: str = "Error") -> Schema:
    return _json(description, ref(name))


GUARDED = {
    "401": _error("Missing or wrong admin bearer token."),
    "403": _error("The admin API is disabled: no admin token is configured."),
}
TOO_LARGE = {"413": _error("The body is over the admin body limit (1 MiB).")}


def _operation(summary: str, responses: dict[str, Schema], **extra: Any) -> Schema:
    return {"summary": summary, "responses": responses | GUARDED, **extra}


def _open(summary: str, responses: dict[str, Schema]) -> Schema:
    return {"summary": summary, "security": [], "responses": responses}


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document; built once (it depends on code only, not on the configuration)."""
    keys, definitions = _model_schemas()
    bodies = _answer_bodies()
    config_in = keys[(SidecarConfig, "validation")]
    config_out = keys[(SidecarConfig, "serialization")]
    budgets = obj(budgets=array(ref("BudgetStatus")))
    query_error = _error("A query parameter is missing or out of range; `problems` names it.")
    paths = {
        "/healthz": {"get": _open("Liveness.", {"200": _json("Alive.", obj(status=STR))})},
        "/readyz": {
            "get": _open(
                "Readiness: a configuration is loaded.",
                {
                    "200": _json("Ready.", obj(status={"const": "ready"}, version=STR)),
                    "503": _json(
                        "No configuration yet.", obj(status={"const": "not ready"}, reason=STR)
                    ),
                },
            )
        },
        "/metrics": {
            "get": _open(
                "Prometheus exposition.",
                {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": STR}}}},
            )
        },
        "/admin/openapi.json": {
            "get": _operation("This document.", {"200": _json("OpenAPI 3.1.", {"type": "object"})})
        },
        "/admin/config": {
            "get": _operation(
                "The active configuration (keys are never included, only where they come from).",
                {
                    "200": _json(
                        "Version and configuration; both null before the first one.",
                        obj(version=nullable(STR), config=nullable(config_out)),
                    )
                },
            ),
            "put": _operation(
                "Validate and apply a configuration; an invalid one changes nothing.",
                {
                    "200": _json(
                        "Applied, or the same as the active one; `missingKeys` only when some "
                        "provider key is not mounted (its calls are refused until it is).",
                        _with_optional(
                            obj(version=STR, previousVersion=nullable(STR), changed=BOOL),
                            missingKeys=array(ref("MissingKey")),
                        ),
                    ),
                    "400": _error("Not JSON, or not a valid configuration.", "ConfigError"),
                    **TOO_LARGE,
                },
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": config_in}},
                },
            ),
        },
        "/admin/stats": {
            "get": _operation(
                "Calls per provider and operation.", {"200": _json("Stats.", bodies["stats"])}
            )
        },
        "/admin/usage": {
            "get": _operation(
                "Cumulative usage of this process.", {"200": _json("Usage.", ref("Usage"))}
            )
        },
        "/admin/budgets": {
            "get": _operation(
                "Every budget in its current period.", {"200": _json("Budgets.", budgets)}
            )
        },
        "/admin/budgets/external": {
            "put": _operation(
                "Other replicas' spend, pushed by the operator (ignored with Redis).",
                {
                    "200": _json("Rows applied.", obj(applied=COUNT)),
                    "400": _error("Not a valid report; `problems` says where."),
                    **TOO_LARGE,
                },
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": keys[(ExternalUsage, "validation")]}
                    },
                },
            )
        },
        "/admin/cache": {
            "get": _operation("Answer cache.", {"200": _json("Cache.", bodies["cache"])})
        },
        "/admin/batching": {
            "get": _operation(
                "Coalescing, embeddings batching and the admission queue.",
                {"200": _json("Batching.", bodies["batching"])},
            )
        },
        "/admin/estimate": {
            "get": _operation(
                "Predicted duration of a call.",
                {"200": _json("Prediction.", bodies["estimate"]), "400": query_error},
                parameters=_parameters(EstimateQuery),
            )
        },
        "/admin/inflight": {
            "get": _operation(
                "Calls in flight now, oldest first (at most 1000 listed; count is exact).",
                {"200": _json("Calls in flight.", bodies["inflight"])},
            )
        },
        "/admin/suggestions": {
            "get": _operation(
                "Parameter suggestions for the workload, per operation, by estimated saving.",
                {
                    "200": _json(
                        "Suggestions.",
                        obj(
                            calls=COUNT,
                            suggestions=array(
                                obj(
                                    operation=STR,
                                    kind={
                                        "enum": [
                                            "max-tokens",
                                            "temperature",
                                            "cheaper-model",
                                            "switch-vendor",
                                        ]
                                    },
                                    parameter=STR,
                                    current=nullable(STR),
                                    suggested=STR,
                                    reasoning=STR,
                                    estimatedSavingsUSD=USD,
                                )
                            ),
                        ),
                    )
                },
            )
        },
        "/admin/sessions": {
            "get": _operation(
                "Recent sessions, most recent first.",
                {
                    "200": _json(
                        "Sessions.",
                        obj(sessions=array(obj(session=STR, calls=COUNT, lastCallAt=EPOCH))),
                    )
                },
            )
        },
        "/admin/sessions/{session}": {
            "get": _operation(
                "The run summary of one X-LLM-Session.",
                {
                    "200": _json("Report.", ref("SessionReport")),
                    "404": _error("No calls recorded for this session."),
                },
                parameters=[{"name": "session", "in": "path", "required": True, "schema": STR}],
            )
        },
        "/admin/circuits": {
            "get": _operation(
                "Every circuit breaker.",
                {"200": _json("Breakers.", obj(circuits=array(ref("Circuit"))))},
            )
        },
        "/admin/circuits/transitions": {
            "get": _operation(
                "The breakers' recent state changes, numbered, after the one given (the log "
                "keeps the last 256; logId changes when the sidecar restarts).",
                {
                    "200": _json(
                        "State changes, oldest first.",
                        obj(
                            logId=STR,
                            lastSequence=COUNT,
                            missed=COUNT,
                            transitions=array(ref("CircuitTransition")),
                        ),
                    ),
                    "400": query_error,
                },
                parameters=_parameters(CircuitTransitionsQuery),
            )
        },
        "/admin/circuits/reset": {
            "post": _operation(
                "Close the matching breakers (all without parameters).",
                {"200": _json("How many were reset.", obj(reset=COUNT)), "400": query_error},
                parameters=_parameters(CircuitResetQuery),
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sluice sidecar admin API",
            "version": "1",
            "description": "The admin port (17190). /healthz, /readyz and /metrics are open; "
            "everything under /admin/ needs `Authorization: Bearer <admin token>`.",
        },
        "security": [{"adminToken": []}],
        "paths": paths,
        "components": {
            "schemas": definitions | _answers(),
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }
