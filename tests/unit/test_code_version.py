"""The code version a configuration records names everything its fingerprint depends on."""

from __future__ import annotations

import importlib.metadata
import re

import numba
import numpy as np

from tradepulse.quant import code_version


def test_the_code_version_names_the_core_its_sources_numpy_and_numba() -> None:
    version = code_version()
    core = importlib.metadata.version("tradepulse-quant")
    assert re.fullmatch(
        rf"tradepulse-quant {re.escape(core)}\+[0-9a-f]{{12}} "
        rf"numpy {re.escape(np.__version__)} numba {re.escape(numba.__version__)}",
        version,
    ), version
    assert code_version() == version, "the same code gives the same version"
