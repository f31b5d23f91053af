"""Use cases of a job's holder: decide what a delivered job needs, hold it, end it.

Holding a job: take its lease, resolve its data window once (recorded with the job so a
resumed job uses the same snapshot), run its study (study.StudyRunner) recording progress
after each batch, then end it (`complete_job`). A replica that takes over a job after a
crash runs exactly this code, so its trials are those of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from tradepulse.common.contracts.market import CoverageQuery, DatasetCoverage
from tradepulse.common.contracts.training import (
    TERMINAL_STATUSES,
    DataWindow,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgress,
    TrainingRequested,
    TrialCompleted,
)
from tradepulse.common.logging import get_logger
from tradepulse.quant import QuantError, get_strategy, last_window, range_window
from tradepulse.trainer import folds, plan
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.errors import JobError, JobHeldElsewhereError, JobTakenOverError
from tradepulse.trainer.importances import record_importances
from tradepulse.trainer.optimizer import SamplerSpec
from tradepulse.trainer.ports import EvaluatedTrial
from tradepulse.trainer.study import StudyRunner, StudySpec
from tradepulse.trainer.validation import record_report

log = get_logger("trainer")


async def take_delivery(
    request: TrainingRequested, attempt: int, deps: Deps, cancel: asyncio.Event
) -> str:
    """Do what the `attempt`-th delivery of a job needs (plan.next_action); the job's
    status afterwards. Raises JobHeldElsewhereError while a live replica holds it."""
    job_id = request.job_id
    job = await deps.store.create_job(request)
    max_deliveries = deps.settings.job_max_deliver
    state = plan.JobState(
        status=job.status,
        cancel_requested=job.cancel_requested,
        deliveries=attempt,
        max_deliveries=max_deliveries,
        held_elsewhere=attempt > max_deliveries
        and await deps.store.held_by_another(job_id, deps.replica),
    )
    match plan.next_action(state):
        case plan.Action.WAIT:
            raise JobHeldElsewhereError(job_id)
        case plan.Action.GIVE_UP:
            return await finish_failed(
                job_id, f"gave up after {max_deliveries} attempts; see the trainer logs", deps
            )
        case plan.Action.REPUBLISH_TERMINAL:
            await publish_terminal(job_id, deps)
            return job.status
        case plan.Action.CANCEL:
            return await finish_cancelled(job_id, deps)
        case plan.Action.RUN:
            return await hold_job(request, job.batch_size, job.data_window, deps, cancel)


async def hold_job(
    request: TrainingRequested,
    recorded_batch_size: int | None,
    recorded_window: DataWindow | None,
    deps: Deps,
    cancel: asyncio.Event,
) -> str:
    """Run (or resume) a job to its end under this replica's lease; its final status."""
    job_id = request.job_id
    store = deps.store
    if not await store.take_job(job_id, deps.replica, deps.settings.lease_seconds):
        raise JobHeldElsewhereError(job_id)
    try:
        window = recorded_window or await resolve_window(request, deps)
        space = get_strategy(request.strategy).space
    except (JobError, QuantError) as exc:
        return await finish_failed(job_id, str(exc), deps)

    batch_size = plan.batch_size_for(
        request.optimizer,
        recorded=recorded_batch_size,
        requested=request.batch_size,
        default=deps.settings.batch_size,
        model_default=deps.settings.model_batch_size,
    )
    sampler = SamplerSpec(request.optimizer, batch_size)
    await store.start_job(
        job_id,
        sampler=sampler.description,
        sampler_version=sampler.version,
        batch_size=batch_size,
        window=window,
    )
    if request.walk_forward is not None:
        return await hold_walk_forward(request, window, sampler, deps, cancel)
    n = request.n_iterations
    spec = StudySpec(request=request, window=window, sampler=sampler, seed=request.seed, n=n)
    try:
        study = await StudyRunner.open(spec, space, await store.stored_trials(job_id), deps, cancel)
    except JobError as exc:
        return await finish_failed(job_id, str(exc), deps)
    log.info("job_held", job_id=job_id, resumed_from=study.resumed_from, batch_size=batch_size)

    async def on_batch(done: int, results: Mapping[int, TrialCompleted]) -> None:
        await record_progress(request, done, results, deps)

    results = await study.run(on_batch)
    if results is None:
        return await finish_cancelled(job_id, deps)
    if study.resumed_from == n:
        # Resumed with every trial already stored (the last holder died after the workers
        # finished): no batch was told, so the job's best and count are recorded here.
        await record_progress(request, n, results, deps)
    return await complete_job(request, window, results, deps)


async def complete_job(
    request: TrainingRequested,
    window: DataWindow,
    results: Mapping[int, TrialCompleted],
    deps: Deps,
) -> str:
    """The job's optimization is over with every trial's result: the one place where a job
    becomes completed (its best is the stored best_trial, its validation report stored first)
    or, with no usable trial, failed."""
    job_id = request.job_id
    best = plan.best_of(results)
    if best is None:
        reasons = {r.reason for r in results.values() if r.reason}
        example = f" (e.g. {sorted(reasons)[0]})" if reasons else ""
        n = request.n_iterations
        return await finish_failed(
            job_id, f"none of the {n} trials produced a usable {request.objective}{example}", deps
        )
    await record_report(deps.store, deps.cache, request, window, best.number)
    await record_importances(request, results, deps)
    return await finish_completed(job_id, deps)


async def hold_walk_forward(
    request: TrainingRequested,
    window: DataWindow,
    sampler: SamplerSpec,
    deps: Deps,
    cancel: asyncio.Event,
) -> str:
    """Run (or resume) a walk-forward job's K + 1 optimizations side by side (folds.py), then
    complete it with its report; its final status."""
    job_id = request.job_id
    space = get_strategy(request.strategy).space
    try:
        fold_plan = folds.fold_plan(request, window, await deps.cache.history(window.snapshot))
    except QuantError as exc:
        return await finish_failed(job_id, str(exc), deps)
    rows = await deps.store.stored_trials(job_id)
    async with folds.mirrored(cancel) as stop:
        try:
            studies = [
                await StudyRunner.open(spec, space, rows, deps, stop)
                for spec in folds.fold_specs(fold_plan, sampler)
            ]
        except JobError as exc:
            return await finish_failed(job_id, str(exc), deps)
        log.info(
            "walk-forward job held",
            job_id=job_id,
            folds=fold_plan.layout.folds,
            resumed_from=[s.resumed_from for s in studies],
        )
        progress = folds.FoldProgress(request, studies, deps)
        results = await folds.run_studies(studies, progress, stop)
    if results is None:
        return await finish_cancelled(job_id, deps)
    # Resumed with every trial stored, no batch was told: the count and best are recorded here.
    await progress.record()
    return await complete_walk_forward(fold_plan, results, deps)


async def complete_walk_forward(
    fold_plan: folds.FoldPlan, results: list[dict[int, TrialCompleted]], deps: Deps
) -> str:
    """Every optimization of a walk-forward job is over: store its report and the final
    optimization's validation report, then complete it; failed when the final optimization
    (the configuration) has no usable trial."""
    request = fold_plan.request
    job_id = request.job_id
    numbers = folds.fold_bests(fold_plan, results)
    final = numbers[-1]
    if final is None:
        n = request.n_iterations
        return await finish_failed(
            job_id,
            f"none of the {n} trials of the final optimization produced a usable "
            f"{request.objective}",
            deps,
        )
    stored = await deps.store.trials_in(job_id, [k for k in numbers if k is not None])
    evaluated = await deps.store.evaluated_trials(job_id)
    by_fold: list[list[EvaluatedTrial]] = [[] for _ in numbers]
    for t in evaluated:
        by_fold[folds.fold_of(t.number, request.n_iterations)].append(t)
    prepared = [(await deps.cache.window(request.strategy, w))[1] for w in fold_plan.train_windows]
    data = folds.FoldData(
        bests=[stored[k] if k is not None else None for k in numbers],
        evaluated=by_fold,
        prepared=prepared,
    )
    report, final_validation = await asyncio.to_thread(folds.build_report, fold_plan, data)
    await deps.store.store_validation(job_id, final_validation)
    await deps.store.store_walk_forward(job_id, report)
    log.info("walk_forward_report_stored", job_id=job_id, wfe=report.wfe, oos_psr=report.oos.psr)
    # The configuration is the final optimization's best: its importances are the job's.
    await record_importances(request, results[-1], deps)
    return await finish_completed(job_id, deps)


async def resolve_window(request: TrainingRequested, deps: Deps) -> DataWindow:
    """Find the dataset's current snapshot (asking ingest) and cut the job's window from it."""
    key = request.dataset
    reply = await deps.bus.coverage(
        CoverageQuery(exchange=key.exchange, symbol=key.symbol, timeframe=key.timeframe)
    )
    match: DatasetCoverage | None = next((d for d in reply.datasets if d.dataset == key), None)
    if match is None:
        raise JobError(
            f"no candles for {key.exchange} {key.symbol} {key.timeframe}: ingest them first"
        )
    history = await deps.cache.history(match.snapshot)
    strategy = get_strategy(request.strategy)
    warmup = strategy.warmup_bars(history.timeframe_seconds)
    try:
        if request.lookback_candles is not None:
            window = last_window(history, request.lookback_candles, warmup)
        else:
            assert request.start_ms is not None
            window = range_window(history, request.start_ms, request.end_ms, warmup)
    except QuantError as exc:
        raise JobError(f"{key.exchange} {key.symbol} {key.timeframe}: {exc}") from exc
    c = window.candles
    return DataWindow(
        snapshot=match.snapshot,
        content_hash=match.content_hash,
        begin=c.first_row,
        stop=c.first_row + len(c),
        trade_from=window.trade_from,
        first_ms=int(c.open_time[window.trade_from]),
        last_ms=int(c.open_time[-1]),
    )


async def record_progress(
    request: TrainingRequested, done: int, results: Mapping[int, TrialCompleted], deps: Deps
) -> None:
    job_id = request.job_id
    n = request.n_iterations
    best = plan.best_of(results)
    progress = plan.progress_of(done, n)
    if not await deps.store.update_progress(
        job_id,
        holder=deps.replica,
        trials_done=done,
        progress=progress,
        best_trial=best.number if best else None,
        best_value=best.value if best else None,
    ):
        raise JobTakenOverError(job_id)
    await deps.bus.publish_event(
        JobProgress(
            message_id=f"{job_id}.progress.{done}",
            job_id=job_id,
            status="running",
            progress=progress,
            trials_done=done,
            n_iterations=n,
            best_value=best.value if best else None,
            best_trial=best.number if best else None,
        )
    )


async def finish_completed(job_id: str, deps: Deps) -> str:
    """Complete a job this replica holds. A holder that lost its lease while it was away
    (another replica took the job over) completes nothing; one whose job ended meanwhile
    (cancelled while orphaned) republishes that end."""
    if not await deps.store.finish(job_id, "completed", holder=deps.replica):
        job = await deps.store.get_job(job_id)
        if job is None or job.status not in TERMINAL_STATUSES:
            raise JobTakenOverError(job_id)
        await publish_terminal(job_id, deps)
        return job.status
    await publish_terminal(job_id, deps)
    return "completed"


async def finish_failed(job_id: str, reason: str, deps: Deps) -> str:
    log.warning("job_failed", job_id=job_id, reason=reason)
    await deps.store.finish(job_id, "failed", error=reason)
    await publish_terminal(job_id, deps)
    return "failed"


async def finish_cancelled(job_id: str, deps: Deps) -> str:
    log.info("job_cancelled", job_id=job_id)
    await deps.store.finish(job_id, "cancelled")
    await publish_terminal(job_id, deps)
    return "cancelled"


async def publish_terminal(job_id: str, deps: Deps) -> None:
    """Publish the event of a job's terminal status, built from the stored job.

    Safe to repeat: the message id is fixed per job, and a redelivered job message re-publishes
    it in case the replica died between the database commit and the publish.
    """
    job = await deps.store.get_job(job_id)
    if job is None or job.status not in TERMINAL_STATUSES:
        return
    if job.status == "failed":
        await deps.bus.publish_event(
            JobFailed(message_id=f"{job_id}.failed", job_id=job_id, reason=job.error or "")
        )
        return
    if job.status == "cancelled":
        await deps.bus.publish_event(JobCancelled(message_id=f"{job_id}.cancelled", job_id=job_id))
        return
    request = job.request
    assert job.best_trial is not None
    assert job.data_window is not None
    assert job.sampler is not None
    assert job.sampler_version is not None
    assert job.batch_size is not None
    best = (await deps.store.trials_in(job_id, [job.best_trial]))[job.best_trial]
    assert best.value is not None
    await deps.bus.publish_event(
        JobCompleted(
            message_id=f"{job_id}.completed",
            job_id=job_id,
            strategy=request.strategy,
            dataset=request.dataset,
            regime=request.regime,
            optimizer=request.optimizer,
            seed=request.seed,
            objective=request.objective,
            n_iterations=request.n_iterations,
            best_trial=best.number,
            best_value=best.value,
            params=best.params,
            metrics=best.metrics,
            fingerprint=best.fingerprint,
            window=job.data_window,
            settings=request.settings,
            sampler=job.sampler,
            sampler_version=job.sampler_version,
            batch_size=job.batch_size,
            code_version=deps.code_version,
            validation=job.validation,
            walk_forward=job.walk_forward,
        )
    )
