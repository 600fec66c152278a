"""A price table read from a file: a mounted ConfigMap, or a file beside standalone policies.

The configuration names it (``pricingFile``); it is YAML or JSON::

    asOf: "2026-12-01"                 # when the prices were taken from the vendors' lists
    models:                            # model name, glob or provider/model -> USD per 1M
      gpt-4o: {inputPer1M: 2.50, outputPer1M: 10.00, cachedInputPer1M: 1.25}

Its entries rank between the policy's ``pricing`` and the bundled table (``pricing``), so prices
change without a release. It is read when a configuration is built (``build_runtime``): a file
that is missing, not a regular file, too large or invalid refuses the whole configuration with
the reason, and the running one stays. Afterwards ``PriceFileWatch.refresh`` (called by the
price table every few seconds) re-reads it when its modification time, size or inode changed,
as when the kubelet swaps a ConfigMap's files (a new ``..data`` folder behind the same name); a
change that does not load is logged and the prices read last stay. ``current`` checks too, at
most every ``RECHECK_S``, so the date ``GET /admin/usage`` shows follows the file on a sidecar
that prices no call. Bounded: 1 MiB and 10,000 models.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from sluice_sidecar.contract.base import Spec
from sluice_sidecar.contract.economics import ModelPriceSpec
from sluice_sidecar.contract.model import config_problems

logger = logging.getLogger("sluice.cost")
MAX_FILE_BYTES = 1024 * 1024
MAX_MODELS = 10_000
RECHECK_S = 10.0  # the longest a reader of ``PriceFileWatch.current`` sees a replaced file late

Prices = dict[str, tuple[Decimal, Decimal, Decimal]]  # input, output, cached input per 1M


class PriceFileDocument(Spec):
    """The file's content."""

    as_of: dt.date = Field(description="Date the prices were taken from the vendors' lists.")
    models: dict[str, ModelPriceSpec] = Field(max_length=MAX_MODELS)


@dataclass(frozen=True, slots=True)
class PriceFile:
    path: str
    as_of: str
    prices: Prices


class PriceFileError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def prices_of(models: dict[str, ModelPriceSpec]) -> Prices:
    """Model specs as price tuples; an unset cached price is the input price."""
    return {
        name: (
            p.input_per_1m,
            p.output_per_1m,
            p.input_per_1m if p.cached_input_per_1m is None else p.cached_input_per_1m,
        )
        for name, p in models.items()
    }


def load_price_file(path: str) -> PriceFile:
    """Read and validate the file at ``path`` (relative: to the working directory)."""
    where = f"pricingFile {path}"
    try:
        resolved = Path(path).resolve(strict=True)
        if not resolved.is_file():  # a FIFO would block the configuration swap
            raise PriceFileError([f"{where} is not a regular file"])
        with resolved.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise PriceFileError([f"cannot read {where}: {error.strerror}"]) from error
    if len(raw) > MAX_FILE_BYTES:
        raise PriceFileError([f"{where} is larger than {MAX_FILE_BYTES} bytes"])
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise PriceFileError([f"{where} is not YAML or JSON: {error}"]) from error
    try:
        parsed = PriceFileDocument.model_validate(document)
    except ValidationError as error:
        raise PriceFileError([f"{where}: {p}" for p in config_problems(error)]) from error
    return PriceFile(str(resolved), parsed.as_of.isoformat(), prices_of(parsed.models))


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


class PriceFileWatch:
    """The price file of one configuration, as read last, re-read when it changes."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._signature = _signature(path)
        self._loaded = load_price_file(path)
        self._failed: tuple[int, int, int] | None = None  # a change that did not load
        self._checked = clock()
        self._loads = 0  # changes loaded since the first read
        self._reported = 0  # of those, the ones ``refresh`` has answered True for

    @property
    def current(self) -> PriceFile:
        """The table as read last, checked again once ``RECHECK_S`` passed: a reader that looks
        no price up (``GET /admin/usage`` on an idle sidecar) sees a changed file's date too."""
        if self._clock() - self._checked >= RECHECK_S:
            self._reload()
        return self._loaded

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the prices changed since the last call
        (also when ``current`` read the change first)."""
        self._reload()
        changed = self._loads != self._reported
        self._reported = self._loads
        return changed

    def _reload(self) -> None:
        self._checked = self._clock()
        signature = _signature(self.path)
        if signature is None or signature in (self._signature, self._failed):
            return
        try:
            loaded = load_price_file(self.path)
        except PriceFileError as error:
            self._failed = signature
            logger.warning("price file changed but did not load, keeping the last: %s", error)
            return
        self._signature, self._loaded = signature, loaded
        self._loads += 1
        logger.info("price file %s re-read (prices as of %s)", loaded.path, loaded.as_of)
