"""``{% load lexicon_labels %}``: lexicon terms labelled in the active interface language."""

from django import template
from django.utils.translation import get_language

from annotation.lexicons import term_label as _term_label

register = template.Library()


@register.filter
def term_label(term) -> str:
    """``{{ value|term_label }}``: the Chinese label in the Chinese interface, the English one otherwise."""
    return _term_label(term, get_language())
