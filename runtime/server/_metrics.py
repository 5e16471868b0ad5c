"""Prometheus metrics, in a registry of their own per app (no global state for tests to reset)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Everything /metrics shows. Names are prefixed ``embedrt_``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "embedrt_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=r,
        )
        self.errors = Counter(
            "embedrt_request_errors",
            "HTTP requests answered with an error, by endpoint and error kind",
            ["endpoint", "kind"],
            registry=r,
        )
        self.latency = Histogram(
            "embedrt_request_duration_seconds",
            "Time from request to response, by endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # counted once tokenized: a request refused afterwards (queue full, timeout) is included
        self.inputs = Counter("embedrt_inputs", "Texts accepted and tokenized", registry=r)
        self.tokens = Counter("embedrt_tokens", "Tokens accepted (after truncation)", registry=r)
        self.cache_hits = Counter(
            "embedrt_cache_hits", "Inputs answered from the cache (--cache-mb), without a model run", registry=r
        )
        self.cache_bytes = Gauge("embedrt_cache_bytes", "Bytes the cache holds (--cache-mb), as it counts them", registry=r)
        self.cache_entries = Gauge("embedrt_cache_entries", "Inputs the cache holds (--cache-mb)", registry=r)
        self.abandoned = Counter(
            "embedrt_abandoned_inputs",
            "Texts not run because their request timed out or its client left before their turn",
            registry=r,
        )
        self.truncated = Counter(
            "embedrt_truncated_inputs", "Texts cut to the model's max_seq_length", registry=r
        )
        self.queue_depth = Gauge("embedrt_queue_depth", "Requests waiting for the model", registry=r)
        self.queue_wait = Histogram(
            "embedrt_queue_wait_seconds",
            "Time a request waited before its model batch started",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "embedrt_queue_rejected", "Requests refused because the queue was full", registry=r
        )
        self.batch_requests = Histogram(
            "embedrt_batch_requests",
            "Requests merged into one model batch",
            buckets=_COUNT_BUCKETS,
            registry=r,
        )
        self.batch_inputs = Histogram(
            "embedrt_batch_inputs", "Texts in one model batch", buckets=_COUNT_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "embedrt_batch_tokens", "Tokens in one model batch", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "embedrt_inference_duration_seconds",
            "Model time of one merged batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("embedrt_requests_in_flight", "HTTP requests being handled", registry=r)
        self.ready = Gauge(
            "embedrt_ready", "1 once the model is loaded and warmed, 0 while draining", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
