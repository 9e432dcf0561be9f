"""System checks for a deployment (``manage.py check --deploy``)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def demo_keys_check(app_configs, **kwargs):
    """The demo's keys are in the source code: whoever has read it can forge sessions, password-reset
    links and signed URLs (SECRET_KEY) or test a guessed patient id against its pseudonym
    (IMPORT_PSEUDONYM_KEY)."""
    problems = []
    if settings.SECRET_KEY == settings.DEMO_SECRET_KEY:
        problems.append(checks.Error(
            "SECRET_KEY is the public demo key.",
            hint="Set SECRET_KEY in the environment to 50+ random characters (see deploy/example.env).",
            id="sonoalign.E001",
        ))
    key = getattr(settings, "IMPORT_PSEUDONYM_KEY", "")
    if not key:
        problems.append(checks.Warning(
            "IMPORT_PSEUDONYM_KEY is not set: DICOM imports will be refused.",
            hint="Set it once to 32+ random characters and keep it: it decides every pseudonym.",
            id="sonoalign.W002",
        ))
    elif key == "sonoalign-demo-pseudonym-key" or len(key) < 32:
        problems.append(checks.Error(
            "IMPORT_PSEUDONYM_KEY is the demo key or shorter than 32 characters.",
            hint="Pseudonyms under a known or short key can be reversed by guessing identifiers.",
            id="sonoalign.E003",
        ))
    return problems
