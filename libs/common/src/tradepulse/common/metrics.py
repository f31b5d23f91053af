"""Prometheus: one registry per process, served over HTTP on the service's metrics port."""

from __future__ import annotations

import ipaddress
import os

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


METRICS_HOST_ENV = "METRICS_HOST"
DEFAULT_METRICS_HOST = "127.0.0.1"


def metrics_host() -> str:
    """The address metrics are served on: METRICS_HOST, else loopback only.

    Read from the environment here rather than from each service's settings, so that every
    process serving metrics (the skeleton's services, the gateway, the trainers) obeys the same
    one variable. Containers set METRICS_HOST=0.0.0.0 for Prometheus to reach them.
    """
    host = os.environ.get(METRICS_HOST_ENV, "").strip() or DEFAULT_METRICS_HOST
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{METRICS_HOST_ENV}={host!r} is not an IP address: use 127.0.0.1 (this host "
            "only), 0.0.0.0 (every interface) or one interface's address"
        ) from None
    return host


def serve_metrics(registry: CollectorRegistry, port: int, host: str | None = None) -> int:
    """Serve /metrics at `host` (default `metrics_host()`: loopback unless METRICS_HOST says
    otherwise) and `port` (0 = off), for Prometheus to scrape."""
    if port <= 0:
        return 0
    start_http_server(port, addr=host if host is not None else metrics_host(), registry=registry)
    return port
