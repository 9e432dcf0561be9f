"""The import admin page: upload a .zip, the job page with its htmx-polled progress and row report."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Image
from batches.models import ImportJob
from tests.batches.test_import_support import batch_files, manifest_rows, zip_write
from tests.factories import dataset_make, user_make

pytestmark = pytest.mark.django_db


def _zip(tmp_path) -> SimpleUploadedFile:
    rows = [*manifest_rows(), {"study": "ACC-X", "patient": "P-X", "images": [{"file": "nope.jpg"}]}]
    archive = zip_write(tmp_path / "batch.zip", {"manifest.jsonl": "".join(json.dumps(r) + "\n" for r in rows)}
                        | batch_files())
    return SimpleUploadedFile("batch.zip", archive.read_bytes(), content_type="application/zip")


def test_admin_uploads_a_zip_and_sees_progress_and_the_row_report(client, tmp_path, django_capture_on_commit_callbacks):
    admin = user_make()
    dataset = dataset_make(members={"admin": [admin]})
    client.force_login(admin)
    assert client.get(reverse("batches:import", args=[dataset.pk])).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("batches:import", args=[dataset.pk]),
                               {"batch": _zip(tmp_path), "format": "manifest"})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("batches:import-job", args=[job.pk])
    assert job.status == "done" and Image.objects.filter(study__dataset=dataset).count() == 4
    page = client.get(reverse("batches:import-job", args=[job.pk]))
    row = page.content.decode().split('id="report-rows"')[1]
    assert '<td class="num">4</td><td>ACC-X</td>' in row and "file not found in the batch" in row
    partial = client.get(reverse("batches:import-job", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert b'id="job-progress"' in partial.content and b"<html" not in partial.content
    assert b"every 1s" not in partial.content  # finished: polling stops


def test_a_running_job_is_polled(client):
    admin = user_make()
    dataset = dataset_make(members={"admin": [admin]})
    job = ImportJob.objects.create(dataset=dataset, status="running", total=10, done=4)
    client.force_login(admin)
    partial = client.get(reverse("batches:import-job", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert b'hx-trigger="every 1s"' in partial.content and b'value="40"' in partial.content


def test_only_dataset_admins_reach_the_import_page(client):
    dataset = dataset_make()
    annotator, outsider = user_make(), user_make()
    dataset_make(name="other", members={"admin": [outsider]})
    from annotation import services

    services.membership_add(dataset=dataset, user=annotator, role="annotator")
    job = ImportJob.objects.create(dataset=dataset)
    client.force_login(annotator)
    assert client.get(reverse("batches:import", args=[dataset.pk])).status_code == 403
    assert client.get(reverse("batches:import-job", args=[job.pk])).status_code == 403
    client.force_login(outsider)
    assert client.get(reverse("batches:import", args=[dataset.pk])).status_code == 404
    assert client.get(reverse("batches:import-job", args=[job.pk])).status_code == 404


def test_a_non_zip_upload_is_refused_with_a_message(client):
    admin = user_make()
    dataset = dataset_make(members={"admin": [admin]})
    client.force_login(admin)
    response = client.post(reverse("batches:import", args=[dataset.pk]),
                           {"batch": SimpleUploadedFile("notes.txt", b"hello"), "format": "manifest"})
    assert response.status_code == 400 and b"Choose a .zip file" in response.content
    assert not ImportJob.objects.exists()
