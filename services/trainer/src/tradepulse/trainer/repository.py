"""The trainer's tables (schema `training`): the PostgreSQL `JobStore`. Parameterized SQL only.

Every write is idempotent: a job is inserted once, a trial once per (job, number), and a
job's status only moves forward (a terminal status is never overwritten). Rows leave this
module as `JobRow` / `StoredTrial`; nothing else reads a column by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg

from tradepulse.common.contracts.training import (
    DataWindow,
    JobStatus,
    TrainingRequested,
    TrialCompleted,
    ValidationReport,
    WalkForwardReport,
)
from tradepulse.common.db.pool import retrying
from tradepulse.trainer.ports import EnsembleJob, EvaluatedTrial, JobRow, StoredTrial

_JOB_COLUMNS = """job_id, request, status, progress, trials_done, n_iterations, best_trial,
    best_value, error, sampler, sampler_version, batch_size, data_window, holder, lease_until,
    cancel_requested, created_at, started_at, finished_at, validation, walk_forward,
    param_importances"""
_TRIAL_COLUMNS = """number, params, state, value, metrics, fingerprint, duration_ms, replica,
    reason, system_attrs, block_sums"""


async def init_connection(conn: asyncpg.Connection) -> None:
    # json.dumps writes floats as their shortest repr and a `json` column keeps that text.
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _job(row: asyncpg.Record) -> JobRow:
    fields = dict(row)
    fields["request"] = TrainingRequested.model_validate(fields["request"])
    window = fields["data_window"]
    fields["data_window"] = DataWindow.model_validate(window) if window else None
    report = fields["validation"]
    fields["validation"] = ValidationReport.model_validate(report) if report else None
    wf = fields["walk_forward"]
    fields["walk_forward"] = WalkForwardReport.model_validate(wf) if wf else None
    return JobRow(**fields)


def _trial(row: asyncpg.Record) -> StoredTrial:
    return StoredTrial(**dict(row))


class TrainingRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _execute(self, sql: str, *args: Any) -> str:
        async def op() -> str:
            return str(await self.pool.execute(sql, *args))

        return await retrying(op)

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async def op() -> asyncpg.Record | None:
            return await self.pool.fetchrow(sql, *args)

        return await retrying(op)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def op() -> list[asyncpg.Record]:
            return list(await self.pool.fetch(sql, *args))

        return await retrying(op)

    async def create_job(self, request: TrainingRequested) -> JobRow:
        await self._execute(
            """INSERT INTO training.jobs (job_id, request, status, n_iterations)
               VALUES ($1, $2, 'queued', $3) ON CONFLICT (job_id) DO NOTHING""",
            request.job_id,
            request.model_dump(mode="json"),
            request.total_trials,
        )
        row = await self.get_job(request.job_id)
        assert row is not None
        return row

    async def get_job(self, job_id: str) -> JobRow | None:
        row = await self._fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM training.jobs WHERE job_id = $1", job_id
        )
        return _job(row) if row is not None else None

    async def take_job(self, job_id: str, holder: str, lease_s: float) -> bool:
        """Lease a job to `holder`; False while another live replica holds it."""
        row = await self._fetchrow(
            """UPDATE training.jobs
               SET holder = $2, lease_until = now() + make_interval(secs => $3), updated_at = now()
               WHERE job_id = $1 AND status IN ('queued', 'running')
                 AND (holder IS NULL OR holder = $2 OR lease_until < now())
               RETURNING job_id""",
            job_id,
            holder,
            lease_s,
        )
        return row is not None

    async def held_by_another(self, job_id: str, replica: str) -> bool:
        """Whether a replica other than `replica` holds the job under a lease still running."""
        row = await self._fetchrow(
            """SELECT EXISTS (SELECT 1 FROM training.jobs WHERE job_id = $1
                 AND holder IS NOT NULL AND holder <> $2 AND lease_until >= now()) AS held""",
            job_id,
            replica,
        )
        return bool(row and row["held"])

    async def release_lease(self, job_id: str, holder: str) -> None:
        # One round trip, no retry: this runs while the replica shuts down.
        await self.pool.execute(
            """UPDATE training.jobs SET holder = NULL, lease_until = NULL, updated_at = now()
               WHERE job_id = $1 AND holder = $2""",
            job_id,
            holder,
        )

    async def renew_lease(self, job_id: str, holder: str, lease_s: float) -> bool:
        result = await self._execute(
            """UPDATE training.jobs SET lease_until = now() + make_interval(secs => $3)
               WHERE job_id = $1 AND holder = $2""",
            job_id,
            holder,
            lease_s,
        )
        return result.endswith(" 1")

    async def start_job(
        self,
        job_id: str,
        *,
        sampler: str,
        sampler_version: str,
        batch_size: int,
        window: DataWindow,
    ) -> None:
        await self._execute(
            """UPDATE training.jobs
               SET status = 'running', sampler = $2, sampler_version = $3,
                   batch_size = $4, data_window = COALESCE(data_window, $5),
                   started_at = COALESCE(started_at, now()), updated_at = now()
               WHERE job_id = $1 AND status IN ('queued', 'running')""",
            job_id,
            sampler,
            sampler_version,
            batch_size,
            window.model_dump(mode="json"),
        )

    async def stored_trials(self, job_id: str) -> list[StoredTrial]:
        rows = await self._fetch(
            f"SELECT {_TRIAL_COLUMNS} FROM training.trials WHERE job_id = $1 ORDER BY number",
            job_id,
        )
        return [_trial(r) for r in rows]

    async def trials_in(self, job_id: str, numbers: Iterable[int]) -> dict[int, StoredTrial]:
        rows = await self._fetch(
            f"""SELECT {_TRIAL_COLUMNS}
                FROM training.trials WHERE job_id = $1 AND number = ANY($2::int[])""",
            job_id,
            list(numbers),
        )
        trials = [_trial(r) for r in rows]
        return {t.number: t for t in trials}

    async def insert_trials(self, trials: list[tuple[TrialCompleted, dict[str, Any]]]) -> None:
        """Store trials in one round trip; a trial already stored (a redelivered work item)
        is left as it is, and none is stored once its job is cancelled (the trials a job
        reports stop there). The job's row is share-locked, so a cancel either waits for the
        insert or is seen by it."""

        async def op() -> None:
            await self.pool.executemany(
                """INSERT INTO training.trials (job_id, number, params, state, value, metrics,
                       fingerprint, duration_ms, replica, reason, system_attrs, block_sums)
                   SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
                   FROM training.jobs
                   WHERE job_id = $1 AND status <> 'cancelled'
                   FOR SHARE
                   ON CONFLICT (job_id, number) DO NOTHING""",
                [
                    (
                        r.job_id,
                        r.number,
                        r.params,
                        r.state,
                        r.value,
                        r.metrics,
                        r.fingerprint,
                        r.duration_ms,
                        r.replica,
                        r.reason,
                        attrs,
                        r.block_sums,
                    )
                    for r, attrs in trials
                ],
            )

        await retrying(op)

    async def update_progress(
        self,
        job_id: str,
        *,
        holder: str,
        trials_done: int,
        progress: float,
        best_trial: int | None,
        best_value: float | None,
    ) -> bool:
        result = await self._execute(
            """UPDATE training.jobs
               SET trials_done = $2, progress = $3, best_trial = $4, best_value = $5,
                   updated_at = now()
               WHERE job_id = $1 AND status = 'running' AND holder = $6""",
            job_id,
            trials_done,
            progress,
            best_trial,
            best_value,
            holder,
        )
        return result.endswith(" 1")

    async def finish(
        self, job_id: str, status: str, *, error: str | None = None, holder: str | None = None
    ) -> bool:
        """Move a job to a terminal status; False if it already had one, or `holder` is
        given and does not hold it."""
        result = await self._execute(
            """UPDATE training.jobs
               SET status = $2, error = $3, finished_at = now(), updated_at = now(),
                   progress = CASE WHEN $2 = 'completed' THEN 100 ELSE progress END
               WHERE job_id = $1 AND status NOT IN ('completed', 'failed', 'cancelled')
                 AND ($4::text IS NULL OR holder = $4)""",
            job_id,
            status,
            error,
            holder,
        )
        return result.endswith(" 1")

    async def request_cancel(self, job_id: str) -> JobStatus | None:
        """Flag a job for cancellation. A job no live replica holds (queued, or its holder died
        and no replica has taken it over yet) is cancelled at once."""
        row = await self._fetchrow(
            """UPDATE training.jobs
               SET cancel_requested = true, updated_at = now(),
                   status = CASE WHEN status = 'queued' OR (status = 'running' AND orphaned)
                                 THEN 'cancelled' ELSE status END,
                   finished_at = CASE WHEN status = 'queued' OR (status = 'running' AND orphaned)
                                      THEN now() ELSE finished_at END
               FROM (SELECT holder IS NULL OR lease_until < now() AS orphaned
                     FROM training.jobs WHERE job_id = $1) AS lease
               WHERE job_id = $1
               RETURNING job_id, status""",
            job_id,
        )
        return row["status"] if row is not None else None

    async def cancel_requested(self, job_id: str) -> bool:
        row = await self._fetchrow(
            "SELECT cancel_requested FROM training.jobs WHERE job_id = $1", job_id
        )
        return bool(row and row["cancel_requested"])

    async def list_trials(
        self, job_id: str, limit: int, offset: int, numbers: range | None = None
    ) -> tuple[int, list[StoredTrial]]:
        low, high = (numbers.start, numbers.stop) if numbers is not None else (None, None)
        where = (
            "job_id = $1 AND ($2::int IS NULL OR number >= $2) AND ($3::int IS NULL OR number < $3)"
        )
        total_row = await self._fetchrow(
            f"SELECT count(*) AS n FROM training.trials WHERE {where}", job_id, low, high
        )
        rows = await self._fetch(
            f"""SELECT {_TRIAL_COLUMNS}
                FROM training.trials WHERE {where} ORDER BY number LIMIT $4 OFFSET $5""",
            job_id,
            low,
            high,
            limit,
            offset,
        )
        return int(total_row["n"] if total_row else 0), [_trial(r) for r in rows]

    async def list_jobs(
        self, status: str | None, symbol: str | None, strategy: str | None, limit: int, offset: int
    ) -> tuple[int, list[str]]:
        """Job ids, newest first, with the total matching the filters."""
        where = """($1::text IS NULL OR status = $1)
                   AND ($2::text IS NULL OR request->'dataset'->>'symbol' = $2)
                   AND ($3::text IS NULL OR request->>'strategy' = $3)"""
        total = await self._fetchrow(
            f"SELECT count(*) AS n FROM training.jobs WHERE {where}", status, symbol, strategy
        )
        rows = await self._fetch(
            f"""SELECT job_id FROM training.jobs WHERE {where}
                ORDER BY created_at DESC, job_id LIMIT $4 OFFSET $5""",
            status,
            symbol,
            strategy,
            limit,
            offset,
        )
        return int(total["n"] if total else 0), [r["job_id"] for r in rows]

    async def jobs_by_status(self) -> dict[str, int]:
        rows = await self._fetch("SELECT status, count(*) AS n FROM training.jobs GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}

    # Overfitting statistics and seed ensembles (validation spec sections 1-2, 4) -------------

    async def evaluated_trials(self, job_id: str) -> list[EvaluatedTrial]:
        """The job's evaluated trials (a Sharpe that is not null), in trial order.

        The Sharpe travels as the text json.dumps wrote, so float() gives back its bits.
        """
        rows = await self._fetch(
            """SELECT number, metrics->>'sharpe_ratio' AS sharpe, block_sums
               FROM training.trials
               WHERE job_id = $1 AND metrics->>'sharpe_ratio' IS NOT NULL
               ORDER BY number""",
            job_id,
        )
        return [EvaluatedTrial(r["number"], float(r["sharpe"]), r["block_sums"]) for r in rows]

    async def store_validation(self, job_id: str, report: ValidationReport) -> None:
        """Record a running job's report; the same job always gets the same report, so a
        replica that takes over and stores it again changes nothing."""
        await self._execute(
            """UPDATE training.jobs SET validation = $2, updated_at = now()
               WHERE job_id = $1 AND status = 'running'""",
            job_id,
            report.model_dump(mode="json"),
        )

    async def store_walk_forward(self, job_id: str, report: WalkForwardReport) -> None:
        """Record a running job's walk-forward report (the same job always gets the same)."""
        await self._execute(
            """UPDATE training.jobs SET walk_forward = $2, updated_at = now()
               WHERE job_id = $1 AND status = 'running'""",
            job_id,
            report.model_dump(mode="json"),
        )

    async def store_importances(self, job_id: str, importances: dict[str, float]) -> None:
        await self._execute(
            """UPDATE training.jobs SET param_importances = $2, updated_at = now()
               WHERE job_id = $1 AND status = 'running'""",
            job_id,
            importances,
        )

    async def ensemble_jobs(self, ensemble_id: str) -> list[EnsembleJob]:
        """The ensemble's jobs in seed order, each with its best trial's parameters."""
        rows = await self._fetch(
            """SELECT j.job_id, j.request, j.status, j.best_value, j.best_trial,
                      t.params AS best_params
               FROM training.jobs j
               LEFT JOIN training.trials t ON t.job_id = j.job_id AND t.number = j.best_trial
               WHERE j.request->>'ensemble_id' = $1
               ORDER BY (j.request->>'seed')::numeric, j.job_id""",
            ensemble_id,
        )
        return [
            EnsembleJob(
                job_id=r["job_id"],
                request=TrainingRequested.model_validate(r["request"]),
                status=r["status"],
                best_value=r["best_value"],
                best_trial=r["best_trial"],
                best_params=r["best_params"],
            )
            for r in rows
        ]
