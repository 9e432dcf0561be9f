"""``{% load disagreement_labels %}``: a disagreement's kind and status as reviewers read them."""

from django import template

from alignment.labels import KIND_LABELS, STATUS_LABELS

register = template.Library()


@register.filter
def disagreement_kind(code: str) -> str:
    return KIND_LABELS.get(code, code)


@register.filter
def disagreement_status(code: str) -> str:
    return STATUS_LABELS.get(code, code)
