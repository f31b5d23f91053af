"""`tradepulse backtest`: one or many parameter sets over a candle file, as a table or JSON."""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradepulse.cli.errors import UserError

if TYPE_CHECKING:
    from tradepulse.quant import BacktestResult


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "backtest",
        help="backtest parameter sets over a candle file",
        description="Backtest one parameter set (a JSON object) or many (a JSON list) over a "
        "CSV/Parquet candle file. Bar numbers are row numbers of the whole file.",
    )
    p.add_argument("--data", required=True, help="candle file: .csv, .csv.gz or .parquet")
    p.add_argument(
        "--params", required=True, help="JSON object or list of objects, or a file holding one"
    )
    p.add_argument("--settings", help="backtest settings as JSON or a file (fees, slippage, ...)")
    p.add_argument("--strategy", default="LIQUIDITY_SWEEP", help="strategy name")
    p.add_argument(
        "--regime",
        default="any",
        choices=("any", "bull", "bear", "sideways"),
        help="trade only in this regime",
    )
    p.add_argument("--timeframe", help="candle timeframe, e.g. 5m (default: detected)")
    p.add_argument("--last", type=int, metavar="N", help="trade only the last N candles")
    p.add_argument(
        "--from-bar",
        type=int,
        metavar="A",
        help="trade bars A..B-1 of the file (row numbers from 0), with the warm-up before A: "
        "e.g. a walk-forward fold's span (its first_bar, last_bar + 1)",
    )
    p.add_argument(
        "--to-bar", type=int, metavar="B", help="with --from-bar: the first bar not traded"
    )
    p.add_argument(
        "--warmup",
        type=int,
        metavar="W",
        help="bars before the window for indicators (default: the strategy's, 2316 for 5m)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (one line per parameter set)")
    p.add_argument(
        "--no-trades",
        action="store_true",
        help="leave the trades out (the metrics and the fingerprint stay): a lean line per set",
    )
    p.set_defaults(run=run)


def _json_arg(text: str, what: str) -> Any:
    """A JSON literal, or the path of a file that holds one."""
    stripped = text.strip()
    if stripped[:1] not in ("{", "["):
        path = Path(text)
        if not path.is_file():
            raise UserError(f"--{what}: {text!r} is neither JSON nor a readable file")
        try:
            stripped = path.read_text()
        except OSError as exc:
            raise UserError(f"--{what}: cannot read {text!r}: {exc.strerror}") from exc
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"--{what}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc


def encode_json(result: BacktestResult, *, trades: bool = True) -> bytes:
    """One `--json` line, newline included, by orjson at a tenth of `json.dumps`'s cost. Its
    floats are the shortest that round-trip, as `json.dumps` writes them; only the spelling
    differs (`0.00001` for `1e-05`, no space after `:` and `,`), never a parsed value.

    orjson writes NaN and infinities as null; the only floats that can overflow are the
    trades' (the metrics' non-finite figures are already null), so they are checked first.
    """
    import numpy as np
    import orjson

    if trades and not np.isfinite(result.trade_floats).all():
        raise UserError(
            "the result holds a non-finite number (overflow): use smaller parameters or settings"
        )
    return orjson.dumps(result.to_dict(trades=trades), option=orjson.OPT_APPEND_NEWLINE)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for the next allocation rather than return it at once.

    Each backtest allocates its equity curve (8 bytes a bar: 2.5 MB for the BTC file) and
    frees it before the next. Once a batch had written a few results' trades, glibc's adaptive
    thresholds gave the freed top of the heap back to the OS every time, and every following
    backtest faulted its 600 pages in again: 0.6-0.8 ms a set, half of the backtest. Other C
    libraries (musl, macOS) have no mallopt, and nothing is changed there.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        mallopt(_M_TRIM_THRESHOLD, 256 << 20)


def run(args: argparse.Namespace) -> int:
    # Imported here: numba's start-up is paid only by commands that backtest.
    from tradepulse.quant import (
        BacktestSettings,
        QuantError,
        get_strategy,
        last_window,
        load_candles,
        parse_timeframe,
        run_backtest,
    )
    from tradepulse.quant.candles import detect_timeframe, format_timeframe

    try:
        strategy = get_strategy(args.strategy)
        raw_params = _json_arg(args.params, "params")
        batch = isinstance(raw_params, list)
        param_sets = raw_params if batch else [raw_params]
        if not param_sets:
            raise UserError("--params: the list of parameter sets is empty")
        parsed = []
        for i, values in enumerate(param_sets):
            try:
                parsed.append(strategy.parse_params(values))
            except QuantError as exc:
                where = f"--params[{i}]" if batch else "--params"
                raise UserError(f"{where}: {exc}") from exc
        settings_raw = _json_arg(args.settings, "settings") if args.settings else {}
        try:
            settings = BacktestSettings.from_mapping(settings_raw)
        except QuantError as exc:
            raise UserError(f"--settings: {exc}") from exc
        timeframe = parse_timeframe(args.timeframe) if args.timeframe else None
        history = load_candles(args.data, timeframe_seconds=timeframe)
        if timeframe is not None and len(history) > 1:
            spacing = detect_timeframe(history.open_time, source=args.data)
            if spacing != timeframe:
                # On-grid but wrong (1m for 5m candles) would scale every annualised figure.
                raise UserError(
                    f"--timeframe {args.timeframe}: the candles in {args.data} are mostly "
                    f"{format_timeframe(spacing)} apart"
                )
        if args.from_bar is not None or args.to_bar is not None:
            candles, trade_from = bar_span(history, args, strategy)
        elif args.last is not None:
            warmup = (
                args.warmup
                if args.warmup is not None
                else strategy.warmup_bars(history.timeframe_seconds)
            )
            window = last_window(history, args.last, warmup)
            candles, trade_from = window.candles, window.trade_from
        else:
            if args.warmup is not None:
                raise UserError("--warmup needs --last or --from-bar")
            candles, trade_from = history, 0
        prepared = strategy.prepare(candles, parsed)
        keep_freed_memory()
        for params in parsed:
            result = run_backtest(
                candles,
                strategy,
                params,
                settings,
                regime=args.regime,
                trade_from=trade_from,
                prepared=prepared,
            )
            if args.json:
                sys.stdout.write(encode_json(result, trades=not args.no_trades).decode())
            else:
                table = format_table(
                    result, strategy.params_to_dict(params), trades=not args.no_trades
                )
                sys.stdout.write(table + "\n")
    except QuantError as exc:
        raise UserError(str(exc)) from exc
    return 0


def bar_span(history: Any, args: argparse.Namespace, strategy: Any) -> tuple[Any, int]:
    """The candles and trade_from of `--from-bar A --to-bar B`: bars [A, B) traded, preceded
    by up to the warm-up bars (fewer where the file starts later), as a walk-forward fold's
    training trials see them (validation spec section 3)."""
    if args.last is not None:
        raise UserError("give --last or --from-bar/--to-bar, not both")
    if args.from_bar is None or args.to_bar is None:
        raise UserError("--from-bar and --to-bar go together")
    first, stop = args.from_bar, args.to_bar
    if not 0 <= first < stop <= len(history):
        raise UserError(
            f"--from-bar {first} --to-bar {stop}: need 0 <= A < B <= {len(history)} "
            f"(the file's rows)"
        )
    warmup = (
        args.warmup if args.warmup is not None else strategy.warmup_bars(history.timeframe_seconds)
    )
    if warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {warmup}")
    begin = max(0, first - warmup)
    return history.slice(begin, stop), first - begin


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.4f}"


def format_table(
    result: BacktestResult, params: dict[str, float | int], *, trades: bool = True
) -> str:
    lines = ["parameters"]
    lines += [f"  {k:<26} {v}" for k, v in params.items()]
    lines.append("metrics")
    lines += [f"  {k:<26} {_fmt(v):>18}" for k, v in result.metrics.items()]
    lines.append(f"  {'ambiguous_exits':<26} {result.ambiguous_exits:>18,}")
    lines.append(f"  {'fingerprint':<26} {result.fingerprint}")
    shown = result.trades if trades else ()
    if shown:
        lines.append(f"trades (first 10 of {len(shown)})" if len(shown) > 10 else "trades")
        header = f"  {'side':<6}{'signal':>9}{'entry':>9}{'exit':>9}{'fill':>14}{'exit px':>14}{'reason':>13}{'net pnl':>14}"
        lines.append(header)
        for t in shown[:10]:
            lines.append(
                f"  {t.side:<6}{t.signal_bar:>9}{t.entry_bar:>9}{t.exit_bar:>9}"
                f"{t.fill_price:>14.2f}{t.exit_price:>14.2f}{t.exit_reason:>13}{t.net_pnl:>14.2f}"
            )
    return "\n".join(lines)
