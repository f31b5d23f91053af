"""Training messages: the job request, trial work and results, progress and the job's end."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from tradepulse.common.contracts.base import ID_PATTERN, Contract, Message
from tradepulse.common.contracts.market import DatasetKey
from tradepulse.quant import SETTING_BOUNDS, BacktestSettings
from tradepulse.quant import Objective as Objective
from tradepulse.quant import Regime as Regime
from tradepulse.quant.validation import MAX_DEGRADATION_POINTS

# What the core decides (objectives, regimes, setting bounds) comes from the core; the wire's
# own words (optimizers, job statuses, limits of a request) are declared here, once.
Optimizer = Literal["random", "bayesian", "grid", "cmaes"]
OPTIMIZERS: tuple[Optimizer, ...] = get_args(Optimizer)
TerminalStatus = Literal["completed", "failed", "cancelled"]
JobStatus = Literal["queued", "running", TerminalStatus]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(get_args(TerminalStatus))
ParamValues = dict[str, float | int]
MetricValues = dict[str, float | int | None]
MAX_PBO_BLOCKS = 16
MAX_ENSEMBLE_SEEDS = 100
DEFAULT_MAX_DISPERSION = 0.10
LOGIT_QUANTILES = ("5", "25", "50", "75", "95")
LOGIT_BINS = 24

MAX_SEED = 2**63 - 1
MAX_ITERATIONS = 100_000
MAX_BATCH_SIZE = 1024
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]

# The predecessor's example job, accepted unchanged by the HTTP API.
PREDECESSOR_PAYLOAD: dict[str, Any] = {
    "strategy": "LIQUIDITY_SWEEP",
    "symbol": "BTC/USDT",
    "exchange": "binanceus",
    "timeframe": "5m",
    "regime": "sideways",
    "optimizer": "random",
    "n_iterations": 20,
    "lookback_candles": 1000,
    "seed": 12345,
}

_DEFAULT_SETTINGS = BacktestSettings()


def setting_field(name: str) -> Any:
    """The field of backtest setting `name` with the core's default and bounds: a number (not
    a string or a bool) that `BacktestSettings` accepts. Typed Any, as pydantic's Field is, so
    that `x: float = setting_field("x")` type-checks."""
    bound = SETTING_BOUNDS[name]
    default: float = getattr(_DEFAULT_SETTINGS, name)
    return Field(
        default=default,
        strict=True,
        allow_inf_nan=False,
        gt=bound.low if bound.low_open else None,
        ge=None if bound.low_open else bound.low,
        lt=bound.high if bound.high_open else None,
        le=None if bound.high_open else bound.high,
    )


class BacktestSettingsModel(Contract):
    """`BacktestSettings` on the wire: the same fields, defaults and bounds."""

    initial_capital: float = setting_field("initial_capital")
    fee_rate: float = setting_field("fee_rate")
    slippage: float = setting_field("slippage")
    risk_per_trade: float = setting_field("risk_per_trade")
    max_leverage: float = setting_field("max_leverage")


WalkForwardMode = Literal["rolling", "anchored"]
MAX_FOLDS = 20
MAX_IS_OOS_RATIO = 20


class WalkForward(Contract):
    """A walk-forward job's layout (validation spec section 3): `folds` K, `mode`, and
    `is_oos_ratio` rho, the first training span's length in test spans (at least)."""

    folds: int = Field(default=5, ge=2, le=MAX_FOLDS, strict=True)
    mode: WalkForwardMode = "rolling"
    is_oos_ratio: int = Field(default=4, ge=1, le=MAX_IS_OOS_RATIO, strict=True)


class TrainingRequested(Message):
    """Run an optimization: `n_iterations` trials of `strategy` on one dataset window.

    The window is the last `lookback_candles` candles, or the candles with open time in
    [start_ms, end_ms); the spec's warm-up bars before it are loaded too.
    """

    job_id: str = Field(pattern=ID_PATTERN)
    strategy: str = "LIQUIDITY_SWEEP"
    dataset: DatasetKey
    lookback_candles: int | None = Field(default=None, ge=1)
    start_ms: int | None = Field(default=None, ge=0)
    end_ms: int | None = Field(default=None, ge=0)
    regime: Regime = "any"
    optimizer: Optimizer = "random"
    n_iterations: int = Field(ge=1, le=MAX_ITERATIONS)
    seed: Seed = 42
    objective: Objective = "sharpe_ratio"
    min_trades: int = Field(default=1, ge=0)
    settings: BacktestSettingsModel = BacktestSettingsModel()
    batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)
    pbo_blocks: int = Field(
        default=MAX_PBO_BLOCKS,
        ge=2,
        le=MAX_PBO_BLOCKS,
        description="S of the job's PBO (validation spec section 2): even, 2..16",
    )
    ensemble_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=ID_PATTERN)
    ensemble_size: int | None = Field(
        default=None, ge=2, le=MAX_ENSEMBLE_SEEDS, description="the ensemble's number of seeds"
    )
    max_dispersion: float = Field(
        default=DEFAULT_MAX_DISPERSION,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="an ensemble converges when every parameter's dispersion is at most this",
    )
    walk_forward: WalkForward | None = Field(
        default=None,
        description="run the job as K fold optimizations and a final one (validation spec 3)",
    )

    @property
    def optimizations(self) -> int:
        """How many optimizations the job runs: 1, or a walk-forward job's K folds + final."""
        return 1 if self.walk_forward is None else self.walk_forward.folds + 1

    @property
    def total_trials(self) -> int:
        """Every trial of the job: `n_iterations` per optimization."""
        return self.n_iterations * self.optimizations

    @field_validator("pbo_blocks")
    @classmethod
    def _even_blocks(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"must be even, not {value}")
        return value

    @model_validator(mode="after")
    def _ensemble(self) -> TrainingRequested:
        if (self.ensemble_id is None) != (self.ensemble_size is None):
            raise ValueError("give ensemble_id and ensemble_size together, or neither")
        return self

    @model_validator(mode="after")
    def _one_window(self) -> TrainingRequested:
        if (self.lookback_candles is None) == (self.start_ms is None):
            raise ValueError("give either lookback_candles or start_ms (with an optional end_ms)")
        if self.end_ms is not None and self.start_ms is None:
            raise ValueError("end_ms needs start_ms")
        if self.start_ms is not None and self.end_ms is not None and self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be after start_ms")
        return self


class DataWindow(Contract):
    """Rows [begin, stop) of a dataset snapshot, trading from row `trade_from` on."""

    snapshot: str
    content_hash: str
    begin: int = Field(ge=0)
    stop: int = Field(ge=1)
    trade_from: int = Field(ge=0)
    first_ms: int
    last_ms: int


class TrialSpec(Contract):
    """One trial of a work item: its number, its parameters, the sampler's state to store."""

    number: int = Field(ge=0)
    params: ParamValues
    sampler_state: dict[str, Any] = Field(
        default_factory=dict, description="the sampler's per-trial state, stored for resumes"
    )


class TrialWork(Message):
    """A few trials of one job to evaluate; self-contained so that any replica can run them.

    Several trials travel together so that fetching, decoding, storing and acking are paid
    once per item rather than once per trial (each costs about as much as a backtest).
    """

    job_id: str
    strategy: str
    trials: list[TrialSpec] = Field(min_length=1, max_length=64)
    window: DataWindow
    regime: Regime
    settings: BacktestSettingsModel
    objective: Objective
    min_trades: int
    pbo_blocks: int = Field(default=MAX_PBO_BLOCKS, ge=2, le=MAX_PBO_BLOCKS)


class TrialCompleted(Message):
    """A trial's result. `value` is None when the trial failed (too few trades, null metric).

    `block_sums` is what the job's PBO needs of the trial (validation spec section 2): the
    sums of its returns over the `S` blocks, then the sums of their squares (2*S floats). It is
    None for a trial that is not evaluated (its evaluation crashed, or its Sharpe is null);
    a trial below `min_trades` is evaluated and carries them.
    """

    job_id: str
    number: int
    params: ParamValues
    state: Literal["complete", "failed"]
    value: float | None
    metrics: MetricValues
    fingerprint: str
    duration_ms: float
    replica: str
    reason: str | None = None
    block_sums: list[float] | None = Field(default=None, max_length=2 * MAX_PBO_BLOCKS)


class TrialsCompleted(Message):
    """The results of one work item, announced together once they are stored: the job's
    holder wakes once per item, not once per trial. (A replica of an earlier version
    announces each `TrialCompleted` alone on the same subject; holders read both.)"""

    job_id: str
    results: list[TrialCompleted] = Field(min_length=1, max_length=64)


class JobProgress(Message):
    job_id: str
    status: JobStatus
    progress: float = Field(ge=0, le=100)
    trials_done: int
    n_iterations: int
    best_value: float | None = None
    best_trial: int | None = None


class SelectedTrial(Contract):
    """The trial the statistics judge: the job's best. `returns` is its T; the moments are
    population moments (kurtosis not excess), null when the returns do not vary."""

    trial: int = Field(ge=0)
    sharpe_per_bar: float
    returns: int = Field(ge=0)
    skew: float | None
    kurtosis: float | None


class DegradationPoints(Contract):
    """The in-sample winner's (P_n*, P'_n*) of some CSCV sets, for a scatter: every set when
    there are at most MAX_DEGRADATION_POINTS (S <= 10), else that many evenly spaced in the
    sets' lexicographic order (`tradepulse.quant.validation.sample_sets`)."""

    is_performance: list[float] = Field(max_length=MAX_DEGRADATION_POINTS)
    oos_performance: list[float] = Field(max_length=MAX_DEGRADATION_POINTS)

    @model_validator(mode="after")
    def _paired(self) -> DegradationPoints:
        if len(self.is_performance) != len(self.oos_performance):
            raise ValueError("is_performance and oos_performance must pair up")
        return self


class Degradation(Contract):
    """The least-squares line P'_n* = intercept + slope * P_n* over the CSCV sets; `points`
    are some sets' own (null in reports stored before they were kept, and in lists of jobs
    and configurations, whose replies must stay small)."""

    slope: float | None
    intercept: float | None
    r2: float | None
    points: DegradationPoints | None = None


class PboReport(Contract):
    """Probability of backtest overfitting by CSCV (validation spec section 2)."""

    blocks: int = Field(ge=2, le=MAX_PBO_BLOCKS)
    sets: int = Field(ge=1)
    pbo: float = Field(ge=0, le=1)
    prob_oos_loss: float = Field(ge=0, le=1)
    degradation: Degradation
    logit_quantiles: dict[str, float]
    logit_histogram: list[int] = Field(min_length=LOGIT_BINS, max_length=LOGIT_BINS)

    @model_validator(mode="after")
    def _quantile_keys(self) -> PboReport:
        if tuple(self.logit_quantiles) != LOGIT_QUANTILES:
            raise ValueError(f"logit_quantiles must have the keys {', '.join(LOGIT_QUANTILES)}")
        return self


class ValidationReport(Contract):
    """How much of a job's best is the search (validation spec sections 1-2).

    `expected_max_sharpe` is annualized, `expected_max_sharpe_per_bar` is not; `psr`, `dsr`
    and `pbo` are null where the spec makes them null (e.g. `pbo` with fewer than 2 evaluated
    trials or blocks of fewer than 2 returns).
    """

    n_trials: int = Field(ge=0)
    sharpe_variance: float | None
    expected_max_sharpe: float | None
    expected_max_sharpe_per_bar: float | None
    selected: SelectedTrial | None
    psr: float | None = Field(ge=0, le=1)
    dsr: float | None = Field(ge=0, le=1)
    pbo: PboReport | None

    def without_points(self) -> ValidationReport:
        """The report as lists carry it: its degradation without the points (about 11 KB)."""
        if self.pbo is None or self.pbo.degradation.points is None:
            return self
        degradation = self.pbo.degradation.model_copy(update={"points": None})
        pbo = self.pbo.model_copy(update={"degradation": degradation})
        return self.model_copy(update={"pbo": pbo})


class BarSpan(Contract):
    """Bars `first_bar..last_bar` (inclusive) as row numbers of the dataset snapshot, with
    their open times (ms)."""

    first_bar: int = Field(ge=0)
    last_bar: int = Field(ge=0)
    bars: int = Field(ge=1)
    first_ms: int
    last_ms: int


class FoldResult(Contract):
    """One fold of a walk-forward job: its training optimization's best (null when it had no
    usable trial) and that trial's test over the next span, from the carried capital `C_i`.

    `flat_reason` says why a fold traded nothing in its test span (no usable trial, no
    capital left); `test_metrics` are null only when `C_i <= 0`."""

    fold: int = Field(ge=0)
    train: BarSpan
    test: BarSpan
    best_trial: int | None
    best_value: float | None
    params: ParamValues | None
    train_metrics: MetricValues | None
    initial_capital: float
    final_capital: float
    test_metrics: MetricValues | None
    test_trades: int = Field(ge=0)
    flat_reason: str | None
    efficiency: float | None
    validation: ValidationReport


class FinalOptimization(Contract):
    """The final optimization (fold K): its best trial is the job's configuration."""

    fold: int = Field(ge=0)
    span: BarSpan
    best_trial: int | None
    validation: ValidationReport


class OutOfSample(Contract):
    """The stitched test spans: LS section 6 metrics from the job's initial capital, `psr` its
    PSR(0), `fingerprint` the canonical hash of its trades and metrics."""

    span: BarSpan
    metrics: MetricValues
    psr: float | None = Field(ge=0, le=1)
    fingerprint: str


class WalkForwardReport(Contract):
    """A walk-forward job's report (validation spec section 3). Trial numbers: fold i's
    optimization (i = K: the final one) has trials `[i*n, (i+1)*n)` for n = n_iterations."""

    folds: int
    mode: WalkForwardMode
    is_oos_ratio: int
    train_bars: int
    test_bars: int
    fold_results: list[FoldResult]
    final: FinalOptimization
    oos: OutOfSample
    wfe: float | None
    dispersion: dict[str, float | None]

    def without_points(self) -> WalkForwardReport:
        """The report as lists carry it: every optimization's validation without its points."""
        return self.model_copy(
            update={
                "fold_results": [
                    f.model_copy(update={"validation": f.validation.without_points()})
                    for f in self.fold_results
                ],
                "final": self.final.model_copy(
                    update={"validation": self.final.validation.without_points()}
                ),
            }
        )


class JobCompleted(Message):
    """A finished job with its best configuration: what the registry turns into a config."""

    job_id: str
    strategy: str
    dataset: DatasetKey
    regime: Regime
    optimizer: Optimizer
    seed: int
    objective: Objective
    n_iterations: int
    best_trial: int
    best_value: float
    params: ParamValues
    metrics: MetricValues
    fingerprint: str
    window: DataWindow
    settings: BacktestSettingsModel
    sampler: str
    sampler_version: str
    batch_size: int
    code_version: str
    validation: ValidationReport | None = None
    walk_forward: WalkForwardReport | None = None


class JobFailed(Message):
    job_id: str
    reason: str


class JobCancelled(Message):
    job_id: str


class CancelJob(Message):
    job_id: str


class CancelReply(Message):
    job_id: str
    status: JobStatus | None
    found: bool


class GetJob(Message):
    job_id: str


class JobView(Contract):
    job_id: str
    status: JobStatus
    progress: float
    trials_done: int
    n_iterations: int
    request: TrainingRequested
    best_value: float | None
    best_trial: int | None
    best_params: ParamValues | None
    best_metrics: MetricValues | None
    error: str | None
    sampler: str | None
    sampler_version: str | None
    batch_size: int | None
    holder: str | None = Field(default=None, description="the replica holding the job")
    created_at: str
    started_at: str | None
    finished_at: str | None
    validation: ValidationReport | None = Field(
        default=None, description="the overfitting statistics of a completed job"
    )
    walk_forward: WalkForwardReport | None = Field(
        default=None, description="a completed walk-forward job's folds and out-of-sample record"
    )
    param_importances: dict[str, float] | None = Field(
        default=None, description="optuna's importance of each parameter, once the job ended"
    )

    def listed(self) -> JobView:
        """The view as a list of jobs carries it: reports without their degradation points,
        so that a page of 200 jobs stays under NATS's 1 MB message limit."""
        return self.model_copy(
            update={
                "validation": None if self.validation is None else self.validation.without_points(),
                "walk_forward": None
                if self.walk_forward is None
                else self.walk_forward.without_points(),
            }
        )


class JobReply(Message):
    job: JobView | None


class ListJobs(Message):
    status: JobStatus | None = None
    symbol: str | None = None
    strategy: str | None = None
    limit: int = Field(default=50, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class JobsReply(Message):
    total: int
    jobs: list[JobView]


class ListTrials(Message):
    """A page of trials. At most 250 a page: a reply must fit NATS's 1 MB message limit and a
    trial with its metrics is about 1.2 KB (the gateway joins pages for larger HTTP pages)."""

    job_id: str
    limit: int = Field(default=100, ge=1, le=250)
    offset: int = Field(default=0, ge=0)
    fold: int | None = Field(
        default=None, ge=0, le=MAX_FOLDS, description="one optimization of a walk-forward job"
    )


class TrialView(Contract):
    number: int
    fold: int = Field(
        default=0, ge=0, description="its optimization: number // n_iterations (0: a plain job)"
    )
    params: ParamValues
    state: str
    value: float | None
    metrics: MetricValues
    fingerprint: str
    duration_ms: float
    replica: str
    reason: str | None = Field(default=None, description="why a failed trial failed")


class TrialsReply(Message):
    job_id: str
    total: int
    trials: list[TrialView]


# Seed ensembles (validation spec section 4) ----------------------------------------------------


class GetEnsemble(Message):
    ensemble_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)


class EnsembleMember(Contract):
    job_id: str
    seed: int
    status: JobStatus
    best_value: float | None
    best_trial: int | None
    best_params: ParamValues | None


class ObjectiveSpread(Contract):
    """The completed seeds' best objective values: std with ddof 1 (null under 2 seeds)."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None


class ConvergenceReport(Contract):
    """Over the completed seeds: each parameter's dispersion, std / (high - low) of its range
    (null under 2 seeds), and `converged` when every one is at most `max_dispersion`."""

    completed: int = Field(ge=0)
    dispersion: dict[str, float | None]
    objective: ObjectiveSpread
    max_dispersion: float
    converged: bool


class EnsembleView(Contract):
    ensemble_id: str
    size: int = Field(description="the ensemble's number of seeds")
    max_dispersion: float
    ended: bool = Field(description="every seed's job has ended")
    jobs: list[EnsembleMember] = Field(description="the seeds' jobs the trainers recorded")
    convergence: ConvergenceReport | None = Field(description="once every job has ended")


class EnsembleReply(Message):
    ensemble: EnsembleView | None
