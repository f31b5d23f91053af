"""The registry's NATS edge: decode, call the handler, reply; the common consumer and responder
settle each message and shape each error reply (see `tradepulse.common.subscribe`).

Error replies are `ErrorReply(error, code)`: INVALID_REQUEST for a request that does not
decode or cannot be carried out (naming the field), UNAVAILABLE when the database is away.
"""

from __future__ import annotations

from tradepulse.common.contracts.registry import ChangeStatus, GetConfig, ListConfigs
from tradepulse.common.contracts.training import JobCompleted
from tradepulse.common.service import Runtime
from tradepulse.common.subscribe import AckPolicy, ConsumerSpec
from tradepulse.registry import handlers
from tradepulse.registry.handlers import Deps
from tradepulse.registry.settings import RegistrySettings

# Recording a job takes milliseconds; the margin covers a database that restarts meanwhile.
JOBS_ACK_WAIT_S = 30.0
# A job's configuration is made however long the database is away: redelivered forever, every
# RETRY_DELAY_S; an event from a newer producer waits NEWER_SCHEMA_DELAY_S for an upgraded
# replica; an event no version can read is terminated.
JOBS_POLICY = AckPolicy(
    ack_wait_s=JOBS_ACK_WAIT_S,
    max_deliver=-1,
    retry_delay_s=2.0,
    retry_backoff=1.0,
    newer_schema_delay_s=30.0,
)
FETCH_BATCH = 16


async def register(rt: Runtime[RegistrySettings], deps: Deps) -> None:
    names = rt.names

    async def on_job_completed(event: JobCompleted) -> None:
        await handlers.record_job(event, deps)

    await rt.consume(
        ConsumerSpec(
            name="job_completed",
            stream=names.events_stream,
            subject=names.job_completed,
            durable=names.registry_jobs_durable,
            policy=JOBS_POLICY,
            batch=FETCH_BATCH,
        ),
        JobCompleted,
        on_job_completed,
    )
    await rt.respond(
        names.list_configs,
        ListConfigs,
        lambda q: handlers.list_configs(q, deps),
        name="list_configs",
    )
    await rt.respond(
        names.get_config, GetConfig, lambda q: handlers.get_config(q, deps), name="get_config"
    )
    await rt.respond(
        names.change_status,
        ChangeStatus,
        lambda q: handlers.change_status(q, deps),
        name="change_status",
    )
