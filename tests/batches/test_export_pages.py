"""The export admin page: start a job, follow it, download the archive (dataset admins only)."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import reverse

from annotation import services
from batches.models import ExportJob
from tests.factories import SQUARE, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset_with_admin():
    admin = user_make()
    dataset = dataset_make(members={"admin": [admin]})
    image = image_make(study_make(dataset, report="Nodule."))
    services.region_create(image=image, author=None, shape="polygon", geometry=SQUARE, source="import")
    return dataset, admin


def test_admin_starts_an_export_and_downloads_it(client, dataset_with_admin, django_capture_on_commit_callbacks):
    dataset, admin = dataset_with_admin
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("batches:export", args=[dataset.pk]),
                               {"format": "coco", "status": "all", "split": "0.8,0.2", "seed": "1"})
    job = ExportJob.objects.get()
    assert response.status_code == 302 and job.status == "done", job.errors
    assert job.manifest["counts"]["images"] == 1
    page = client.get(reverse("batches:export-job", args=[job.pk]))
    assert reverse("batches:export-download", args=[job.pk]).encode() in page.content
    download = client.get(reverse("batches:export-download", args=[job.pk]))
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as archive:
        assert "manifest.json" in archive.namelist()


def test_download_is_for_dataset_admins_only(client, dataset_with_admin, django_capture_on_commit_callbacks):
    dataset, admin = dataset_with_admin
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("batches:export", args=[dataset.pk]), {"format": "jsonl", "status": "all"})
    job = ExportJob.objects.get()
    reviewer, outsider = user_make(), user_make()
    services.membership_add(dataset=dataset, user=reviewer, role="reviewer")
    client.force_login(reviewer)
    assert client.get(reverse("batches:export-download", args=[job.pk])).status_code == 403
    client.force_login(outsider)
    assert client.get(reverse("batches:export-download", args=[job.pk])).status_code == 404
    client.logout()
    assert client.get(reverse("batches:export-download", args=[job.pk])).status_code == 302


def test_a_bad_split_is_refused_before_anything_is_queued(client, dataset_with_admin):
    dataset, admin = dataset_with_admin
    client.force_login(admin)
    response = client.post(reverse("batches:export", args=[dataset.pk]), {"format": "coco", "split": "0.9,0.9"})
    assert response.status_code == 400 and b"sum to 1" in response.content
    assert not ExportJob.objects.exists()


@pytest.mark.parametrize("split", ["nan,nan,nan", "inf,0,0", "-0.5,1.5", "0.7,0.7"])
def test_a_non_finite_or_negative_split_is_a_form_error_and_no_job_is_left_running(client, dataset_with_admin,
                                                                                   django_capture_on_commit_callbacks,
                                                                                   split):
    dataset, admin = dataset_with_admin
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("batches:export", args=[dataset.pk]), {"format": "coco", "split": split})
    assert response.status_code == 400 and b"sum to 1" in response.content
    assert not ExportJob.objects.exists()


def test_a_seed_that_is_no_whole_number_is_a_form_error(client, dataset_with_admin):
    dataset, admin = dataset_with_admin
    client.force_login(admin)
    response = client.post(reverse("batches:export", args=[dataset.pk]), {"format": "coco", "seed": "1e3"})
    assert response.status_code == 400 and b"whole number" in response.content
    assert not ExportJob.objects.exists()


def test_keep_names_is_asked_for_on_the_page_and_recorded_in_the_manifest(client, dataset_with_admin,
                                                                         django_capture_on_commit_callbacks):
    dataset, admin = dataset_with_admin
    client.force_login(admin)
    assert b'name="keep_names"' in client.get(reverse("batches:export", args=[dataset.pk])).content
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("batches:export", args=[dataset.pk]), {"format": "jsonl", "keep_names": "on"})
    job = ExportJob.objects.get()
    assert job.status == "done" and job.manifest["filters"]["keep_names"] is True
