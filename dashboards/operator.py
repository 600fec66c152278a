"""Operator: reconciles, pushes, sidecars desired/synced/missing, usage, webhook, certificate."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import RATE, base, graph, quantiles, single, variable

NS = 'namespace=~"$namespace"'


def sidecars(state: str) -> str:
    """Sidecars in a state, per policy once however many operator replicas report them."""
    return f'max by (namespace, policy) (sluice_operator_sidecars{{{NS}, state="{state}"}})'


def build() -> dashboard.Dashboard:
    board = base(
        "sluice-operator", "Sluice / Operator", "The Sluice operator's control loop."
    ).with_variable(
        variable("namespace", "Namespace", "label_values(sluice_operator_sidecars, namespace)")
    )
    for panel in (
        single(
            "Sidecars out of sync",
            "short",
            f"sum({sidecars('desired')}) - sum({sidecars('synced')})",
        ),
        single(
            "Opted-in pods without the sidecar",
            "short",
            f"sum({sidecars('missing')})",
        ),
        single(
            "Push failures per second",
            "reqps",
            f'sum(rate(sluice_operator_pushes_total{{result!="ok"}}{RATE})) or vector(0)',
        ),
        single(
            "Webhook certificate expires in",
            "s",
            "min(sluice_operator_certificate_expiry_timestamp_seconds) - time()",
        ),
        graph(
            "Sidecars by state",
            "short",
            (
                f"sum by (namespace, state) "
                f"(max by (namespace, policy, state) (sluice_operator_sidecars{{{NS}}}))",
                "{{namespace}} {{state}}",
            ),
            description="desired: injected pods; synced: running the current configuration;"
            " missing: opted-in pods without the sidecar.",
        ),
        graph(
            "Reconciles by kind and result",
            "reqps",
            (
                f"sum by (kind, result) (rate(sluice_operator_reconciles_total{RATE}))",
                "{{kind}} {{result}}",
            ),
        ),
        graph(
            "Reconcile duration",
            "s",
            *quantiles("sluice_operator_reconcile_duration_seconds", "", by="kind", qs=(0.5, 0.95)),
        ),
        graph(
            "Configuration pushes by result",
            "reqps",
            (f"sum by (result) (rate(sluice_operator_pushes_total{RATE}))", "{{result}}"),
        ),
        graph(
            "Push duration",
            "s",
            *quantiles("sluice_operator_push_duration_seconds", "", qs=(0.5, 0.95)),
        ),
        graph(
            "Usage collections by result",
            "reqps",
            (
                f"sum by (result) (rate(sluice_operator_usage_collections_total{RATE}))",
                "{{result}}",
            ),
        ),
        graph(
            "Webhook admissions by result",
            "reqps",
            (f"sum by (result) (rate(sluice_operator_admissions_total{RATE}))", "{{result}}"),
        ),
        graph(
            "Webhook admission latency",
            "s",
            *quantiles("sluice_operator_admission_duration_seconds", "", qs=(0.5, 0.95)),
        ),
    ):
        board.with_panel(panel)
    return board
