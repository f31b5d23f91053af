"""The gateway's Prometheus metrics: requests by route, commands, NATS and live streams."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tradepulse.common.metrics import new_registry


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or new_registry()
        self.requests = Counter(
            "tradepulse_gateway_http_requests_total",
            "HTTP requests answered, by route template, method and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tradepulse_gateway_http_request_duration_seconds",
            "Time to answer an HTTP request (to the first byte of a live stream)",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.commands = Counter(
            "tradepulse_gateway_commands_total",
            "Commands published to JetStream, by kind and outcome (accepted, refused)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        # Every command and outcome at 0 from the start, so that the first refusal is a rate.
        for kind in ("training", "ingest"):
            for outcome in ("accepted", "refused"):
                self.commands.labels(kind, outcome)
        self.nats_connected = Gauge(
            "tradepulse_gateway_nats_connected",
            "1 while the gateway's NATS connection is up",
            registry=self.registry,
        )
        self.live_streams = Gauge(
            "tradepulse_gateway_live_streams",
            "Server-sent event streams open",
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "tradepulse_gateway_auth_failures_total",
            "Requests refused for a missing or wrong API key",
            registry=self.registry,
        )
