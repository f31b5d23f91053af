"""Black-box tests of `tradepulse backtest`, in process through `main(argv)` and once through
the installed console script, the way a user calls it.

The reference for every output is the library itself (`run_backtest` on the same window), so
"the same" means the same bits: floats are compared through `float.hex`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradepulse.cli.backtest import encode_json
from tradepulse.cli.errors import UserError
from tradepulse.cli.main import COMMANDS, build_parser, main
from tradepulse.quant import (
    METRIC_NAMES,
    BacktestResult,
    BacktestSettings,
    Candles,
    Regime,
    Strategy,
    get_strategy,
    last_window,
    load_candles,
    run_backtest,
)

# Trades on the 6,000-row excerpt (156 of them, long and short).
PARAMS: dict[str, Any] = {
    "key_level_lookback": 50,
    "min_level_touches": 2,
    "pierce_depth": 0.0005,
    "volume_spike_threshold": 1.0,
    "reversal_candles": 3,
    "min_distance_from_level": 0.0,
    "atr_multiplier_sl": 1.5,
    "risk_reward_ratio": 2.0,
    "max_holding_periods": 50,
}
# Also trades, differently.
PARAMS_B: dict[str, Any] = {**PARAMS, "key_level_lookback": 100, "min_level_touches": 3}
# No trade at all: profit_factor, sortino_ratio and calmar_ratio are null.
PARAMS_NONE: dict[str, Any] = {**PARAMS, "volume_spike_threshold": 100.0}

RESULT_KEYS = {"metrics", "trades", "fingerprint", "ambiguous_exits"}
DEFAULT_WARMUP_5M = 2316

CONSOLE_SCRIPT = Path(sys.prefix) / "bin" / "tradepulse"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in process: (exit code, stdout, stderr). argparse errors exit via SystemExit."""
    code: int | str | None
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert isinstance(code, int)
    out, err = capsys.readouterr()
    return code, out, err


def _backtest(data: Path, params: Any, *extra: str) -> list[str]:
    return ["backtest", "--data", str(data), "--params", json.dumps(params), *extra]


def _bits(value: Any) -> Any:
    """A comparable form that tells 1 from 1.0, -0.0 from 0.0 and keeps every float bit."""
    if isinstance(value, dict):
        return {k: _bits(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bits(v) for v in value]
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return (type(value).__name__, value)
    raise TypeError(f"unexpected {type(value).__name__} in a result: {value!r}")


@pytest.fixture(scope="module")
def history(candles_excerpt: Path) -> Candles:
    return load_candles(candles_excerpt)


@pytest.fixture(scope="module")
def strategy() -> Strategy[Any, Any]:
    return get_strategy("LIQUIDITY_SWEEP")


def _library(
    candles: Candles,
    strategy: Strategy[Any, Any],
    params: dict[str, Any],
    *,
    settings: BacktestSettings | None = None,
    regime: Regime = "any",
    trade_from: int = 0,
) -> BacktestResult:
    return run_backtest(candles, strategy, params, settings, regime=regime, trade_from=trade_from)


@pytest.fixture(scope="module")
def reference(history: Candles, strategy: Strategy[Any, Any]) -> BacktestResult:
    result = _library(history, strategy, PARAMS)
    assert len(result.trades) > 10  # the parameters must exercise the trade paths
    return result


def _one_json_line(out: str) -> dict[str, Any]:
    lines = out.splitlines()
    assert len(lines) == 1, out[:500]
    assert out.endswith("\n")
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


# --- output ------------------------------------------------------------------------------------


def test_table_output(
    candles_excerpt: Path, reference: BacktestResult, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(_backtest(candles_excerpt, PARAMS), capsys)
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "parameters"
    for name, value in PARAMS.items():
        assert f"  {name:<26} {value}" in lines
    assert "metrics" in lines
    trades = reference.trades
    assert f"  {'total_trades':<26} {len(trades):>18,}" in lines
    assert f"  {'ambiguous_exits':<26} {reference.ambiguous_exits:>18,}" in lines
    assert f"  {'fingerprint':<26} {reference.fingerprint}" in lines
    start = lines.index(f"trades (first 10 of {len(trades)})")
    rows = lines[start + 2 :]
    assert len(rows) == 10
    for row, trade in zip(rows, trades, strict=False):
        fields = row.split()
        assert fields[:4] == [
            trade.side,
            str(trade.signal_bar),
            str(trade.entry_bar),
            str(trade.exit_bar),
        ]
        assert fields[6] == trade.exit_reason


def test_json_is_one_object_equal_to_the_library(
    candles_excerpt: Path, reference: BacktestResult, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(_backtest(candles_excerpt, PARAMS, "--json"), capsys)
    assert (code, err) == (0, "")
    obj = _one_json_line(out)
    assert set(obj) == RESULT_KEYS
    assert len(obj["trades"]) == len(reference.trades) > 0
    assert obj["metrics"]["total_trades"] == len(obj["trades"])
    assert obj["fingerprint"] == reference.fingerprint
    assert _bits(obj) == _bits(reference.to_dict())  # floats round-trip exactly


def test_json_writes_nulls_as_null(
    candles_excerpt: Path,
    history: Candles,
    strategy: Strategy[Any, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(_backtest(candles_excerpt, PARAMS_NONE, "--json"), capsys)
    assert code == 0
    obj = _one_json_line(out)
    assert obj["trades"] == []
    assert obj["metrics"]["profit_factor"] is None
    assert '"profit_factor":null' in out
    assert "NaN" not in out
    assert "Infinity" not in out
    assert _bits(obj) == _bits(_library(history, strategy, PARAMS_NONE).to_dict())


def test_trade_dicts_are_the_trades_as_dicts(reference: BacktestResult) -> None:
    # Built from the columns without Trade objects, for --json's speed; same keys, order,
    # values and types.
    assert _bits(reference.trade_dicts()) == _bits([t.to_dict() for t in reference.trades])
    assert [list(d) for d in reference.trade_dicts()] == [
        list(t.to_dict()) for t in reference.trades
    ]


def _edge_result(floats: list[float]) -> BacktestResult:
    """A one-trade result whose nine trade floats are `floats`, for the encoder alone."""
    times = np.arange(3, dtype=np.int64) * 300_000 + 1_640_995_200_000
    return BacktestResult(
        trade_ints=np.array([[1, 0, 1, 2, 0]], dtype=np.int64),
        trade_floats=np.array([floats], dtype=np.float64),
        open_time=times,
        first_row=7,
        equity=np.array([1.0, 2.0, 3.0]),
        metrics={
            name: None if name == "profit_factor" else 1 if name == "total_trades" else 5e-324
            for name in METRIC_NAMES
        },
        ambiguous_exits=0,
    )


EDGE_FLOATS = [5e-324, -0.0, 1e-7, 0.00001, 1e16, 2.0**63, 1.7976931348623157e308, 0.1, 1 / 3]


def test_json_encoding_parses_back_to_the_same_float64_values(reference: BacktestResult) -> None:
    # orjson in place of json.dumps: the text may spell a float differently (0.00001 for
    # 1e-05, no spaces), the parsed values never differ, to the bit and the type.
    for result in (reference, _edge_result(EDGE_FLOATS)):
        old = json.dumps(result.to_dict(), allow_nan=False)
        new = encode_json(result)
        assert new.endswith(b"\n")
        assert new.count(b"\n") == 1
        assert _bits(json.loads(new)) == _bits(json.loads(old)) == _bits(result.to_dict())
    edge = json.loads(encode_json(_edge_result(EDGE_FLOATS)))["trades"][0]
    assert [edge[k] for k in list(edge)[7:13] + list(edge)[14:]] == EDGE_FLOATS
    assert math.copysign(1.0, edge["fill_price"]) == -1.0  # -0.0 stays negative


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_json_refuses_a_non_finite_trade_figure(bad: float) -> None:
    # orjson would write null, which would pass for one of the spec's nulls.
    with pytest.raises(UserError, match="non-finite number"):
        encode_json(_edge_result([bad, *EDGE_FLOATS[1:]]))
    assert json.loads(encode_json(_edge_result([bad, *EDGE_FLOATS[1:]]), trades=False))


def test_no_trades_leaves_out_only_the_trades(
    candles_excerpt: Path, reference: BacktestResult, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = [PARAMS, PARAMS_B]
    code, lean, err = _run(_backtest(candles_excerpt, batch, "--json", "--no-trades"), capsys)
    assert (code, err) == (0, "")
    _, full, _ = _run(_backtest(candles_excerpt, batch, "--json"), capsys)
    lines = lean.splitlines()
    assert len(lines) == 2
    for lean_line, full_line in zip(lines, full.splitlines(), strict=True):
        whole = json.loads(full_line)
        del whole["trades"]
        assert _bits(json.loads(lean_line)) == _bits(whole)
    assert list(json.loads(lines[0])) == ["metrics", "fingerprint", "ambiguous_exits"]
    assert json.loads(lines[0])["fingerprint"] == reference.fingerprint
    code, table, _ = _run(_backtest(candles_excerpt, PARAMS, "--no-trades"), capsys)
    assert code == 0
    assert f"  {'fingerprint':<26} {reference.fingerprint}" in table
    assert "trades (first" not in table
    assert " stop_loss " not in table
    assert " take_profit " not in table


def test_json_list_gives_json_lines_in_order(
    candles_excerpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = [PARAMS, PARAMS_NONE, PARAMS_B]
    code, out, err = _run(_backtest(candles_excerpt, batch, "--json"), capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 3
    for params, line in zip(batch, lines, strict=True):
        _, single, _ = _run(_backtest(candles_excerpt, params, "--json"), capsys)
        assert line + "\n" == single
    assert len({json.loads(x)["fingerprint"] for x in lines}) == 3


def test_params_and_settings_from_files(
    candles_excerpt: Path,
    history: Candles,
    strategy: Strategy[Any, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = {"initial_capital": 5000, "fee_rate": 0.0, "slippage": 0.0}
    (tmp_path / "params.json").write_text(json.dumps(PARAMS, indent=2))
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    argv = ["backtest", "--data", str(candles_excerpt), "--json"]
    code, from_files, err = _run(
        [
            *argv,
            "--params",
            str(tmp_path / "params.json"),
            "--settings",
            str(tmp_path / "settings.json"),
        ],
        capsys,
    )
    assert (code, err) == (0, "")
    _, inline, _ = _run(
        [*argv, "--params", json.dumps(PARAMS), "--settings", json.dumps(settings)], capsys
    )
    assert from_files == inline
    expected = _library(history, strategy, PARAMS, settings=BacktestSettings(**settings))
    assert _bits(_one_json_line(from_files)) == _bits(expected.to_dict())


def test_settings_change_the_result(
    candles_excerpt: Path, reference: BacktestResult, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _backtest(candles_excerpt, PARAMS, "--json", "--settings", '{"fee_rate": 0.002}')
    code, out, _ = _run(argv, capsys)
    assert code == 0
    assert _one_json_line(out)["fingerprint"] != reference.fingerprint


def test_regime(
    candles_excerpt: Path,
    history: Candles,
    strategy: Strategy[Any, Any],
    reference: BacktestResult,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(_backtest(candles_excerpt, PARAMS, "--json", "--regime", "bear"), capsys)
    assert code == 0
    obj = _one_json_line(out)
    expected = _library(history, strategy, PARAMS, regime="bear")
    assert 0 < len(expected.trades) < len(reference.trades)
    assert _bits(obj) == _bits(expected.to_dict())


# --- windows: --last and --warmup --------------------------------------------------------------


def _window_result(
    history: Candles, strategy: Strategy[Any, Any], last: int, warmup: int
) -> BacktestResult:
    w = last_window(history, last, warmup)
    return _library(w.candles, strategy, PARAMS, trade_from=w.trade_from)


def test_last_uses_the_default_warmup_and_whole_file_rows(
    candles_excerpt: Path,
    history: Candles,
    strategy: Strategy[Any, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert strategy.warmup_bars(history.timeframe_seconds) == DEFAULT_WARMUP_5M
    code, out, _ = _run(_backtest(candles_excerpt, PARAMS, "--json", "--last", "2000"), capsys)
    assert code == 0
    obj = _one_json_line(out)
    expected = _window_result(history, strategy, 2000, DEFAULT_WARMUP_5M)
    assert len(expected.trades) > 0
    assert _bits(obj) == _bits(expected.to_dict())
    for trade in obj["trades"]:
        assert trade["signal_bar"] >= len(history) - 2000
        for kind in ("signal", "entry", "exit"):
            # bar numbers are rows of the whole file, not of the window
            assert history.open_time[trade[f"{kind}_bar"]] == trade[f"{kind}_time"]


def test_warmup_changes_the_window(
    candles_excerpt: Path,
    history: Candles,
    strategy: Strategy[Any, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = _backtest(candles_excerpt, PARAMS, "--json", "--last", "2000", "--warmup", "0")
    code, out, _ = _run(argv, capsys)
    assert code == 0
    obj = _one_json_line(out)
    assert _bits(obj) == _bits(_window_result(history, strategy, 2000, 0).to_dict())
    default = _window_result(history, strategy, 2000, DEFAULT_WARMUP_5M)
    assert obj["fingerprint"] != default.fingerprint


def test_last_with_warmup_clamped_at_the_file_start(
    candles_excerpt: Path,
    history: Candles,
    strategy: Strategy[Any, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(_backtest(candles_excerpt, PARAMS, "--json", "--last", "5000"), capsys)
    assert code == 0
    expected = _window_result(history, strategy, 5000, DEFAULT_WARMUP_5M)
    assert _bits(_one_json_line(out)) == _bits(expected.to_dict())


# --- bad input: exit 2, one line on stderr, no traceback ---------------------------------------


def _without(name: str) -> dict[str, Any]:
    return {k: v for k, v in PARAMS.items() if k != name}


P = json.dumps(PARAMS)
BAD_INPUT = [
    pytest.param(["--data", "{nofile}", "--params", P], r"nowhere\.csv: no such file", id="missing file"),
    pytest.param(["--data", "{bad}", "--params", P], r"bad\.csv, line 5: high is not a number", id="bad csv row"),
    pytest.param(["--data", "{data}", "--params", json.dumps({**PARAMS, "foo": 1})], r"--params: foo: unknown parameter", id="unknown parameter"),
    pytest.param(["--data", "{data}", "--params", json.dumps({**PARAMS, "key_level_lookback": "100"})], r"key_level_lookback: must be an integer, got '100'", id="string for int"),
    pytest.param(["--data", "{data}", "--params", json.dumps({**PARAMS, "max_holding_periods": 1.5})], r"max_holding_periods: must be an integer, got 1\.5", id="float for int"),
    pytest.param(["--data", "{data}", "--params", json.dumps({**PARAMS, "pierce_depth": "0.001"})], r"pierce_depth: must be a number", id="string for float"),
    pytest.param(["--data", "{data}", "--params", json.dumps({**PARAMS, "key_level_lookback": -5})], r"key_level_lookback: must be between 1 and \d+, got -5", id="negative lookback"),
    pytest.param(["--data", "{data}", "--params", json.dumps(_without("max_holding_periods"))], r"max_holding_periods: missing", id="missing parameter"),
    pytest.param(["--data", "{data}", "--params", P[:-1]], r"--params: invalid JSON at line 1", id="malformed json"),
    pytest.param(["--data", "{data}", "--params", "{data}"], r"--params: invalid JSON", id="params file not json"),
    pytest.param(["--data", "{data}", "--params", "lookback=50"], r"neither JSON nor a readable file", id="params neither"),
    pytest.param(["--data", "{data}", "--params", json.dumps([PARAMS, {**PARAMS, "foo": 1}])], r"--params\[1\]: foo: unknown parameter", id="bad item in list"),
    pytest.param(["--data", "{data}", "--params", "[]"], r"the list of parameter sets is empty", id="empty list"),
    pytest.param(["--data", "{data}", "--params", P, "--settings", '{"fee": 0.1}'], r"--settings: fee: unknown setting", id="unknown setting"),
    pytest.param(["--data", "{data}", "--params", P, "--settings", '{"fee_rate": -0.1}'], r"--settings: fee_rate: must be a number between 0 and ", id="negative setting"),
    pytest.param(["--data", "{data}", "--params", P, "--regime", "up"], r"invalid choice: 'up'", id="bad regime"),
    pytest.param(["--data", "{data}", "--params", P, "--strategy", "NOPE"], r"unknown strategy 'NOPE'", id="unknown strategy"),
    pytest.param(["--data", "{data}", "--params", P, "--timeframe", "1h"], r"line 3: .* not on the 1h grid", id="timeframe off grid"),
    pytest.param(["--data", "{data}", "--params", P, "--timeframe", "5x"], r"unknown timeframe '5x'", id="bad timeframe"),
    pytest.param(["--data", "{data}", "--params", P, "--last", "0"], r"at least 1 candle", id="last zero"),
    pytest.param(["--data", "{data}", "--params", P, "--last", "6001"], r"history has only 6000", id="last too long"),
    pytest.param(["--data", "{data}", "--params", P, "--last", "10", "--warmup", "-1"], r"warm-up must be >= 0", id="negative warmup"),
    pytest.param(["--data", "{data}", "--params", P, "--warmup", "10"], r"--warmup needs --last", id="warmup without last"),
    pytest.param(["--params", P], r"required: --data", id="no data"),
]  # fmt: skip


@pytest.fixture(scope="module")
def bad_csv(candles_excerpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten rows of the excerpt with line 5 (the 4th candle) broken."""
    lines = candles_excerpt.read_text().splitlines()[:11]
    fields = lines[4].split(",")
    fields[2] = "abc"
    lines[4] = ",".join(fields)
    path = tmp_path_factory.mktemp("bad") / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_exits_2_with_one_line(
    args: list[str],
    message: str,
    candles_excerpt: Path,
    bad_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    places = {"{data}": candles_excerpt, "{bad}": bad_csv, "{nofile}": tmp_path / "nowhere.csv"}
    argv = ["backtest", *(str(places.get(a, a)) for a in args)]
    code, out, err = _run(argv, capsys)
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.endswith("\n")
    assert err.startswith("tradepulse backtest")
    assert "Traceback" not in err
    assert re.search(message, err), err


@pytest.mark.parametrize("name", ["key_level_lookback", "min_level_touches", "max_holding_periods"])
def test_integer_parameter_beyond_int64_is_refused(
    name: str, candles_excerpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(_backtest(candles_excerpt, {**PARAMS, name: 10**23}), capsys)
    assert code == 2
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["--params", json.dumps({**PARAMS, "risk_reward_ratio": 1e308})], id="rr"),
        pytest.param(["--params", P, "--settings", '{"initial_capital": 1e308}'], id="capital"),
    ],
)
def test_huge_finite_values_do_not_crash_json(
    extra: list[str], candles_excerpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["backtest", "--data", str(candles_excerpt), "--json", *extra], capsys)
    assert code in (0, 2)
    if code == 0:
        json.loads(out)
    else:
        assert err.count("\n") == 1


# --- the installed console script --------------------------------------------------------------


@pytest.fixture(scope="module")
def console_script() -> Path:
    if not CONSOLE_SCRIPT.is_file():
        pytest.skip(f"console script not installed at {CONSOLE_SCRIPT}")
    return CONSOLE_SCRIPT


def test_console_script_json(
    console_script: Path,
    candles_excerpt: Path,
    reference: BacktestResult,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = _backtest(candles_excerpt, PARAMS, "--json")
    proc = subprocess.run(
        [str(console_script), *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    _, in_process, _ = _run(argv, capsys)
    assert proc.stdout == in_process
    assert _bits(_one_json_line(proc.stdout)) == _bits(reference.to_dict())


def test_timeframe_that_does_not_match_the_spacing_is_refused(
    candles_excerpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 5m candles called 1m sit on the 1m grid, but every annualised figure would be wrong.
    code, _, err = _run(_backtest(candles_excerpt, PARAMS, "--timeframe", "1m"), capsys)
    assert code == 2
    assert "--timeframe 1m: the candles in" in err
    assert "mostly 5m apart" in err


# --- start-up: each command imports only what it needs ------------------------------------------

STARTUP_PROBE = """
import json, sys
from tradepulse.cli.main import build_parser
build_parser(*sys.argv[1:])
heavy = ("httpx", "pydantic", "numba", "tradepulse.common.contracts", "tradepulse.quant")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


@pytest.mark.parametrize(
    ("command", "loaded"),
    [
        pytest.param([], ["httpx"], id="--help"),
        pytest.param(["backtest"], [], id="backtest"),
        pytest.param(["jobs"], ["httpx"], id="jobs"),
    ],
)
def test_a_command_loads_no_other_commands_imports(command: list[str], loaded: list[str]) -> None:
    # `backtest` pays for numba when it runs, never for the HTTP client or the contracts;
    # the client commands never for numba; `--help` for neither.
    proc = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE, *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(proc.stdout) == loaded


def test_the_command_table_names_every_command_in_help_order() -> None:
    [full] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(full.choices) == list(COMMANDS)
    for name in COMMANDS:
        [one] = [
            a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction)
        ]
        assert name in one.choices
