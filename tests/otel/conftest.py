"""Fixtures for the OTLP tests: a real OpenTelemetry Collector per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.otel.collector import Collector, CollectorUnavailable, collector_binary


@pytest.fixture(scope="session")
def otelcol_binary() -> Path:
    try:
        return collector_binary()
    except CollectorUnavailable as exc:
        pytest.fail(f"OpenTelemetry Collector unavailable: {exc}", pytrace=False)


@pytest.fixture
def collector(otelcol_binary: Path, tmp_path: Path) -> Iterator[Collector]:
    running = Collector(otelcol_binary, tmp_path / "otelcol")
    running.start()
    yield running
    running.stop()
