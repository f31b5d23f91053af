"""The registry's use cases: plain async functions of (message, deps)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from tradepulse.common.contracts.registry import (
    ChangeStatus,
    ChangeStatusReply,
    ConfigPromoted,
    ConfigReply,
    ConfigsReply,
    ConfigStatus,
    GateView,
    GetConfig,
    ListConfigs,
    StatusRefusal,
)
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import JobCompleted
from tradepulse.common.db.pool import retrying
from tradepulse.common.logging import get_logger
from tradepulse.registry import lifecycle
from tradepulse.registry.errors import IllegalTransitionError, InvalidRequestError
from tradepulse.registry.metrics import RegistryMetrics
from tradepulse.registry.outbox import Outbox
from tradepulse.registry.repository import Repository

# Below the consumer's ack_wait, so that a retried write does not race a redelivery.
WRITE_RETRY_S = 20.0
# A query's caller waits a few seconds at most; one retry rides over a dropped connection.
READ_RETRY_S = 2.0

log = get_logger(__name__)


@dataclass(frozen=True)
class Deps:
    repo: Repository
    outbox: Outbox
    names: Names
    rules: lifecycle.Rules
    metrics: RegistryMetrics
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def config_id_for(job_id: str) -> str:
    """A job's configuration id: the same for every delivery of its JobCompleted."""
    return "cfg_" + hashlib.sha256(job_id.encode()).hexdigest()[:16]


def promotion_message_id(config_id: str, seq: int) -> str:
    """The id of the seq-th status change: a re-publish of it is a JetStream duplicate."""
    return f"{config_id}.{seq}"


def evidence_of(event: JobCompleted) -> lifecycle.Evidence | None:
    """What a walk-forward job says for its gates (validation spec section 5); None for a
    plain job. The stitched figures are the report's `oos`; PBO and DSR are the
    configuration's own, the final optimization's (the job's validation report)."""
    report = event.walk_forward
    if report is None:
        return None
    validation = event.validation
    oos = report.oos.metrics
    return lifecycle.Evidence(
        oos_trades=oos.get("total_trades"),
        oos_sharpe=oos.get("sharpe_ratio"),
        oos_psr=report.oos.psr,
        wfe=report.wfe,
        pbo=None if validation is None or validation.pbo is None else validation.pbo.pbo,
        dsr=None if validation is None else validation.dsr,
    )


def birth(
    event: JobCompleted, rules: lifecycle.Rules
) -> tuple[list[lifecycle.Decision], list[GateView] | None]:
    """A new configuration's status changes (its first status, then PAPER when a walk-forward
    job's gates all hold) and its gates (None for a plain job)."""
    decisions = [lifecycle.initial(event.metrics, rules)]
    evidence = evidence_of(event)
    if evidence is None:
        return decisions, None
    verdicts = lifecycle.gates(evidence, rules.gates)
    after = lifecycle.after_gates(decisions[0].to_status, verdicts)
    if after is not None:
        decisions.append(after)
    views = [
        GateView(
            name=g.name,
            value=g.value,
            comparison=g.comparison,
            threshold=g.threshold,
            passed=g.passed,
        )
        for g in verdicts
    ]
    return decisions, views


async def record_job(event: JobCompleted, deps: Deps) -> bool:
    """Turn a finished job into a configuration; False (and nothing written) if it already is one.

    The status changes of its birth (a walk-forward job's CANDIDATE may move on to PAPER at
    once, by its gates), their history rows and ConfigPromoted events commit together; the
    events are published after the commit, and by the outbox's periodic run if that fails.
    """
    config_id = config_id_for(event.job_id)
    structlog.contextvars.bind_contextvars(job_id=event.job_id, config_id=config_id)
    try:
        decisions, gate_views = birth(event, deps.rules)
        at = deps.clock().isoformat()
        changes = [
            ConfigPromoted(
                message_id=promotion_message_id(config_id, seq),
                config_id=config_id,
                job_id=event.job_id,
                from_status=decision.from_status,
                to_status=decision.to_status,
                reason=decision.reason,
                at=at,
            )
            for seq, decision in enumerate(decisions, start=1)
        ]
        created = await retrying(
            lambda: deps.repo.create_config(
                config_id,
                event,
                event.message_id,
                changes,
                deps.names.config_promoted,
                gate_views,
            ),
            wait=WRITE_RETRY_S,
        )
        if not created:
            deps.metrics.duplicate_jobs.inc()
            log.info("job_already_recorded")
            return False
        status = decisions[-1].to_status
        deps.metrics.configs_created.labels(status).inc()
        log.info("config_created", status=status, reason=" / ".join(d.reason for d in decisions))
        await deps.outbox.try_flush()
        return True
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "config_id")


async def list_configs(query: ListConfigs, deps: Deps) -> ConfigsReply:
    total, items = await retrying(lambda: deps.repo.list_configs(query), wait=READ_RETRY_S)
    return ConfigsReply(total=total, items=[c.listed() for c in items])


async def get_config(query: GetConfig, deps: Deps) -> ConfigReply:
    """The configuration named by exactly one of config_id and job_id; config=None if unknown."""
    if (query.config_id is None) == (query.job_id is None):
        raise InvalidRequestError("give exactly one of config_id and job_id")
    config = await retrying(
        lambda: deps.repo.get_config(config_id=query.config_id, job_id=query.job_id),
        wait=READ_RETRY_S,
    )
    return ConfigReply(config=config)


def _refused(
    request: ChangeStatus, status: ConfigStatus, refusal: StatusRefusal, detail: str
) -> ChangeStatusReply:
    return ChangeStatusReply(
        config_id=request.config_id,
        status=status,
        changed=False,
        refused=refusal,
        detail=detail,
        allowed=list(lifecycle.allowed_targets(status)),
    )


def _not_found(request: ChangeStatus) -> ChangeStatusReply:
    return ChangeStatusReply(
        config_id=request.config_id,
        status=None,
        changed=False,
        refused="not_found",
        detail=f"no configuration {request.config_id}",
    )


def _unchanged(request: ChangeStatus, status: ConfigStatus) -> ChangeStatusReply:
    return ChangeStatusReply(
        config_id=request.config_id,
        status=status,
        changed=False,
        detail=f"{request.config_id} is already {status}",
        allowed=list(lifecycle.allowed_targets(status)),
    )


async def change_status(request: ChangeStatus, deps: Deps) -> ChangeStatusReply:
    """An operator's status change, decided by the lifecycle's table (operators may move
    PAPER -> LIVE, which no rule does).

    Asking for the current status changes nothing and succeeds. The change, its history entry
    (reason, actor) and one ConfigPromoted commit together, conditional on the status read
    here; when another change commits in between, this one is refused as a conflict (unless
    that change reached the same status, which makes this request an idempotent repeat).
    """
    structlog.contextvars.bind_contextvars(config_id=request.config_id)
    try:
        current = await retrying(
            lambda: deps.repo.current_status(request.config_id), wait=READ_RETRY_S
        )
        if current is None:
            return _not_found(request)
        if current == request.status:
            return _unchanged(request, current)
        try:
            decision = lifecycle.decide(current, request.status, request.reason, operator=True)
        except IllegalTransitionError as exc:
            return _refused(request, current, "forbidden", str(exc))
        at = deps.clock().isoformat()

        def event(seq: int, job_id: str) -> ConfigPromoted:
            return ConfigPromoted(
                message_id=promotion_message_id(request.config_id, seq),
                config_id=request.config_id,
                job_id=job_id,
                from_status=decision.from_status,
                to_status=decision.to_status,
                reason=decision.reason,
                at=at,
                actor=request.actor,
            )

        promoted = await retrying(
            lambda: deps.repo.apply_status_change(
                request.config_id,
                current,
                decision.to_status,
                event,
                deps.names.config_promoted,
            ),
            wait=WRITE_RETRY_S,
        )
        if promoted is None:
            now = await retrying(
                lambda: deps.repo.current_status(request.config_id), wait=READ_RETRY_S
            )
            if now == request.status:
                return _unchanged(request, now)
            if now is None:  # deleted meanwhile: nothing in the registry deletes today
                return _not_found(request)
            log.info("status_change_conflict", wanted=request.status, now=now)
            return _refused(
                request,
                now,
                "conflict",
                f"another change of {request.config_id} committed first: it went from "
                f"{current} to {now}; {now} -> {request.status} was not asked for",
            )
        log.info(
            "status_changed",
            from_status=current,
            to_status=request.status,
            actor=request.actor,
            reason=request.reason,
        )
        await deps.outbox.try_flush()
        return ChangeStatusReply(
            config_id=request.config_id,
            status=promoted.to_status,
            changed=True,
            detail=f"{request.config_id} went from {current} to {promoted.to_status}",
            allowed=list(lifecycle.allowed_targets(promoted.to_status)),
        )
    finally:
        structlog.contextvars.unbind_contextvars("config_id")
