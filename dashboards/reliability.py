"""Reliability: breaker states and trips, retries, fallbacks, timeouts and their warnings."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import RANGE, RATE, T, W, base, graph, sidecar_variables, single

PROVIDER = W + ', provider=~"$provider"'


def build() -> dashboard.Dashboard:
    board = sidecar_variables(
        base(
            "sluice-reliability",
            "Sluice / Reliability",
            "Circuit breakers, retries, fallbacks and deadlines of the Sluice sidecars.",
        )
    )
    for panel in (
        single(
            "Circuits not closed",
            "short",
            f"count(max by (namespace, workload, provider, model) "
            f"(llm_circuit_breaker_state{{{T}}}) >= 1) or vector(0)",
        ),
        single(
            "Breaker trips in the time range",
            "short",
            f"sum(increase(llm_circuit_breaker_trips_total{{{T}}}{RANGE}))",
        ),
        single(
            "Fallbacks per second",
            "reqps",
            f"sum(rate(llm_fallbacks_total{{{W}}}{RATE}))",
        ),
        single(
            "Timeout warnings per second",
            "reqps",
            f"sum(rate(llm_timeout_warnings_total{{{W}}}{RATE}))",
        ),
        graph(
            "Breaker state (0 closed, 1 half-open, 2 open)",
            "short",
            (
                f"max by (provider, model) (llm_circuit_breaker_state{{{T}}})",
                "{{provider}} {{model}}",
            ),
        ),
        graph(
            "Breaker trips",
            "short",
            (
                f"sum by (provider, model) "
                f"(increase(llm_circuit_breaker_trips_total{{{T}}}{RATE}))",
                "{{provider}} {{model}}",
            ),
        ),
        graph(
            "Breaker state changes",
            "short",
            (
                f"sum by (provider, model, from_state, to_state) "
                f"(increase(llm_circuit_breaker_state_changes_total{{{T}}}{RANGE}))",
                "{{provider}} {{model}} {{from_state}} to {{to_state}}",
            ),
            description="In the time range; states closed, open and half_open.",
        ),
        graph(
            "Breaker rejections",
            "reqps",
            (
                f"sum by (provider, model, reason) "
                f"(rate(llm_circuit_breaker_rejections_total{{{T}}}{RATE}))",
                "{{provider}} {{model}} {{reason}}",
            ),
            description="Attempts refused at once: open circuit (or a half-open one with its"
            " trial call in flight), or a full bulkhead.",
        ),
        graph(
            "Retry rate by strategy",
            "percentunit",
            (f"llm:retry_rate:ratio_rate5m{{{PROVIDER}}}", "{{provider}} {{strategy}}"),
            description="Recording rule llm:retry_rate:ratio_rate5m: retries per upstream attempt.",
        ),
        graph(
            "Retries by reason",
            "reqps",
            (
                f"sum by (provider, reason) (rate(llm_retries_total{{{PROVIDER}}}{RATE}))",
                "{{provider}} {{reason}}",
            ),
        ),
        graph(
            "Upstream attempts by outcome",
            "reqps",
            (
                f"sum by (provider, outcome) (rate(llm_upstream_attempts_total{{{T}}}{RATE}))",
                "{{provider}} {{outcome}}",
            ),
        ),
        graph(
            "Fallbacks",
            "reqps",
            (
                f"sum by (from_provider, to_provider) (rate(llm_fallbacks_total{{{W}}}{RATE}))",
                "{{from_provider}} to {{to_provider}}",
            ),
        ),
        graph(
            "Timeout warnings by operation",
            "reqps",
            (
                f"sum by (operation) (rate(llm_timeout_warnings_total{{{W}}}{RATE}))",
                "{{operation}}",
            ),
            description="Calls past their operation's warning threshold (default 50 % of it).",
        ),
        graph(
            "Deadlines, refusals and queue rejections",
            "reqps",
            (
                f"sum by (class, type) (rate(llm_errors_by_type_total{{{T}, "
                f'class=~"deadline|refused|queue"}}{RATE}))',
                "{{class}} {{type}}",
            ),
        ),
        graph(
            "Boundary limits hit",
            "reqps",
            (f"sum by (limit) (rate(sluice_limits_hit_total{{{W}}}{RATE}))", "{{limit}}"),
            description="Requests refused or connections closed by a boundary limit"
            " (docs/sidecar.md, Limits).",
        ),
        graph(
            "Configuration loads",
            "short",
            (
                f"sum by (result) (increase(sluice_config_reloads_total{{{W}}}{RANGE}))",
                "{{result}}",
            ),
            description="applied, unchanged, or rejected (the running configuration stays).",
        ),
    ):
        board.with_panel(panel)
    return board
