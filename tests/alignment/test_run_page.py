"""The dataset page's alignment run: admins start it, everyone with a role watches its progress."""

import pytest
from django.test import Client

from alignment.models import AlignmentRun
from tests.factories import dataset_make, study_make, user_make

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_admin_runs_the_alignment_and_the_page_shows_progress(django_capture_on_commit_callbacks):
    admin, reader = user_make(), user_make()
    dataset = dataset_make(members={"admin": [admin], "annotator": [reader]})
    study_make(dataset, report="Right breast: 8 mm cyst at 2 o'clock.")
    with django_capture_on_commit_callbacks(execute=True):
        response = _client(admin).post(f"/datasets/{dataset.pk}/alignment/")
    assert response.status_code == 302
    run = AlignmentRun.objects.get(dataset=dataset)
    page = _client(admin).get(f"/datasets/{dataset.pk}/").content.decode()
    assert "Align the dataset" in page and "1 of 1 studies aligned" in page
    partial = _client(reader).get(f"/datasets/{dataset.pk}/alignment/{run.pk}/")
    assert partial.status_code == 200 and b"done" in partial.content


def test_only_admins_start_a_run_and_outsiders_see_nothing():
    reader, outsider = user_make(), user_make()
    dataset = dataset_make(members={"annotator": [reader]})
    assert _client(reader).post(f"/datasets/{dataset.pk}/alignment/").status_code == 403
    assert _client(outsider).post(f"/datasets/{dataset.pk}/alignment/").status_code == 404
    assert _client(outsider).get(f"/datasets/{dataset.pk}/").status_code == 404
