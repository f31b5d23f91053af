"""HTTP request and response models: what users send and see, kept apart from the bus
contracts (which the services may change without the API changing), with the conversions
between the two.

Request models refuse unknown fields and values of the wrong type (a seed of "12345" or 1.5
is refused, not coerced); names are normalised the way the data is stored (exchange in lower
case, symbol and strategy in upper case).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)

from tradepulse.common.contracts.market import DatasetCoverage, DatasetKey
from tradepulse.common.contracts.registry import ConfigStatus, ConfigView
from tradepulse.common.contracts.training import (
    BacktestSettingsModel,
    JobStatus,
    JobView,
    Objective,
    Optimizer,
    RegimeName,
    TrainingRequested,
    TrialView,
)
from tradepulse.quant import STRATEGIES, CandleDataError, parse_timeframe

MAX_SEEDS = 100
MAX_SEED = 2**63 - 1
EXCHANGE = re.compile(r"^[a-z0-9_.-]{1,64}$")
SYMBOL = re.compile(r"^[A-Z0-9._-]+/[A-Z0-9._-]+(:[A-Z0-9._-]+)?$")
TIMEFRAME = re.compile(r"^[1-9][0-9]{0,5}[mhdw]$")

PREDECESSOR_EXAMPLE: dict[str, Any] = {
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


def _strategy(value: str) -> str:
    name = value.strip().upper()
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {value!r}; known: {', '.join(sorted(STRATEGIES))}")
    return name


def _exchange(value: str) -> str:
    name = value.strip().lower()
    if not EXCHANGE.match(name):
        raise ValueError(
            f"{value!r} is not an exchange name (letters, digits, '_', '.', '-'; e.g. binance)"
        )
    return name


def _symbol(value: str) -> str:
    symbol = value.strip().upper()
    if len(symbol) > 64 or not SYMBOL.match(symbol):
        raise ValueError(f"{value!r} is not a market symbol; write BASE/QUOTE, e.g. BTC/USDT")
    return symbol


def _timeframe(value: str) -> str:
    text = value.strip()
    try:
        parse_timeframe(text)
    except CandleDataError as exc:
        raise ValueError(str(exc)) from None
    if not TIMEFRAME.match(text):
        raise ValueError(f"unknown timeframe {value!r}: use e.g. 1m, 5m, 1h, 4h, 1d")
    return text


def _utc(value: datetime) -> datetime:
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        seconds = moment.timestamp()
    except (OverflowError, ValueError, OSError):
        raise ValueError("must lie between 1970-01-01 and 9999-12-31 in UTC") from None
    if seconds < 0:
        raise ValueError("must not be before 1970-01-01")
    # Moments travel as whole milliseconds; comparing them as such keeps `end > start` true.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


StrategyName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_strategy)]
ExchangeName = Annotated[
    str, Field(min_length=1, max_length=64, examples=["binanceus"]), AfterValidator(_exchange)
]
Symbol = Annotated[
    str, Field(min_length=3, max_length=64, examples=["BTC/USDT"]), AfterValidator(_symbol)
]
Timeframe = Annotated[
    str, Field(min_length=2, max_length=8, examples=["5m"]), AfterValidator(_timeframe)
]
Moment = Annotated[
    datetime,
    Field(description="ISO 8601 (UTC if no offset is given), e.g. 2024-01-01T00:00:00Z"),
    AfterValidator(_utc),
]
StrictInt = Annotated[int, Strict()]
Seed = Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]


def to_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Training -----------------------------------------------------------------------------------


class BacktestSettingsBody(Body):
    initial_capital: float = Field(default=10000.0, gt=0, le=1e15, allow_inf_nan=False)
    fee_rate: float = Field(default=0.001, ge=0, lt=1, allow_inf_nan=False)
    slippage: float = Field(default=0.0005, ge=0, lt=1, allow_inf_nan=False)
    risk_per_trade: float = Field(default=0.01, gt=0, le=1, allow_inf_nan=False)
    max_leverage: float = Field(default=3.0, gt=0, le=100, allow_inf_nan=False)


class TrainingBody(Body):
    """A training job. The predecessor's payload is accepted unchanged; the window is either
    the last `lookback_candles` candles or the candles between `start` and `end`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PREDECESSOR_EXAMPLE]})

    strategy: StrategyName = "LIQUIDITY_SWEEP"
    symbol: Symbol
    exchange: ExchangeName
    timeframe: Timeframe
    regime: RegimeName = "any"
    optimizer: Optimizer = "random"
    n_iterations: Annotated[StrictInt, Field(ge=1, le=100_000)]
    lookback_candles: Annotated[StrictInt, Field(ge=1, le=100_000_000)] | None = None
    start: Moment | None = None
    end: Moment | None = None
    seed: Seed = 42
    objective: Objective = "sharpe_ratio"
    min_trades: Annotated[StrictInt, Field(ge=0, le=100_000_000)] = 1
    settings: BacktestSettingsBody = Field(default_factory=BacktestSettingsBody)
    batch_size: Annotated[StrictInt, Field(ge=1, le=1024)] | None = None

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

    def to_request(self, job_id: str, seed: int | None = None) -> TrainingRequested:
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
        )


class EnsembleBody(TrainingBody):
    """The same job for several seeds: `seeds` listed, or `n_seeds` seeds from `seed` on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**PREDECESSOR_EXAMPLE, "seed": 1, "n_seeds": 5}]},
    )

    seeds: Annotated[list[Seed], Field(min_length=1, max_length=MAX_SEEDS)] | None = None
    n_seeds: Annotated[StrictInt, Field(ge=1, le=MAX_SEEDS)] | None = None

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


class EnsembleAccepted(BaseModel):
    job_ids: list[str]
    seeds: list[int]
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
    )


def queued_view(request: TrainingRequested, created_at: str) -> JobView:
    """A job accepted here that no trainer has recorded yet: it is queued."""
    return JobView(
        job_id=request.job_id,
        status="queued",
        progress=0.0,
        trials_done=0,
        n_iterations=request.n_iterations,
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


# Configurations -------------------------------------------------------------------------------


class StatusChangeOut(BaseModel):
    from_status: ConfigStatus | None
    to_status: ConfigStatus
    reason: str
    at: str


class Lineage(BaseModel):
    """Where a configuration comes from: enough to train it again and check the result."""

    job_id: str
    seed: int
    optimizer: str
    objective: str
    regime: str
    sampler: str
    sampler_version: str
    code_version: str
    exchange: str
    symbol: str
    timeframe: str
    content_hash: str = Field(description="the candles' content hash")
    first: str = Field(description="open time of the first traded candle")
    last: str
    settings: dict[str, float]


class ConfigOut(BaseModel):
    config_id: str
    job_id: str
    status: ConfigStatus
    strategy: str
    exchange: str
    symbol: str
    timeframe: str
    params: dict[str, float | int]
    metrics: dict[str, float | int | None]
    fingerprint: str
    created_at: str
    lineage: Lineage
    history: list[StatusChangeOut]


def config_out(view: ConfigView) -> ConfigOut:
    dataset = view.dataset
    return ConfigOut(
        config_id=view.config_id,
        job_id=view.job_id,
        status=view.status,
        strategy=view.strategy,
        exchange=dataset.exchange,
        symbol=dataset.symbol,
        timeframe=dataset.timeframe,
        params=view.params,
        metrics=view.metrics,
        fingerprint=view.fingerprint,
        created_at=view.created_at,
        lineage=Lineage(
            job_id=view.job_id,
            seed=view.seed,
            optimizer=view.optimizer,
            objective=view.objective,
            regime=view.regime,
            sampler=view.sampler,
            sampler_version=view.sampler_version,
            code_version=view.code_version,
            exchange=dataset.exchange,
            symbol=dataset.symbol,
            timeframe=dataset.timeframe,
            content_hash=view.window.content_hash,
            first=iso_ms(view.window.first_ms),
            last=iso_ms(view.window.last_ms),
            settings=view.settings.model_dump(),
        ),
        history=[StatusChangeOut(**h.model_dump()) for h in view.history],
    )


class ConfigsPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[ConfigOut]


# Market data ---------------------------------------------------------------------------------


class IngestBody(Body):
    """Candles from an exchange (`since`/`until` optional), or from a file the ingest service
    can read (`path`: absolute, or under its INGEST_FILE_ROOT)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "exchange": "binanceus",
                    "symbol": "BTC/USDT",
                    "timeframe": "5m",
                    "since": "2024-01-01T00:00:00Z",
                },
                {
                    "exchange": "binance",
                    "symbol": "BTC/USDT",
                    "timeframe": "5m",
                    "path": "/data/binance_BTC-USDT_5m.csv.gz",
                },
            ]
        },
    )

    exchange: ExchangeName
    symbol: Symbol
    timeframe: Timeframe
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    since: Moment | None = None
    until: Moment | None = None

    @model_validator(mode="after")
    def _range(self) -> IngestBody:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self

    @property
    def dataset(self) -> DatasetKey:
        return DatasetKey(exchange=self.exchange, symbol=self.symbol, timeframe=self.timeframe)


class GapOut(BaseModel):
    after: str
    next: str
    missing: int


class DatasetOut(BaseModel):
    exchange: str
    symbol: str
    timeframe: str
    rows: int
    first: str
    last: str
    first_ms: int
    last_ms: int
    expected_rows: int
    gaps: int
    missing_candles: int
    largest_gap: GapOut | None
    content_hash: str
    updated_at: str


def dataset_out(c: DatasetCoverage) -> DatasetOut:
    gap = c.largest_gap
    return DatasetOut(
        exchange=c.dataset.exchange,
        symbol=c.dataset.symbol,
        timeframe=c.dataset.timeframe,
        rows=c.rows,
        first=iso_ms(c.first_ms),
        last=iso_ms(c.last_ms),
        first_ms=c.first_ms,
        last_ms=c.last_ms,
        expected_rows=c.expected_rows,
        gaps=c.gaps,
        missing_candles=c.missing_candles,
        largest_gap=None
        if gap is None
        else GapOut(after=iso_ms(gap.after_time), next=iso_ms(gap.next_time), missing=gap.missing),
        content_hash=c.content_hash,
        updated_at=c.updated_at,
    )


class CoverageOut(BaseModel):
    datasets: list[DatasetOut]


class IngestOut(BaseModel):
    request_id: str
    status: Literal["pending", "succeeded", "failed"]
    exchange: str
    symbol: str
    timeframe: str
    rows_received: int | None = None
    rows_added: int | None = None
    dataset: DatasetOut | None = Field(default=None, description="the dataset after the import")
    reason: str | None = Field(default=None, description="why the import was refused")


# Strategies and health ------------------------------------------------------------------------


class ParamOut(BaseModel):
    name: str
    type: Literal["int", "float"]
    low: float | int
    high: float | int
    step: float | int | None
    description: str


class StrategyOut(BaseModel):
    name: str
    params: list[ParamOut]


class StrategiesOut(BaseModel):
    strategies: list[StrategyOut]
    optimizers: list[str]
    objectives: list[str]
    regimes: list[str]
    metrics: list[str]


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    nats: bool
    services: dict[str, bool]
