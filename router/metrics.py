"""Router metrics: plain counters bumped in place, exposed through prometheus-client at scrape.

The request path only does integer and float arithmetic on objects it already holds (an
`AppMetrics` per app); nothing here calls into prometheus-client or aiohttp per request. The
`RouterCollector` turns the counters into metric families when `/metrics` is scraped.

Exposed (all prefixed `dynomesh_router_`):
  requests_total{app,status,code}      responses, by status and H-code ("" for none)
  connect_seconds{app}                 histogram of time to a dyno connection (0 when pooled)
  service_seconds{app}                 histogram of time from request sent to response done
  in_flight_requests{app}              requests being served now (waiting ones included)
  backlog_requests{app}                requests waiting for a dyno with room (backlog.py)
  backlog_wait_seconds{app}            histogram of how long requests waited there
  dyno_connects_total                  connections opened to dynos (pooled ones reused are not)
  dyno_connects_per_second             the same, over the last housekeeping second
  unrouted_requests_total{status}      requests for no known app (404) or unparseable (400)
  routes_apps, routes_revision         the loaded table
  upstream_connections_idle            pooled connections waiting to be reused
  client_connections, tunnels          open client connections, open tunnels (WebSocket...)
  quarantined_dynos                    dynos skipped after a failed connect

With `--workers N` each worker keeps its own counters; the supervisor's admin listener reads a
`snapshot` of every worker at scrape time and shows their `merge` (sums, except the table's
facts, which are the same in every worker: their minimum is shown, so a worker that has not
loaded a table yet is visible), plus `worker_requests_total{worker}`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.registry import Collector

# Seconds. Connects on loopback/LAN take well under a millisecond; 5 s is the connect timeout.
CONNECT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# Seconds. Up to Heroku's 30 s request timeout, then the long tail of streaming responses.
SERVICE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


class Histogram:
    """Cumulative-at-scrape histogram: per-bucket counts (the last is +Inf) and a sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative (le, count) pairs, the form Prometheus exposes."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


# Seconds. A backlog that keeps moving waits milliseconds; --queue-timeout (10 s) ends it.
QUEUE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class AppMetrics:
    """One app's counters; lives as long as the router, across table updates."""

    __slots__ = ("app", "in_flight", "queued", "statuses", "errors", "connect", "service",
                 "queue_wait")

    def __init__(self, app: str) -> None:
        self.app = app
        self.in_flight = 0
        self.queued = 0  # requests in the app's backlog now
        self.statuses: dict[int, int] = {}  # dyno responses by status
        self.errors: dict[tuple[int, str], int] = {}  # router answers by (status, H-code)
        self.connect = Histogram(CONNECT_BUCKETS)
        self.service = Histogram(SERVICE_BUCKETS)
        self.queue_wait = Histogram(QUEUE_BUCKETS)

    def count_error(self, status: int, code: str | None) -> None:
        key = (status, code or "")
        self.errors[key] = self.errors.get(key, 0) + 1


class RouterMetrics:
    __slots__ = ("apps", "unrouted", "dyno_connects")

    def __init__(self) -> None:
        self.apps: dict[str, AppMetrics] = {}
        self.unrouted: dict[int, int] = {}  # status -> count, for requests that reached no app
        self.dyno_connects = 0  # connections opened to dynos (a pool that fits opens few)

    def app(self, name: str) -> AppMetrics:
        metrics = self.apps.get(name)
        if metrics is None:
            metrics = self.apps[name] = AppMetrics(name)
        return metrics

    def count_unrouted(self, status: int) -> None:
        self.unrouted[status] = self.unrouted.get(status, 0) + 1

    def total_requests(self) -> int:
        return (sum(self.unrouted.values())
                + sum(sum(app.statuses.values()) + sum(app.errors.values())
                      for app in self.apps.values()))


# Gauges that describe the routing table (the same in every worker): merged by minimum.
TABLE_GAUGES = frozenset({"routes_apps", "routes_revision", "routes_loaded"})


def snapshot(metrics: RouterMetrics, gauges: dict[str, tuple[str, float]]) -> dict:
    """One worker's counters as JSON-able data (served at the worker's /snapshot)."""
    return {
        "apps": {name: {
            "in_flight": app.in_flight,
            "queued": app.queued,
            "statuses": {str(status): count for status, count in app.statuses.items()},
            "errors": [[status, code, count] for (status, code), count in app.errors.items()],
            "connect": {"counts": app.connect.counts, "total": app.connect.total},
            "service": {"counts": app.service.counts, "total": app.service.total},
            "queue_wait": {"counts": app.queue_wait.counts, "total": app.queue_wait.total},
        } for name, app in list(metrics.apps.items())},
        "dyno_connects": metrics.dyno_connects,
        "unrouted": {str(status): count for status, count in metrics.unrouted.items()},
        "gauges": {name: [help_text, value] for name, (help_text, value) in gauges.items()},
    }


def merge(snapshots: list[dict]) -> tuple[RouterMetrics, dict[str, tuple[str, float]]]:
    """Several workers' snapshots -> one RouterMetrics and one set of gauges."""
    merged = RouterMetrics()
    gauges: dict[str, tuple[str, float]] = {}
    for data in snapshots:
        for name, app_data in data["apps"].items():
            app = merged.app(name)
            app.in_flight += app_data["in_flight"]
            app.queued += app_data["queued"]
            for status, count in app_data["statuses"].items():
                app.statuses[int(status)] = app.statuses.get(int(status), 0) + count
            for status, code, count in app_data["errors"]:
                app.errors[(status, code)] = app.errors.get((status, code), 0) + count
            for histogram, part in ((app.connect, app_data["connect"]),
                                    (app.service, app_data["service"]),
                                    (app.queue_wait, app_data["queue_wait"])):
                histogram.counts = [a + b for a, b in zip(histogram.counts, part["counts"])]
                histogram.total += part["total"]
        merged.dyno_connects += data["dyno_connects"]
        for status, count in data["unrouted"].items():
            merged.unrouted[int(status)] = merged.unrouted.get(int(status), 0) + count
        for name, (help_text, value) in data["gauges"].items():
            if name not in gauges:
                gauges[name] = (help_text, value)
            elif name in TABLE_GAUGES:
                gauges[name] = (help_text, min(gauges[name][1], value))
            else:
                gauges[name] = (help_text, gauges[name][1] + value)
    return merged, gauges


class RouterCollector(Collector):
    """Reads a `RouterMetrics` (and table facts from `gauges`) when Prometheus scrapes."""

    def __init__(self, metrics: RouterMetrics,
                 gauges: Callable[[], dict[str, float]]) -> None:
        self._metrics = metrics
        self._gauges = gauges

    def collect(self) -> Iterator:
        requests = CounterMetricFamily("dynomesh_router_requests", "Requests answered, by app, "
                                       "status and router error code", labels=("app", "status",
                                                                               "code"))
        connect = HistogramMetricFamily("dynomesh_router_connect_seconds",
                                        "Time to obtain a dyno connection (0 when pooled)",
                                        labels=("app",))
        service = HistogramMetricFamily("dynomesh_router_service_seconds",
                                        "Time from request sent to response complete",
                                        labels=("app",))
        in_flight = GaugeMetricFamily("dynomesh_router_in_flight_requests",
                                      "Requests being served now", labels=("app",))
        queued = GaugeMetricFamily("dynomesh_router_backlog_requests",
                                   "Requests waiting for a dyno with room", labels=("app",))
        queue_wait = HistogramMetricFamily("dynomesh_router_backlog_wait_seconds",
                                           "Time requests waited for a dyno with room",
                                           labels=("app",))
        for name, app in list(self._metrics.apps.items()):
            for status, count in list(app.statuses.items()):
                requests.add_metric((name, str(status), ""), count)
            for (status, code), count in list(app.errors.items()):
                requests.add_metric((name, str(status), code), count)
            connect.add_metric((name,), app.connect.buckets(), app.connect.total)
            service.add_metric((name,), app.service.buckets(), app.service.total)
            in_flight.add_metric((name,), app.in_flight)
            queued.add_metric((name,), app.queued)
            queue_wait.add_metric((name,), app.queue_wait.buckets(), app.queue_wait.total)
        unrouted = CounterMetricFamily("dynomesh_router_unrouted_requests",
                                       "Requests that reached no app (unknown host, bad request)",
                                       labels=("status",))
        for status, count in list(self._metrics.unrouted.items()):
            unrouted.add_metric((str(status),), count)
        connects = CounterMetricFamily("dynomesh_router_dyno_connects",
                                       "Connections opened to dynos",
                                       value=self._metrics.dyno_connects)
        yield from (requests, connect, service, in_flight, queued, queue_wait, connects, unrouted)
        for name, (help_text, value) in self._gauges().items():
            yield GaugeMetricFamily(f"dynomesh_router_{name}", help_text, value=value)
