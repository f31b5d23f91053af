"""What a fingerprint depends on besides its inputs: the core's rules and the numeric stack."""

from __future__ import annotations

import hashlib
import importlib.metadata
from importlib import resources
from importlib.resources.abc import Traversable


def _source_digest() -> str:
    digest = hashlib.sha256()

    def walk(node: Traversable, prefix: str) -> None:
        for entry in sorted(node.iterdir(), key=lambda e: e.name):
            if entry.is_dir() and entry.name != "__pycache__":
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".py"):
                digest.update(f"{prefix}{entry.name}".encode())
                digest.update(entry.read_bytes())

    walk(resources.files("tradepulse.quant"), "")
    return digest.hexdigest()[:12]


def code_version() -> str:
    """The code a backtest result comes from, e.g.
    "tradepulse-quant 0.1.0+3f2a9c1d4e5b numpy 2.1.3 numba 0.61.0": the core's version with a
    hash of its sources (any change to the rules shows), and the versions of numpy and numba
    (which compute the floats that fingerprints hash; the lock file pins them)."""
    version = importlib.metadata.version
    return (
        f"tradepulse-quant {version('tradepulse-quant')}+{_source_digest()} "
        f"numpy {version('numpy')} numba {version('numba')}"
    )
