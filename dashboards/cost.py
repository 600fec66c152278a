"""Cost & budgets: spend rate and where it goes, budget utilization against its thresholds,
degradations and threshold crossings, and what unanswered attempts may cost."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import RANGE, RATE, T, W, base, graph, sidecar_variables, single

COST = f"rate(llm_token_costs_usd_total{{{T}}}{RATE})"
# Budgets are per namespace: every replica reports the whole budget, hence max, not sum.
NS = 'namespace=~"$namespace"'


def build() -> dashboard.Dashboard:
    board = sidecar_variables(
        base("sluice-cost", "Sluice / Cost & budgets", "Spend, budgets and cache savings.")
    )
    for panel in (
        single(
            "Spend in the time range",
            "currencyUSD",
            f"sum(increase(llm_token_costs_usd_total{{{T}}}{RANGE}))",
        ),
        single(
            "Saved by the cache in the time range",
            "currencyUSD",
            f"sum(increase(llm_cache_saved_usd_total{{{W}}}{RANGE}))",
        ),
        single(
            "Highest budget utilization",
            "percentunit",
            f"max(llm:budget_utilization:ratio{{{NS}}})",
        ),
        single(
            "Budget refusals per second",
            "reqps",
            f"sum(rate(llm_budget_refusals_total{{{W}}}{RATE}))",
        ),
        graph(
            "Spend rate by provider and model",
            "currencyUSD",
            (f"sum by (provider, model) ({COST}) * 3600", "{{provider}} {{model}} per hour"),
        ),
        graph(
            "Spend rate by workload",
            "currencyUSD",
            (
                f"sum by (namespace, workload) ({COST}) * 3600",
                "{{namespace}}/{{workload}} per hour",
            ),
        ),
        graph(
            "Budget utilization against its thresholds",
            "percentunit",
            (f"max by (budget) (llm:budget_utilization:ratio{{{NS}}})", "{{budget}}"),
            (
                f'max by (budget) (llm_budget_threshold_ratio{{{NS}, level="warning"}})',
                "{{budget}} warning",
            ),
            (
                f'max by (budget) (llm_budget_threshold_ratio{{{NS}, level="alert"}})',
                "{{budget}} alert",
            ),
            description="Recording rule llm:budget_utilization:ratio (cost or tokens, the larger).",
        ),
        graph(
            "Budget spend and limit",
            "currencyUSD",
            (f"max by (budget) (llm_budget_spent_usd{{{NS}}})", "{{budget}} spent"),
            (f"max by (budget) (llm_budget_limit_usd{{{NS}}})", "{{budget}} limit"),
        ),
        graph(
            "Budget tokens spent and limit",
            "short",
            (f"max by (budget) (llm_budget_spent_tokens{{{NS}}})", "{{budget}} spent"),
            (f"max by (budget) (llm_budget_limit_tokens{{{NS}}})", "{{budget}} limit"),
            description="Input+output tokens this period, for budgets with a token limit.",
        ),
        graph(
            "Calls over a budget",
            "reqps",
            (
                f"sum by (budget, reason, enforcement) "
                f"(rate(llm_budget_refusals_total{{{W}}}{RATE}))",
                "{{budget}} {{reason}} ({{enforcement}})",
            ),
            description="hard: refused with 429; soft: let through and counted.",
        ),
        graph(
            "Calls degraded by a budget",
            "reqps",
            (
                f"sum by (budget, operation) (rate(llm_budget_degradations_total{{{W}}}{RATE}))",
                "{{budget}} {{operation}}",
            ),
            description="Calls a budget past its degrade threshold moved to a cheaper model or"
            " a leaner preset (the answer's x-sluice-degraded header says how).",
        ),
        graph(
            "Budget threshold crossings",
            "short",
            (
                f"sum by (budget, level) "
                f"(increase(llm_budget_threshold_crossings_total{{{W}}}{RANGE}))",
                "{{budget}} {{level}}",
            ),
            description="Times a budget's utilization crossed its warning or alert threshold or"
            " its limit (each also a warning in the sidecar's log), in the time range.",
        ),
        graph(
            "Attempts never answered and what they may cost",
            "currencyUSD",
            (
                f"sum by (provider, model) (rate(llm_unanswered_cost_usd_total{{{T}}}{RATE}))"
                " * 3600",
                "{{provider}} {{model}} possible cost per hour",
            ),
            (
                f"sum by (provider, model) (rate(llm_unanswered_attempts_total{{{T}}}{RATE}))",
                "{{provider}} {{model}} attempts per second",
            ),
            description="Attempts sent and never answered (dropped, invalid, timed out): the"
            " provider may bill them; charged to budgets at their worst case, kept apart from"
            " answered spend (unanswered in /admin/usage).",
        ),
        graph(
            "Calls charged on an estimate",
            "reqps",
            (
                f"sum by (provider, model, reason) (rate(llm_usage_estimated_total{{{T}}}{RATE}))",
                "{{provider}} {{model}} {{reason}}",
            ),
            description="The provider's usage never arrived (cancelled: the caller left or the"
            " deadline passed after sending; cut: a stream ended early): charged its reservation.",
        ),
        graph(
            "Cache savings rate",
            "currencyUSD",
            (f"sum(rate(llm_cache_saved_usd_total{{{W}}}{RATE})) * 3600", "saved per hour"),
        ),
        graph(
            "Tokens per second by model",
            "short",
            (
                f"sum by (model, kind) (rate(llm_tokens_used_total{{{T}}}{RATE}))",
                "{{model}} {{kind}}",
            ),
            span=24,
        ),
    ):
        board.with_panel(panel)
    return board
