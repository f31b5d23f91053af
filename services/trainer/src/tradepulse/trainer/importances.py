"""Parameter importances of a job, by optuna's own evaluator, computed once when it ends.

The trials are the job's results (any sampler's, grid and random included), put into an
in-memory optuna study over the strategy's search space; `optuna.importance` then says how
much each parameter explains the objective (fractions summing to 1). The evaluator is
PED-ANOVA (`PedAnovaImportanceEvaluator`: which parameters set the best trials apart), not
optuna's default fANOVA: fANOVA's random forest grows faster than quadratically with the
trials (7 s for 500, 22 s for 1,000, 80 s for 2,000 here) and held an 8,000-trial job's
completion for minutes, while PED-ANOVA takes 0.13 s for 8,000. It has no randomness, so the
same job always gets the same importances. They only inform people: when they cannot be
computed the job still completes, without them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from types import ModuleType

import optuna
from optuna.trial import TrialState

from tradepulse.common.contracts.training import TrainingRequested, TrialCompleted
from tradepulse.common.logging import get_logger
from tradepulse.quant import get_strategy
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.optimizer import distributions

log = get_logger("trainer")


def _import_importance() -> ModuleType:
    """`optuna.importance` without scikit-learn.

    The package imports every evaluator, fANOVA's among them, which imports scikit-learn's
    random forests whenever scikit-learn is installed (as in the development environment,
    for vectorbt): about 175 MB of RSS and 7 s of start-up in every trainer, for an evaluator
    the trainer never uses. While the package loads, `sklearn` is marked absent, so optuna's
    guarded import finds none (fANOVA alone becomes unusable); a scikit-learn or an
    `optuna.importance` already loaded by someone else is left as it is.
    """
    if "sklearn" not in sys.modules and "optuna.importance" not in sys.modules:
        sys.modules["sklearn"] = None  # type: ignore[assignment]
        try:
            import optuna.importance
        finally:
            del sys.modules["sklearn"]
    import optuna.importance

    return optuna.importance


_importance = _import_importance()
PedAnovaImportanceEvaluator = _importance.PedAnovaImportanceEvaluator
get_param_importances = _importance.get_param_importances

MIN_TRIALS = 2


def param_importances(
    request: TrainingRequested, results: Mapping[int, TrialCompleted]
) -> dict[str, float] | None:
    """Each parameter's importance (>= 0, summing to 1), from the trials with a value; None
    with fewer than MIN_TRIALS of them or when every value is the same (nothing to explain)."""
    usable = [r for r in results.values() if r.state == "complete" and r.value is not None]
    if len(usable) < MIN_TRIALS or len({r.value for r in usable}) < 2:
        return None
    space = distributions(get_strategy(request.strategy).space)
    # Trials are written through the storage's own calls: `Study.add_trials` deep-copies each
    # trial, which took 0.36 s of the 0.4 s for 3,000 trials (the evaluator itself 0.04 s).
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    study_id = storage.get_study_id_from_name(study.study_name)
    for r in sorted(usable, key=lambda r: r.number):
        assert r.value is not None
        trial_id = storage.create_new_trial(study_id)
        for name, dist in space.items():
            storage.set_trial_param(trial_id, name, dist.to_internal_repr(r.params[name]), dist)
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [r.value])
    evaluator = PedAnovaImportanceEvaluator()
    found = get_param_importances(study, evaluator=evaluator, normalize=True)
    return {name: float(value) for name, value in found.items()}


async def record_importances(
    request: TrainingRequested, results: Mapping[int, TrialCompleted], deps: Deps
) -> None:
    """Compute (in a thread, off the event loop that renews the lease) and store them."""
    try:
        found = await asyncio.to_thread(param_importances, request, results)
    except (ValueError, RuntimeError, KeyError) as exc:
        log.warning("param_importances_failed", job_id=request.job_id, error=str(exc))
        return
    if found is not None:
        await deps.store.store_importances(request.job_id, found)
