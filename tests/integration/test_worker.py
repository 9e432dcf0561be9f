"""The real Celery worker, on Redis, against PostgreSQL."""


import pytest
from django.db import transaction

from annotation import tasks
from annotation.models import Image
from tests.factories import dataset_make, image_make, study_make, wait_until

pytestmark = [pytest.mark.integration]




def test_worker_runs_a_task_through_redis_against_postgres(celery_worker_process):
    with transaction.atomic():
        image = image_make(study_make(dataset_make()), width=640, height=480)
        transaction.on_commit(lambda: tasks.image_thumbnail_make.delay(image.pk))
    assert wait_until(lambda: Image.objects.get(pk=image.pk).thumbnail), "the worker never made the thumbnail"
    image.refresh_from_db()
    assert image.thumbnail.name.startswith("thumbnails/")
    assert image.thumbnail.storage.exists(image.thumbnail.name)
