"""Use cases of a trial worker: evaluate a work item, store its trials, announce them."""

from __future__ import annotations

from tradepulse.common.contracts.training import TrialCompleted, TrialSpec, TrialWork
from tradepulse.quant import QuantError
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.errors import SnapshotMissingError
from tradepulse.trainer.evaluate import evaluate


def failed_trial(work: TrialWork, trial: TrialSpec, reason: str, replica: str) -> TrialCompleted:
    return TrialCompleted(
        message_id=f"{work.job_id}.trial.{trial.number}.done",
        job_id=work.job_id,
        number=trial.number,
        params=trial.params,
        state="failed",
        value=None,
        metrics={},
        fingerprint="",
        duration_ms=0.0,
        replica=replica,
        reason=reason,
    )


async def run_trials(work: TrialWork, deps: Deps) -> list[TrialCompleted]:
    """Evaluate, store and announce the trials of a work item; none if the job was cancelled."""
    if deps.cancels.requested(work.job_id):
        return []
    results = []
    for trial in work.trials:
        try:
            result = await evaluate(work, trial, deps.cache, deps.replica)
        except (QuantError, SnapshotMissingError) as exc:
            result = failed_trial(work, trial, f"cannot evaluate: {exc}", deps.replica)
        results.append(result)
    return await store_trials(work, results, deps)


async def give_up_trials(work: TrialWork, reason: str, deps: Deps) -> list[TrialCompleted]:
    """Store a work item that keeps crashing its evaluation as failed trials, with why."""
    results = [failed_trial(work, t, reason, deps.replica) for t in work.trials]
    return await store_trials(work, results, deps)


async def store_trials(
    work: TrialWork, results: list[TrialCompleted], deps: Deps
) -> list[TrialCompleted]:
    await deps.store.insert_trials(
        [(r, t.sampler_state) for r, t in zip(results, work.trials, strict=True)]
    )
    if results:
        # The stored rows are the record; the event only wakes the job's holder early.
        await deps.bus.announce_trials(results)
    return results
