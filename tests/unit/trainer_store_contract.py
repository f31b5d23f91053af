"""The `JobStore` contract, one suite for every implementation (the optuna storage habit).

A test module subclasses `StoreContract` and gives a `backend` fixture: the in-memory store in
tests/unit/test_trainer_store.py, both it and PostgreSQL in
tests/integration/test_trainer_store_contract.py.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tradepulse.common.contracts.market import DatasetKey
from tradepulse.common.contracts.training import (
    BarSpan,
    DataWindow,
    FinalOptimization,
    FoldResult,
    OutOfSample,
    SelectedTrial,
    TrainingRequested,
    TrialCompleted,
    ValidationReport,
    WalkForwardReport,
)
from tradepulse.trainer.ports import JobStore

from .trainer_fakes import Clock, MemoryJobStore

BTC = DatasetKey(exchange="binance", symbol="BTC/USDT", timeframe="5m")
ETH = DatasetKey(exchange="binance", symbol="ETH/USDT", timeframe="5m")
WINDOW = DataWindow(
    snapshot="snap-1",
    content_hash="abc",
    begin=0,
    stop=100,
    trade_from=20,
    first_ms=1_000,
    last_ms=2_000,
)

REPORT = ValidationReport(
    n_trials=3,
    sharpe_variance=0.25,
    expected_max_sharpe=1.5,
    expected_max_sharpe_per_bar=0.01,
    selected=SelectedTrial(trial=2, sharpe_per_bar=0.02, returns=99, skew=0.1, kurtosis=3.5),
    psr=0.9,
    dsr=0.4,
    pbo=None,
)

SPAN = BarSpan(first_bar=10, last_bar=19, bars=10, first_ms=3_000_000, last_ms=5_700_000)
FOLD = FoldResult(
    fold=0,
    train=SPAN,
    test=SPAN,
    best_trial=None,
    best_value=None,
    params=None,
    train_metrics=None,
    initial_capital=10_000.0,
    final_capital=10_000.0,
    test_metrics={"net_profit_pct": 0.0, "sharpe_ratio": None},
    test_trades=0,
    flat_reason="no usable trial",
    efficiency=None,
    validation=REPORT.model_copy(update={"selected": None, "psr": None, "dsr": None}),
)
WALK_FORWARD = WalkForwardReport(
    folds=2,
    mode="anchored",
    is_oos_ratio=3,
    train_bars=30,
    test_bars=10,
    fold_results=[FOLD, FOLD.model_copy(update={"fold": 1, "efficiency": 0.1 + 0.2})],
    final=FinalOptimization(fold=2, span=SPAN, best_trial=21, validation=REPORT),
    oos=OutOfSample(span=SPAN, metrics={"sharpe_ratio": -1 / 7}, psr=0.25, fingerprint="fp"),
    wfe=None,
    dispersion={"a": None, "b": 1 / 3},
)


@dataclass
class Backend:
    store: JobStore
    # Make the job's current lease run out, as if its holder died a second ago.
    expire: Callable[[str], Awaitable[None]]
    # Let time pass between two writes, so that their timestamps differ.
    tick: Callable[[], None]


def memory_backend() -> Backend:
    clock = Clock()
    store = MemoryJobStore(clock)

    async def expire(job_id: str) -> None:
        store.expire_lease(job_id)

    return Backend(store=store, expire=expire, tick=lambda: clock.advance(0.001))


def request(**fields: Any) -> TrainingRequested:
    defaults: dict[str, Any] = {
        "job_id": f"job-{uuid.uuid4().hex[:12]}",
        "dataset": BTC,
        "lookback_candles": 500,
        "n_iterations": 10,
    }
    return TrainingRequested.model_validate({**defaults, **fields})


def trial(job_id: str, number: int, value: float | None, **fields: Any) -> TrialCompleted:
    base: dict[str, Any] = {
        "message_id": f"{job_id}.trial.{number}.done",
        "job_id": job_id,
        "number": number,
        "params": {"a": number, "b": 0.5},
        "state": "complete" if value is not None else "failed",
        "value": value,
        "metrics": {"sharpe_ratio": value, "total_trades": 3},
        "fingerprint": f"fp{number}",
        "duration_ms": 1.25,
        "replica": "trainer-1",
        "reason": None if value is not None else "0 trades, fewer than min_trades 1",
    }
    return TrialCompleted.model_validate({**base, **fields})


async def running(store: JobStore, job: TrainingRequested, holder: str = "trainer-1") -> None:
    await store.create_job(job)
    assert await store.take_job(job.job_id, holder, 15)
    await store.start_job(
        job.job_id, sampler="RandomSampler", sampler_version="v", batch_size=4, window=WINDOW
    )


class StoreContract:
    async def test_a_job_is_created_once_as_queued(self, backend: Backend) -> None:
        store = backend.store
        job = request()
        row = await store.create_job(job)
        assert (row.job_id, row.status, row.request, row.n_iterations) == (
            job.job_id,
            "queued",
            job,
            10,
        )
        assert (row.holder, row.lease_until, row.data_window, row.batch_size) == (
            None,
            None,
            None,
            None,
        )
        assert not row.cancel_requested
        again = await store.create_job(job.model_copy(update={"n_iterations": 99}))
        assert again == row, "a second submission changes nothing"
        assert await store.get_job(job.job_id) == row
        assert await store.get_job("job-nope") is None

    async def test_a_lease_is_held_until_it_runs_out_or_is_released(self, backend: Backend) -> None:
        store = backend.store
        job = request()
        await store.create_job(job)
        assert await store.take_job(job.job_id, "trainer-1", 15)
        assert await store.take_job(job.job_id, "trainer-1", 15), "its holder may take it again"
        assert not await store.take_job(job.job_id, "trainer-2", 15)
        assert await store.held_by_another(job.job_id, "trainer-2")
        assert not await store.held_by_another(job.job_id, "trainer-1")
        row = await store.get_job(job.job_id)
        assert row is not None
        assert row.holder == "trainer-1"
        assert row.lease_until is not None

        await backend.expire(job.job_id)
        assert not await store.held_by_another(job.job_id, "trainer-2"), (
            "a dead holder holds nothing"
        )
        assert await store.take_job(job.job_id, "trainer-2", 15)

        await store.release_lease(job.job_id, "trainer-1")  # not the holder: changes nothing
        assert await store.held_by_another(job.job_id, "trainer-1")
        await store.release_lease(job.job_id, "trainer-2")  # shutting down
        assert not await store.held_by_another(job.job_id, "trainer-1")
        assert await store.take_job(job.job_id, "trainer-1", 15), "taken over at once"

    async def test_a_renewed_lease_holds_again_and_only_its_holder_renews(
        self, backend: Backend
    ) -> None:
        store = backend.store
        job = request()
        await store.create_job(job)
        assert await store.take_job(job.job_id, "trainer-1", 15)
        await backend.expire(job.job_id)
        assert not await store.renew_lease(job.job_id, "trainer-2", 15)
        assert not await store.held_by_another(job.job_id, "trainer-2")
        assert await store.renew_lease(job.job_id, "trainer-1", 15)
        assert await store.held_by_another(job.job_id, "trainer-2")

    async def test_a_holder_that_lost_its_job_to_a_takeover_writes_nothing(
        self, backend: Backend
    ) -> None:
        """A holder cut off past its lease comes back after another replica took the job
        over: its older count, its end and its renewals are refused."""
        store = backend.store
        job = request()
        await running(store, job, holder="trainer-1")
        assert await store.update_progress(
            job.job_id,
            holder="trainer-1",
            trials_done=4,
            progress=40.0,
            best_trial=1,
            best_value=2.0,
        )
        await backend.expire(job.job_id)
        assert await store.take_job(job.job_id, "trainer-2", 15)
        assert await store.update_progress(
            job.job_id,
            holder="trainer-2",
            trials_done=8,
            progress=80.0,
            best_trial=5,
            best_value=3.0,
        )
        assert not await store.update_progress(
            job.job_id,
            holder="trainer-1",
            trials_done=4,
            progress=40.0,
            best_trial=1,
            best_value=2.0,
        )
        assert not await store.renew_lease(job.job_id, "trainer-1", 15)
        assert not await store.finish(job.job_id, "completed", holder="trainer-1")
        row = await store.get_job(job.job_id)
        assert row is not None
        assert (row.status, row.trials_done, row.holder) == ("running", 8, "trainer-2")
        assert await store.finish(job.job_id, "completed", holder="trainer-2")

    async def test_starting_keeps_the_first_window_and_start(self, backend: Backend) -> None:
        store = backend.store
        job = request()
        await running(store, job)
        first = await store.get_job(job.job_id)
        assert first is not None
        assert (first.status, first.sampler, first.batch_size) == ("running", "RandomSampler", 4)
        assert first.data_window == WINDOW
        assert first.started_at is not None
        backend.tick()
        other = WINDOW.model_copy(update={"snapshot": "snap-2"})
        await store.start_job(
            job.job_id, sampler="RandomSampler", sampler_version="v", batch_size=4, window=other
        )
        again = await store.get_job(job.job_id)
        assert again is not None
        assert (again.data_window, again.started_at) == (WINDOW, first.started_at)

    async def test_a_trial_is_stored_once_and_read_back_exactly(self, backend: Backend) -> None:
        store = backend.store
        job = request()
        await running(store, job)
        attrs = {"grid_id": 7, "nested": {"x": [1, 2.5]}}
        await store.insert_trials(
            [(trial(job.job_id, 1, 0.1 + 0.2), attrs), (trial(job.job_id, 0, None), {})]
        )
        await store.insert_trials([(trial(job.job_id, 1, 5.0, replica="trainer-2"), {})])
        stored = await store.stored_trials(job.job_id)
        assert [t.number for t in stored] == [0, 1]
        one = stored[1]
        assert one.value == 0.1 + 0.2, "the first stored result stays, bit for bit"
        assert (one.replica, one.system_attrs, one.params) == (
            "trainer-1",
            attrs,
            {"a": 1, "b": 0.5},
        )
        assert one.metrics == {"sharpe_ratio": 0.1 + 0.2, "total_trades": 3}
        assert stored[0].state == "failed"
        assert stored[0].reason == "0 trades, fewer than min_trades 1"
        assert stored[0].value is None
        assert set(await store.trials_in(job.job_id, [1, 5])) == {1}
        assert await store.trials_in(job.job_id, []) == {}

    async def test_trials_are_listed_by_number_a_page_at_a_time(self, backend: Backend) -> None:
        store = backend.store
        job = request()
        await running(store, job)
        await store.insert_trials([(trial(job.job_id, k, float(k)), {}) for k in (3, 0, 2, 1, 4)])
        total, page = await store.list_trials(job.job_id, 2, 1)
        assert (total, [t.number for t in page]) == (5, [1, 2])
        assert await store.list_trials("job-nope", 10, 0) == (0, [])
        total, page = await store.list_trials(job.job_id, 10, 1, range(1, 4))
        assert (total, [t.number for t in page]) == (3, [2, 3]), "one fold's trials, paged"

    async def test_a_walk_forward_job_counts_every_optimizations_trials(
        self, backend: Backend
    ) -> None:
        job = request(n_iterations=7, walk_forward={"folds": 3})
        row = await backend.store.create_job(job)
        assert (row.n_iterations, row.walk_forward) == (28, None)

    async def test_progress_is_recorded_only_while_running(self, backend: Backend) -> None:
        store = backend.store
        queued = request()
        await store.create_job(queued)
        await store.update_progress(
            queued.job_id,
            holder="trainer-1",
            trials_done=4,
            progress=40.0,
            best_trial=1,
            best_value=2.0,
        )
        row = await store.get_job(queued.job_id)
        assert row is not None
        assert (row.trials_done, row.best_trial) == (0, None)

        job = request()
        await running(store, job)
        await store.update_progress(
            job.job_id,
            holder="trainer-1",
            trials_done=4,
            progress=40.0,
            best_trial=1,
            best_value=2.0,
        )
        row = await store.get_job(job.job_id)
        assert row is not None
        assert (row.trials_done, row.progress, row.best_trial, row.best_value) == (4, 40.0, 1, 2.0)

    async def test_a_terminal_status_is_never_overwritten(self, backend: Backend) -> None:
        store = backend.store
        job = request()
        await running(store, job)
        assert await store.finish(job.job_id, "completed")
        assert not await store.finish(job.job_id, "failed", error="late")
        await store.update_progress(
            job.job_id,
            holder="trainer-1",
            trials_done=1,
            progress=10.0,
            best_trial=0,
            best_value=1.0,
        )
        row = await store.get_job(job.job_id)
        assert row is not None
        assert (row.status, row.error, row.progress, row.trials_done) == ("completed", None, 100, 0)
        assert row.finished_at is not None
        assert not await store.take_job(job.job_id, "trainer-2", 15), "an ended job is not taken"

        failed = request()
        await running(store, failed)
        await store.update_progress(
            failed.job_id,
            holder="trainer-1",
            trials_done=3,
            progress=30.0,
            best_trial=None,
            best_value=None,
        )
        assert await store.finish(failed.job_id, "failed", error="why")
        row = await store.get_job(failed.job_id)
        assert row is not None
        assert (row.status, row.error, row.progress) == ("failed", "why", 30.0)
        assert not await store.finish("job-nope", "failed")

    async def test_cancel_ends_a_job_no_live_replica_holds_at_once(self, backend: Backend) -> None:
        store = backend.store
        queued = request()
        await store.create_job(queued)
        assert await store.request_cancel(queued.job_id) == "cancelled"
        row = await store.get_job(queued.job_id)
        assert row is not None
        assert row.finished_at is not None

        held = request()
        await running(store, held)
        assert not await store.cancel_requested(held.job_id)
        assert await store.request_cancel(held.job_id) == "running", "its holder stops it"
        assert await store.cancel_requested(held.job_id)

        orphan = request()
        await running(store, orphan)
        await backend.expire(orphan.job_id)
        assert await store.request_cancel(orphan.job_id) == "cancelled", "no live holder"
        assert not await store.take_job(orphan.job_id, "trainer-2", 15)

        done = request()
        await running(store, done)
        await store.finish(done.job_id, "completed")
        assert await store.request_cancel(done.job_id) == "completed"

        assert await store.request_cancel("job-nope") is None
        assert not await store.cancel_requested("job-nope")

    async def test_no_trial_is_stored_once_the_job_is_cancelled(self, backend: Backend) -> None:
        # Issue 11: a cancelled job went on storing trials after its trials_done stopped.
        store = backend.store
        job = request()
        await running(store, job)
        await store.insert_trials([(trial(job.job_id, 0, 1.0), {})])
        await backend.expire(job.job_id)
        assert await store.request_cancel(job.job_id) == "cancelled"
        await store.insert_trials([(trial(job.job_id, k, 2.0), {}) for k in (1, 2)])
        assert [t.number for t in await store.stored_trials(job.job_id)] == [0]

        queued = request()
        await store.create_job(queued)
        assert await store.request_cancel(queued.job_id) == "cancelled"
        await store.insert_trials([(trial(queued.job_id, 0, 1.0), {})])
        assert await store.stored_trials(queued.job_id) == []

    async def test_jobs_are_listed_newest_first_and_filtered(self, backend: Backend) -> None:
        store = backend.store
        jobs = [request(job_id=f"job-{k}-{uuid.uuid4().hex[:6]}") for k in range(3)]
        eth = request(dataset=ETH)
        for job in [*jobs, eth]:
            await store.create_job(job)
            backend.tick()
        await running(store, jobs[0])
        total, ids = await store.list_jobs(None, None, None, 2, 0)
        assert (total, ids) == (4, [eth.job_id, jobs[2].job_id])
        assert await store.list_jobs(None, "ETH/USDT", None, 10, 0) == (1, [eth.job_id])
        assert await store.list_jobs("running", None, None, 10, 0) == (1, [jobs[0].job_id])
        assert await store.list_jobs(None, None, "OTHER", 10, 0) == (0, [])
        assert await store.jobs_by_status() == {"queued": 3, "running": 1}

    async def test_evaluated_trials_keep_their_sharpes_and_block_sums_bit_for_bit(
        self, backend: Backend
    ) -> None:
        store = backend.store
        job = request()
        await running(store, job)
        awkward = [-0.0, 5e-324, 1 / 3, 1e16]
        await store.insert_trials(
            [
                (trial(job.job_id, 2, 0.1 + 0.2, block_sums=awkward), {}),
                # Never traded: a Sharpe of exactly 0, evaluated.
                (
                    trial(job.job_id, 0, None, metrics={"sharpe_ratio": 0.0}, block_sums=[0.0] * 4),
                    {},
                ),
                # Its evaluation crashed: no Sharpe, not evaluated.
                (trial(job.job_id, 1, None, metrics={}), {}),
                (trial(job.job_id, 3, -1 / 7, block_sums=[1.5, -2.5, 0.25, 0.125]), {}),
            ]
        )
        got = await store.evaluated_trials(job.job_id)
        assert [(t.number, t.sharpe_ratio) for t in got] == [(0, 0.0), (2, 0.1 + 0.2), (3, -1 / 7)]
        assert got[1].block_sums == awkward
        assert got[1].block_sums is not None
        assert math.copysign(1.0, got[1].block_sums[0]) == -1.0, "-0.0 keeps its sign"
        assert await store.evaluated_trials("job-nope") == []

    async def test_a_report_is_stored_only_while_the_job_runs(self, backend: Backend) -> None:
        store = backend.store
        queued = request()
        await store.create_job(queued)
        await store.store_validation(queued.job_id, REPORT)
        row = await store.get_job(queued.job_id)
        assert row is not None
        assert row.validation is None

        job = request()
        await running(store, job)
        await store.store_validation(job.job_id, REPORT)
        await store.finish(job.job_id, "completed")
        await store.store_validation(job.job_id, REPORT.model_copy(update={"n_trials": 9}))
        row = await store.get_job(job.job_id)
        assert row is not None
        assert row.validation == REPORT

    async def test_a_walk_forward_report_is_stored_only_while_the_job_runs(
        self, backend: Backend
    ) -> None:
        store = backend.store
        queued = request(walk_forward={"folds": 2})
        await store.create_job(queued)
        await store.store_walk_forward(queued.job_id, WALK_FORWARD)
        row = await store.get_job(queued.job_id)
        assert row is not None
        assert row.walk_forward is None

        job = request(walk_forward={"folds": 2})
        await running(store, job)
        await store.store_walk_forward(job.job_id, WALK_FORWARD)
        await store.finish(job.job_id, "completed")
        await store.store_walk_forward(job.job_id, WALK_FORWARD.model_copy(update={"wfe": 1.0}))
        row = await store.get_job(job.job_id)
        assert row is not None
        assert row.walk_forward == WALK_FORWARD, "bit for bit, and never after its end"

    async def test_an_ensembles_jobs_come_in_seed_order_with_their_best_params(
        self, backend: Backend
    ) -> None:
        store = backend.store
        ensemble = f"ens-{uuid.uuid4().hex[:8]}"
        jobs = [request(seed=seed, ensemble_id=ensemble, ensemble_size=3) for seed in (9, 1, 5)]
        for job in jobs:
            await store.create_job(job)
        await store.create_job(request(seed=2))  # of no ensemble
        await running(store, jobs[1])
        await store.insert_trials([(trial(jobs[1].job_id, 0, 1.25), {})])
        await store.update_progress(
            jobs[1].job_id,
            holder="trainer-1",
            trials_done=1,
            progress=100.0,
            best_trial=0,
            best_value=1.25,
        )
        rows = await store.ensemble_jobs(ensemble)
        assert [r.request.seed for r in rows] == [1, 5, 9]
        assert [(r.best_value, r.best_params) for r in rows] == [
            (1.25, {"a": 0, "b": 0.5}),
            (None, None),
            (None, None),
        ]
        assert await store.ensemble_jobs("ens-nope") == []
