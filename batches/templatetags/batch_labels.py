"""``{% load batch_labels %}``: the words the import and export pages show for codes, in the interface
language (the codes themselves stay in the job rows, the CSV and the exports)."""

from django import template

from batches import forms

register = template.Library()


@register.filter
def job_status_label(code) -> str:
    return forms.JOB_STATUS_LABELS.get(code, code)


@register.filter
def format_label(code) -> str:
    return forms.FORMAT_LABELS.get(code, code)


@register.filter
def export_status_label(code) -> str:
    return forms.EXPORT_STATUS_SHORT.get(code, code)


@register.filter
def split_label(code) -> str:
    return forms.SPLIT_LABELS.get(code, code)


@register.filter
def level_label(code) -> str:
    return forms.LEVEL_LABELS.get(code, code)
