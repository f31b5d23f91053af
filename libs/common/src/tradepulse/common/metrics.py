"""Prometheus: one registry per process, served over HTTP on the service's metrics port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector


def new_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def serve_metrics(registry: CollectorRegistry, port: int) -> int:
    """Serve /metrics on every interface at `port` (0 = off), for Prometheus to scrape."""
    if port <= 0:
        return 0
    start_http_server(port, addr="0.0.0.0", registry=registry)
    return port
