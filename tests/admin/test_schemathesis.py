"""schemathesis against the served admin document: generated calls to every operation, valid
and invalid, with the admin token; no answer may be a 5xx or differ from the document.

schemathesis drives ``requests`` synchronously, so it runs in a worker thread while the real
sidecar serves on loopback from the test's event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from sluice_sidecar.api.admin_openapi import openapi_document
from tests.admin.checks import CHECKS
from tests.support.sidecar import SidecarHandle

EXAMPLES_PER_MODE = 20  # per operation, once valid and once invalid: bounded, a few seconds


@dataclass
class FuzzReport:
    operations: int = 0
    examples: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0


def fuzz_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    headers: dict[str, str],
    report: FuzzReport,
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        phases=[Phase.generate],
        database=None,
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    def call(case: schemathesis.Case) -> None:
        response = case.call(headers=headers, timeout=10)
        case.validate_response(response, checks=CHECKS, headers=headers)
        report.examples[case.operation.label] += 1
        report.statuses[response.status_code] += 1

    call()


def fuzz(document_url: str, headers: dict[str, str]) -> FuzzReport:
    """Run every operation of the served document; raises on the first failed check."""
    report, started = FuzzReport(), time.monotonic()
    schema = schemathesis.openapi.from_url(document_url, headers=headers)
    for result in schema.get_all_operations():
        operation = result.ok()
        report.operations += 1
        fuzz_operation(operation, GenerationMode.POSITIVE, headers, report)
        if {"parameters", "requestBody"} & set(operation.definition.raw):  # else no bad input
            fuzz_operation(operation, GenerationMode.NEGATIVE, headers, report)
    report.seconds = time.monotonic() - started
    return report


async def test_generated_calls_to_every_admin_operation_get_documented_answers(
    busy: SidecarHandle,
) -> None:
    # Negative examples include calls without the token (schemathesis negates the security
    # scheme): those are the 401s.
    report = await asyncio.to_thread(fuzz, busy.admin_url + "/admin/openapi.json", busy.auth)
    print(
        f"schemathesis: {report.operations} operations, {report.examples.total()} examples "
        f"in {report.seconds:.1f}s; statuses {dict(sorted(report.statuses.items()))}"
    )
    # Loaded from its own URL, schemathesis leaves out the document's path (test_openapi has it).
    documented = sum(len(item) for item in openapi_document()["paths"].values())
    assert report.operations == documented - 1
    assert not any(status >= 500 for status in report.statuses)
    assert report.statuses[400] > 0  # the invalid examples were refused, not answered
