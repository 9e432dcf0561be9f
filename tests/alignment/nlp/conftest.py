"""The parser tests need neither Django nor a database: replace the project-wide autouse fixture (which
uses pytest-django's ``settings``) with a no-op here, so ``pytest -p no:django tests/alignment/nlp`` works."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _isolated_media_and_eager_tasks() -> Iterator[None]:
    yield
