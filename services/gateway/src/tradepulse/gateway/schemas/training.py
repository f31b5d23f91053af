"""Training requests as users send them, and jobs and trials as they see them, with the
conversions to and from the bus contracts."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tradepulse.common.contracts.market import DatasetKey
from tradepulse.common.contracts.training import (
    DEFAULT_MAX_DISPERSION,
    MAX_BATCH_SIZE,
    MAX_ITERATIONS,
    MAX_PBO_BLOCKS,
    MAX_SEED,
    PREDECESSOR_PAYLOAD,
    BacktestSettingsModel,
    JobStatus,
    JobView,
    Objective,
    Optimizer,
    Regime,
    TrainingRequested,
    TrialView,
    WalkForward,
    WalkForwardReport,
    setting_field,
)
from tradepulse.gateway.schemas.common import (
    Body,
    ExchangeName,
    Moment,
    Seed,
    StrategyName,
    StrictInt,
    Symbol,
    Timeframe,
    iso_ms,
    to_ms,
)
from tradepulse.gateway.schemas.validation import ValidationOut, validation_out

MAX_SEEDS = 100


class BacktestSettingsBody(Body):
    """The backtest settings with the quant core's defaults and bounds (`SETTING_BOUNDS`), so
    that every value the core would refuse is refused here, naming the field."""

    initial_capital: float = setting_field("initial_capital")
    fee_rate: float = setting_field("fee_rate")
    slippage: float = setting_field("slippage")
    risk_per_trade: float = setting_field("risk_per_trade")
    max_leverage: float = setting_field("max_leverage")


class TrainingBody(Body):
    """A training job. The predecessor's payload is accepted unchanged; the window is either
    the last `lookback_candles` candles or the candles between `start` and `end`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PREDECESSOR_PAYLOAD]})

    strategy: StrategyName = "LIQUIDITY_SWEEP"
    symbol: Symbol
    exchange: ExchangeName
    timeframe: Timeframe
    regime: Regime = "any"
    optimizer: Optimizer = "random"
    n_iterations: Annotated[StrictInt, Field(ge=1, le=MAX_ITERATIONS)]
    lookback_candles: Annotated[StrictInt, Field(ge=1, le=100_000_000)] | None = None
    start: Moment | None = None
    end: Moment | None = None
    seed: Seed = 42
    objective: Objective = "sharpe_ratio"
    min_trades: Annotated[StrictInt, Field(ge=0, le=100_000_000)] = 1
    settings: BacktestSettingsBody = Field(default_factory=BacktestSettingsBody)
    batch_size: Annotated[StrictInt, Field(ge=1, le=MAX_BATCH_SIZE)] | None = None
    pbo_blocks: Annotated[
        StrictInt,
        Field(
            ge=2,
            le=MAX_PBO_BLOCKS,
            description="S, the blocks of the PBO's combinatorial splits: even, 2..16",
        ),
    ] = MAX_PBO_BLOCKS
    walk_forward: WalkForward | None = Field(
        default=None,
        description="run K fold optimizations and a final one, each of n_iterations trials, and "
        "test each fold's best on the span after it (validation spec section 3)",
        examples=[{"folds": 5, "mode": "rolling", "is_oos_ratio": 4}],
    )

    @field_validator("pbo_blocks")
    @classmethod
    def _even_blocks(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"must be even, not {value}")
        return value

    @model_validator(mode="after")
    def _window(self) -> TrainingBody:
        if self.lookback_candles is not None and self.start is not None:
            raise ValueError("give lookback_candles or start (with an optional end), not both")
        if self.lookback_candles is None and self.start is None:
            raise ValueError("give lookback_candles, or start (with an optional end)")
        if self.end is not None:
            if self.start is None:
                raise ValueError("end needs start")
            if self.end <= self.start:
                raise ValueError("end must be after start")
        return self

    @property
    def dataset(self) -> DatasetKey:
        return DatasetKey(exchange=self.exchange, symbol=self.symbol, timeframe=self.timeframe)

    def to_request(
        self,
        job_id: str,
        seed: int | None = None,
        *,
        ensemble_id: str | None = None,
        ensemble_size: int | None = None,
        max_dispersion: float = DEFAULT_MAX_DISPERSION,
    ) -> TrainingRequested:
        return TrainingRequested(
            message_id=job_id,
            job_id=job_id,
            strategy=self.strategy,
            dataset=self.dataset,
            lookback_candles=self.lookback_candles,
            start_ms=to_ms(self.start),
            end_ms=to_ms(self.end),
            regime=self.regime,
            optimizer=self.optimizer,
            n_iterations=self.n_iterations,
            seed=self.seed if seed is None else seed,
            objective=self.objective,
            min_trades=self.min_trades,
            settings=BacktestSettingsModel(**self.settings.model_dump()),
            batch_size=self.batch_size,
            pbo_blocks=self.pbo_blocks,
            ensemble_id=ensemble_id,
            ensemble_size=ensemble_size,
            max_dispersion=max_dispersion,
            walk_forward=self.walk_forward,
        )


class EnsembleBody(TrainingBody):
    """The same job for several seeds: `seeds` listed, or `n_seeds` seeds from `seed` on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**PREDECESSOR_PAYLOAD, "seed": 1, "n_seeds": 5}]},
    )

    seeds: Annotated[list[Seed], Field(min_length=2, max_length=MAX_SEEDS)] | None = None
    n_seeds: Annotated[StrictInt, Field(ge=2, le=MAX_SEEDS)] | None = None
    max_dispersion: float = Field(
        default=DEFAULT_MAX_DISPERSION,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="the seeds converge when every parameter's dispersion is at most this",
    )

    @model_validator(mode="after")
    def _seeds(self) -> EnsembleBody:
        if (self.seeds is None) == (self.n_seeds is None):
            raise ValueError("give either seeds (a list) or n_seeds")
        if self.seeds is not None:
            if "seed" in self.model_fields_set:
                raise ValueError("seed is the first of n_seeds seeds; with seeds, leave it out")
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError("seeds must not repeat")
        elif self.n_seeds is not None and self.seed + self.n_seeds - 1 > MAX_SEED:
            raise ValueError(f"seed + n_seeds - 1 must be at most {MAX_SEED}")
        return self

    def seed_list(self) -> list[int]:
        if self.seeds is not None:
            return list(self.seeds)
        assert self.n_seeds is not None
        return [self.seed + i for i in range(self.n_seeds)]


class JobAccepted(BaseModel):
    job_id: str
    status: Literal["queued"] = "queued"


class BestSoFar(BaseModel):
    value: float | None = Field(description="the objective's value")
    trial: int
    params: dict[str, float | int] | None
    metrics: dict[str, float | int | None] | None


class JobOut(BaseModel):
    job_id: str
    status: JobStatus
    progress: float = Field(description="percent of the trials done, to 0.1")
    trials_done: int
    n_iterations: int
    strategy: str
    exchange: str
    symbol: str
    timeframe: str
    regime: str
    optimizer: str
    objective: str
    seed: int
    lookback_candles: int | None
    start: str | None
    end: str | None
    min_trades: int
    batch_size: int | None
    settings: dict[str, float]
    best: BestSoFar | None
    config_id: str | None = Field(description="the configuration made of the result, once done")
    error: str | None = Field(description="why the job failed")
    sampler: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_s: float | None = Field(description="from started_at to finished_at")
    validation: ValidationOut | None = Field(
        default=None, description="the overfitting statistics, once the job has completed"
    )
    walk_forward: WalkForwardReport | None = Field(
        default=None,
        description="a walk-forward job's layout (as asked) and, once completed, its report",
    )
    walk_forward_request: WalkForward | None = Field(
        default=None, description="the walk-forward layout asked for (null: a plain job)"
    )
    param_importances: dict[str, float] | None = Field(
        default=None,
        description="each parameter's importance (optuna's PED-ANOVA evaluator, summing to 1),"
        " once the job has completed",
    )


def _duration(started: str | None, finished: str | None) -> float | None:
    if started is None or finished is None:
        return None
    try:
        delta = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
    except ValueError:
        return None
    return round(delta.total_seconds(), 3)


def job_out(view: JobView, config_id: str | None = None) -> JobOut:
    request = view.request
    best = None
    if view.best_trial is not None:
        value = view.best_value
        best = BestSoFar(
            value=value if value is None or math.isfinite(value) else None,
            trial=view.best_trial,
            params=view.best_params,
            metrics=view.best_metrics,
        )
    return JobOut(
        job_id=view.job_id,
        status=view.status,
        progress=round(view.progress, 1),
        trials_done=view.trials_done,
        n_iterations=view.n_iterations,
        strategy=request.strategy,
        exchange=request.dataset.exchange,
        symbol=request.dataset.symbol,
        timeframe=request.dataset.timeframe,
        regime=request.regime,
        optimizer=request.optimizer,
        objective=request.objective,
        seed=request.seed,
        lookback_candles=request.lookback_candles,
        start=None if request.start_ms is None else iso_ms(request.start_ms),
        end=None if request.end_ms is None else iso_ms(request.end_ms),
        min_trades=request.min_trades,
        batch_size=view.batch_size if view.batch_size is not None else request.batch_size,
        settings=request.settings.model_dump(),
        best=best,
        config_id=config_id,
        error=view.error,
        sampler=view.sampler,
        created_at=view.created_at,
        started_at=view.started_at,
        finished_at=view.finished_at,
        duration_s=_duration(view.started_at, view.finished_at),
        validation=validation_out(view.validation),
        walk_forward=view.walk_forward,
        walk_forward_request=request.walk_forward,
        param_importances=view.param_importances,
    )


def queued_view(request: TrainingRequested, created_at: str) -> JobView:
    """A job accepted here that no trainer has recorded yet: it is queued."""
    return JobView(
        job_id=request.job_id,
        status="queued",
        progress=0.0,
        trials_done=0,
        n_iterations=request.total_trials,
        request=request,
        best_value=None,
        best_trial=None,
        best_params=None,
        best_metrics=None,
        error=None,
        sampler=None,
        sampler_version=None,
        batch_size=request.batch_size,
        created_at=created_at,
        started_at=None,
        finished_at=None,
    )


class JobsPage(BaseModel):
    total: int
    limit: int
    offset: int
    jobs: list[JobOut]


class TrialOut(BaseModel):
    number: int
    fold: int = Field(
        default=0, description="a walk-forward job's optimization: number // n_iterations"
    )
    params: dict[str, float | int]
    state: str
    value: float | None
    metrics: dict[str, float | int | None]
    fingerprint: str
    duration_ms: float
    replica: str
    reason: str | None = Field(default=None, description="why a failed trial failed")


def trial_out(view: TrialView) -> TrialOut:
    return TrialOut(**view.model_dump())


class TrialsPage(BaseModel):
    job_id: str
    total: int
    limit: int
    offset: int
    trials: list[TrialOut]


class CancelOut(BaseModel):
    job_id: str
    status: JobStatus = Field(
        description="cancelled, or still running while the job winds down (202)"
    )
