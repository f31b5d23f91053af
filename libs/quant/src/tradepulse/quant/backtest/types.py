"""Backtest settings and results, the engine's public value types."""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

from tradepulse.quant.backtest.kernel import (
    EXIT_REASONS,
    T_ENTRY_BAR,
    T_EXIT_BAR,
    T_EXIT_PRICE,
    T_FEES,
    T_FILL,
    T_GROSS,
    T_NET,
    T_QTY,
    T_REASON,
    T_SIDE,
    T_SIGNAL_BAR,
    T_SIGNAL_PRICE,
    T_SL,
    T_TP,
)
from tradepulse.quant.candles import FloatArray, IntArray
from tradepulse.quant.errors import ParameterError
from tradepulse.quant.metrics import METRIC_NAMES, Metrics

MAX_SETTING = 1e12


@dataclass(frozen=True)
class Bound:
    """The finite numbers a setting may take: from `low` to `high`, each end included unless
    marked open. Every layer that checks a setting (the contracts, the HTTP API) builds its
    check from this, so a value refused here is refused there first."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        # Compared as given, so an int too large for a float is out of range, not an error.
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        ends = [
            f"{end:g} excluded"
            for end, open_ in ((self.low, self.low_open), (self.high, self.high_open))
            if open_
        ]
        return f"between {self.low:g} and {self.high:g}" + (f" ({', '.join(ends)})" if ends else "")


# Spec section 5 gives the defaults; the bounds are the core's reading of what the engine can
# run: a positive capital, fees and slippage below the whole notional, and a risk and leverage
# that may be 0 (no position) and are capped only to keep equity finite.
SETTING_BOUNDS: Mapping[str, Bound] = MappingProxyType(
    {
        "initial_capital": Bound(0.0, MAX_SETTING, low_open=True),
        "fee_rate": Bound(0.0, 1.0, high_open=True),
        "slippage": Bound(0.0, 1.0, high_open=True),
        "risk_per_trade": Bound(0.0, MAX_SETTING),
        "max_leverage": Bound(0.0, MAX_SETTING),
    }
)


@dataclass(frozen=True)
class BacktestSettings:
    """Execution settings (spec section 5). Fractions are of price or equity, not percent;
    each must lie within its `SETTING_BOUNDS` entry."""

    initial_capital: float = 10000.0
    fee_rate: float = 0.001
    slippage: float = 0.0005
    risk_per_trade: float = 0.01
    max_leverage: float = 3.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParameterError(f.name, f"must be a number, got {value!r}")
            bound = SETTING_BOUNDS[f.name]
            if not bound.admits(value):
                raise ParameterError(f.name, f"must be a number {bound}, got {value!r}")
            object.__setattr__(self, f.name, float(value))

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> BacktestSettings:
        if not isinstance(values, dict):
            raise ParameterError("settings", f"must be an object, got {values!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(
                unknown[0], f"unknown setting; expected {', '.join(sorted(known))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip. Bars are row numbers of the whole history; times are open times (ms)."""

    side: str
    signal_bar: int
    entry_bar: int
    exit_bar: int
    signal_time: int
    entry_time: int
    exit_time: int
    signal_price: float
    fill_price: float
    stop_loss: float
    take_profit: float
    qty: float
    exit_price: float
    exit_reason: str
    gross_pnl: float
    net_pnl: float
    fees: float

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Trades, equity and metrics of one backtest, with a fingerprint to compare runs.

    `equity` covers bars trade_from..n-1 of the candles run (spec section 8).
    """

    trade_ints: IntArray
    trade_floats: FloatArray
    open_time: IntArray
    first_row: int
    equity: FloatArray
    metrics: Metrics
    ambiguous_exits: int

    @cached_property
    def trades(self) -> tuple[Trade, ...]:
        out = []
        times = self.open_time
        for ints, floats in zip(self.trade_ints.tolist(), self.trade_floats.tolist(), strict=True):
            out.append(
                Trade(
                    side="long" if ints[T_SIDE] == 1 else "short",
                    signal_bar=ints[T_SIGNAL_BAR] + self.first_row,
                    entry_bar=ints[T_ENTRY_BAR] + self.first_row,
                    exit_bar=ints[T_EXIT_BAR] + self.first_row,
                    signal_time=int(times[ints[T_SIGNAL_BAR]]),
                    entry_time=int(times[ints[T_ENTRY_BAR]]),
                    exit_time=int(times[ints[T_EXIT_BAR]]),
                    signal_price=floats[T_SIGNAL_PRICE],
                    fill_price=floats[T_FILL],
                    stop_loss=floats[T_SL],
                    take_profit=floats[T_TP],
                    qty=floats[T_QTY],
                    exit_price=floats[T_EXIT_PRICE],
                    exit_reason=EXIT_REASONS[ints[T_REASON]],
                    gross_pnl=floats[T_GROSS],
                    net_pnl=floats[T_NET],
                    fees=floats[T_FEES],
                )
            )
        return tuple(out)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over a canonical binary form of the trades and metrics.

        Layout (all little-endian): b"tradepulse-fingerprint-v1"; the trade count as int64; per
        trade, int64 side (+1/-1), exit reason code, signal/entry/exit open times (ms); per
        trade, float64 signal price, fill, stop, target, qty, exit price, gross, net, fees; per
        metric in METRIC_NAMES order, a byte 0 for null or 1 followed by its float64 value.
        Bar numbers are left out: they count rows from wherever the loaded history starts,
        while open times name the same bars in every history.
        """
        ints = self.trade_ints
        times = self.open_time
        keyed = np.column_stack(
            (
                ints[:, T_SIDE],
                ints[:, T_REASON],
                times[ints[:, T_SIGNAL_BAR]],
                times[ints[:, T_ENTRY_BAR]],
                times[ints[:, T_EXIT_BAR]],
            )
        ).astype("<i8")
        h = hashlib.sha256(b"tradepulse-fingerprint-v1")
        h.update(np.array([len(ints)], dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(keyed).tobytes())
        h.update(np.ascontiguousarray(self.trade_floats, dtype="<f8").tobytes())
        for name in METRIC_NAMES:
            value = self.metrics[name]
            h.update(b"\x00" if value is None else b"\x01" + struct.pack("<d", float(value)))
        return h.hexdigest()

    def trade_dicts(self) -> list[dict[str, Any]]:
        """`[t.to_dict() for t in self.trades]`, the same keys, values and types, built from
        the columns without a `Trade` per row: about six times faster, which is most of what
        `--json` spends per result after the backtest. A dict display, not `dict(zip(...))`,
        since it is half the cost again; a test holds its keys to `Trade`'s fields."""
        ints = self.trade_ints
        floats = self.trade_floats
        times = self.open_time
        first = self.first_row
        columns = (
            np.where(ints[:, T_SIDE] == 1, "long", "short").tolist(),
            (ints[:, T_SIGNAL_BAR] + first).tolist(),
            (ints[:, T_ENTRY_BAR] + first).tolist(),
            (ints[:, T_EXIT_BAR] + first).tolist(),
            times[ints[:, T_SIGNAL_BAR]].tolist(),
            times[ints[:, T_ENTRY_BAR]].tolist(),
            times[ints[:, T_EXIT_BAR]].tolist(),
            floats[:, T_SIGNAL_PRICE].tolist(),
            floats[:, T_FILL].tolist(),
            floats[:, T_SL].tolist(),
            floats[:, T_TP].tolist(),
            floats[:, T_QTY].tolist(),
            floats[:, T_EXIT_PRICE].tolist(),
            [EXIT_REASONS[r] for r in ints[:, T_REASON].tolist()],
            floats[:, T_GROSS].tolist(),
            floats[:, T_NET].tolist(),
            floats[:, T_FEES].tolist(),
        )
        return [
            {
                "side": side,
                "signal_bar": signal_bar,
                "entry_bar": entry_bar,
                "exit_bar": exit_bar,
                "signal_time": signal_time,
                "entry_time": entry_time,
                "exit_time": exit_time,
                "signal_price": signal_price,
                "fill_price": fill_price,
                "stop_loss": stop_loss,
                "take_profit": take_profit,
                "qty": qty,
                "exit_price": exit_price,
                "exit_reason": exit_reason,
                "gross_pnl": gross_pnl,
                "net_pnl": net_pnl,
                "fees": fees,
            }
            for (
                side,
                signal_bar,
                entry_bar,
                exit_bar,
                signal_time,
                entry_time,
                exit_time,
                signal_price,
                fill_price,
                stop_loss,
                take_profit,
                qty,
                exit_price,
                exit_reason,
                gross_pnl,
                net_pnl,
                fees,
            ) in zip(*columns, strict=True)
        ]

    def to_dict(self, *, trades: bool = True) -> dict[str, Any]:
        """The CLI's --json object; `trades=False` leaves the trades out (`--no-trades`)."""
        out: dict[str, Any] = {"metrics": self.metrics}
        if trades:
            out["trades"] = self.trade_dicts()
        out["fingerprint"] = self.fingerprint
        out["ambiguous_exits"] = self.ambiguous_exits
        return out
