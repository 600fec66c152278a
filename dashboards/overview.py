"""Overview: traffic, latency and its anomalies, time to first token, errors, by provider, model
and operation."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import RATE, T, W, base, graph, quantiles, sidecar_variables, single

CALLS = f"rate(llm_requests_total{{{T}}}{RATE})"


def build() -> dashboard.Dashboard:
    board = sidecar_variables(
        base("sluice-overview", "Sluice / Overview", "LLM calls through the Sluice sidecars.")
    )
    for panel in (
        single("Calls per second", "reqps", f"sum({CALLS})"),
        single(
            "Calls answered 5xx",
            "percentunit",
            f'(sum(rate(llm_requests_total{{{T}, status=~"5.."}}{RATE})) or vector(0))'
            f" / sum({CALLS})",
        ),
        single("Calls in flight", "short", f"sum(llm_requests_in_flight{{{W}}})"),
        single(
            "Spend per hour",
            "currencyUSD",
            f"sum(rate(llm_token_costs_usd_total{{{T}}}{RATE})) * 3600",
        ),
        graph(
            "Calls per second by provider and model",
            "reqps",
            (f"sum by (provider, model) ({CALLS})", "{{provider}} {{model}}"),
        ),
        graph(
            "Calls per second by operation",
            "reqps",
            (f"sum by (operation) ({CALLS})", "{{operation}}"),
        ),
        graph(
            "Latency (request to last byte)",
            "s",
            *quantiles("llm_request_duration_seconds", T),
            description="Whole calls, streams included; retries and fallbacks inside.",
        ),
        graph(
            "Time to first token (streams)",
            "s",
            *quantiles("llm_time_to_first_token_seconds", T),
        ),
        graph(
            "Latency anomalies by provider and operation",
            "reqps",
            (
                f"sum by (provider, operation) (rate(llm_latency_anomalies_total{{{W}, "
                f'provider=~"$provider"}}{RATE}))',
                "{{provider}} {{operation}}",
            ),
            description="Calls slower than the top of their predicted range times"
            " latency.anomalyFactor, and by more than a second (alert LlmLatencyAnomalies).",
        ),
        graph(
            "Calls by status",
            "reqps",
            (f"sum by (status) ({CALLS})", "{{status}}"),
        ),
        graph(
            "Error ratio (5xx) by provider and model",
            "percentunit",
            (f"llm:error_rate:ratio_rate5m{{{T}}}", "{{provider}} {{model}}"),
            description="Recording rule llm:error_rate:ratio_rate5m.",
        ),
        graph(
            "Errors by class and type",
            "reqps",
            (
                f"sum by (class, type) (rate(llm_errors_by_type_total{{{T}}}{RATE}))",
                "{{class}} {{type}}",
            ),
            description="Answered to callers, or absorbed by a retry (class transient).",
        ),
        graph(
            "Tokens per second",
            "short",
            (f"sum by (kind) (rate(llm_tokens_used_total{{{T}}}{RATE}))", "{{kind}}"),
        ),
    ):
        board.with_panel(panel)
    return board
