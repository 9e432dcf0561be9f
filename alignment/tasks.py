"""Celery tasks of the alignment app: thin doors onto ``alignment.services``; they take ids.

Each task is idempotent (results keyed by input and pipeline versions), so ``acks_late`` is safe: a task
whose worker died is redelivered and finishes the work exactly once.
"""

from __future__ import annotations

import socket

from celery import shared_task
from django.db import DatabaseError, InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from annotation.models import Report

from . import services

TRANSIENT = (OperationalError, InterfaceError, BrokerError, ConnectionError)
RETRY = {"acks_late": True, "autoretry_for": TRANSIENT, "retry_backoff": True, "retry_backoff_max": 120,
         "max_retries": 6, "soft_time_limit": 300, "time_limit": 360}


def _worker(task) -> str:
    return f"{socket.gethostname()}:{task.request.id or 'inline'}"


@shared_task(bind=True, **RETRY)
def report_parse(self, report_id: int) -> int:
    report = Report.objects.select_related("study__dataset__lexicon").filter(pk=report_id).first()
    return len(services.report_parse(report=report)) if report else 0


@shared_task(bind=True, **RETRY)
def study_align(self, study_id: int) -> str:
    status = services.study_align(study_id=study_id, worker=_worker(self))
    if status == "busy":
        # Another worker holds the study; look again later rather than drop the request.
        raise self.retry(countdown=5, max_retries=30)
    return status


@shared_task(bind=True, **{**RETRY, "soft_time_limit": 3600, "time_limit": 3660})
def alignment_chunk(self, run_id: int | None, study_ids: list[int]) -> int:
    """Align a chunk of studies together (``services.studies_align``); a study that fails is recorded
    on its own row and the chunk goes on, but a lost connection or a database error retries the chunk."""
    outcomes = services.studies_align(study_ids=study_ids, worker=_worker(self), reraise=(*TRANSIENT, DatabaseError))
    aligned = outcomes.get("aligned", 0)
    services.alignment_run_refresh(run_id=run_id)
    return aligned


@shared_task(bind=True, **RETRY)
def dataset_align(self, dataset_id: int, run_id: int, chunk_size: int = 50) -> int:
    """Fan a dataset's studies out to chunk tasks; progress is the run row."""
    chunks = services.dataset_study_chunks(dataset_id=dataset_id, size=chunk_size)
    for chunk in chunks:
        alignment_chunk.delay(run_id, chunk)
    if not chunks:
        services.alignment_run_refresh(run_id=run_id)
    return len(chunks)
