"""Prometheus: one registry per process, served over HTTP on the service's metrics port."""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
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


class _QuietHandler(WSGIRequestHandler):
    # Probes and scrapes every few seconds would otherwise fill stderr.
    def log_message(self, format: str, *args: Any) -> None:
        return None


def serve_metrics(registry: CollectorRegistry, port: int, host: str | None = None) -> int:
    """Serve /metrics and /health at `host` (default `metrics_host()`: loopback unless
    METRICS_HOST says otherwise) and `port` (0 = off).

    Services open the port once their database and streams are set up, so /health answering
    200 means "started and alive": the path for Kubernetes' and Compose's probes, which need
    no metrics rendered.
    """
    if port <= 0:
        return 0
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/health":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    server = make_server(
        host if host is not None else metrics_host(),
        port,
        app,
        ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return port
