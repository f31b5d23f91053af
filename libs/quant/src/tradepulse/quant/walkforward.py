"""Walk-forward (validation spec section 3): layout, fold windows, seeds, stitching, ratios.

Index conventions: every bar number here is a row of "the history", the job's loaded candles
(its window and up to `warmup_bars` bars before it, LS section 8), 0-based; the job trades from
`trade_from = s`, so the window is bars `s..n-1`. Spans are half-open `[start, stop)`.

Readings of the spec this module fixes (each has a test):
- A fold's *training* backtest gets `[train_start - warmup_bars, train_end)`, fewer bars where
  the history starts later: fold 0 trains from `s`, exactly where a plain job over the same
  window trades from, so it gets exactly the warm-up a plain job gets.
- A fold's *test* backtest gets `[test_start - warmup_bars, test_end)` in full; the spec gives
  it no "fewer" clause. A layout whose first test span starts fewer than `warmup_bars` bars
  after the history's first bar (a window that begins near the dataset's start, with a short
  first training span) is refused with `WarmupRoomError` naming `walk_forward.is_oos_ratio`,
  the request field that lengthens the first training span. Later folds start later, so the
  first fold is the one to check.
- The final optimization is "fold K": it trains on `final_span` with the training rules.
- A flat fold (no usable trial, or `C_i <= 0`) has the equity `C_i` on each of its bars and
  no trades; its test metrics are LS section 6 over that flat curve with initial capital `C_i`
  when `C_i > 0`, and null when `C_i <= 0` (a percent of no capital means nothing), which
  makes its efficiency null too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from tradepulse.quant.backtest.engine import run_backtest
from tradepulse.quant.backtest.kernel import (
    T_ENTRY_BAR,
    T_EXIT_BAR,
    T_GROSS,
    T_NET,
    T_SIDE,
    T_SIGNAL_BAR,
)
from tradepulse.quant.backtest.types import BacktestResult, BacktestSettings
from tradepulse.quant.candles import Candles, FloatArray
from tradepulse.quant.errors import (
    FoldTooShortError,
    WalkForwardError,
    WarmupRoomError,
    WindowError,
)
from tradepulse.quant.metrics import Metrics, metrics_nb, metrics_to_dict, periods_per_year
from tradepulse.quant.strategies.base import Regime, Strategy
from tradepulse.quant.strategies.space import SearchSpace
from tradepulse.quant.validation import dispersion, probabilistic_sharpe, result_returns
from tradepulse.quant.windows import Window

Mode = Literal["rolling", "anchored"]
MODES: Final[tuple[Mode, ...]] = ("rolling", "anchored")
DEFAULT_FOLDS: Final = 5
DEFAULT_MODE: Final[Mode] = "rolling"
DEFAULT_IS_OOS_RATIO: Final = 4
FOLDS_RANGE: Final = (2, 20)
IS_OOS_RATIO_RANGE: Final = (1, 20)
MIN_TEST_BARS: Final = 2
MAX_SEED: Final = 2**63 - 1

FLAT_NO_USABLE_TRIAL: Final = "no usable trial"
FLAT_NO_CAPITAL: Final = "no capital left"


@dataclass(frozen=True)
class Span:
    """Bars `start..stop-1` of the history."""

    start: int
    stop: int

    @property
    def bars(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class WalkForwardLayout:
    """The spans of a walk-forward job over the window `s..n-1` of an `n`-bar history.

    `test_bars` is `L = floor(W / (K + rho))`; `train_bars` is the first training span
    `I = W - K*L` (so `I >= rho*L`, and the remainder of the division lands in it).
    """

    window_bars: int
    trade_from: int
    folds: int
    is_oos_ratio: int
    mode: Mode
    test_bars: int
    train_bars: int

    @property
    def n(self) -> int:
        """The history's length: the window's last bar is `n - 1`."""
        return self.trade_from + self.window_bars

    def test_span(self, fold: int) -> Span:
        """Fold i (0..K-1) tests `[s + I + i*L, s + I + (i+1)*L)`; the last one ends at n."""
        self._check_fold(fold, final_allowed=False)
        start = self.trade_from + self.train_bars + fold * self.test_bars
        return Span(start, start + self.test_bars)

    def train_span(self, fold: int) -> Span:
        """Fold i (0..K-1) trains on the I bars before its test span (rolling) or from s
        (anchored); fold K, the final optimization, on `final_span`."""
        self._check_fold(fold, final_allowed=True)
        if fold == self.folds:
            return self.final_span
        test = self.test_span(fold)
        start = test.start - self.train_bars if self.mode == "rolling" else self.trade_from
        return Span(start, test.start)

    @property
    def final_span(self) -> Span:
        """The final optimization's span: `[n - I, n)` rolling, `[s, n)` anchored."""
        start = self.n - self.train_bars if self.mode == "rolling" else self.trade_from
        return Span(start, self.n)

    @property
    def oos_span(self) -> Span:
        """The stitched out-of-sample bars `s + I .. n-1`."""
        return Span(self.trade_from + self.train_bars, self.n)

    def _check_fold(self, fold: int, *, final_allowed: bool) -> None:
        last = self.folds if final_allowed else self.folds - 1
        if not 0 <= fold <= last:
            raise WalkForwardError("fold", f"must be in 0..{last}, got {fold}")


def _integer_in(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WalkForwardError(name, f"must be an integer from {low} to {high}, got {value!r}")
    return value


def layout(
    window_bars: int,
    trade_from: int,
    folds: int = DEFAULT_FOLDS,
    is_oos_ratio: int = DEFAULT_IS_OOS_RATIO,
    mode: str = DEFAULT_MODE,
) -> WalkForwardLayout:
    """The layout of section 3 for a window of `window_bars` bars starting at `trade_from`.

    Raises WalkForwardError naming `walk_forward.folds`, `walk_forward.is_oos_ratio` or
    `walk_forward.mode` for a value out of range, and FoldTooShortError (naming
    `walk_forward.folds`) when a test span would have fewer than 2 bars.
    """
    k = _integer_in("walk_forward.folds", folds, *FOLDS_RANGE)
    rho = _integer_in("walk_forward.is_oos_ratio", is_oos_ratio, *IS_OOS_RATIO_RANGE)
    if mode not in MODES:
        raise WalkForwardError(
            "walk_forward.mode", f"must be one of {', '.join(MODES)}, got {mode!r}"
        )
    if isinstance(window_bars, bool) or not isinstance(window_bars, int) or window_bars < 1:
        raise WindowError(f"the window needs at least 1 bar, got {window_bars!r}")
    if isinstance(trade_from, bool) or not isinstance(trade_from, int) or trade_from < 0:
        raise WindowError(f"trade_from must be a bar number >= 0, got {trade_from!r}")
    test_bars = window_bars // (k + rho)
    if test_bars < MIN_TEST_BARS:
        raise FoldTooShortError(
            "walk_forward.folds",
            f"{k} folds at an in-sample/out-of-sample ratio of {rho} leave test spans of "
            f"{test_bars} bars in a window of {window_bars} (at least {MIN_TEST_BARS} needed: "
            f"a window of {(k + rho) * MIN_TEST_BARS} bars or more); ask for fewer folds, a "
            "lower walk_forward.is_oos_ratio or a longer window",
        )
    return WalkForwardLayout(
        window_bars=window_bars,
        trade_from=trade_from,
        folds=k,
        is_oos_ratio=rho,
        mode=mode,
        test_bars=test_bars,
        train_bars=window_bars - k * test_bars,
    )


def check_warmup_room(wf: WalkForwardLayout, warmup_bars: int) -> None:
    """Refuse (WarmupRoomError naming `walk_forward.is_oos_ratio`) a layout whose first test
    span has fewer than `warmup_bars` history bars before it.

    The history holds up to `warmup_bars` bars before the window, fewer only where the dataset
    starts later, so "inside the history" is "inside the dataset" here.
    """
    if warmup_bars < 0:
        raise WindowError(f"warm-up must be >= 0 bars, got {warmup_bars}")
    first = wf.test_span(0).start
    if first < warmup_bars:
        raise WarmupRoomError(
            "walk_forward.is_oos_ratio",
            f"fold 0 tests from bar {first} of the loaded history, but its test backtest needs "
            f"{warmup_bars} warm-up bars before that and the dataset starts {warmup_bars - first} "
            "bars too late; raise walk_forward.is_oos_ratio or use fewer folds (a longer first "
            "training span), or start the window later in the dataset",
        )


def _check_history(history: Candles, wf: WalkForwardLayout) -> None:
    if len(history) != wf.n:
        raise WindowError(
            f"the layout is for a history of {wf.n} bars, but {len(history)} were given"
        )


def fold_train_window(
    history: Candles, wf: WalkForwardLayout, fold: int, warmup_bars: int
) -> Window:
    """What fold `fold`'s training trials backtest (fold K: the final optimization).

    History bars `[train_start - warmup_bars, train_end)`, fewer where the history starts
    later, trading from `train_start`: no trial sees a bar at or after `train_end`.
    """
    _check_history(history, wf)
    if warmup_bars < 0:
        raise WindowError(f"warm-up must be >= 0 bars, got {warmup_bars}")
    span = wf.train_span(fold)
    begin = max(0, span.start - warmup_bars)
    return Window(history.slice(begin, span.stop), span.start - begin)


def fold_test_window(
    history: Candles, wf: WalkForwardLayout, fold: int, warmup_bars: int
) -> Window:
    """What fold `fold`'s test backtest runs: history bars `[test_start - warmup_bars,
    test_end)`, trading from `test_start`; WarmupRoomError if the warm-up does not fit."""
    _check_history(history, wf)
    check_warmup_room(wf, warmup_bars)
    span = wf.test_span(fold)
    return Window(history.slice(span.start - warmup_bars, span.stop), warmup_bars)


def fold_seed(seed: int, fold: int) -> int:
    """The sampler seed of fold `fold` (the final optimization is fold K) of a job seeded `seed`.

    The first 8 bytes, big-endian, of sha256(b"tradepulse-walk-forward-seed-v1:<seed>:<fold>")
    (decimal integers), with the top bit cleared: in [0, 2**63 - 1], different for every fold,
    and unrelated between neighbouring job seeds (seed + fold would make fold 1 of seed 7
    repeat fold 0 of seed 8).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise WalkForwardError("seed", f"must be an integer, got {seed!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0:
        raise WalkForwardError("fold", f"must be an integer >= 0, got {fold!r}")
    digest = hashlib.sha256(f"tradepulse-walk-forward-seed-v1:{seed}:{fold}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


@dataclass(frozen=True, eq=False)
class FoldTest:
    """One fold's out-of-sample run.

    `initial_capital` is the carried `C_i`; `result` is the test backtest over
    `[test_start - warmup_bars, test_end)` (equity over the span, `E[test_start] = C_i`), or
    None for a flat fold, whose `flat_reason` says why. `metrics` are the result's, or a flat
    fold's (see the module docstring).
    """

    fold: int
    span: Span
    initial_capital: float
    result: BacktestResult | None
    flat_reason: str | None
    metrics: Metrics | None

    @property
    def equity(self) -> FloatArray:
        """Equity at the close of each bar of the span."""
        if self.result is None:
            return np.full(self.span.bars, self.initial_capital)
        return self.result.equity

    @property
    def final_capital(self) -> float:
        """`C_{i+1}`: the equity at the span's last bar (C_i itself for a flat fold)."""
        return float(self.equity[-1])


def flat_fold(fold: int, span: Span, capital: float, reason: str, ppy: float) -> FoldTest:
    """A fold that trades nothing in its test span: equity `capital` on every bar.

    Its metrics are LS section 6 over that curve with initial capital `capital` when
    `capital > 0`, else null (no percentage of no capital).
    """
    metrics: Metrics | None = None
    if capital > 0.0:
        no_ints = np.empty(0, dtype=np.int64)
        no_floats = np.empty(0)
        values = metrics_nb(
            np.full(span.bars, capital),
            no_ints,
            no_ints,
            no_ints,
            no_floats,
            no_floats,
            0,
            capital,
            ppy,
        )
        metrics = metrics_to_dict(values)
    return FoldTest(fold, span, capital, None, reason, metrics)


def run_test_folds(
    history: Candles,
    wf: WalkForwardLayout,
    strategy: Strategy[Any, Any],
    best_params: Sequence[Any | None],
    settings: BacktestSettings,
    *,
    warmup_bars: int,
    regime: Regime = "any",
) -> list[FoldTest]:
    """Every fold's test, in order, carrying capital: `C_0 = settings.initial_capital`,
    `C_{i+1}` = fold i's final test equity.

    `best_params[i]` is fold i's best trial's parameters (object or mapping), or None when the
    fold had no usable trial. Every other setting is the job's.
    """
    _check_history(history, wf)
    if len(best_params) != wf.folds:
        raise WalkForwardError(
            "best_params", f"needs one entry per fold ({wf.folds}), got {len(best_params)}"
        )
    check_warmup_room(wf, warmup_bars)
    ppy = periods_per_year(history.timeframe_seconds)
    capital = settings.initial_capital
    out: list[FoldTest] = []
    for fold, params in enumerate(best_params):
        span = wf.test_span(fold)
        if params is None or not capital > 0.0:
            reason = FLAT_NO_USABLE_TRIAL if params is None else FLAT_NO_CAPITAL
            test = flat_fold(fold, span, capital, reason, ppy)
        else:
            window = fold_test_window(history, wf, fold, warmup_bars)
            result = run_backtest(
                window.candles,
                strategy,
                params,
                dataclasses.replace(settings, initial_capital=capital),
                regime=regime,
                trade_from=window.trade_from,
            )
            test = FoldTest(fold, span, capital, result, None, result.metrics)
        out.append(test)
        capital = test.final_capital
    return out


def stitch(
    history: Candles, wf: WalkForwardLayout, tests: Sequence[FoldTest], initial_capital: float
) -> BacktestResult:
    """The out-of-sample record: one BacktestResult over the bars `s + I .. n-1`.

    Its equity is each fold's test equity on the fold's own bars, in order. Fold i's equity
    starts at `C_i`, bit for bit the previous fold's last equity, so at each boundary bar the
    equity is unchanged and the return is exactly 0. Its trades are the folds' test trades in
    order (bar numbers still rows of the whole history), its metrics LS section 6 over that
    curve with `initial_capital = C_0`, and its `fingerprint` BacktestResult's canonical form.
    """
    _check_history(history, wf)
    if [t.fold for t in tests] != list(range(wf.folds)):
        raise WalkForwardError("tests", f"needs folds 0..{wf.folds - 1} in order")
    oos = wf.oos_span
    first_row = history.first_row + oos.start
    for prev, test in itertools.pairwise(tests):
        if test.initial_capital != prev.final_capital:
            raise WalkForwardError(
                "tests",
                f"fold {test.fold} starts with {test.initial_capital!r}, not fold "
                f"{prev.fold}'s final equity {prev.final_capital!r}",
            )
    if tests and tests[0].initial_capital != initial_capital:
        raise WalkForwardError(
            "tests", f"fold 0 starts with {tests[0].initial_capital!r}, not C_0 {initial_capital!r}"
        )
    equity = np.concatenate([t.equity for t in tests])
    int_parts = []
    float_parts = []
    ambiguous = 0
    for test in tests:
        if test.result is None:
            continue
        ints = test.result.trade_ints.copy()
        # From rows of the fold's slice to rows of the stitched span.
        ints[:, T_SIGNAL_BAR : T_EXIT_BAR + 1] += test.result.first_row - first_row
        int_parts.append(ints)
        float_parts.append(test.result.trade_floats)
        ambiguous += test.result.ambiguous_exits
    trade_ints = np.concatenate(int_parts) if int_parts else np.empty((0, 5), dtype=np.int64)
    trade_floats = np.concatenate(float_parts) if float_parts else np.empty((0, 9))
    # Trades never overlap within a fold, and a fold's trades stay inside its span.
    exposed = int(np.sum(trade_ints[:, T_EXIT_BAR] - trade_ints[:, T_ENTRY_BAR] + 1))
    values = metrics_nb(
        equity,
        trade_ints[:, T_SIDE],
        trade_ints[:, T_ENTRY_BAR],
        trade_ints[:, T_EXIT_BAR],
        trade_floats[:, T_GROSS],
        trade_floats[:, T_NET],
        exposed,
        initial_capital,
        periods_per_year(history.timeframe_seconds),
    )
    return BacktestResult(
        trade_ints=trade_ints,
        trade_floats=trade_floats,
        open_time=history.open_time[oos.start : oos.stop],
        first_row=first_row,
        equity=equity,
        metrics=metrics_to_dict(values),
        ambiguous_exits=ambiguous,
    )


def ann(net_profit_pct: float | int | None, returns: int, ppy: float) -> float | None:
    """`net_profit_pct * ppy / T` for a backtest with T returns; null without returns or a
    finite percentage."""
    if net_profit_pct is None or returns < 1 or not math.isfinite(net_profit_pct):
        return None
    return float(net_profit_pct) * ppy / returns


def efficiency(ann_test: float | None, ann_train: float | None) -> float | None:
    """`ann(test_i) / ann(train_i)`; null when the fold had no usable trial (`ann_train` is
    None), `ann_train <= 0`, or the test has no annualized figure."""
    if ann_train is None or ann_train <= 0.0 or ann_test is None:
        return None
    return ann_test / ann_train


def wfe(ann_stitched: float | None, ann_trains: Sequence[float | None]) -> float | None:
    """`ann(stitched) / mean ann(train_i)` over the folds with a usable trial (None entries are
    folds without one); null when no fold had one or that mean is `<= 0`."""
    usable = [a for a in ann_trains if a is not None]
    if not usable or ann_stitched is None:
        return None
    mean = math.fsum(usable) / len(usable)
    if mean <= 0.0:
        return None
    return ann_stitched / mean


def oos_psr(stitched: BacktestResult) -> float | None:
    """`PSR(0)` (section 1) of the stitched returns `E[k]/E[k-1] - 1`; null where section 1
    says so, and when the equity reached exactly 0 (its returns are not finite: LS section 6
    gives such a curve no Sharpe either)."""
    returns = result_returns(stitched)
    if not np.isfinite(returns).all():
        return None
    return probabilistic_sharpe(returns, sr_benchmark=0.0)


def fold_dispersion(
    best_params: Sequence[Mapping[str, float | int] | None], space: SearchSpace
) -> dict[str, float | None]:
    """Each parameter's dispersion over the folds' best values: `std(ddof 0) / (high - low)`
    of its range, over the folds with a usable trial (None entries are folds without one);
    null with fewer than 2 usable folds."""
    usable = [p for p in best_params if p is not None]
    return {
        spec.name: dispersion([float(p[spec.name]) for p in usable], spec.low, spec.high)
        for spec in space
    }


def fold_efficiencies(
    wf: WalkForwardLayout,
    train_metrics: Sequence[Mapping[str, float | int | None] | None],
    tests: Sequence[FoldTest],
    ppy: float,
) -> list[float | None]:
    """`efficiency_i` of every fold, with `T` counted per backtest.

    `train_metrics[i]` is fold i's best trial's metrics (None: no usable trial); its backtest
    has `train_span(i).bars - 1` returns (anchored spans grow fold by fold), each test
    `test_bars - 1`.
    """
    if len(train_metrics) != wf.folds or len(tests) != wf.folds:
        raise WalkForwardError("folds", f"needs {wf.folds} training and test entries")
    out = []
    for fold, (train, test) in enumerate(zip(train_metrics, tests, strict=True)):
        ann_train = _ann_of(train, wf.train_span(fold).bars - 1, ppy)
        ann_test = _ann_of(test.metrics, wf.test_bars - 1, ppy)
        out.append(None if train is None else efficiency(ann_test, ann_train))
    return out


def stitched_wfe(
    wf: WalkForwardLayout,
    train_metrics: Sequence[Mapping[str, float | int | None] | None],
    stitched: BacktestResult,
    ppy: float,
) -> float | None:
    """`wfe`: ann of the stitched record over its `K*L - 1` returns (flat folds included),
    over the mean ann of the folds' best trials (None entries: folds without one)."""
    if len(train_metrics) != wf.folds:
        raise WalkForwardError("folds", f"needs {wf.folds} training entries")
    ann_trains = [
        None if m is None else _ann_of(m, wf.train_span(i).bars - 1, ppy)
        for i, m in enumerate(train_metrics)
    ]
    usable = [a for m, a in zip(train_metrics, ann_trains, strict=True) if m is not None]
    if any(a is None for a in usable):
        # A usable trial always has a finite net_profit_pct; a missing one is a caller's bug.
        raise WalkForwardError("train_metrics", "a usable fold's net_profit_pct is missing")
    return wfe(_ann_of(stitched.metrics, len(stitched.equity) - 1, ppy), ann_trains)


def _ann_of(
    metrics: Mapping[str, float | int | None] | None, returns: int, ppy: float
) -> float | None:
    return None if metrics is None else ann(metrics.get("net_profit_pct"), returns, ppy)
