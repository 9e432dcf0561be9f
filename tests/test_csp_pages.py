"""Pages keep working under the production Content Security Policy (scripts and styles from our own
files only): no inline script, no style attribute or element in any template, htmx told not to inject
its indicator style, and the values that were inline styles arrive as data the static script applies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)
STYLE_ELEMENT = re.compile(r"<style[\s>]", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: str(path.relative_to(ROOT / "templates")))
def test_no_template_holds_code_or_styles_the_csp_would_block(template):
    text = template.read_text()
    assert not INLINE_SCRIPT.search(text), "inline <script>: move it to a file under static/"
    assert not STYLE_ATTRIBUTE.search(text), "style attribute: use a class, or data-style-* (static/sonoalign/styles.js)"
    assert not STYLE_ELEMENT.search(text), "<style> element: move it to a stylesheet"
    assert not EVENT_HANDLER.search(text), "inline event handler: bind it from a static script"


def test_htmx_is_told_not_to_inject_its_indicator_style_and_app_css_has_it():
    base = (ROOT / "templates" / "base.html").read_text()
    assert """<meta name="htmx-config" content='{"includeIndicatorStyles": false}'>""" in base
    assert ".htmx-request .htmx-indicator" in (ROOT / "static" / "sonoalign" / "app.css").read_text()


@pytest.mark.django_db
def test_pages_render_under_the_enforced_policy_with_their_sizes_as_data(settings):
    policy = settings.CONTENT_SECURITY_POLICY_REPORT_ONLY
    admin, reader = user_make("boss"), user_make("reader")
    dataset = dataset_make(members={"admin": [admin]})
    image = image_make(study_make(dataset))
    assignment_make(image, reader)
    client = Client()
    with override_settings(CONTENT_SECURITY_POLICY=policy, CONTENT_SECURITY_POLICY_REPORT_ONLY=None):
        client.force_login(reader)
        queue = client.get(reverse("annotation:queue"))
        assert "script-src 'self'" in queue["Content-Security-Policy"]
        body = queue.content.decode()
        assert "sonoalign/queue.js" in body and "sonoalign/styles.js" in body
        assert not INLINE_SCRIPT.search(body) and not STYLE_ATTRIBUTE.search(body)
        client.force_login(admin)
        dashboard = client.get(reverse("review:dashboard", args=[dataset.pk])).content.decode()
        assert 'data-style-width="100.0"' in dashboard  # the one image is "new": the whole bar
        assert not STYLE_ATTRIBUTE.search(dashboard)
        work = client.get(reverse("annotation:manage-work", args=[dataset.pk])).content.decode()
        assert not STYLE_ATTRIBUTE.search(work) and not INLINE_SCRIPT.search(work)
