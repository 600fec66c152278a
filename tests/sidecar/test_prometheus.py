"""The sidecar's Prometheus metrics: the error tree as classes, status classes on histograms,
budget limits and thresholds as gauges, and bounded model labels."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice_sidecar import errors
from sluice_sidecar.observability.prometheus import MAX_MODELS, Metrics, error_class


def samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for s in family.samples
        if s.name == name
    }


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (errors.MalformedRequest("bad json"), "request"),
        (errors.LimitExceeded("too deep", limit="json_depth"), "request"),
        (errors.CircuitOpen("open"), "refused"),
        (errors.BulkheadFull("full"), "refused"),
        (errors.QueueFull("full"), "queue"),
        (errors.BudgetExceeded("over", retry_after=60, details={}), "budget"),
        (errors.DeadlineExceeded("late"), "deadline"),
        (errors.TransientUpstreamError("503", reason="service unavailable"), "transient"),
        (errors.PermanentUpstreamError("401", reason="unauthorized"), "permanent"),
        (errors.SluiceError("bug"), "internal"),
    ],
)
def test_every_branch_of_the_error_tree_has_its_class(error: errors.SluiceError, kind: str) -> None:
    assert error_class(error) == kind


def test_a_retried_failure_is_typed_by_its_reason_an_answered_one_by_its_code() -> None:
    metrics = Metrics()
    failure = errors.TransientUpstreamError("503", reason="service unavailable")
    metrics.error(failure, "openai", "gpt-4o", retried=True)
    metrics.error(failure, "openai", "gpt-4o")
    counted = samples(metrics, "llm_errors_by_type_total")
    base = (("class", "transient"), ("model", "gpt-4o"), ("provider", "openai"))
    assert counted == {
        (*base, ("type", "service_unavailable")): 1.0,
        (*base, ("type", "upstream_error")): 1.0,
    }


def test_histograms_carry_the_status_class_and_counters_the_code() -> None:
    metrics = Metrics()
    metrics.answered("openai", "gpt-4o", "Chat", 503, 0.2)
    metrics.answered("openai", "gpt-4o", "Chat", 504, 0.3)
    codes = {dict(k)["status"] for k in samples(metrics, "llm_requests_total")}
    classes = {
        dict(k)["status_class"] for k in samples(metrics, "llm_request_duration_seconds_count")
    }
    assert (codes, classes) == ({"503", "504"}, {"5xx"})


def test_budget_gauges_hold_spend_limits_and_thresholds() -> None:
    metrics = Metrics()
    thresholds = {"warning": 0.75, "alert": 0.9}
    metrics.budget(
        "shop/monthly",
        spent_usd=9.5,
        limit_usd=10,
        tokens=10,
        token_limit=None,
        thresholds=thresholds,
    )
    one = (("budget", "shop/monthly"),)
    assert samples(metrics, "llm_budget_spent_usd") == {one: 9.5}
    assert samples(metrics, "llm_budget_limit_usd") == {one: 10}
    assert samples(metrics, "llm_budget_limit_tokens") == {}  # no token limit: no series
    assert samples(metrics, "llm_budget_threshold_ratio") == {
        (*one, ("level", "warning")): 0.75,
        (*one, ("level", "alert")): 0.9,
    }


def test_model_labels_are_bounded() -> None:
    metrics = Metrics()
    labels = {metrics.model_label(f"model-{i}") for i in range(MAX_MODELS + 50)}
    assert len(labels) == MAX_MODELS + 1 and "other" in labels


def budget(metrics: Metrics, name: str, *, limit_usd: float | None = 10) -> None:
    metrics.budget(
        name,
        spent_usd=1.0,
        limit_usd=limit_usd,
        tokens=10,
        token_limit=1000,
        thresholds={"warning": 0.75, "alert": 0.9},
    )


def budget_series(metrics: Metrics) -> set[str]:
    names = ("spent_usd", "limit_usd", "spent_tokens", "limit_tokens", "threshold_ratio")
    return {
        f"{name} {dict(key)['budget']}"
        for name in names
        for key in samples(metrics, f"llm_budget_{name}")
    }


def test_a_budget_the_configuration_dropped_loses_its_gauges() -> None:
    metrics = Metrics()
    budget(metrics, "shop/monthly")
    budget(metrics, "shop/daily")
    metrics.budget_refusals.labels("shop/daily", "cost", "hard").inc()
    metrics.keep_budgets(["shop/monthly"])
    assert budget_series(metrics) == {
        f"{name} shop/monthly"
        for name in ("spent_usd", "limit_usd", "spent_tokens", "limit_tokens", "threshold_ratio")
    }
    # Counters keep their totals; a budget applied again gets its gauges back.
    assert samples(metrics, "llm_budget_refusals_total")
    budget(metrics, "shop/daily")
    assert "spent_usd shop/daily" in budget_series(metrics)
    metrics.keep_budgets([])
    assert budget_series(metrics) == set()


def test_a_limit_a_budget_no_longer_has_loses_its_gauge() -> None:
    metrics = Metrics()
    budget(metrics, "shop/monthly", limit_usd=10)
    budget(metrics, "shop/monthly", limit_usd=None)
    assert "limit_usd shop/monthly" not in budget_series(metrics)
    assert "limit_tokens shop/monthly" in budget_series(metrics)


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("rate limit exceeded", "rate_limit_exceeded"),
        ("connection error", "connection_error"),
        ("stream idle", "stream_idle"),
        ("HTTP 418", "http_418"),
    ],
)
def test_retry_reasons_are_snake_case_identifiers(reason: str, label: str) -> None:
    metrics = Metrics()
    metrics.retried("openai", reason, "exponential")
    assert samples(metrics, "llm_retries_total") == {
        (("provider", "openai"), ("reason", label), ("strategy", "exponential")): 1.0
    }
