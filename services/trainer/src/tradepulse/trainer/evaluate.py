"""Trial evaluation: the core's backtest on a cached dataset window.

Each replica keeps the candles of a dataset snapshot loaded once and the strategy's
per-dataset preparation cached per window, so a trial costs one backtest.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from tradepulse.common.contracts.training import (
    MAX_FOLDS,
    DataWindow,
    TrialCompleted,
    TrialSpec,
    TrialWork,
)
from tradepulse.quant import BacktestSettings, Candles, get_strategy, run_backtest
from tradepulse.trainer.validation import trial_block_sums

SnapshotLoader = Callable[[str], Awaitable[bytes]]


class DatasetCache:
    """Snapshots by name and prepared windows, least recently used first out."""

    # A walk-forward job of the most folds trains on MAX_FOLDS + 1 windows side by side; fewer
    # slots would evict (and prepare again) a window for nearly every work item.
    def __init__(
        self, load: SnapshotLoader, max_snapshots: int = 4, max_windows: int = MAX_FOLDS + 4
    ) -> None:
        self._load = load
        self._snapshots: OrderedDict[str, Candles] = OrderedDict()
        self._windows: OrderedDict[tuple[str, str, int, int], tuple[Candles, Any]] = OrderedDict()
        self._max_snapshots = max_snapshots
        self._max_windows = max_windows

    async def history(self, snapshot: str) -> Candles:
        candles = self._snapshots.get(snapshot)
        if candles is None:
            candles = Candles.from_bytes(await self._load(snapshot), source=snapshot)
            self._snapshots[snapshot] = candles
            while len(self._snapshots) > self._max_snapshots:
                self._snapshots.popitem(last=False)
        self._snapshots.move_to_end(snapshot)
        return candles

    async def window(self, strategy_name: str, window: DataWindow) -> tuple[Candles, Any]:
        key = (strategy_name, window.snapshot, window.begin, window.stop)
        cached = self._windows.get(key)
        if cached is None:
            history = await self.history(window.snapshot)
            candles = history.slice(window.begin, window.stop)
            cached = (candles, get_strategy(strategy_name).prepare(candles))
            self._windows[key] = cached
            while len(self._windows) > self._max_windows:
                self._windows.popitem(last=False)
        self._windows.move_to_end(key)
        return cached


async def evaluate(
    work: TrialWork, trial: TrialSpec, cache: DatasetCache, replica: str
) -> TrialCompleted:
    """Run one trial. Its value is the objective, or None when the trial counts as failed."""
    candles, prepared = await cache.window(work.strategy, work.window)
    started = time.perf_counter()
    strategy = get_strategy(work.strategy)
    result = run_backtest(
        candles,
        strategy,
        strategy.parse_params(trial.params),
        BacktestSettings(**work.settings.model_dump()),
        regime=work.regime,
        trade_from=work.window.trade_from,
        prepared=prepared,
    )
    fingerprint = result.fingerprint
    duration_ms = (time.perf_counter() - started) * 1000
    trades = int(result.metrics["total_trades"] or 0)
    value = result.metrics[work.objective]
    reason = None
    if trades < work.min_trades:
        reason = f"{trades} trades, fewer than min_trades {work.min_trades}"
    elif value is None:
        reason = f"{work.objective} is null for this trial"
    return TrialCompleted(
        message_id=f"{work.job_id}.trial.{trial.number}.done",
        job_id=work.job_id,
        number=trial.number,
        params=trial.params,
        state="failed" if reason else "complete",
        value=None if reason else float(value),  # type: ignore[arg-type]
        metrics=result.metrics,
        fingerprint=fingerprint,
        duration_ms=duration_ms,
        replica=replica,
        reason=reason,
        block_sums=trial_block_sums(result, work.pbo_blocks),
    )
