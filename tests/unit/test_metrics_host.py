"""Where the services' /metrics listen: loopback unless METRICS_HOST opens them."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

CHILD = """
import sys, time
from tradepulse.common.metrics import new_registry, serve_metrics
serve_metrics(new_registry(), int(sys.argv[1]))
print("up", flush=True)
time.sleep(60)
"""


def _outside_address() -> str:
    """This host's address on its first non-loopback interface."""
    try:
        listing = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "scope", "global"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot list this host's addresses (no `ip`)")
    for line in listing.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    pytest.skip("no non-loopback interface")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(("setting", "outside"), [(None, False), ("0.0.0.0", True)])
def test_metrics_listen_on_loopback_unless_opened(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, outside: bool
) -> None:
    address = _outside_address()
    if setting is None:
        monkeypatch.delenv("METRICS_HOST", raising=False)
    else:
        monkeypatch.setenv("METRICS_HOST", setting)
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "up"
        assert _reachable("127.0.0.1", port)
        assert _reachable(address, port) is outside
    finally:
        child.kill()
        child.wait()


def test_a_metrics_host_that_is_not_an_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tradepulse.common.metrics import metrics_host

    monkeypatch.setenv("METRICS_HOST", "every-interface")
    with pytest.raises(ValueError, match="METRICS_HOST='every-interface' is not an IP address"):
        metrics_host()
    monkeypatch.delenv("METRICS_HOST")
    assert metrics_host() == "127.0.0.1"
