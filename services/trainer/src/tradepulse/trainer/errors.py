"""Trainer errors: a JobError ends a job as `failed` with its message as the reason."""

from __future__ import annotations

from tradepulse.common.errors import ServiceError


class JobError(ServiceError):
    """The job cannot run as asked (no data, a window longer than the data, ...)."""


class JobHeldElsewhereError(ServiceError):
    """Another live replica holds the job (a duplicated request): try again after its lease."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} is held by another replica")


class JobTakenOverError(ServiceError):
    """This replica held the job, lost its lease (cut off, stalled) and another replica took
    it over: it stops and leaves the job, and the message it was delivered, to that one."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} was taken over by another replica")


class SnapshotMissingError(JobError):
    """A dataset snapshot a job refers to is no longer in the object store."""
