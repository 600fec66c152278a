"""Cache & batching: hit rate, size, evictions, savings; merged calls, batch sizes, queue."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import RATE, W, base, graph, quantiles, sidecar_variables, single


def build() -> dashboard.Dashboard:
    board = sidecar_variables(
        base(
            "sluice-cache-batching",
            "Sluice / Cache & batching",
            "The answer cache, coalescing, embeddings batching and the priority queue.",
        )
    )
    for panel in (
        single(
            "Cache hit rate",
            "percentunit",
            f'sum(rate(llm_cache_requests_total{{{W}, result="hit"}}{RATE}))'
            f' / sum(rate(llm_cache_requests_total{{{W}, result=~"hit|miss"}}{RATE}))',
        ),
        single("Cache entries", "short", f"sum(llm_cache_entries{{{W}}})"),
        single("Cache size", "bytes", f"sum(llm_cache_bytes{{{W}}})"),
        single("Queue depth", "short", f"sum(llm_queue_depth{{{W}}})"),
        graph(
            "Cache hit rate by workload",
            "percentunit",
            (f"llm:cache_hit_rate:ratio_rate5m{{{W}}}", "{{namespace}}/{{workload}}"),
            description="Recording rule llm:cache_hit_rate:ratio_rate5m (bypassed calls left out).",
        ),
        graph(
            "Cache lookups by result",
            "reqps",
            (f"sum by (result) (rate(llm_cache_requests_total{{{W}}}{RATE}))", "{{result}}"),
        ),
        graph(
            "Cache evictions and savings",
            "short",
            (f"sum(rate(llm_cache_evictions_total{{{W}}}{RATE}))", "evictions per second"),
            (f"sum(rate(llm_cache_saved_usd_total{{{W}}}{RATE})) * 3600", "USD saved per hour"),
        ),
        graph(
            "Batch efficiency",
            "short",
            (f"llm:batch_efficiency:ratio_rate5m{{{W}}}", "{{namespace}}/{{workload}}"),
            description="Recording rule llm:batch_efficiency:ratio_rate5m: callers per merged"
            " upstream embeddings call.",
        ),
        graph(
            "Merged calls",
            "reqps",
            (f"sum by (how) (rate(llm_batched_requests_total{{{W}}}{RATE}))", "{{how}}"),
            (f"sum(rate(llm_batches_total{{{W}}}{RATE}))", "upstream batch calls"),
        ),
        graph(
            "Batch size",
            "short",
            *quantiles("llm_batch_size", W, qs=(0.5, 0.95)),
        ),
        graph(
            "Queue wait",
            "s",
            *quantiles("llm_queue_wait_seconds", W, by="priority", qs=(0.5, 0.95)),
        ),
        graph(
            "Queue rejections",
            "reqps",
            (
                f"sum by (priority, reason) (rate(llm_queue_rejections_total{{{W}}}{RATE}))",
                "{{priority}} {{reason}}",
            ),
        ),
    ):
        board.with_panel(panel)
    return board
