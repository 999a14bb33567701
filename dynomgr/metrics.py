"""Prometheus metrics of one agent, in a registry of its own (no module globals).

Counters are bumped in place by the code that sees the event; per-dyno gauges (states, memory)
are read from the live dyno table when /metrics is scraped, so they can never go stale.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from dynomgr.state import DynoState

# Boot times from "Starting process" to `up`: a Python web app boots in 0.1–2 s, R10 is 60 s.
BOOT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


class DynoView:
    """What the collector needs from a dyno (the `Dyno` class provides it)."""

    app: str
    name: str
    state: DynoState
    memory_bytes: int | None
    memory_quota_bytes: int


class _DynoCollector:
    def __init__(self, dynos: Callable[[], Iterable[DynoView]]) -> None:
        self._dynos = dynos

    def collect(self):
        by_state = GaugeMetricFamily(
            "dynomgr_dynos", "Dynos on this VM by state", labels=["state"]
        )
        memory = GaugeMetricFamily(
            "dynomgr_dyno_memory_bytes", "Resident memory of each dyno's processes, last sample",
            labels=["app", "dyno"],
        )  # fmt: skip
        quota = GaugeMetricFamily(
            "dynomgr_dyno_memory_quota_bytes", "Memory quota of each dyno", labels=["app", "dyno"]
        )
        counts = {state: 0 for state in DynoState}
        for dyno in self._dynos():
            counts[dyno.state] += 1
            quota.add_metric([dyno.app, dyno.name], dyno.memory_quota_bytes)
            if dyno.memory_bytes is not None:
                memory.add_metric([dyno.app, dyno.name], dyno.memory_bytes)
        for state, count in counts.items():
            by_state.add_metric([state.value], count)
        yield by_state
        yield memory
        yield quota


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.restarts = Counter(
            "dynomgr_dyno_restarts", "Dyno restarts after a crash", ["app", "type"], registry=r
        )
        self.adopted = Counter(
            "dynomgr_dynos_adopted", "Running dynos taken over from a previous agent (--keep-dynos)",
            registry=r,
        )
        self.state_changes = Counter(
            "dynomgr_state_changes", "State changes, by the state entered", ["state"], registry=r
        )
        self.health_changes = Counter(
            "dynomgr_health_changes", "Running web dynos that became unhealthy (N failed health "
            "checks in a row) or healthy again", ["to"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "dynomgr_dyno_errors", "Platform errors by Heroku code (R10, R12, R14, R15, R17, ...)",
            ["code"], registry=r,
        )  # fmt: skip
        self.boot_seconds = Histogram(
            "dynomgr_dyno_boot_seconds", "Time from launching a dyno's process to `up`",
            buckets=BOOT_BUCKETS, registry=r,
        )  # fmt: skip
        self.log_lines = Counter(
            "dynomgr_log_lines", "Log lines produced, by source (app, heroku)", ["source"], registry=r
        )
        self.log_lines_dropped = Counter(
            "dynomgr_log_lines_dropped", "Log lines dropped because the consumer was slow",
            registry=r,
        )  # fmt: skip
        self.reloads = Counter(
            "dynomgr_assignment_updates", "Desired sets applied, by outcome", ["outcome"], registry=r
        )
        self.reports = Counter(
            "dynomgr_reports", "Requests to the control plane (register, heartbeat, states), by outcome",
            ["kind", "outcome"], registry=r,
        )  # fmt: skip
        self.report_changes_dropped = Counter(
            "dynomgr_report_changes_dropped",
            "State changes not reported (held too long while the control plane was away, or refused)",
            registry=r,
        )  # fmt: skip
        self.internal_errors = Counter(
            "dynomgr_internal_errors", "Unexpected errors caught and logged, by place", ["where"],
            registry=r,
        )  # fmt: skip

    def watch_dynos(self, dynos: Callable[[], Iterable[DynoView]]) -> None:
        self.registry.register(_DynoCollector(dynos))
