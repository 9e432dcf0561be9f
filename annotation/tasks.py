"""Celery tasks of the annotation app: thin doors onto ``services``; they take ids, not objects."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=3)
def image_thumbnail_make(image_id: int) -> bool:
    image = services.image_thumbnail_make(image_id=image_id)
    return bool(image and image.thumbnail)
