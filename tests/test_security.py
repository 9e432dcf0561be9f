"""Login lockout, password rules, the demo-key check, safe production defaults, CSP and request ids."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.contrib.auth.password_validation import validate_password
from django.core.checks import registry
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token

from sonoalign.checks import demo_keys_check
from sonoalign.logging import JsonFormatter
from sonoalign.settings import _runserver_address_is_local
from tests.factories import user_make

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pw-test-12345"


# ---------------------------------------------------------------------------------------------- lockout


def _login(client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.django_db
def test_login_is_locked_after_five_wrong_passwords_even_with_the_right_one(client, settings):
    user_make("reader")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "reader", "wrong-guess").status_code == 200  # the form again, with its error
    assert _login(client, "reader", "wrong-guess").status_code == 429
    locked = _login(client, "reader", PASSWORD)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_lockout_is_per_username_across_addresses_and_per_address_across_usernames(client, settings):
    user_make("reader"), user_make("other")
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "reader", "wrong-guess", address=f"10.0.0.{attempt + 1}")
    assert _login(client, "reader", PASSWORD, address="10.0.9.9").status_code == 429  # the user is locked
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        _login(client, f"nobody{attempt}", "wrong-guess", address="10.0.5.5")
    assert _login(client, "other", PASSWORD, address="10.0.5.5").status_code == 429  # the address is locked
    assert _login(client, "other", PASSWORD, address="10.0.6.6").status_code == 302  # others still log in


@pytest.mark.django_db
def test_lockout_ends_after_the_cool_off_and_failures_are_kept_for_audit(client, settings):
    user_make("reader")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "reader", "wrong-guess")
    assert _login(client, "reader", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert _login(client, "reader", PASSWORD).status_code == 302
    failures = AccessFailureLog.objects.filter(username="reader")
    assert failures.count() >= settings.AXES_FAILURE_LIMIT
    assert all(f.ip_address == "127.0.0.1" for f in failures)


@pytest.mark.django_db
def test_wrong_api_tokens_lock_out_the_address_and_no_one_else(client, settings):
    token = Token.objects.create(user=user_make("reader"))
    wrong = {"HTTP_AUTHORIZATION": "Token " + "0" * 40, "REMOTE_ADDR": "10.1.1.1"}
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.get("/api/v1/me/", **wrong).status_code in (401, 403)
    assert client.get("/api/v1/me/", **wrong).status_code == 429
    right = {"HTTP_AUTHORIZATION": f"Token {token.key}"}
    assert client.get("/api/v1/me/", REMOTE_ADDR="10.1.1.1", **right).status_code == 429
    assert client.get("/api/v1/me/", REMOTE_ADDR="10.2.2.2", **right).status_code == 200


@pytest.mark.django_db
def test_client_address_behind_a_trusted_proxy_is_the_one_the_proxy_saw(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    user_make("reader")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        # The client sets the left part; the proxy appends the address it saw.
        client.post("/accounts/login/", {"username": f"x{_}", "password": "wrong"}, REMOTE_ADDR="10.9.9.9",
                    HTTP_X_FORWARDED_FOR=f"1.2.3.{_}, 198.51.100.7")
    assert AccessAttempt.objects.filter(ip_address="198.51.100.7").count() == settings.AXES_FAILURE_LIMIT
    assert _login(client, "reader", PASSWORD, address="10.9.9.9").status_code == 302  # the proxy is not locked


# ---------------------------------------------------------------------------------------------- passwords


@pytest.mark.django_db
@pytest.mark.parametrize(("password", "message"), [
    ("password1234", "too common"),
    ("839201748392", "entirely numeric"),
    ("short1!", "at least 8"),
    ("annotator.smith1", "too similar"),
])
def test_weak_passwords_are_refused(password, message):
    user = user_make("annotator.smith")
    with pytest.raises(ValidationError, match=message):
        validate_password(password, user)


@pytest.mark.django_db
def test_staff_passwords_need_twelve_characters_readers_eight():
    reader, staff = user_make("reader"), user_make("admin1", staff=True)
    validate_password("Tq7!vbn#Lp2", reader)
    with pytest.raises(ValidationError, match="at least 12"):
        validate_password("Tq7!vbn#Lp2", staff)
    validate_password("Tq7!vbn#Lp2x", staff)


# ---------------------------------------------------------------------------------------------- checks


def test_deploy_check_flags_the_demo_keys(settings):
    assert demo_keys_check in registry.registry.get_checks(include_deployment_checks=True)
    settings.SECRET_KEY = settings.DEMO_SECRET_KEY
    settings.IMPORT_PSEUDONYM_KEY = "sonoalign-demo-pseudonym-key"
    assert {issue.id for issue in demo_keys_check(None)} == {"sonoalign.E001", "sonoalign.E003"}
    settings.SECRET_KEY = "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz"
    settings.IMPORT_PSEUDONYM_KEY = ""
    assert [issue.id for issue in demo_keys_check(None)] == ["sonoalign.W002"]
    settings.IMPORT_PSEUDONYM_KEY = "p" * 16 + "0123456789abcdefghijklmnop"
    assert demo_keys_check(None) == []


def test_dicom_import_needs_a_pseudonym_key_outside_the_demo(settings):
    from batches.pseudonyms import pseudonym_key

    assert pseudonym_key()  # the tests run as the demo does
    settings.IMPORT_PSEUDONYM_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="IMPORT_PSEUDONYM_KEY"):
        pseudonym_key()


# ---------------------------------------------------------------------------------------------- start-up


def _manage(*args: str, timeout: int = 60, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "IMPORT_PSEUDONYM_KEY", "DJANGO_SETTINGS_MODULE"}}
    clean.update({"DJANGO_SETTINGS_MODULE": "sonoalign.settings", "DATABASE_URL": "sqlite:///:memory:", **env})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True,
                          text=True, timeout=timeout)


def test_debug_unset_means_production_and_refuses_to_start_without_a_key():
    result = _manage("check")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("env", [
    {"DEBUG": "false", "SECRET_KEY": "insecure-development-key-only-for-the-embedded-demo", "ALLOWED_HOSTS": "x.example"},
    {"DEBUG": "false", "SECRET_KEY": "short-key", "ALLOWED_HOSTS": "x.example"},
    {"DEBUG": "true", "ALLOWED_HOSTS": "sonoalign.hospital.example"},
])
def test_refuses_to_start_beyond_this_machine_without_a_real_key(env):
    result = _manage("check", **env)
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr


def test_runserver_on_every_interface_with_the_demo_key_refuses_to_start():
    result = _manage("runserver", "0.0.0.0:8799", "--noreload", timeout=60, DEBUG="true")
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr


@pytest.mark.parametrize(("argv", "local"), [
    (["manage.py", "runserver"], True),
    (["manage.py", "runserver", "8000"], True),
    (["manage.py", "runserver", "127.0.0.1:8000"], True),
    (["manage.py", "runserver", "[::1]:8000"], True),
    (["manage.py", "runserver", "0.0.0.0:8000"], False),
    (["manage.py", "runserver", "--noreload", "10.0.0.5:80"], False),
    (["manage.py", "runserver", "[::]:8000"], False),
    (["manage.py", "migrate"], True),
])
def test_runserver_address_is_local(argv, local):
    assert _runserver_address_is_local(argv) is local


def test_the_demo_starts_on_this_machine_with_debug_set():
    result = _manage("check", DEBUG="true")
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------- headers, logs


@pytest.mark.django_db
def test_csp_allows_only_our_own_origin(client, settings):
    policy = client.get("/accounts/login/")["Content-Security-Policy-Report-Only"]  # DEBUG: reported only
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "default-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    with override_settings(CONTENT_SECURITY_POLICY=settings.CONTENT_SECURITY_POLICY_REPORT_ONLY,
                           CONTENT_SECURITY_POLICY_REPORT_ONLY=None):
        assert client.get("/accounts/login/")["Content-Security-Policy"] == policy


@pytest.mark.django_db
def test_each_request_gets_an_id_in_the_response_and_in_its_json_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="sonoalign.request"):
        response = client.get("/accounts/login/?next=/datasets/1/&patient=P-123")
    rid = response["X-Request-ID"]
    assert len(rid) == 32
    line = json.loads(JsonFormatter().format(next(r for r in caplog.records if r.name == "sonoalign.request")))
    assert line["request_id"] == rid
    assert line["http"]["path"] == "/accounts/login/" and line["http"]["status"] == 200
    assert "P-123" not in json.dumps(line)  # query strings stay out of the logs
    assert client.get("/accounts/login/", HTTP_X_REQUEST_ID="proxy-id-0001")["X-Request-ID"] == "proxy-id-0001"
    assert client.get("/accounts/login/", HTTP_X_REQUEST_ID="<script>")["X-Request-ID"] != "<script>"
