"""``{% load batch_labels %}``: the words the import and export pages show for codes, in the interface
language (the codes themselves stay in the job rows, the CSV and the exports)."""

from datetime import timedelta

from django import template
from django.utils.translation import gettext

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


@register.filter
def duration(value) -> str:
    """A timedelta or a number of seconds as "42 s", "3 min 5 s" or "2 h 10 min" (Django's ``timesince``
    says "0 minutes" for most of a short job)."""
    if value is None:
        return "—"
    seconds = round(value.total_seconds() if isinstance(value, timedelta) else float(value))
    if seconds < 60:
        return gettext("%(s)s s") % {"s": seconds}
    if seconds < 3600:
        return gettext("%(m)s min %(s)s s") % {"m": seconds // 60, "s": seconds % 60}
    return gettext("%(h)s h %(m)s min") % {"h": seconds // 3600, "m": seconds % 3600 // 60}


@register.filter
def file_name(name) -> str:
    """The last part of a storage name."""
    return str(name or "").rsplit("/", 1)[-1]
