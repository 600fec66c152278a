"""The sidecar's long-lived objects and the atomic configuration swap.

One ``SidecarState`` per process, created at start-up and shared by the data and admin apps. It
holds the stores that outlive a configuration swap and hands them to
``sluice_sidecar.pipeline.compose.build_pipeline``, which builds the pipeline once.
``apply`` validates a configuration completely (model, keys readable) before it swaps the
``runtime`` reference in one assignment; a request holds the runtime it started with, so
in-flight calls finish under their configuration and are never dropped by a reload.

redis-py and the Redis budget store are imported by name (``REDIS_MODULES``) only when
``--redis-url`` is set: a sidecar without Redis never loads them (docs/performance.md,
"Footprint").
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sluice_sidecar.contract.economics import CacheSpec
from sluice_sidecar.contract.model import ConfigRejected, SidecarConfig, config_problems
from sluice_sidecar.economics.batch_stats import BatchStats
from sluice_sidecar.economics.budgets import BudgetLedger, MemoryBudgetStore
from sluice_sidecar.economics.cache_store import CacheBackend, CacheStats, MemoryCache, RedisCache
from sluice_sidecar.economics.latency_model import LatencyHistory
from sluice_sidecar.economics.ledger import UsageLedger
from sluice_sidecar.economics.sessions import SessionBook
from sluice_sidecar.economics.state_file import StateFile
from sluice_sidecar.economics.stats import CallStats
from sluice_sidecar.economics.workload_advice import WorkloadAdvisor
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Next
from sluice_sidecar.pipeline.compose import Dependencies, build_pipeline
from sluice_sidecar.pipeline.runtime import Runtime, build_runtime
from sluice_sidecar.resilience.breaker import BreakerRegistry
from sluice_sidecar.service.observers import BreakerObserver, BudgetObserver
from sluice_sidecar.service.settings import SidecarSettings
from sluice_sidecar.transports.base import Transport

logger = logging.getLogger("sluice.config")
REDIS_TIMEOUT_S = 0.5
REDIS_MODULES = ("redis.asyncio", "redis.exceptions", "sluice_sidecar.economics.budget_redis")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    version: str
    previous_version: str | None
    changed: bool


class SidecarState:
    def __init__(
        self,
        settings: SidecarSettings,
        transport: Transport,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.metrics = Metrics()
        self.stats = CallStats()
        self.started_at = time.time()
        self.usage = UsageLedger()
        self.sessions = SessionBook()
        self.advisor = WorkloadAdvisor()
        self.latency = LatencyHistory()
        self._budget_observer = BudgetObserver(self.metrics)
        self.budget_memory = MemoryBudgetStore()
        self.budgets = BudgetLedger(
            self.budget_memory,
            on_refusal=self._budget_observer.refused,
            observer=self._budget_observer.settled,
        )
        self._state_file: StateFile | None = None
        self.redis: Any = None  # redis.asyncio.Redis when settings.redis_url is set
        self.cache_stats = CacheStats()
        default_cache = CacheSpec()
        self.memory_cache = MemoryCache(
            default_cache.max_entries, default_cache.max_bytes, self.cache_stats, clock=clock
        )
        self.redis_cache: RedisCache | None = None
        self._warned_no_redis = False
        self.batch_stats = BatchStats()
        self.breakers = BreakerRegistry(
            SidecarConfig.model_fields["circuit_breaker"].get_default(call_default_factory=True),
            clock=clock,
            on_state_change=BreakerObserver(self.metrics).changed,
        )
        self._version_waiters: list[asyncio.Future[str]] = []
        self.runtime: Runtime | None = None
        pipeline = build_pipeline(
            Dependencies(
                transport=transport,
                metrics=self.metrics,
                usage=self.usage,
                sessions=self.sessions,
                advisor=self.advisor,
                latency=self.latency,
                cache_backend=self.cache_backend,
                cache_stats=self.cache_stats,
                batch_stats=self.batch_stats,
                budgets=self.budgets,
                breakers=self.breakers,
            )
        )
        self.pipeline: Next = pipeline.run
        self.queue = pipeline.queue

    async def start(self) -> None:
        """Load persisted state and start background writers (server start-up)."""
        if self.settings.state_dir is not None:
            self._state_file = StateFile(
                self.settings.state_dir,
                self.budget_memory,
                on_error=lambda reason: self.metrics.state_write_errors.labels(reason).inc(),
            )
            await asyncio.to_thread(self._state_file.load)  # file I/O off the event loop
            self._state_file.start()
        if self.settings.redis_url is not None:
            self._start_redis(self.settings.redis_url)

    def _start_redis(self, url: str) -> None:
        client, exceptions, budget_redis = map(importlib.import_module, REDIS_MODULES)
        # The client connects lazily: a Redis outage never blocks start-up.
        self.redis = client.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.budgets.store = budget_redis.RedisBudgetStore(
            self.redis,
            self.budget_memory,
            on_error=self.metrics.redis_errors.labels("budget").inc,
            observer=self._budget_observer.settled,
        )
        self.redis_cache = RedisCache(
            self.redis,
            self.cache_stats,
            self.metrics.redis_errors.labels("cache").inc,
            errors=(exceptions.RedisError, OSError),
        )

    def cache_backend(self, spec: CacheSpec) -> CacheBackend:
        """The cache back-end a configuration asks for; memory when Redis is not configured."""
        if spec.backend == "redis":
            if self.redis_cache is not None:
                return self.redis_cache
            if not self._warned_no_redis:
                self._warned_no_redis = True
                logger.warning("cache backend redis needs --redis-url; using the memory cache")
        return self.memory_cache

    async def close(self) -> None:
        drain = getattr(self.budgets.store, "drain", None)
        if drain is not None:
            await drain()
        if self._state_file is not None:
            await self._state_file.close()
        if self.redis is not None:
            await self.redis.aclose()

    @property
    def version(self) -> str | None:
        return self.runtime.version if self.runtime else None

    def apply_document(self, document: Any, *, source: str) -> ApplyResult:
        """Validate a raw SidecarConfig document (e.g. a PUT body) and apply it."""
        try:
            config = SidecarConfig.model_validate(document)
        except ValidationError as error:
            self.metrics.config_reloads.labels("rejected").inc()
            raise ConfigRejected(config_problems(error)) from error
        return self.apply(config, source=source)

    def apply(self, config: SidecarConfig, *, source: str) -> ApplyResult:
        try:
            runtime = build_runtime(
                config, secrets_dir=self.settings.secrets_dir, environ=self.settings.environ
            )
        except ConfigRejected:
            self.metrics.config_reloads.labels("rejected").inc()
            raise
        previous = self.version
        same_keys = self.runtime is not None and self.runtime.missing_keys == runtime.missing_keys
        if previous == runtime.version and same_keys:
            self.metrics.config_reloads.labels("unchanged").inc()
            return ApplyResult(runtime.version, previous, changed=False)
        self.breakers.reconfigure(config.circuit_breaker)
        self.memory_cache.resize(config.cache.max_entries, config.cache.max_bytes)
        self.runtime = runtime  # the atomic swap
        waiters, self._version_waiters = self._version_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(runtime.version)
        self.metrics.set_config_version(runtime.version)
        # A budget the new configuration dropped is no longer reported (nor its level kept).
        budgets = {rule.identity for rule in runtime.budget_rules}
        self.metrics.keep_budgets(budgets)
        self._budget_observer.keep(budgets)
        self.metrics.config_reloads.labels("applied").inc()
        logger.info(
            "configuration %s applied from %s (was %s; policies: %s)",
            runtime.version,
            source,
            previous or "none",
            ", ".join(config.sources) or "-",
        )
        return ApplyResult(runtime.version, previous, changed=True)

    async def next_version(self) -> str:
        """Wait for the next configuration swap (tests and tools await it, never poll)."""
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._version_waiters.append(waiter)
        return await waiter
