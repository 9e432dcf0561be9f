"""The key that pseudonymises DICOM identifiers on import."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def pseudonym_key() -> bytes:
    """``IMPORT_PSEUDONYM_KEY`` as bytes. Raises ``ImproperlyConfigured`` when it is not set, which is the
    case outside the demo until an operator sets it: pseudonyms computed under a missing or public key
    could be reversed by anyone who guesses an identifier, and changing the key later would split every
    patient already imported from their new images. Call it before the first file of an import is read,
    so a misconfigured deployment refuses the whole job up front."""
    key = getattr(settings, "IMPORT_PSEUDONYM_KEY", "")
    if not key:
        raise ImproperlyConfigured(
            "IMPORT_PSEUDONYM_KEY is not set: DICOM files cannot be imported without it. Set it once, to 32+ "
            "random characters, and keep it (see deploy/example.env)."
        )
    return key.encode()
