"""What reviewers read for the codes of a disagreement: its kind and its status, in the interface
language. The stored codes never change with the language."""

from __future__ import annotations

from django.utils.translation import gettext_lazy, pgettext_lazy

KIND_LABELS = {
    "assessment_inconsistent": gettext_lazy("Assessment"),
    "reported_not_annotated": gettext_lazy("Reported, not drawn"),
    "reader_vs_reader": gettext_lazy("Reader vs reader"),
    "size_mismatch": gettext_lazy("Size"),
    "report_vs_annotation": gettext_lazy("Report vs annotation"),
    "annotated_not_reported": gettext_lazy("Drawn, not reported"),
}
# "open" is also a verb on buttons ("Open"); the context keeps the two apart for translators.
STATUS_LABELS = {
    "open": pgettext_lazy("disagreement status", "open"),
    "resolved": pgettext_lazy("disagreement status", "resolved"),
    "dismissed": pgettext_lazy("disagreement status", "dismissed"),
}
