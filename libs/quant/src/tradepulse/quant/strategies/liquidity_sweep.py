"""The liquidity sweep strategy: spec sections 1-4 (indicators, levels, signals).

A sweep pierces a key level (one touched at least `min_level_touches` times in the last
`key_level_lookback` bars) on a volume spike; a close back inside within `reversal_candles`
bars fires a signal against the sweep. Stops and targets are set from the signal close and ATR.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from tradepulse.quant.candles import Candles, FloatArray
from tradepulse.quant.errors import ParameterError
from tradepulse.quant.indicators import (
    REGIME_CODES,
    regime_codes_nb,
    regime_lookback_bars,
    rolling_max_before_nb,
    rolling_min_before_nb,
    volume_average_nb,
    wilder_atr_nb,
)
from tradepulse.quant.strategies.base import Regime, Signals
from tradepulse.quant.strategies.space import ParamSpec, SearchSpace

NAME = "LIQUIDITY_SWEEP"
# Upper bounds for a single backtest: far beyond any sensible value, low enough that every
# price and size stays finite and every count fits the compiled kernels' int64.
MAX_INT_PARAM = 10**9
MAX_FLOAT_PARAM = 1e6

SPACE = SearchSpace(
    (
        ParamSpec(
            "key_level_lookback", "int", 50, 300, 50, "bars in the window that defines a level"
        ),
        ParamSpec("min_level_touches", "int", 2, 5, 1, "touches that make a level key"),
        ParamSpec(
            "pierce_depth", "float", 0.0005, 0.005, None, "how far past the level (fraction)"
        ),
        ParamSpec("volume_spike_threshold", "float", 1.0, 3.0, None, "sweep volume / average"),
        ParamSpec("reversal_candles", "int", 1, 5, 1, "bars allowed for the close back inside"),
        ParamSpec(
            "min_distance_from_level", "float", 0.0, 0.003, None, "reversal close inside (fraction)"
        ),
        ParamSpec("atr_multiplier_sl", "float", 1.0, 3.0, None, "stop distance in ATRs"),
        ParamSpec("risk_reward_ratio", "float", 1.0, 4.0, None, "target in stop distances"),
        ParamSpec("max_holding_periods", "int", 25, 200, 25, "bars a trade may stay open"),
    )
)


@dataclass(frozen=True)
class LiquiditySweepParams:
    key_level_lookback: int
    min_level_touches: int
    pierce_depth: float
    volume_spike_threshold: float
    reversal_candles: int
    min_distance_from_level: float
    atr_multiplier_sl: float
    risk_reward_ratio: float
    max_holding_periods: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                if isinstance(value, bool) or not isinstance(value, int | np.integer):
                    raise ParameterError(f.name, f"must be an integer, got {value!r}")
                if not 1 <= value <= MAX_INT_PARAM:
                    raise ParameterError(
                        f.name, f"must be between 1 and {MAX_INT_PARAM}, got {value}"
                    )
                object.__setattr__(self, f.name, int(value))
            else:
                if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                    raise ParameterError(f.name, f"must be a number, got {value!r}")
                if not math.isfinite(value) or not 0 <= value <= MAX_FLOAT_PARAM:
                    raise ParameterError(
                        f.name, f"must be a number between 0 and {MAX_FLOAT_PARAM:g}, got {value!r}"
                    )
                object.__setattr__(self, f.name, float(value))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LiquiditySweepParams:
        if not isinstance(values, Mapping):
            raise ParameterError(
                "params", f"must be an object of parameter names to values, got {values!r}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(
                unknown[0], f"unknown parameter; expected {', '.join(sorted(known))}"
            )
        missing = [f.name for f in fields(cls) if f.name not in values]
        if missing:
            raise ParameterError(missing[0], "missing")
        return cls(**{name: values[name] for name in known})

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class IndicatorSettings:
    """Fixed indicator settings (spec section 1), not optimized."""

    atr_period: int = 14
    volume_window: int = 20
    touch_tolerance: float = 0.001
    regime_lookback_days: float = 7.0
    regime_threshold: float = 0.05

    def __post_init__(self) -> None:
        for name in ("atr_period", "volume_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(name, f"must be an integer >= 1, got {value!r}")
        for name in ("touch_tolerance", "regime_threshold", "regime_lookback_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ParameterError(name, f"must be a number >= 0, got {value!r}")


Levels = tuple[FloatArray, FloatArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]


class SweepPrepared:
    """Per-dataset arrays that no parameter changes, plus levels cached per lookback."""

    def __init__(
        self, candles: Candles, settings: IndicatorSettings, lookbacks: Iterable[int]
    ) -> None:
        """Computes the levels of `lookbacks` now; any other lookback's on first use."""
        self.candles = candles
        self.settings = settings
        self.atr = wilder_atr_nb(candles.high, candles.low, candles.close, settings.atr_period)
        self.volume_avg = volume_average_nb(candles.volume, settings.volume_window)
        k = regime_lookback_bars(settings.regime_lookback_days, candles.timeframe_seconds)
        self.regime = regime_codes_nb(candles.close, k, settings.regime_threshold)
        self._levels: dict[int, Levels] = {}
        for lookback in lookbacks:
            self.levels(int(lookback))

    def levels(self, lookback: int) -> Levels:
        """Resistance, support and the bars that reach them, for one lookback (cached).

        A sweep needs H >= R*(1+pierce) >= R (or L <= S*(1-pierce) <= S), so only bars that
        make a new `lookback`-bar high (low) can be sweeps: these candidates are all a trial
        scans.
        """
        cached = self._levels.get(lookback)
        if cached is None:
            c = self.candles
            resistance = rolling_max_before_nb(c.high, lookback)
            support = rolling_min_before_nb(c.low, lookback)
            short_candidates = np.flatnonzero(c.high >= resistance).astype(np.int64)
            long_candidates = np.flatnonzero(c.low <= support).astype(np.int64)
            cached = (resistance, support, short_candidates, long_candidates)
            self._levels[lookback] = cached
        return cached


class LiquiditySweep:
    """The strategy object the engine runs; holds only its fixed indicator settings."""

    name = NAME
    space = SPACE

    def __init__(self, indicators: IndicatorSettings | None = None) -> None:
        self.indicators = indicators or IndicatorSettings()

    def parse_params(self, values: Mapping[str, Any]) -> LiquiditySweepParams:
        return LiquiditySweepParams.from_mapping(values)

    def params_to_dict(self, params: LiquiditySweepParams) -> dict[str, float | int]:
        return params.to_dict()

    def warmup_bars(self, timeframe_seconds: int) -> int:
        """k + 300: the regime lookback plus the longest level lookback (2316 for 5m)."""
        k = regime_lookback_bars(self.indicators.regime_lookback_days, timeframe_seconds)
        return k + int(SPACE["key_level_lookback"].high)

    def prepare(
        self, candles: Candles, params: Sequence[LiquiditySweepParams] | None = None
    ) -> SweepPrepared:
        """Indicators, regimes, and the levels of every lookback of the search space (of only
        the given sets' lookbacks: one instead of six for a single backtest)."""
        lookbacks = (
            [int(v) for v in SPACE["key_level_lookback"].grid()]
            if params is None
            else sorted({p.key_level_lookback for p in params})
        )
        return SweepPrepared(candles, self.indicators, lookbacks)

    def signals(
        self,
        prepared: SweepPrepared,
        params: LiquiditySweepParams,
        *,
        regime: Regime,
        trade_from: int,
    ) -> Signals:
        if regime != "any" and regime not in REGIME_CODES:
            raise ParameterError("regime", f"must be any, bull, bear or sideways, got {regime!r}")
        c = prepared.candles
        resistance, support, short_candidates, long_candidates = prepared.levels(
            params.key_level_lookback
        )
        bar, direction, stop, target = sweep_signals_nb(
            c.high,
            c.low,
            c.close,
            c.volume,
            prepared.volume_avg,
            prepared.atr,
            prepared.regime,
            resistance,
            support,
            short_candidates,
            long_candidates,
            params.key_level_lookback,
            params.min_level_touches,
            self.indicators.touch_tolerance,
            params.pierce_depth,
            params.volume_spike_threshold,
            params.reversal_candles,
            params.min_distance_from_level,
            params.atr_multiplier_sl,
            params.risk_reward_ratio,
            REGIME_CODES.get(regime, -2),
            trade_from,
        )
        return Signals(bar, direction, stop, target, params.max_holding_periods)


@njit(cache=True)
def _resistance_touches_nb(
    high: FloatArray, start: int, stop: int, level: float, tol: float, need: int
) -> bool:
    threshold = level * (1.0 - tol)
    count = 0
    for k in range(start, stop):
        if high[k] >= threshold:
            count += 1
            if count >= need:
                return True
    return False


@njit(cache=True)
def _support_touches_nb(
    low: FloatArray, start: int, stop: int, level: float, tol: float, need: int
) -> bool:
    threshold = level * (1.0 + tol)
    count = 0
    for k in range(start, stop):
        if low[k] <= threshold:
            count += 1
            if count >= need:
                return True
    return False


@njit(cache=True)
def _sweeps_nb(
    candidates: np.ndarray,
    extreme: FloatArray,
    close_back: FloatArray,
    volume: FloatArray,
    volume_avg: FloatArray,
    level: FloatArray,
    lookback: int,
    min_touches: int,
    tol: float,
    pierce: float,
    spike: float,
    reversal: int,
    min_distance: float,
    start: int,
    is_short: bool,
) -> np.ndarray:
    """Bars where one side's signal fires (spec section 4, steps 1 and 2), in bar order.

    `candidates` are the bars whose extreme reaches the level at all; every sweep is one of
    them. A setup lives from its sweep bar to its expiry or the next sweep, which replaces it.
    """
    n = len(close_back)
    sweeps = np.empty(len(candidates), dtype=np.int64)
    m = 0
    for i in candidates:
        if i < start:
            continue
        va = volume_avg[i]
        if not (va > 0.0 and volume[i] >= spike * va):
            continue
        lv = level[i]
        if is_short:
            if not extreme[i] >= lv * (1.0 + pierce):
                continue
            if not _resistance_touches_nb(extreme, i - lookback, i, lv, tol, min_touches):
                continue
        else:
            if not extreme[i] <= lv * (1.0 - pierce):
                continue
            if not _support_touches_nb(extreme, i - lookback, i, lv, tol, min_touches):
                continue
        sweeps[m] = i
        m += 1
    fires = np.empty(m, dtype=np.int64)
    f = 0
    for t in range(m):
        s = sweeps[t]
        lv = level[s]
        stop = s + reversal - 1
        if t + 1 < m and sweeps[t + 1] - 1 < stop:
            stop = sweeps[t + 1] - 1
        if stop > n - 1:
            stop = n - 1
        if is_short:
            trigger = lv * (1.0 - min_distance)
            for j in range(s, stop + 1):
                if close_back[j] <= trigger:
                    fires[f] = j
                    f += 1
                    break
        else:
            trigger = lv * (1.0 + min_distance)
            for j in range(s, stop + 1):
                if close_back[j] >= trigger:
                    fires[f] = j
                    f += 1
                    break
    return fires[:f]


@njit(cache=True)
def sweep_signals_nb(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray,
    volume_avg: FloatArray,
    atr: FloatArray,
    regime_codes: np.ndarray,
    resistance: FloatArray,
    support: FloatArray,
    short_candidates: np.ndarray,
    long_candidates: np.ndarray,
    lookback: int,
    min_touches: int,
    tol: float,
    pierce: float,
    spike: float,
    reversal: int,
    min_distance: float,
    atr_mult: float,
    rr: float,
    regime_code: int,
    trade_from: int,
) -> tuple[np.ndarray, np.ndarray, FloatArray, FloatArray]:
    """Counted signals of both sides, merged in bar order (spec section 4).

    A setup created before `trade_from - reversal + 1` has expired by `trade_from`, so sweeps
    before that bar cannot change a signal at or after it and are skipped.
    """
    start = max(0, trade_from - reversal + 1)
    shorts = _sweeps_nb(
        short_candidates,
        high,
        close,
        volume,
        volume_avg,
        resistance,
        lookback,
        min_touches,
        tol,
        pierce,
        spike,
        reversal,
        min_distance,
        start,
        True,
    )
    longs = _sweeps_nb(
        long_candidates,
        low,
        close,
        volume,
        volume_avg,
        support,
        lookback,
        min_touches,
        tol,
        pierce,
        spike,
        reversal,
        min_distance,
        start,
        False,
    )
    cap = len(shorts) + len(longs)
    out_bar = np.empty(cap, dtype=np.int64)
    out_dir = np.empty(cap, dtype=np.int8)
    out_sl = np.empty(cap)
    out_tp = np.empty(cap)
    m = 0
    a = 0
    b = 0
    while a < len(shorts) or b < len(longs):
        if b >= len(longs) or (a < len(shorts) and shorts[a] < longs[b]):
            j = shorts[a]
            side = -1
            a += 1
        elif a >= len(shorts) or longs[b] < shorts[a]:
            j = longs[b]
            side = 1
            b += 1
        else:
            # Long and short on one bar: neither counts.
            a += 1
            b += 1
            continue
        if j < trade_from:
            continue
        atr_j = atr[j]
        if not atr_j > 0.0:
            continue
        if regime_code != -2 and regime_codes[j] != regime_code:
            continue
        p = close[j]
        out_bar[m] = j
        out_dir[m] = side
        if side == 1:
            sl = p - atr_mult * atr_j
            out_sl[m] = sl
            out_tp[m] = p + rr * (p - sl)
        else:
            sl = p + atr_mult * atr_j
            out_sl[m] = sl
            out_tp[m] = p - rr * (sl - p)
        m += 1
    return out_bar[:m], out_dir[:m], out_sl[:m], out_tp[:m]
