"""The metrics port: /metrics for Prometheus, /health for the probes of Kubernetes and Compose."""

from __future__ import annotations

import socket
import urllib.request

from prometheus_client import Counter

from tradepulse.common.metrics import new_registry, serve_metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_metrics_port_serves_health_and_the_registrys_metrics() -> None:
    registry = new_registry()
    Counter("tp_test_things", "things", registry=registry).inc(3)
    port = serve_metrics(registry, _free_port())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
        assert answer.status == 200
        assert answer.read() == b"ok\n"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert "tp_test_things_total 3.0" in answer.read().decode()


def test_port_zero_serves_nothing() -> None:
    assert serve_metrics(new_registry(), 0) == 0
