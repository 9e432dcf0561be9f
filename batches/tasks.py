"""Celery tasks of batch import and export: thin doors onto ``importing`` and ``exporting``; they take
ids, not objects. Each job is claimed by one worker at a time (see ``jobs.job_claim``), so a
redelivered task finds the job held or finished and does nothing."""

from celery import shared_task

from . import exporting, importing

# Batch jobs run for as long as the batch needs (364k images is hours, not minutes); the global
# ten-minute limit is for the small tasks. The broker's visibility timeout is longer than this
# (settings), so a running batch is never handed to a second worker.
BATCH_SOFT_LIMIT = 12 * 3600
BATCH_HARD_LIMIT = BATCH_SOFT_LIMIT + 300


@shared_task(bind=True, acks_late=True, soft_time_limit=BATCH_SOFT_LIMIT, time_limit=BATCH_HARD_LIMIT)
def import_job_run(self, job_id: int) -> str | None:
    job = importing.import_job_run(job_id=job_id, worker=_worker(self))
    return job.status if job else None


@shared_task(bind=True, acks_late=True, soft_time_limit=BATCH_SOFT_LIMIT, time_limit=BATCH_HARD_LIMIT)
def export_job_run(self, job_id: int) -> str | None:
    job = exporting.export_job_run(job_id=job_id, worker=_worker(self))
    return job.status if job else None


def _worker(task) -> str:
    import socket

    return f"{socket.gethostname()}:{task.request.id or 'inline'}"
