"""The audit trail: logins, failed logins, exports and adjudications are recorded, and staff read them
on one page (dataset admins see their dataset's on its administration pages)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from alignment.models import Disagreement
from annotation.models import AuditEvent
from tests.factories import dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db
PASSWORD = "pw-test-12345"


def test_logins_and_failed_logins_are_recorded_without_the_password(client):
    user_make("reader")
    client.post("/accounts/login/", {"username": "reader", "password": "wrong-guess"}, REMOTE_ADDR="10.3.3.3")
    client.post("/accounts/login/", {"username": "reader", "password": PASSWORD}, REMOTE_ADDR="10.3.3.3")
    failed = AuditEvent.objects.get(action="auth.login_failed")
    assert failed.actor is None and failed.detail == {"username": "reader", "address": "10.3.3.3", "method": "password"}
    login = AuditEvent.objects.get(action="auth.login")
    assert login.actor.username == "reader" and login.detail["address"] == "10.3.3.3"
    assert "wrong-guess" not in str(failed.detail) and PASSWORD not in str(login.detail)


def test_a_wrong_api_token_is_a_recorded_failed_login():
    Client().get("/api/v1/me/", HTTP_AUTHORIZATION="Token " + "0" * 40, REMOTE_ADDR="10.4.4.4")
    failed = AuditEvent.objects.get(action="auth.login_failed")
    assert failed.detail == {"username": "", "address": "10.4.4.4", "method": "token"}


def test_an_export_is_recorded_with_who_and_what(django_capture_on_commit_callbacks):
    from batches.exporting import export_job_create

    admin = user_make("boss")
    dataset = dataset_make(members={"admin": [admin]})
    job = export_job_create(dataset=dataset, user=admin, params={"format": "coco", "status": "all"})
    event = AuditEvent.objects.get(action="export.start")
    assert (event.actor, event.dataset) == (admin, dataset)
    assert event.detail["job"] == job.pk and event.detail["format"] == "coco"


def test_adjudications_are_recorded_on_the_dataset():
    reviewer = user_make("reviewer")
    dataset = dataset_make(members={"reviewer": [reviewer]})
    study = study_make(dataset)
    image = image_make(study)
    disagreement = Disagreement.objects.create(
        dataset=dataset, study=study, image=image, kind="report_vs_annotation", attribute="echogenicity",
        values={"report": ["hypoechoic"], "annotation": ["isoechoic"]}, fingerprint="audit", input_hash="x")
    client = Client()
    client.force_login(reviewer)
    client.post(reverse("review:resolve", args=[disagreement.pk]), {"action": "dismiss"})
    decided = AuditEvent.objects.get(action="adjudication.decide")
    assert (decided.actor, decided.dataset) == (reviewer, dataset)
    assert decided.detail["disagreement"] == disagreement.pk and decided.detail["action"] == "dismiss"
    client.post(reverse("review:image-confirm", args=[image.pk]))
    assert AuditEvent.objects.filter(action="adjudication.confirm", dataset=dataset, detail__image=image.pk).exists()


def test_staff_read_the_whole_trail_and_no_one_else_does():
    staff, reader = user_make("staff1", staff=True), user_make("reader")
    Client().post("/accounts/login/", {"username": "reader", "password": "wrong-guess"})
    client = Client()
    client.force_login(reader)
    assert client.get(reverse("annotation:audit-trail")).status_code == 403
    client.force_login(staff)
    page = client.get(reverse("annotation:audit-trail")).content.decode()
    assert "failed to sign in as reader" in page and "signed in" in page
    logins_only = client.get(reverse("annotation:audit-trail") + "?action=auth.").content.decode()
    assert "failed to sign in as reader" in logins_only
    assert "failed to sign in" not in client.get(reverse("annotation:audit-trail") + "?action=export.").content.decode()
