"""``{% load batch_labels %}``: the words the import and export pages show for codes, in the interface
language (the codes themselves stay in the job rows, the CSV and the exports)."""

from datetime import timedelta

from django import template
from django.utils.translation import gettext

from batches import forms

register = template.Library()


def _labeller(labels: dict):
    def label(code) -> str:
        return labels.get(code, code)
    return label


# ``{{ job.status|job_status_label }}`` and the like: each filter shows one table of ``forms``.
for _name, _labels in {"job_status_label": forms.JOB_STATUS_LABELS, "format_label": forms.FORMAT_LABELS,
                       "export_status_label": forms.EXPORT_STATUS_SHORT, "split_label": forms.SPLIT_LABELS,
                       "level_label": forms.LEVEL_LABELS}.items():
    register.filter(_name, _labeller(_labels))


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
