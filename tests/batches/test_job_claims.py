"""Import and export jobs are claimed as studies are: a job running under a worker that is still heard
from is never run a second time by a redelivered task; a silent worker's job is taken over; a worker
that lost its claim cannot overwrite the new holder's outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from batches import exporting, importing
from batches.jobs import STALE_AFTER, job_claim, job_finish, job_progress_recorder
from batches.models import ExportJob, ImportJob
from tests.factories import dataset_make, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset():
    return dataset_make(members={"admin": [user_make()]})


def test_a_redelivered_import_while_the_job_runs_does_nothing(dataset):
    job = ImportJob.objects.create(dataset=dataset, status="running", claimed_by="w1", claimed_at=timezone.now(),
                                   started_at=timezone.now(), params={"format": "manifest"})
    assert importing.import_job_run(job_id=job.pk, worker="w2") is None
    job.refresh_from_db()
    assert (job.status, job.claimed_by, job.finished_at) == ("running", "w1", None)


def test_a_redelivered_export_while_the_job_runs_does_nothing(dataset):
    job = ExportJob.objects.create(dataset=dataset, status="running", claimed_by="w1", claimed_at=timezone.now(),
                                   params={"format": "jsonl", "status": "all"})
    assert exporting.export_job_run(job_id=job.pk, worker="w2") is None
    job.refresh_from_db()
    assert (job.status, job.claimed_by, job.output.name) == ("running", "w1", "")


def test_a_finished_job_is_never_run_again(dataset):
    job = ExportJob.objects.create(dataset=dataset, status="done", params={"format": "jsonl", "status": "all"})
    assert exporting.export_job_run(job_id=job.pk, worker="w2") is None
    assert not job_claim(model=ExportJob, job_id=job.pk, worker="w3")


def test_a_silent_workers_job_is_taken_over_and_the_old_holder_cannot_finish_it(dataset):
    silent_since = timezone.now() - STALE_AFTER - timedelta(seconds=5)
    job = ExportJob.objects.create(dataset=dataset, status="running", claimed_by="w1", claimed_at=silent_since,
                                   params={"format": "jsonl", "status": "all"})
    assert job_claim(model=ExportJob, job_id=job.pk, worker="w2")
    assert not job_finish(model=ExportJob, job_id=job.pk, worker="w1", status="failed")
    job.refresh_from_db()
    assert (job.status, job.claimed_by) == ("running", "w2")
    assert job_finish(model=ExportJob, job_id=job.pk, worker="w2", status="done")


def test_progress_is_the_holders_heartbeat(dataset):
    job = ImportJob.objects.create(dataset=dataset)
    assert job_claim(model=ImportJob, job_id=job.pk, worker="w1")
    ImportJob.objects.filter(pk=job.pk).update(claimed_at=timezone.now() - STALE_AFTER - timedelta(seconds=5))
    job_progress_recorder(model=ImportJob, job_id=job.pk, worker="w1", interval_s=0)(10, 3, {"images": 3})
    job.refresh_from_db()
    assert (job.total, job.done) == (10, 3)
    assert not job_claim(model=ImportJob, job_id=job.pk, worker="w2")  # heard from just now


def test_a_whole_export_runs_once_under_its_claim(dataset):
    job = ExportJob.objects.create(dataset=dataset, params={"format": "jsonl", "status": "all"})
    finished = exporting.export_job_run(job_id=job.pk, worker="w1")
    assert finished.status == "done" and finished.claimed_by == "w1" and finished.output.name
    assert exporting.export_job_run(job_id=job.pk, worker="w2") is None
