"""An import job end to end: uploaded .zip → Redis → a real Celery worker → PostgreSQL, with thumbnails."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Image, Region
from batches.importing import import_job_create
from batches.models import ImportJob
from tests.batches.test_import_support import batch_files, dicom_files, manifest_rows, zip_write
from tests.factories import dataset_make, user_make, wait_until

pytestmark = [pytest.mark.integration]




def test_import_job_runs_on_the_worker_with_progress_row_report_and_thumbnails(celery_worker_process, tmp_path):
    dataset = dataset_make(name="worker-import")
    rows = [*manifest_rows(), {"study": "ACC-X", "patient": "P-X", "images": [{"file": "nope.jpg"}]}]
    archive = zip_write(tmp_path / "batch.zip", {"manifest.jsonl": "".join(json.dumps(r) + "\n" for r in rows)}
                        | batch_files() | dicom_files())
    upload = SimpleUploadedFile("batch.zip", archive.read_bytes(), content_type="application/zip")
    job = import_job_create(dataset=dataset, user=user_make(staff=True), upload=upload)
    assert wait_until(lambda: ImportJob.objects.get(pk=job.pk).status in ("done", "failed")), "the job never finished"
    job.refresh_from_db()
    assert job.status == "done", job.errors
    assert job.done == job.total == 5  # four manifest lines and one DICOM study
    assert job.counts["images_created"] == 9 and job.counts["rows_failed"] == 1
    assert [p["line"] for p in job.errors if p["level"] == "error"] == [4]
    assert Region.objects.filter(image__study__dataset=dataset).count() == 5
    images = Image.objects.filter(study__dataset=dataset)
    assert wait_until(lambda: not images.filter(thumbnail="").exists()), "thumbnails were not made"
