"""Prometheus metrics of one server (its own registry, so several apps in one process do not collide).

Requests by endpoint and status, request latency and time to first token (histograms), prompt and completion
tokens, requests in progress; and, read from the engine when scraped, its queue depth and batch size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0)


class _EngineCollector(Collector):
    """Gauges read at scrape time from ``engine.stats()`` (queue depth, active rows = batch size, ...)."""

    def __init__(self, stats: Callable[[], dict[str, Any] | None]):
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats() or {}
        docs = {"queue_depth": "requests waiting for a batch slot",
                "active": "requests decoding in the current batch (the batch size)",
                "max_batch_size": "the engine's batch size limit",
                "tokens_in_flight": "prompt + generated tokens held in the KV cache"}
        for key, value in sorted(stats.items()):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            name = "lav2_engine_batch_size" if key == "active" else f"lav2_engine_{key}"
            yield GaugeMetricFamily(name, docs.get(key, f"engine statistic {key}"), value=float(value))


class ServerMetrics:
    def __init__(self, engine_stats: Callable[[], dict[str, Any] | None]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lav2_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("lav2_request_duration_seconds", "request latency (until the last byte)",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("lav2_time_to_first_token_seconds", "time from request to its first generated text",
                              ["endpoint"], buckets=_TTFT_BUCKETS, registry=r)
        self.prompt_tokens = Counter("lav2_prompt_tokens", "prompt tokens processed", registry=r)
        self.completion_tokens = Counter("lav2_completion_tokens", "tokens generated", registry=r)
        self.in_progress = Gauge("lav2_requests_in_progress", "requests admitted and not yet answered", registry=r)
        self.rejected = Counter("lav2_requests_rejected", "requests refused because the server was full (429)",
                                registry=r)
        self.model_ready = Gauge("lav2_model_ready", "1 once the model is loaded", registry=r)
        r.register(_EngineCollector(engine_stats))

    def tokens(self, prompt: int, completion: int) -> None:
        self.prompt_tokens.inc(max(0, int(prompt)))
        self.completion_tokens.inc(max(0, int(completion)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
