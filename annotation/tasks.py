"""Celery tasks of the annotation app: thin doors onto ``services``, ``importing`` and ``exporting``;
they take ids, not objects."""

from celery import shared_task

from . import exporting, importing, services

# Batch jobs run for as long as the batch needs (364k images is hours, not minutes); the global
# ten-minute limit is for the small tasks.
BATCH_SOFT_LIMIT = 12 * 3600
BATCH_HARD_LIMIT = BATCH_SOFT_LIMIT + 300


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=3)
def image_thumbnail_make(image_id: int) -> bool:
    image = services.image_thumbnail_make(image_id=image_id)
    return bool(image and image.thumbnail)


@shared_task(acks_late=True, soft_time_limit=BATCH_SOFT_LIMIT, time_limit=BATCH_HARD_LIMIT)
def import_job_run(job_id: int) -> str | None:
    job = importing.import_job_run(job_id=job_id)
    return job.status if job else None


@shared_task(acks_late=True, soft_time_limit=BATCH_SOFT_LIMIT, time_limit=BATCH_HARD_LIMIT)
def export_job_run(job_id: int) -> str | None:
    job = exporting.export_job_run(job_id=job_id)
    return job.status if job else None


@shared_task(acks_late=True, soft_time_limit=BATCH_SOFT_LIMIT, time_limit=BATCH_HARD_LIMIT)
def dataset_metrics_refresh(dataset_id: int) -> float | None:
    """A new agreement snapshot for the dashboard; re-running only adds a newer snapshot."""
    from . import adjudication

    snapshot = adjudication.dataset_metrics_refresh(dataset_id=dataset_id)
    return snapshot.duration_s if snapshot else None
