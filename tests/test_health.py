"""The doors a new user and an operator try first."""

import pytest
from django.test import Client

from tests.factories import user_make

pytestmark = pytest.mark.django_db


def test_login_page_renders():
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert b"Log in" in response.content


def test_pages_require_login():
    response = Client().get("/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_healthz_reports_database_broker_and_storage():
    body = Client().get("/healthz").json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "storage"}
    assert all(check["ok"] for check in body["checks"].values())


def test_healthz_is_503_when_the_broker_is_unreachable(monkeypatch):
    from kombu import Connection

    from sonoalign.celery import app

    monkeypatch.setattr(app.conf, "task_always_eager", False)
    monkeypatch.setattr(app, "connection_for_write", lambda: Connection("redis://127.0.0.1:1/0"))
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


def test_home_lists_the_users_datasets():
    from tests.factories import dataset_make

    user = user_make("reader")
    dataset_make(name="Thyroid 2024", members={"annotator": [user]})
    dataset_make(name="Someone else's")
    client = Client()
    client.force_login(user)
    page = client.get("/").content.decode()
    assert "Thyroid 2024" in page and "Someone else" not in page


def test_healthz_probes_storage_once_a_minute_not_on_every_request(monkeypatch):
    from django.core.cache import cache
    from django.core.files.storage import default_storage

    from sonoalign import views

    cache.delete(views.STORAGE_PROBE_KEY)
    writes = []
    real_save = default_storage.save
    monkeypatch.setattr(default_storage, "save", lambda *args, **kwargs: writes.append(args) or real_save(*args, **kwargs))
    for _ in range(5):
        assert Client().get("/healthz").json()["checks"]["storage"]["ok"]
    assert len(writes) == 1
    cache.delete(views.STORAGE_PROBE_KEY)
    Client().get("/healthz")
    assert len(writes) == 2  # once the minute is over, the next request probes again
