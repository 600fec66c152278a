"""Building blocks shared by the dashboards: the data source, template variables, panels.

Every query selects through the template variables below, so each dashboard filters by
namespace, workload, provider and model. The sidecar's series carry ``namespace``, ``workload``
and ``pod`` from the chart's PodMonitor (helm/sluice/templates/podmonitor.yaml).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Selectors, to put inside {...}: W the workload, T a workload's traffic to a provider/model.
W = 'namespace=~"$namespace", workload=~"$workload"'
T = W + ', provider=~"$provider", model=~"$model"'
RATE = "[$__rate_interval]"
RANGE = "[$__range]"
REFS = "ABCDEFGH"

Panel = timeseries.Panel | stat.Panel


def base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["sluice", "llm"])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )


def variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    """A multi-value variable from a label's values, "All" matching every value."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(text="All", value="$__all", selected=True))
    )


def sidecar_variables(board: dashboard.Dashboard) -> dashboard.Dashboard:
    """namespace, workload, provider and model, each narrowed by the ones before it."""
    return (
        board.with_variable(
            variable("namespace", "Namespace", "label_values(llm_requests_total, namespace)")
        )
        .with_variable(
            variable(
                "workload",
                "Workload",
                'label_values(llm_requests_total{namespace=~"$namespace"}, workload)',
            )
        )
        .with_variable(
            variable("provider", "Provider", f"label_values(llm_requests_total{{{W}}}, provider)")
        )
        .with_variable(
            variable(
                "model",
                "Model",
                f'label_values(llm_requests_total{{{W}, provider=~"$provider"}}, model)',
            )
        )
    )


def graph(
    title: str, unit: str, *queries: tuple[str, str], description: str = "", span: int = 12
) -> timeseries.Panel:
    """A time series panel; ``queries`` are (PromQL, legend) pairs."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(span)
        .height(8)
    )
    for ref, (expr, legend) in zip(REFS, queries, strict=False):
        panel.with_target(target(ref, expr, legend))
    return panel


def single(title: str, unit: str, expr: str, description: str = "") -> stat.Panel:
    """A one-number panel (the last value of one query)."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(6)
        .height(4)
        .with_target(target("A", expr, ""))
    )


def target(ref: str, expr: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().ref_id(ref).expr(expr).legend_format(legend or "__auto")


def quantiles(metric: str, selector: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)):
    """histogram_quantile queries of a histogram, one per quantile, legends p50, p95, ..."""
    group = f"le, {by}" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    return tuple(
        (
            f"histogram_quantile({q}, sum by ({group}) "
            f"(rate({metric}_bucket{{{selector}}}{RATE})))",
            f"{prefix}p{round(q * 100)}",
        )
        for q in qs
    )
