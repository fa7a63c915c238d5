"""The states of a training job and of an inspection: the one list that tables, schemas,
routes, services and the worker share. Values are what the database and the JSON hold."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class InspectionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# A job in one of these states never changes again.
JOB_FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
# Work that a worker or a request still has to do or finish.
JOB_UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)
INSPECTION_UNFINISHED = (InspectionStatus.QUEUED, InspectionStatus.RUNNING)
INSPECTION_FINAL = (InspectionStatus.SUCCEEDED, InspectionStatus.FAILED)
