"""PostgreSQL access of the registry (schema `registry`); every value is a query parameter.

params, metrics and settings are written with json.dumps into `json` columns and read back
with json.loads: the float repr round-trips, so the numbers come back bit for bit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from tradepulse.common.contracts.registry import (
    ConfigPromoted,
    ConfigStatus,
    ConfigView,
    GateView,
    ListConfigs,
)
from tradepulse.common.contracts.training import JobCompleted

_VIEW_COLUMNS = """config_id, job_id, status, strategy, exchange, symbol, timeframe, regime,
    optimizer, seed, objective, params::text AS params, metrics::text AS metrics, fingerprint,
    settings::text AS settings, snapshot, content_hash, window_begin, window_stop, trade_from,
    first_ms, last_ms, sampler, sampler_version, code_version, created_at,
    validation::text AS validation, walk_forward::text AS walk_forward, gates::text AS gates"""

# Sort keys map onto fixed SQL; nothing the caller sends is ever spliced into a query.
_SORT_SQL: Mapping[str, str] = {
    "sharpe_ratio": "(metrics->>'sharpe_ratio')::double precision",
    "net_profit": "(metrics->>'net_profit')::double precision",
    "total_trades": "(metrics->>'total_trades')::double precision",
    "created_at": "created_at",
    "dsr": "dsr",
    "pbo": "pbo",
}


@dataclass(frozen=True)
class OutboxRow:
    id: int
    subject: str
    payload: str


def _json(values: Mapping[str, Any]) -> str:
    # A non-finite float has no JSON form; the contracts serialize it as null, and so do we.
    return json.dumps(
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()}
    )


def _view(row: asyncpg.Record, history: list[asyncpg.Record]) -> ConfigView:
    return ConfigView.model_validate(
        {
            "config_id": row["config_id"],
            "job_id": row["job_id"],
            "status": row["status"],
            "strategy": row["strategy"],
            "dataset": {
                "exchange": row["exchange"],
                "symbol": row["symbol"],
                "timeframe": row["timeframe"],
            },
            "regime": row["regime"],
            "optimizer": row["optimizer"],
            "seed": row["seed"],
            "objective": row["objective"],
            "params": json.loads(row["params"]),
            "metrics": json.loads(row["metrics"]),
            "fingerprint": row["fingerprint"],
            "window": {
                "snapshot": row["snapshot"],
                "content_hash": row["content_hash"],
                "begin": row["window_begin"],
                "stop": row["window_stop"],
                "trade_from": row["trade_from"],
                "first_ms": row["first_ms"],
                "last_ms": row["last_ms"],
            },
            "settings": json.loads(row["settings"]),
            "sampler": row["sampler"],
            "sampler_version": row["sampler_version"],
            "code_version": row["code_version"],
            "created_at": row["created_at"].isoformat(),
            "validation": None if row["validation"] is None else json.loads(row["validation"]),
            "walk_forward": None
            if row["walk_forward"] is None
            else json.loads(row["walk_forward"]),
            "gates": None if row["gates"] is None else json.loads(row["gates"]),
            "history": [
                {
                    "from_status": h["from_status"],
                    "to_status": h["to_status"],
                    "reason": h["reason"],
                    "at": h["at"].isoformat(),
                    "actor": h["actor"],
                }
                for h in history
            ],
        }
    )


class Repository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_config(
        self,
        config_id: str,
        job: JobCompleted,
        source_message_id: str,
        changes: Sequence[ConfigPromoted],
        subject: str,
        gates: Sequence[GateView] | None = None,
    ) -> bool:
        """Store the job's configuration, its status changes at birth (history entries 1, 2,
        ...: its first status, then what its walk-forward gates decided) and the events
        announcing them, at once; the configuration's status is the last change's.

        Returns False, writing nothing, when the job already has a configuration.
        """
        if not changes:
            raise ValueError("a configuration is born with at least one status")
        promoted = changes[-1]
        at = datetime.fromisoformat(changes[0].at)
        validation = job.validation
        report = job.walk_forward
        async with self._pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                """INSERT INTO registry.configs (
                    config_id, job_id, status, strategy, exchange, symbol, timeframe, regime,
                    optimizer, seed, objective, n_iterations, best_trial, best_value, params,
                    metrics, fingerprint, settings, snapshot, content_hash, window_begin,
                    window_stop, trade_from, first_ms, last_ms, sampler, sampler_version,
                    batch_size, code_version, source_message_id, created_at, updated_at,
                    validation, dsr, pbo, walk_forward, gates)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $31,
                    $32, $33, $34, $35, $36)
                ON CONFLICT (job_id) DO NOTHING
                RETURNING true""",
                config_id,
                job.job_id,
                promoted.to_status,
                job.strategy,
                job.dataset.exchange,
                job.dataset.symbol,
                job.dataset.timeframe,
                job.regime,
                job.optimizer,
                job.seed,
                job.objective,
                job.n_iterations,
                job.best_trial,
                job.best_value,
                _json(job.params),
                _json(job.metrics),
                job.fingerprint,
                _json(job.settings.model_dump()),
                job.window.snapshot,
                job.window.content_hash,
                job.window.begin,
                job.window.stop,
                job.window.trade_from,
                job.window.first_ms,
                job.window.last_ms,
                job.sampler,
                job.sampler_version,
                job.batch_size,
                job.code_version,
                source_message_id,
                at,
                None if validation is None else validation.model_dump_json(),
                None if validation is None else validation.dsr,
                None if validation is None or validation.pbo is None else validation.pbo.pbo,
                None if report is None else report.model_dump_json(),
                None if gates is None else json.dumps([g.model_dump(mode="json") for g in gates]),
            )
            if not created:
                return False
            for seq, change in enumerate(changes, start=1):
                await conn.execute(
                    """INSERT INTO registry.status_history
                       (config_id, seq, from_status, to_status, reason, at, actor)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                    config_id,
                    seq,
                    change.from_status,
                    change.to_status,
                    change.reason,
                    datetime.fromisoformat(change.at),
                    change.actor,
                )
                await conn.execute(
                    "INSERT INTO registry.outbox (message_id, subject, payload) VALUES ($1, $2, $3)",
                    change.message_id,
                    subject,
                    change.to_bytes().decode(),
                )
        return True

    async def get_config(
        self, *, config_id: str | None = None, job_id: str | None = None
    ) -> ConfigView | None:
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            row = await conn.fetchrow(
                f"""SELECT {_VIEW_COLUMNS} FROM registry.configs
                    WHERE ($1::text IS NULL OR config_id = $1)
                      AND ($2::text IS NULL OR job_id = $2)""",
                config_id,
                job_id,
            )
            if row is None:
                return None
            history = await conn.fetch(
                """SELECT from_status, to_status, reason, at, actor FROM registry.status_history
                   WHERE config_id = $1 ORDER BY seq""",
                row["config_id"],
            )
        return _view(row, list(history))

    async def list_configs(self, query: ListConfigs) -> tuple[int, list[ConfigView]]:
        """The matching total and one page of configurations, sorted with nulls last."""
        where: list[str] = []
        args: list[Any] = []

        def condition(sql: str, value: Any) -> None:
            args.append(value)
            where.append(sql.replace("?", f"${len(args)}"))

        if query.status is not None:
            condition("status = ?", query.status)
        if query.min_sharpe is not None:
            condition(f"{_SORT_SQL['sharpe_ratio']} >= ?", query.min_sharpe)
        if query.min_trades is not None:
            condition(f"{_SORT_SQL['total_trades']} >= ?", float(query.min_trades))
        if query.min_dsr is not None:
            condition("dsr >= ?", query.min_dsr)
        if query.max_pbo is not None:
            condition("pbo <= ?", query.max_pbo)
        if query.symbol is not None:
            condition("symbol = ?", query.symbol)
        if query.strategy is not None:
            condition("strategy = ?", query.strategy)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        direction = "DESC" if query.descending else "ASC"
        order = f"{_SORT_SQL[query.sort]} {direction} NULLS LAST, config_id"
        page = len(args)
        # One snapshot for the count, the page and its histories, so they agree.
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            total = await conn.fetchval(f"SELECT count(*) FROM registry.configs {clause}", *args)
            rows = await conn.fetch(
                f"""SELECT {_VIEW_COLUMNS} FROM registry.configs {clause}
                    ORDER BY {order} LIMIT ${page + 1} OFFSET ${page + 2}""",
                *args,
                query.limit,
                query.offset,
            )
            history = await conn.fetch(
                """SELECT config_id, from_status, to_status, reason, at, actor
                   FROM registry.status_history WHERE config_id = ANY($1::text[])
                   ORDER BY config_id, seq""",
                [r["config_id"] for r in rows],
            )
        by_config: dict[str, list[asyncpg.Record]] = {}
        for h in history:
            by_config.setdefault(h["config_id"], []).append(h)
        return total, [_view(r, by_config.get(r["config_id"], [])) for r in rows]

    async def unsent(self, limit: int) -> list[OutboxRow]:
        rows = await self._pool.fetch(
            """SELECT id, subject, payload FROM registry.outbox
               WHERE sent_at IS NULL ORDER BY id LIMIT $1""",
            limit,
        )
        return [OutboxRow(id=r["id"], subject=r["subject"], payload=r["payload"]) for r in rows]

    async def mark_sent(self, outbox_id: int) -> None:
        await self._pool.execute(
            "UPDATE registry.outbox SET sent_at = now() WHERE id = $1 AND sent_at IS NULL",
            outbox_id,
        )

    async def current_status(self, config_id: str) -> ConfigStatus | None:
        """The configuration's status now; None when there is no such configuration."""
        status: ConfigStatus | None = await self._pool.fetchval(
            "SELECT status FROM registry.configs WHERE config_id = $1", config_id
        )
        return status

    async def apply_status_change(
        self,
        config_id: str,
        expected: ConfigStatus,
        target: ConfigStatus,
        event: Callable[[int, str], ConfigPromoted],
        subject: str,
    ) -> ConfigPromoted | None:
        """Move the configuration from `expected` to `target`, if it still has `expected`; its
        history entry and the event commit with the change.

        `event(seq, job_id)` builds the ConfigPromoted of history entry `seq`. Returns it, or
        None (nothing written) when another change committed first. The UPDATE's condition
        on the status it read is what lets one of two concurrent changes win: the second
        waits for the first's row lock, then finds the status changed and matches no row. The
        row lock also keeps `seq` unique while the entry is written: the history cannot fork.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            job_id = await conn.fetchval(
                """UPDATE registry.configs SET status = $3, updated_at = now()
                   WHERE config_id = $1 AND status = $2 RETURNING job_id""",
                config_id,
                expected,
                target,
            )
            if job_id is None:
                return None
            seq = await conn.fetchval(
                "SELECT max(seq) + 1 FROM registry.status_history WHERE config_id = $1",
                config_id,
            )
            promoted = event(seq, job_id)
            if (promoted.from_status, promoted.to_status) != (expected, target):
                raise ValueError(f"the event says {promoted.from_status} -> {promoted.to_status}")
            await conn.execute(
                """INSERT INTO registry.status_history
                   (config_id, seq, from_status, to_status, reason, at, actor)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                config_id,
                seq,
                promoted.from_status,
                promoted.to_status,
                promoted.reason,
                datetime.fromisoformat(promoted.at),
                promoted.actor,
            )
            await conn.execute(
                "INSERT INTO registry.outbox (message_id, subject, payload) VALUES ($1, $2, $3)",
                promoted.message_id,
                subject,
                promoted.to_bytes().decode(),
            )
        return promoted
