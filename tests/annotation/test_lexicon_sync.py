"""lexicon_sync: a lexicon file whose content changed without a version bump is refused, so datasets
pinned to that version are never reinterpreted."""

import copy
import hashlib
import json

import pytest
from django.core.exceptions import ValidationError

from annotation import services
from annotation.lexicons import lexicon_load_with_hash
from annotation.models import Lexicon

pytestmark = pytest.mark.django_db


def test_a_changed_file_with_the_same_version_is_refused(monkeypatch):
    stored = services.lexicon_sync(system="udaf")
    content, _ = lexicon_load_with_hash("udaf")
    edited = copy.deepcopy(content)
    edited["attributes"][0]["label"] += " (edited)"
    digest = hashlib.sha256(json.dumps(edited, sort_keys=True).encode()).hexdigest()
    monkeypatch.setattr(services, "lexicon_load_with_hash", lambda system: (edited, digest))
    with pytest.raises(ValidationError, match="without a version bump"):
        services.lexicon_sync(system="udaf")
    assert Lexicon.objects.get(pk=stored.pk).content == content  # the pinned version is untouched

    bumped = {**edited, "version": f"{content['version']}.1"}
    bumped_digest = hashlib.sha256(json.dumps(bumped, sort_keys=True).encode()).hexdigest()
    monkeypatch.setattr(services, "lexicon_load_with_hash", lambda system: (bumped, bumped_digest))
    assert services.lexicon_sync(system="udaf").version == bumped["version"]  # a bump is a new row
    assert Lexicon.objects.filter(system="udaf").count() == 2


def test_the_same_file_synced_again_is_the_same_row():
    first = services.lexicon_sync(system="udaf")
    assert services.lexicon_sync(system="udaf").pk == first.pk
