"""The overfitting statistics and seed ensembles as users see them (validation spec
sections 1-2, 4), with the conversions from the bus contracts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tradepulse.common.contracts.training import EnsembleView, JobStatus, ValidationReport


class SelectedOut(BaseModel):
    trial: int = Field(description="the job's best trial, which the statistics judge")
    sharpe_per_bar: float = Field(description="its Sharpe before annualization")
    returns: int = Field(description="T, its number of returns")
    skew: float | None
    kurtosis: float | None = Field(description="population kurtosis (not excess)")


class DegradationPointsOut(BaseModel):
    is_performance: list[float] = Field(
        description="per split: the in-sample winner's Sharpe per bar in sample"
    )
    oos_performance: list[float] = Field(description="... and out of sample, pairwise")


class DegradationOut(BaseModel):
    slope: float | None
    intercept: float | None
    r2: float | None
    points: DegradationPointsOut | None = Field(
        default=None,
        description="every split up to 256 (S <= 10), else 256 evenly spaced in the splits' "
        "lexicographic order; the line is fitted over all of them. Null in lists, and for "
        "jobs validated before the points were kept",
    )


class PboOut(BaseModel):
    blocks: int = Field(description="S, the number of blocks the returns are cut into")
    sets: int = Field(description="C(S, S/2), the in-sample/out-of-sample splits")
    pbo: float = Field(
        description="the fraction of splits whose in-sample winner ranks at or below the "
        "median out of sample"
    )
    prob_oos_loss: float = Field(description="the fraction whose winner loses out of sample")
    degradation: DegradationOut
    logit_quantiles: dict[str, float] = Field(description='keys "5", "25", "50", "75", "95"')
    logit_histogram: list[int] = Field(description="24 bins of 0.5 from -6 to 6")


class ValidationOut(BaseModel):
    """How much of the job's best is the search itself."""

    n_trials: int = Field(description="N, the evaluated trials")
    sharpe_variance: float | None = Field(description="V, of the trials' per-bar Sharpes")
    expected_max_sharpe: float | None = Field(
        description="the annualized Sharpe the best of N skill-less trials would show by luck"
    )
    expected_max_sharpe_per_bar: float | None
    selected: SelectedOut | None
    psr: float | None = Field(description="probability that the Sharpe beats 0")
    dsr: float | None = Field(
        description="deflated Sharpe: probability that it beats the best of N by luck"
    )
    pbo: PboOut | None


def validation_out(report: ValidationReport | None) -> ValidationOut | None:
    return None if report is None else ValidationOut.model_validate(report.model_dump())


class EnsembleAccepted(BaseModel):
    ensemble_id: str
    job_ids: list[str]
    seeds: list[int]
    status: Literal["queued"] = "queued"


class EnsembleJobOut(BaseModel):
    job_id: str
    seed: int
    status: JobStatus
    best_value: float | None
    best_trial: int | None
    params: dict[str, float | int] | None = Field(description="the seed's best parameters")


class ObjectiveSpreadOut(BaseModel):
    mean: float | None
    std: float | None = Field(description="sample standard deviation (ddof 1)")
    min: float | None
    max: float | None


class ConvergenceOut(BaseModel):
    completed: int = Field(description="the seeds whose job completed, which the report covers")
    dispersion: dict[str, float | None] = Field(
        description="per parameter: std of the seeds' best values / the range's width"
    )
    objective: ObjectiveSpreadOut
    max_dispersion: float
    converged: bool = Field(description="every dispersion is at most max_dispersion")


class EnsembleOut(BaseModel):
    ensemble_id: str
    status: Literal["running", "ended"]
    size: int
    max_dispersion: float
    jobs: list[EnsembleJobOut]
    convergence: ConvergenceOut | None = Field(description="once every seed's job has ended")


def ensemble_out(view: EnsembleView, queued: list[EnsembleJobOut]) -> EnsembleOut:
    """`queued`: jobs this gateway accepted that no trainer has recorded yet."""
    jobs = [
        EnsembleJobOut(
            job_id=m.job_id,
            seed=m.seed,
            status=m.status,
            best_value=m.best_value,
            best_trial=m.best_trial,
            params=m.best_params,
        )
        for m in view.jobs
    ]
    known = {j.job_id for j in jobs}
    jobs += [q for q in queued if q.job_id not in known]
    jobs.sort(key=lambda j: j.seed)
    return EnsembleOut(
        ensemble_id=view.ensemble_id,
        status="ended" if view.ended else "running",
        size=view.size,
        max_dispersion=view.max_dispersion,
        jobs=jobs,
        convergence=None
        if view.convergence is None
        else ConvergenceOut.model_validate(view.convergence.model_dump()),
    )
