"""Claiming and progress of batch jobs (imports and exports), as alignment claims studies.

A job is claimed with one conditional UPDATE: a pending job, or a running one whose holder has not
been heard of for ``STALE_AFTER`` (its worker died). The holder's progress writes double as its
heartbeat, so a long, healthy batch is never taken over, and a redelivered task finds the job held or
finished and does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import JobStatus

STALE_AFTER = timedelta(minutes=15)


def job_claim(*, model, job_id: int, worker: str, stale_after: timedelta = STALE_AFTER) -> bool:
    """Take the job for ``worker``. True when this worker now holds it; False when it is finished,
    gone, or held by a worker heard from within ``stale_after``."""
    now = timezone.now()
    claimable = Q(status=JobStatus.PENDING) | Q(status=JobStatus.RUNNING, claimed_at__lt=now - stale_after) | Q(
        status=JobStatus.RUNNING, claimed_at__isnull=True)
    return bool(model.objects.filter(claimable, pk=job_id).update(
        status=JobStatus.RUNNING, claimed_by=worker[:128], claimed_at=now,
        started_at=Coalesce("started_at", now)))


def job_finish(*, model, job_id: int, worker: str, **fields: Any) -> bool:
    """Write the job's final state if ``worker`` still holds it (a worker whose job was taken over
    after it fell silent must not overwrite the new holder's outcome)."""
    return bool(model.objects.filter(pk=job_id, claimed_by=worker[:128], status=JobStatus.RUNNING).update(
        finished_at=timezone.now(), **fields))


def job_progress_recorder(*, model, job_id: int, worker: str, interval_s: float = 1.0
                          ) -> Callable[[int, int, Mapping[str, Any]], None]:
    """A callback ``(total, done, counts)`` that writes a job's progress row, and the holder's
    heartbeat, at most once every ``interval_s`` seconds: the page polls that row, and writing it on
    every item would cost more than the work itself."""
    last = [0.0]

    def record(total: int, done: int, counts: Mapping[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= interval_s:
            last[0] = now
            model.objects.filter(pk=job_id, claimed_by=worker[:128]).update(
                total=total, done=done, counts=dict(counts), claimed_at=timezone.now())

    return record
