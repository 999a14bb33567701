"""This node's drain deliveries as Prometheus metrics, read when `/metrics` is scraped.

Exposed (labels `app` and `drain`, the drain's token; one series per drain this node
delivers, so summing over nodes gives the platform's figures):

  dynomesh_drain_lines_sent_total        lines the receiver took
  dynomesh_drain_lines_dropped_total     lines dropped because the drain's buffer was full (L10)
  dynomesh_drain_retries_total           failed attempts, each tried again after a back-off
  dynomesh_drain_buffered_lines          lines waiting to be sent
  dynomesh_drain_last_error_timestamp_seconds   when the last attempt failed (absent: never)
  dynomesh_drain_last_error_info{error}  1, with the last failure's reason as a label

The totals are the drain's since it was added (across the nodes that delivered it).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from controlplane.store.models import Drain, DrainStats

_LABELS = ["app", "drain"]


class DrainCollector:
    def __init__(self, deliveries: Callable[[], list[tuple[Drain, DrainStats, int]]]) -> None:
        self._deliveries = deliveries

    def collect(self):
        sent = CounterMetricFamily("dynomesh_drain_lines_sent", "Log lines the drain's "
                                   "receiver took", labels=_LABELS)
        dropped = CounterMetricFamily("dynomesh_drain_lines_dropped", "Log lines dropped "
                                      "because the drain's buffer was full (reported as L10)",
                                      labels=_LABELS)
        retries = CounterMetricFamily("dynomesh_drain_retries", "Failed attempts to deliver "
                                      "to the drain, each tried again", labels=_LABELS)
        buffered = GaugeMetricFamily("dynomesh_drain_buffered_lines", "Log lines waiting to be "
                                     "sent to the drain", labels=_LABELS)
        error_at = GaugeMetricFamily("dynomesh_drain_last_error_timestamp_seconds", "When the "
                                     "last attempt to deliver to the drain failed",
                                     labels=_LABELS)
        error = GaugeMetricFamily("dynomesh_drain_last_error_info", "The last failure's reason",
                                  labels=[*_LABELS, "error"])
        for drain, stats, held in self._deliveries():
            labels = [drain.app, drain.token]
            sent.add_metric(labels, stats.sent)
            dropped.add_metric(labels, stats.dropped)
            retries.add_metric(labels, stats.retries)
            buffered.add_metric(labels, held)
            if stats.last_error_at is not None:
                error_at.add_metric(labels, stats.last_error_at)
                error.add_metric([*labels, stats.last_error or ""], 1)
        yield from (sent, dropped, retries, buffered, error_at, error)
