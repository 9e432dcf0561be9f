"""The interface in Chinese and English: complete catalogues, the first visit in the browser's language,
and a signed-in user's choice kept across logins."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import translation

from annotation.models import UserPreference
from tests.factories import user_make

LOCALE = Path(__file__).resolve().parent.parent / "locale" / "zh_Hans" / "LC_MESSAGES"
PASSWORD = "pw-test-12345"


def po_entries(path: Path) -> list[dict]:
    """Entries of a .po file as {msgid, msgstrs, fuzzy}; the header entry (empty msgid) is left out."""
    entries = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        fuzzy = False
        for line in block.splitlines():
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            elif line.startswith("#"):
                continue
            elif match := re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?) (".*")$', line):
                key = match.group(1)
                fields[key] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and key:
                fields[key] += ast.literal_eval(line)
        if fields.get("msgid"):
            strs = [value for name, value in fields.items() if name.startswith("msgstr")]
            entries.append({"msgid": fields["msgid"], "msgstrs": strs, "fuzzy": fuzzy})
    return entries


def _log_in(client, username: str) -> None:
    # Through the login form, as on a real machine: the lockout backend (django-axes) refuses a login
    # without a request, which is what ``Client.login`` would attempt.
    response = client.post(reverse("login"), {"username": username, "password": PASSWORD})
    assert response.status_code == 302, "login refused"


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_every_message_has_a_chinese_translation_and_none_is_fuzzy(domain):
    entries = po_entries(LOCALE / f"{domain}.po")
    assert entries, f"{domain}.po holds no messages"
    untranslated = [e["msgid"] for e in entries if not all(s.strip() for s in e["msgstrs"])]
    fuzzy = [e["msgid"] for e in entries if e["fuzzy"]]
    assert untranslated == [], f"untranslated in {domain}.po"
    assert fuzzy == [], f"fuzzy in {domain}.po"


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_compiled_catalogue_is_not_older_than_its_source(domain):
    source, compiled = LOCALE / f"{domain}.po", LOCALE / f"{domain}.mo"
    assert compiled.exists() and compiled.stat().st_mtime >= source.stat().st_mtime, (
        f"{compiled.name} is missing or stale: run scripts/setup.sh (compilemessages)")


@pytest.mark.django_db
def test_first_visit_follows_the_browser_language(client):
    chinese = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.5")
    assert '<html lang="zh-hans">' in chinese.content.decode()
    assert "登录" in chinese.content.decode()
    client.cookies.clear()
    english = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.8")
    assert '<html lang="en">' in english.content.decode()
    assert "Log in" in english.content.decode()


@pytest.mark.django_db
def test_switch_without_login_sets_only_the_cookie(client):
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": "/accounts/login/"})
    assert response.status_code == 302
    assert response.cookies["django_language"].value == "zh-hans"
    assert "退出登录" not in client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "登录" in client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert not UserPreference.objects.exists()


@pytest.mark.django_db
def test_the_chosen_language_is_remembered_across_logins_and_machines(client, django_user_model):
    from django.test import Client

    user = user_make("wang")
    client.force_login(user)
    client.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    assert UserPreference.objects.get(user=user).language == "zh-hans"

    other_machine = Client()  # no cookie, an English browser
    _log_in(other_machine, "wang")
    page = other_machine.get(reverse("home"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert '<html lang="zh-hans">' in page
    assert "退出登录" in page
    # ...and the machine's cookie follows, so its login page after logout speaks the user's language.
    assert other_machine.cookies["django_language"].value == "zh-hans"

    other_machine.post(reverse("set_language"), {"language": "en", "next": "/"})
    third = Client()
    _log_in(third, "wang")
    assert '<html lang="en">' in third.get(reverse("home"), HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()


@pytest.mark.django_db
def test_an_unknown_language_is_not_saved(client):
    user = user_make()
    client.force_login(user)
    client.post(reverse("set_language"), {"language": "xx", "next": "/"})
    assert not UserPreference.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_javascript_catalogue_serves_the_chinese_strings(client):
    response = client.get(reverse("javascript-catalog"), HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert response.status_code == 200
    body = response.content.decode()
    assert "已复制" in body or "\\u5df2\\u590d\\u5236" in body


def test_dates_and_numbers_follow_the_language():
    template = Template("{{ day|date:'DATE_FORMAT' }} {{ n }}")
    import datetime

    context = Context({"day": datetime.date(2026, 3, 9), "n": 1.5})
    with translation.override("zh-hans"):
        assert template.render(context) == "2026年3月9日 1.5"
    with translation.override("en"):
        assert template.render(context) == "March 9, 2026 1.5"
