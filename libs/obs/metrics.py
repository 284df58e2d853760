"""Prometheus instruments of one service (one registry per app, so tests can run many apps)."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"service": service}
        self.http_requests = Counter(
            "tsunagu_http_requests",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "tsunagu_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.outbox_pending = Gauge(
            "tsunagu_outbox_pending_events", "Outbox rows not yet published", registry=self.registry
        )
        self.outbox_oldest_age = Gauge(
            "tsunagu_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox row",
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "tsunagu_outbox_published_events", "Events published by the relay", registry=self.registry
        )
        self.consumer_events = Counter(
            "tsunagu_consumer_events",
            "Events seen by consumers",
            ["consumer", "outcome"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "tsunagu_consumer_lag_events",
            "Records between the consumer position and the high watermark",
            ["consumer", "topic", "partition"],
            registry=self.registry,
        )
        self.gc_pause = Histogram(
            "tsunagu_gc_pause_seconds",
            "Garbage collections by generation: each stops the event loop for its duration",
            ["generation"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )
        self.loop_lag = Histogram(
            "tsunagu_event_loop_lag_seconds",
            "How late the event loop ran a timer that was due (sampled every 0.1 s): time it was stuck",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )
        self.info = Gauge("tsunagu_service_info", "Service identity", ["service"], registry=self.registry)
        self.info.labels(**labels).set(1)

        # (method, route, status) → the two labelled children: prometheus_client's labels() locks
        # and checks the values on every call, twice per request otherwise.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request (by method, route template and status) and its latency."""
        children = self._request_children.get((method, route, status))
        if children is None:
            children = (
                self.http_requests.labels(method=method, route=route, status=str(status)),
                self.http_latency.labels(method=method, route=route),
            )
            self._request_children[method, route, status] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class GcPauses:
    """Times every garbage collection of the process (``gc.callbacks``) into ``gc_pause``: a
    collection stops the event loop, so long ones show up as tail latency. Installed for the
    life of an app (:meth:`install` / :meth:`remove`)."""

    def __init__(self, metrics: Metrics) -> None:
        self.children = [metrics.gc_pause.labels(str(generation)) for generation in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.children[info["generation"]].observe(time.perf_counter() - self._started)
            self._started = 0.0

    def install(self) -> None:
        gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


async def watch_event_loop(metrics: Metrics, stopping: asyncio.Event, interval_s: float = 0.1) -> None:
    """Until ``stopping``: sleep ``interval_s`` and record how much later than due the loop woke
    us (``loop_lag``). A long lag is the loop stuck in one step (a collection, a blocking call, a
    large synchronous computation): every request in flight waited that long."""
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        metrics.loop_lag.observe(max(0.0, loop.time() - due))
