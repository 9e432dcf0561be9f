"""Celery tasks of review: thin doors onto ``adjudication``; they take ids."""

from celery import shared_task

from . import adjudication

METRICS_SOFT_LIMIT = 12 * 3600


@shared_task(acks_late=True, soft_time_limit=METRICS_SOFT_LIMIT, time_limit=METRICS_SOFT_LIMIT + 300)
def dataset_metrics_refresh(dataset_id: int) -> float | None:
    """A new agreement snapshot for the dashboard; re-running only adds a newer snapshot."""
    snapshot = adjudication.dataset_metrics_refresh(dataset_id=dataset_id)
    return snapshot.duration_s if snapshot else None
