"""Messages that pure modules (geometry, lexicons) give in English and their Django callers word in the
reader's language: no Django here.

``gettext_noop`` marks a template for the translation catalogue (``makemessages`` finds calls by this
name); ``Message`` is the English text (a ``str``, so it prints, compares and joins as before) that
keeps its template and values; ``annotation.services.message_text`` translates it.
"""

from __future__ import annotations

from typing import Any


def gettext_noop(message: str) -> str:
    """Mark ``message`` for the catalogue and return it unchanged."""
    return message


class Message(str):
    """A message in English with its ``template`` and ``params``; a param may itself be a ``Message``."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, **params: Any) -> Message:
        text = super().__new__(cls, template % params)
        text.template, text.params = template, params
        return text
