"""Our equity-curve metrics (spec section 6) against empyrical, and the trade metrics of a real
backtest against a plain pandas recomputation from its trades.

empyrical (the ``empyrical-reloaded`` 0.7.1 package, with Bottleneck present) is fed the
spec's returns ``r[k] = E[k]/E[k-1] - 1`` of the same equity curve E. Everything below was
read from ``empyrical/stats.py`` in the venv. Conventions:

- Returns. ``empyrical.simple_returns(E)`` computes ``(E[k]-E[k-1])/E[k-1]``, which differs from
  the spec's ``E[k]/E[k-1] - 1`` in the last bit. The test computes the spec's form and passes
  that, so both sides see bit-identical returns (a flat bar is exactly 0 on both sides).
- sharpe_ratio. empyrical: ``nanmean(r)/nanstd(r, ddof=1)*sqrt(ann)``. Same ddof as the spec.
  Null cases differ: with fewer than 2 returns empyrical gives NaN and ours gives 0 (spec). When
  every return is identical, empyrical forces the std to 0 (``_zero_dispersion_std``) and gives
  +-inf, or NaN for a flat curve; ours gives 0 (spec: "0 with a std of 0"). The test expects
  the spec value in those cases. The mean is the same sequential sum on both sides; only the
  order of the squared deviations differs, so rel 1e-9 (abs 1e-12) holds with a wide margin.
- sortino_ratio (required_return=0). empyrical: ``mean(r)*ann / (sqrt(nanmean(min(r,0)^2))
  * sqrt(ann))``, which is the spec's ``mean(r)/sqrt(sum(min(r,0)^2)/len(r))*sqrt(ppy)``: the
  downside mean runs over ALL returns, with zeros counted. Null cases differ: with fewer than 2
  returns empyrical gives NaN, and the test checks the spec's value instead (``-sqrt(ppy)`` for
  one negative return, null otherwise). When no return is negative the downside risk is 0 and
  empyrical gives +inf (or NaN if the mean is 0), while ours is null (spec).
- max_drawdown_pct. empyrical rebuilds the curve as ``100*cumprod(1+r)`` and puts an anchor
  of 100 in front of it before taking the running peak. The anchor stands for E[0], so a fall
  right from the first point counts as a drawdown from E[0] on both sides; the peak
  conventions agree (see ``test_first_point_is_a_peak_on_both_sides``). Units: ours =
  ``-100 * theirs`` (theirs is a negative fraction). With no returns empyrical gives NaN and
  ours 0. Because the curve is rebuilt, each point carries about 2k roundings (one division,
  one multiplication per step; ``1 + (q - 1) == q`` exactly for q in [0.5, 2]). So the
  tolerance is rel 1e-9 plus an absolute ``8*(n+1)*eps`` as a fraction (about 4e-10
  percentage points at n = 2000). It is the larger of the two only for drawdowns under about
  0.4 %. The largest error seen on 3000 random curves was 1.6e-14 relative.
- cagr_pct. empyrical: ``cum_returns_final(r, 1) ** (1/(len(r)/ann)) - 1``, the same "years"
  (len(r)/ppy) as the spec. Ours = ``100 * theirs``. Two bridges: (1) ours divides by
  ``initial_capital`` and empyrical starts from 1 = E[0]. The kernel tests pass
  ``initial_capital = E[0]``, and the backtest test checks that ``equity[0] ==
  initial_capital``. (2) The rebuilt product carries about 2n roundings in ln(final/initial),
  and the exponent ppy/n scales them to about 2*ppy*eps in ln(1 + cagr), whatever n is. So the
  absolute tolerance is ``100*(1+cagr)*4*(ppy + ppy/n + 2)*eps``. It is needed only when the
  cagr is near 0. The largest error seen was 2.5e-11 relative. Null cases: no returns means
  empyrical gives NaN and ours null. An overflow makes empyrical give inf and ours null (spec:
  "not finite"), and when only ``100 * theirs`` overflows, ours is also null.
- calmar_ratio. empyrical: ``cagr / abs(max_drawdown)``, NaN when the drawdown is 0 or the
  ratio is inf. Ours is ``cagr_pct / max_drawdown_pct``, the same ratio because both are in
  percent. The tolerance is the first-order propagation of the two tolerances above. Null cases
  agree: ours is null exactly when empyrical's is NaN/inf, or when our cagr is null (its percent
  overflowed).

One case departs from empyrical on purpose: for a curve whose returns are all bit-identical
and nonzero, the exact std is 0 and the spec says the Sharpe is 0 (empyrical gives inf).
Centring on a mean rounded by one ulp would leave a std of ~1e-17 and a Sharpe of ~2e15, so
the kernel treats identical returns as a std of 0
(``test_sharpe_is_zero_when_every_return_is_identical``).

The backtest case runs the engine on the first 20,000 bars of the shared BTC 5m file and
checks the five equity metrics against empyrical. It also recomputes the trade-level metrics
from ``result.trades`` with pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradepulse.quant import BacktestResult, BacktestSettings, Candles, LiquiditySweep, run_backtest
from tradepulse.quant.metrics import Metrics, metrics_nb, metrics_to_dict, periods_per_year

empyrical = pytest.importorskip("empyrical")

REL = 1e-9
ABS = 1e-12
EPS = float(np.finfo(np.float64).eps)
PPY_5M = periods_per_year(300)
PPYS = (periods_per_year(60), PPY_5M, periods_per_year(3600), periods_per_year(86400))

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance_BTC-USDT_5m.csv.gz"
N_ROWS = 20_000
BACKTEST_PARAMS: dict[str, float | int] = {
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

NO_INTS = np.zeros(0, np.int64)
NO_FLOATS = np.zeros(0)


# ---------------------------------------------------------------------------------------------
# helpers


def kernel_metrics(equity: np.ndarray, ppy: float) -> Metrics:
    """Our metrics of a bare equity curve: no trades, initial capital = E[0]."""
    eq = np.ascontiguousarray(equity, dtype=np.float64)
    values = metrics_nb(eq, NO_INTS, NO_INTS, NO_INTS, NO_FLOATS, NO_FLOATS, 0, float(eq[0]), ppy)
    return metrics_to_dict(values)


def spec_returns(equity: np.ndarray) -> np.ndarray:
    """r[k] = E[k]/E[k-1] - 1, the spec's (and our kernel's) exact floating-point form."""
    eq = np.asarray(equity, dtype=np.float64)
    out: np.ndarray = eq[1:] / eq[:-1] - 1.0
    return out


def empyrical_metrics(returns: np.ndarray, ppy: float) -> dict[str, float]:
    """empyrical's five figures, in empyrical's own units and null conventions."""
    with np.errstate(all="ignore"):
        return {
            "sharpe": float(empyrical.sharpe_ratio(returns, risk_free=0, annualization=ppy)),
            "sortino": float(
                empyrical.sortino_ratio(returns, required_return=0, annualization=ppy)
            ),
            "max_drawdown": float(empyrical.max_drawdown(returns)),
            "cagr": float(empyrical.cagr(returns, annualization=ppy)),
            "calmar": float(empyrical.calmar_ratio(returns, annualization=ppy)),
        }


def approx(expected: float, abs_tol: float = ABS) -> object:
    return pytest.approx(expected, rel=REL, abs=max(abs_tol, ABS))


def assert_matches_empyrical(
    equity: np.ndarray, ppy: float, ours: Mapping[str, float | int | None]
) -> None:
    """Our five equity metrics against empyrical on the same curve, conventions bridged."""
    r = spec_returns(equity)
    m = len(r)  # number of returns
    theirs = empyrical_metrics(r, ppy)
    identical = m >= 1 and bool(np.all(r == r[0]))

    # sharpe_ratio
    if m < 2:
        assert math.isnan(theirs["sharpe"])
        assert ours["sharpe_ratio"] == 0.0
    elif identical and r[0] == 0.0:
        assert math.isnan(theirs["sharpe"])  # 0/0
        assert ours["sharpe_ratio"] == 0.0
    elif identical:
        # Spec: 0 (std 0). empyrical: +-inf.
        assert math.isinf(theirs["sharpe"])
        assert ours["sharpe_ratio"] == 0.0
    else:
        assert ours["sharpe_ratio"] == approx(theirs["sharpe"])

    # sortino_ratio
    negatives = int(np.count_nonzero(r < 0.0))
    if m < 2:
        if m == 1:
            assert math.isnan(theirs["sortino"])
        expected = -math.sqrt(ppy) if negatives else None
        assert ours["sortino_ratio"] == (None if expected is None else approx(expected))
    elif negatives == 0:
        assert math.isinf(theirs["sortino"]) or math.isnan(theirs["sortino"])
        assert ours["sortino_ratio"] is None
    else:
        assert ours["sortino_ratio"] == approx(theirs["sortino"])

    # max_drawdown_pct
    dd_tol = 100.0 * 8 * (m + 1) * EPS
    if m == 0:
        assert math.isnan(theirs["max_drawdown"])
        assert ours["max_drawdown_pct"] == 0.0
    else:
        assert theirs["max_drawdown"] <= 0.0
        assert ours["max_drawdown_pct"] == approx(-100.0 * theirs["max_drawdown"], dd_tol)

    # cagr_pct
    their_cagr_pct = 100.0 * theirs["cagr"]
    cagr_tol = 0.0
    if m == 0:
        assert math.isnan(theirs["cagr"])
        assert ours["cagr_pct"] is None
    elif not math.isfinite(their_cagr_pct):
        assert theirs["cagr"] > 0.0  # overflow, not NaN
        assert ours["cagr_pct"] is None
    else:
        cagr_tol = 100.0 * (1.0 + theirs["cagr"]) * 4 * (ppy + ppy / m + 2) * EPS
        assert ours["cagr_pct"] == approx(their_cagr_pct, cagr_tol)

    # calmar_ratio
    their_dd_pct = -100.0 * theirs["max_drawdown"] if m else math.nan
    if ours["cagr_pct"] is None or not math.isfinite(theirs["calmar"]):
        assert ours["calmar_ratio"] is None
        # empyrical's calmar is NaN for a zero drawdown or an infinite ratio; it can only be
        # finite here when our cagr percent overflowed while theirs (a fraction) did not.
        assert not math.isfinite(theirs["calmar"]) or not math.isfinite(their_cagr_pct)
    else:
        assert their_dd_pct > 0.0
        ours_dd = ours["max_drawdown_pct"]
        assert isinstance(ours_dd, float)
        assert ours_dd > 0.0
        calmar_tol = cagr_tol / their_dd_pct + abs(theirs["calmar"]) * dd_tol / their_dd_pct
        assert ours["calmar_ratio"] == approx(theirs["calmar"], calmar_tol)


def equity_from_moves(start: float, moves: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """E[0] = start; each bar either stays exactly flat or moves by (1 + move)."""
    eq = np.empty(len(moves) + 1)
    eq[0] = start
    for k in range(len(moves)):
        eq[k + 1] = eq[k] if flat[k] else eq[k] * (1.0 + moves[k])
    return eq


# ---------------------------------------------------------------------------------------------
# (a) hand-made curves

HAND_CURVES: dict[str, list[float]] = {
    "flat_then_moves": [100, 100, 100, 100, 105, 103, 108, 108, 108, 101, 110, 110],
    "all_up": [100, 101, 103, 103.5, 107, 107, 112.25, 120],
    "drawdowns": [100, 120, 90, 95, 130, 80, 85, 140, 139, 150, 149.5],
    "down_from_first_point": [100, 95, 97, 92, 99, 99, 98],
    "all_down": [100, 98, 97, 90, 90, 85.5],
    "round_trip": [100, 90, 100, 110, 99, 110],
    "deep_loss": [10000, 9000, 5000, 2500, 100, 150, 120],
    "tenfold": [1000, 1500, 1400, 3000, 2900, 6000, 10000],
    "one_up_return": [100, 110],
    "one_down_return": [100, 90],
    "one_flat_return": [100, 100],
    "flat": [100, 100, 100, 100, 100],
    "single_point": [100],
}


@pytest.mark.parametrize("ppy", PPYS, ids=["1m", "5m", "1h", "1d"])
@pytest.mark.parametrize("name", list(HAND_CURVES))
def test_hand_made_curves_match_empyrical(name: str, ppy: float) -> None:
    equity = np.array(HAND_CURVES[name], dtype=np.float64)
    assert_matches_empyrical(equity, ppy, kernel_metrics(equity, ppy))


def test_first_point_is_a_peak_on_both_sides() -> None:
    """A fall straight from E[0] is a drawdown from E[0] for empyrical (its anchor) and us."""
    equity = np.array([100.0, 95.0, 97.0, 92.0, 99.0])
    ours = kernel_metrics(equity, 365.0)
    assert ours["max_drawdown_pct"] == pytest.approx(8.0, rel=REL)
    assert empyrical.max_drawdown(spec_returns(equity)) == pytest.approx(-0.08, rel=REL)


def test_hand_made_values_are_as_computed_by_hand() -> None:
    """Anchor the bridge with numbers worked out from the spec's formulas directly."""
    equity = np.array([100.0, 120.0, 90.0, 135.0])
    ppy = 365.0
    r = np.array([0.2, -0.25, 0.5])
    mean = r.mean()
    ours = kernel_metrics(equity, ppy)
    assert ours["sharpe_ratio"] == pytest.approx(mean / r.std(ddof=1) * math.sqrt(ppy), rel=REL)
    assert ours["sortino_ratio"] == pytest.approx(
        mean / math.sqrt(0.25**2 / 3) * math.sqrt(ppy), rel=REL
    )
    assert ours["max_drawdown_pct"] == pytest.approx(25.0, rel=REL)
    assert ours["cagr_pct"] == pytest.approx((1.35 ** (365 / 3) - 1) * 100, rel=REL)
    assert ours["calmar_ratio"] == pytest.approx((1.35 ** (365 / 3) - 1) * 100 / 25.0, rel=REL)
    assert_matches_empyrical(equity, ppy, ours)


# ---------------------------------------------------------------------------------------------
# The known disagreement with the spec: identical returns.


def constant_return_curve() -> np.ndarray:
    """100 * f^k built by repeated multiplication; every spec return is the same float."""
    f = 1.0 + 0.018250690193444052
    eq = [100.0]
    for _ in range(315):
        eq.append(eq[-1] * f)
    return np.array(eq)


def test_constant_return_curve_is_what_it_claims() -> None:
    r = spec_returns(constant_return_curve())
    assert np.all(r == r[0])
    assert r[0] != 0.0
    # empyrical, seeing identical values, sets the std to exactly 0: +inf.
    assert empyrical.sharpe_ratio(r, annualization=365.0) == math.inf


def test_sharpe_is_zero_when_every_return_is_identical() -> None:
    ours = kernel_metrics(constant_return_curve(), 365.0)
    assert ours["sharpe_ratio"] == 0.0


# ---------------------------------------------------------------------------------------------
# (b) hypothesis-generated curves


@st.composite
def long_curves(draw: st.DrawFn) -> np.ndarray:
    """Random walks of up to 2000 bars: moves in [-2%, +2%] with runs of exactly flat bars."""
    n = draw(st.integers(3, 2000), label="bars")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    stay_flat = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99]), label="stay_flat")
    start = draw(st.sampled_from([1.0, 100.0, 10000.0, 123456.789]), label="start")
    rng = np.random.default_rng(seed)
    moves = rng.uniform(-0.02, 0.02, n - 1)
    flat = np.zeros(n - 1, dtype=bool)
    state = bool(rng.random() < stay_flat)
    for k in range(n - 1):
        flat[k] = state
        # Flat runs go on with probability stay_flat; moving runs with 0.8 (or forever).
        if state:
            state = bool(rng.random() < stay_flat)
        else:
            state = stay_flat > 0.0 and bool(rng.random() < 0.2)
    return equity_from_moves(start, moves, flat)


@st.composite
def short_curves(draw: st.DrawFn) -> np.ndarray:
    """Short curves from hypothesis' own floats (tiny moves, endpoints, exact zeros)."""
    moves = draw(
        st.lists(
            st.one_of(st.just(0.0), st.floats(-0.02, 0.02, allow_nan=False)),
            min_size=2,
            max_size=40,
        ),
        label="moves",
    )
    start = draw(st.floats(1.0, 1e6), label="start")
    arr = np.array(moves, dtype=np.float64)
    return equity_from_moves(start, arr, arr == 0.0)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(equity=st.one_of(long_curves(), short_curves()), ppy=st.sampled_from(PPYS))
def test_random_curves_match_empyrical(equity: np.ndarray, ppy: float) -> None:
    assert np.all(equity > 0.0)
    assert_matches_empyrical(equity, ppy, kernel_metrics(equity, ppy))


# ---------------------------------------------------------------------------------------------
# (c) a real backtest


@pytest.fixture(scope="module")
def btc_backtest() -> tuple[BacktestResult, BacktestSettings, int]:
    if not DATA.is_file():
        pytest.skip(f"shared data file absent: {DATA}")
    df = pd.read_csv(DATA, nrows=N_ROWS)
    candles = Candles.from_arrays(
        df["timestamp"].to_numpy(),
        df["open"].to_numpy(),
        df["high"].to_numpy(),
        df["low"].to_numpy(),
        df["close"].to_numpy(),
        df["volume"].to_numpy(),
    )
    assert candles.timeframe_seconds == 300
    bt_settings = BacktestSettings()
    result = run_backtest(candles, LiquiditySweep(), BACKTEST_PARAMS, bt_settings)
    return result, bt_settings, len(candles)


def test_backtest_equity_metrics_match_empyrical(
    btc_backtest: tuple[BacktestResult, BacktestSettings, int],
) -> None:
    result, bt_settings, n_candles = btc_backtest
    equity = result.equity
    assert len(equity) == n_candles  # trade_from = 0
    # empyrical's growth starts at 1 = E[0]; ours at initial_capital. They coincide here.
    assert equity[0] == bt_settings.initial_capital
    assert len(result.trades) >= 50  # the parameters trade: the comparison is not vacuous
    assert_matches_empyrical(equity, PPY_5M, result.metrics)
    for name in ("sharpe_ratio", "sortino_ratio", "cagr_pct", "calmar_ratio"):
        assert result.metrics[name] is not None, name
    assert result.metrics["max_drawdown_pct"] != 0.0


def longest_loss_run(net: pd.Series) -> int:
    losing = net < 0.0
    if not losing.any():
        return 0
    return int(losing.groupby((~losing).cumsum()).sum().max())


def test_backtest_trade_metrics_match_a_pandas_recomputation(
    btc_backtest: tuple[BacktestResult, BacktestSettings, int],
) -> None:
    result, bt_settings, _ = btc_backtest
    initial = bt_settings.initial_capital
    equity = result.equity
    trades = pd.DataFrame([t.to_dict() for t in result.trades])
    net = trades["net_pnl"]
    gross = trades["gross_pnl"]
    wins = net[net > 0.0]
    losses = net[net < 0.0]
    assert len(wins) > 0
    assert len(losses) > 0

    # Bars at whose close a trade is open, or during which one exited: entry..exit inclusive,
    # counted once (bars are history rows; this run's equity starts at row first_row).
    exposed = np.zeros(len(equity), dtype=bool)
    for entry, exit_ in zip(trades["entry_bar"], trades["exit_bar"], strict=True):
        exposed[entry - result.first_row : exit_ - result.first_row + 1] = True

    expected: dict[str, float | int | None] = {
        "net_profit": equity[-1] - initial,
        "net_profit_pct": (equity[-1] - initial) / initial * 100.0,
        "total_trades": len(trades),
        "long_trades": int((trades["side"] == "long").sum()),
        "short_trades": int((trades["side"] == "short").sum()),
        "win_rate": len(wins) / len(trades) * 100.0,
        "gross_win_rate": float((gross > 0.0).mean() * 100.0),
        "gross_profit": float(wins.sum()),
        "gross_loss": float(-losses.sum()),
        "profit_factor": float(wins.sum() / -losses.sum()),
        "avg_win": float(wins.mean()),
        "avg_loss": float(losses.mean()),
        "expectancy": float(net.mean()),
        "largest_win": float(wins.max()),
        "largest_loss": float(losses.min()),
        "max_consecutive_losses": longest_loss_run(net),
        "exposure_pct": exposed.sum() / len(equity) * 100.0,
        "avg_holding_bars": float((trades["exit_bar"] - trades["entry_bar"] + 1).mean()),
    }
    for name, value in expected.items():
        got = result.metrics[name]
        if isinstance(value, int):
            assert got == value, name
        else:
            assert got == pytest.approx(value, rel=REL, abs=ABS), name

    # Every trade is closed by the last bar, so the equity gain is the sum of net PnLs.
    assert result.metrics["net_profit"] == pytest.approx(math.fsum(net), rel=REL, abs=ABS)
    assert set(result.metrics) >= set(expected)
