"""Trainer settings (environment variables in parentheses)."""

from __future__ import annotations

from pydantic import Field

from tradepulse.common.settings import CommonSettings


class TrainerSettings(CommonSettings):
    # Trials asked per batch (recorded with each job: part of its determinism). Random and grid
    # search do not learn from results, so big batches only help; TPE and CMA-ES learn between
    # batches, so they get smaller ones.
    batch_size: int = Field(default=64, ge=1, le=1024, validation_alias="TRAINER_BATCH_SIZE")
    model_batch_size: int = Field(
        default=16, ge=1, le=1024, validation_alias="TRAINER_MODEL_BATCH_SIZE"
    )
    max_jobs: int = Field(default=2, ge=1, le=64, validation_alias="TRAINER_MAX_JOBS")
    trial_fetch: int = Field(default=2, ge=1, le=256, validation_alias="TRAINER_TRIAL_FETCH")
    # Trials per work item: fetching, decoding, storing and acking an item cost about as much
    # as a backtest, so they are paid once for a few trials.
    trials_per_item: int = Field(default=4, ge=1, le=64, validation_alias="TRAINER_TRIALS_PER_ITEM")
    # For TPE and CMA-ES, whose trials are published as they are asked (study.py): one trial
    # an item keeps every replica busy while the sampler thinks about the next.
    model_trials_per_item: int = Field(
        default=1, ge=1, le=64, validation_alias="TRAINER_MODEL_TRIALS_PER_ITEM"
    )
    job_ack_wait: float = Field(default=10.0, gt=0, validation_alias="TRAINER_JOB_ACK_WAIT")
    trial_ack_wait: float = Field(default=30.0, gt=0, validation_alias="TRAINER_TRIAL_ACK_WAIT")
    # A holder renews its lease with every heartbeat; a crashed holder's lease runs out
    # about when JetStream redelivers its job.
    lease_seconds: float = Field(default=15.0, gt=0, validation_alias="TRAINER_LEASE_SECONDS")
    job_max_deliver: int = Field(default=10, ge=1, validation_alias="TRAINER_JOB_MAX_DELIVER")
    # A work item that crashed its evaluation this many times is stored as failed trials, so
    # that the job goes on (and says why) instead of waiting for it forever.
    trial_max_deliver: int = Field(default=5, ge=1, validation_alias="TRAINER_TRIAL_MAX_DELIVER")
    result_poll_interval: float = Field(default=1.0, gt=0, validation_alias="TRAINER_POLL_INTERVAL")
    coverage_wait: float = Field(default=30.0, gt=0, validation_alias="TRAINER_COVERAGE_WAIT")
