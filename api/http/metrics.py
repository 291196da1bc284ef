"""/metrics: the console's state in the Prometheus text format, read at scrape time.

``ConsoleCollector`` reads ``console.status()`` and the process list when Prometheus scrapes,
so nothing on the console's hot paths (capture, ingest) counts anything for it. The HTTP layer's
own request counters live beside it in the same registry (auth.HttpMetrics).

Families (``lacrimosa_`` prefix, ``_total`` counters, seconds and bytes):
processes: ``process_state`` (1 for the current state), ``process_restarts_total``,
``process_last_exit_code``, ``process_exits_total`` (by code), ``process_uptime_seconds``, ``process_log_lines_total`` (by stream), ``process_log_bytes_total`` (by stream), ``process_log_lines_per_second``, ``process_cpu_percent`` and
``process_resident_bytes`` (of the whole process group, the latest sample, while it runs);
log store: ``log_store_bytes``, ``log_store_budget_bytes``, ``log_store_evicted_blocks_total``;
sequencer: ``sequencer_received_total``, ``sequencer_accepted_total``,
``sequencer_dropped_total`` (by cause), ``sequencer_events_per_second``, ``journal_fill_ratio``
(by region: ring, blob), ``journal_events``; audit: ``audit_records_total``,
``audit_write_errors_total``; the console: ``uptime_seconds``, ``http_refused_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...engine.console import Console
from ...engine.processes.supervisor import State

# The *_created series say when a counter was made, which the console's counters (read from its
# state at scrape time) cannot say: leave them out everywhere in this process.
disable_created_metrics()  # type: ignore[no-untyped-call]

STATES = (
    State.RUNNING,
    State.STOPPING,
    State.STOPPED,
    State.EXITED,
    State.FAILED,
    State.BACKOFF,
    State.CRASH_LOOP,
)


class ConsoleCollector(Collector):
    def __init__(self, console: Console, refused: Callable[[], int]) -> None:
        self.console = console
        self.refused = refused

    def collect(self) -> Iterator[Metric]:
        status = self.console.status()
        yield from self._processes()
        yield _gauge("uptime_seconds", "Seconds since the console started", status["uptime"])
        yield from _log_store(status["log_store"])
        if status.get("sequencer"):
            yield from _sequencer(status["sequencer"])
        audit = status["audit"]
        yield _counter("audit_records", "Records in the audit log", audit["records"])
        yield _counter(
            "audit_write_errors", "Audit records that could not be written", audit["write_errors"]
        )
        yield _counter("http_refused", "HTTP requests refused (401 and 403)", self.refused())

    def _processes(self) -> Iterator[Metric]:
        label = ["process"]
        state = GaugeMetricFamily(
            "lacrimosa_process_state",
            "1 for the state each process is in, 0 for the others",
            labels=["process", "state"],
        )
        restarts = CounterMetricFamily(
            "lacrimosa_process_restarts", "Automatic and requested restarts", labels=label
        )
        exit_code = GaugeMetricFamily(
            "lacrimosa_process_last_exit_code",
            "Exit status of the last exit (negative: killed by that signal)",
            labels=label,
        )
        uptime = GaugeMetricFamily(
            "lacrimosa_process_uptime_seconds",
            "Seconds since the current run started",
            labels=label,
        )
        exits = CounterMetricFamily(
            "lacrimosa_process_exits",
            "Runs that ended, by exit status (negative: killed by that signal)",
            labels=["process", "code"],
        )
        log_bytes = CounterMetricFamily(
            "lacrimosa_process_log_bytes",
            "Bytes of output captured, by stream",
            labels=["process", "stream"],
        )
        lines = CounterMetricFamily(
            "lacrimosa_process_log_lines",
            "Lines captured, by stream",
            labels=["process", "stream"],
        )
        rate = GaugeMetricFamily(
            "lacrimosa_process_log_lines_per_second",
            "Lines captured a second, lately",
            labels=label,
        )
        cpu = GaugeMetricFamily(
            "lacrimosa_process_cpu_percent",
            "CPU of the process group, % of one core, over the last second or so",
            labels=label,
        )
        resident = GaugeMetricFamily(
            "lacrimosa_process_resident_bytes",
            "Resident memory of the process group (its members' resident sets added up)",
            labels=label,
        )
        for info in self.console.processes():
            if info.cpu_percent is not None:
                cpu.add_metric([info.name], info.cpu_percent)
            if info.rss_bytes is not None:
                resident.add_metric([info.name], info.rss_bytes)
            for name in STATES:
                state.add_metric([info.name, name], 1.0 if info.state == name else 0.0)
            restarts.add_metric([info.name], info.restarts)
            if info.exit_code is not None:
                exit_code.add_metric([info.name], info.exit_code)
            for code, count in info.exits:
                exits.add_metric([info.name, str(code)], count)
            counts = self.console.store.counts(info.name)
            log_bytes.add_metric([info.name, "stdout"], counts.stdout_bytes)
            log_bytes.add_metric([info.name, "stderr"], counts.stderr_bytes)
            if info.uptime is not None:
                uptime.add_metric([info.name], info.uptime)
            lines.add_metric([info.name, "stdout"], info.stdout_lines)
            lines.add_metric([info.name, "stderr"], info.stderr_lines)
            rate.add_metric([info.name], info.lines_per_second)
        yield from (
            state,
            restarts,
            exit_code,
            exits,
            uptime,
            lines,
            log_bytes,
            rate,
            cpu,
            resident,
        )


def _log_store(store: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("log_store_bytes", "Bytes of log lines held", store["bytes"])
    yield _gauge("log_store_budget_bytes", "The log store's memory budget", store["budget_bytes"])
    yield _counter(
        "log_store_evicted_blocks",
        "Blocks of old lines evicted to stay within the budget",
        store["evicted_blocks"],
    )


def _sequencer(sequencer: dict[str, Any]) -> Iterator[Metric]:
    yield _counter("sequencer_received", "Datagrams received", sequencer["received"])
    yield _counter("sequencer_accepted", "Events journaled", sequencer["accepted"])
    dropped = CounterMetricFamily(
        "lacrimosa_sequencer_dropped", "Datagrams dropped, by cause", labels=["cause"]
    )
    for cause, count in sorted(sequencer["drops"].items()):
        dropped.add_metric([cause], count)
    yield dropped
    yield _gauge(
        "sequencer_events_per_second", "Events accepted a second, lately", sequencer["rate"]
    )
    journal = sequencer["journal"]
    fill = GaugeMetricFamily(
        "lacrimosa_journal_fill_ratio",
        "How full the journal is (0-1), by region",
        labels=["region"],
    )
    fill.add_metric(["ring"], journal["ring_used"])
    fill.add_metric(["blob"], journal["blob_used"])
    yield fill
    yield _gauge("journal_events", "Events held in the journal", journal["events"])


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"lacrimosa_{name}", documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"lacrimosa_{name}", documentation, value=value)
