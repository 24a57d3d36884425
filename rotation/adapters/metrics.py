"""Prometheus metrics, computed from the service's state at scrape time (an adapter for prometheus_client).

Reading the state (Redis) on each scrape keeps every worker's results in one place: any number of
workers, one consistent view, and nothing lost when a worker restarts. It lives with the adapters,
not with the entry points: it only translates ``ServiceState`` into metric families; ``rotation
worker --metrics-port`` and ``rotation metrics`` serve it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from rotation.adapters.bounded_server import CappedServer, DeadlineHandler
from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.state.base import DURATION_BUCKETS, ServiceState
from rotation.core.clock import Clock
from rotation.core.model import split_endpoint_label
from rotation.core.renewal import backoff_holds

# node: the node's uid ("cluster" for the REST copy); address: the host dialled; endpoint: host:port
ENDPOINT_LABELS = ["cluster", "cert", "node", "address", "endpoint"]


class StateCollector(Collector):
    def __init__(self, store: ServiceState, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator:  # noqa: C901 - one block per metric family keeps it readable
        expiry = GaugeMetricFamily("rotation_certificate_expiry_timestamp_seconds",
                                   "notAfter of the certificate each endpoint serves",
                                   labels=ENDPOINT_LABELS)
        match = GaugeMetricFamily("rotation_certificate_fingerprint_match",
                                  "1 when the endpoint serves the certificate the last rotation installed",
                                  labels=ENDPOINT_LABELS)
        failures = GaugeMetricFamily("rotation_certificate_failures",
                                     "Consecutive failed rotations (backoff applies)", labels=["cluster", "cert"])
        next_attempt = GaugeMetricFamily("rotation_certificate_next_attempt_timestamp_seconds",
                                         "Earliest next rotation attempt of a certificate that is backing off",
                                         labels=["cluster", "cert"])
        now = self.clock.now()
        for (cluster, cert), state in self.store.all_states().items():
            intended = state.get("intended")
            for label, not_after in (state.get("not_after") or {}).items():
                expiry.add_metric([cluster, cert, *split_endpoint_label(label)],
                                  datetime.fromisoformat(not_after).timestamp())
            if intended:
                for label, fingerprint in (state.get("served") or {}).items():
                    match.add_metric([cluster, cert, *split_endpoint_label(label)],
                                     1.0 if fingerprint == intended else 0.0)
            failures.add_metric([cluster, cert], float(state.get("failures") or 0))
            # a moment that has passed (or that the certificate would not outlive) no longer holds it back:
            # no sample (as `status` says)
            expires = min((datetime.fromisoformat(v) for v in (state.get("not_after") or {}).values()), default=None)
            if state.get("next_attempt") and backoff_holds(moment := datetime.fromisoformat(state["next_attempt"]),
                                                           expires, now):
                next_attempt.add_metric([cluster, cert], moment.timestamp())
        yield from (expiry, match, failures, next_attempt)

        scans = GaugeMetricFamily("rotation_last_successful_scan_timestamp_seconds",
                                  "When each cluster was last scanned successfully", labels=["cluster"])
        drift = GaugeMetricFamily("rotation_tls_policy_drift",
                                  "Differences between TLS policy, REST settings and handshakes", labels=["cluster"])
        warnings = GaugeMetricFamily("rotation_scan_warnings",
                                     "Warnings of the last scan about what a cluster holds (internode certificates "
                                     "near RS's fallback, health report mismatches)", labels=["cluster"])
        for cluster, scan in self.store.scans().items():
            if scan.get("warning_count") not in (None, ""):
                warnings.add_metric([cluster], float(scan["warning_count"]))
            if scan.get("last_success"):
                scans.add_metric([cluster], datetime.fromisoformat(scan["last_success"]).timestamp())
            # an audit with errors and no drift found did not look everywhere: unknown, not 0
            if scan.get("policy_drift") not in (None, "") and (float(scan["policy_drift"]) > 0
                                                               or not float(scan.get("policy_errors") or 0)):
                drift.add_metric([cluster], float(scan["policy_drift"]))
        yield from (scans, drift, warnings)

        left = GaugeMetricFamily("rotation_issuer_orders_left",
                                 "Orders an issuer's budget has left in its window, fleet-wide (per CA account)",
                                 labels=["issuer", "ca"])
        paused = GaugeMetricFamily("rotation_issuer_paused_until_timestamp_seconds",
                                   "Until when an issuer orders nothing: its CA answered rateLimited, or its budget "
                                   "is spent", labels=["issuer", "ca"])
        for use in self.store.issuer_budgets(now):
            if use.left is not None:
                left.add_metric([use.issuer, use.shown], float(use.left))
            blocked = use.blocked_until(now)
            if blocked is not None:
                paused.add_metric([use.issuer, use.shown], blocked.timestamp())
        yield from (left, paused)

        stats = self.store.stats()
        rotations = CounterMetricFamily("rotation_rotations", "Rotations by outcome",
                                        labels=["cluster", "cert", "outcome"])
        outcomes: set[str] = set()
        for key, value in stats.items():
            kind, _, rest = key.partition("|")
            if kind == "count":
                cluster, cert, outcome = rest.split("|")
                rotations.add_metric([cluster, cert, outcome], float(value))
            elif kind == "duration_count":
                outcomes.add(rest)
        yield rotations
        duration = HistogramMetricFamily("rotation_rotation_duration_seconds", "Rotation duration by outcome",
                                         labels=["outcome"])
        for outcome in sorted(outcomes):
            buckets = [(("+Inf" if b == float("inf") else str(b)),
                        float(stats.get(f"duration_bucket|{outcome}|{b}", 0))) for b in DURATION_BUCKETS]
            duration.add_metric([outcome], buckets, float(stats.get(f"duration_sum|{outcome}", 0)))
        yield duration


def registry_for(store: ServiceState, clock: Clock = SYSTEM_CLOCK) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(store, clock))
    return registry


class _Handler(DeadlineHandler, WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - a scrape is not news
        pass


class _Server(CappedServer, WSGIServer):
    daemon_threads = True


def serve_metrics(port: int, address: str, registry: CollectorRegistry) -> WSGIServer:
    """``/metrics`` on ``address:port`` in a thread of its own: prometheus_client's ``start_http_server``,
    each connection bounded (``bounded_server``: its server has no timeout at all)."""
    family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type("MetricsServer", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(address, port, make_wsgi_app(registry), server_class, handler_class=_Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
