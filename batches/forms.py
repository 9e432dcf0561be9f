"""The import and export forms, and the words their pages show for codes (statuses, formats, counts).

The forms check what a person typed; the options themselves are checked again by ``importing`` and
``exporting`` (the command line reaches those without a form)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from annotation.models import JobStatus

from .exporting import FORMATS, STATUSES, ExportError, split_parse

JOB_STATUS_LABELS = {JobStatus.PENDING: _("waiting"), JobStatus.RUNNING: _("running"), JobStatus.DONE: _("done"),
                     JobStatus.FAILED: _("failed")}
FORMAT_LABELS = {
    "coco": _("COCO instances (.json)"),
    "us365k": _("US-365K records"),
    "jsonl": _("Grounded JSONL (regions with report sentences)"),
    "csv": _("CSV, one region a row"),
    "masks": _("Masks (PNG per image)"),
}
EXPORT_STATUS_LABELS = {
    "adjudicated": _("Adjudicated: consensus regions of adjudicated images"),
    "submitted": _("Submitted: readers' submitted regions and imported pre-annotations"),
    "all": _("All: every live region of every image"),
}
EXPORT_STATUS_SHORT = {"adjudicated": _("adjudicated"), "submitted": _("submitted"), "all": _("all")}
SPLIT_LABELS = {"train": _("train"), "val": _("validation"), "test": _("test"), "all": _("all")}
LEVEL_LABELS = {"error": _("error"), "warning": _("warning")}
COUNT_LABELS = {
    "studies": _("Studies"), "images": _("Images"), "regions": _("Regions"),
    "rows_imported": _("Rows imported"), "rows_failed": _("Rows failed"),
    "errors": _("Errors"), "warnings": _("Warnings"), "problems_not_kept": _("Problems not listed"),
    "studies_created": _("Studies created"), "studies_existing": _("Studies already there"),
    "studies_updated": _("Studies updated"), "reports_created": _("Reports created"),
    "reports_updated": _("Reports updated"), "reports_unchanged": _("Reports unchanged"),
    "images_created": _("Images created"), "images_existing": _("Images already there"),
    "regions_created": _("Regions created"), "regions_existing": _("Regions already there"),
    "regions_updated": _("Regions updated"), "regions_refused": _("Regions refused"),
    "regions_repaired": _("Outlines repaired"), "regions_skipped_not_area": _("Marks skipped (no area)"),
    "studies_train": _("Studies, train"), "studies_val": _("Studies, validation"), "studies_test": _("Studies, test"),
    "studies_all": _("Studies, no split"), "images_train": _("Images, train"), "images_val": _("Images, validation"),
    "images_test": _("Images, test"), "images_all": _("Images, no split"),
}


def count_rows(counts: dict | None) -> list[tuple[str, int]]:
    """A job's counts as (label, number), labelled ones first in the order above, then any other."""
    counts = counts or {}
    known = [(COUNT_LABELS[key], counts[key]) for key in COUNT_LABELS if key in counts]
    return known + sorted((key, value) for key, value in counts.items() if key not in COUNT_LABELS)


class ImportForm(forms.Form):
    batch = forms.FileField(label=_("Batch (.zip)"), widget=forms.ClearableFileInput(attrs={"accept": ".zip"}),
                            help_text=_("manifest.jsonl with its images, DICOM files, or a COCO .json with its "
                                        "images, in one .zip."))
    format = forms.ChoiceField(label=_("Format"), choices=[
        ("manifest", _("manifest.jsonl and/or DICOM")), ("coco", _("COCO pre-annotations"))])
    author = forms.CharField(label=_("Import author"), max_length=64, initial="import", required=False,
                             help_text=_("Named as the author of pre-annotations that do not name one."))
    frame_step = forms.IntegerField(label=_("DICOM frame step"), min_value=1, initial=1, required=False,
                                    help_text=_("Keep every n-th frame of a cine loop."))
    banner = forms.CharField(label=_("Banner to black out"), required=False,
                             widget=forms.TextInput(attrs={"placeholder": "0,0,1024,60"}),
                             help_text=_("X,Y,WIDTH,HEIGHT in pixels, blacked out on DICOM frames (burnt-in "
                                         "patient details). Leave empty for none."))

    def clean_batch(self):
        upload = self.cleaned_data["batch"]
        if not upload.name.lower().endswith(".zip"):
            raise forms.ValidationError(_("Choose a .zip file holding manifest.jsonl, DICOM files or a COCO .json."))
        return upload

    def clean_author(self):
        return self.cleaned_data["author"].strip() or "import"

    def clean_banner(self) -> list[int] | None:
        text = self.cleaned_data["banner"].strip()
        if not text:
            return None
        try:
            parts = [int(part) for part in text.split(",")]
        except ValueError:
            parts = []
        if len(parts) != 4 or min(parts) < 0 or parts[2] == 0 or parts[3] == 0:
            raise forms.ValidationError(_("Give four whole numbers: X,Y,WIDTH,HEIGHT (width and height above 0)."))
        return parts

    def params(self) -> dict:
        data = self.cleaned_data
        return {"format": data["format"], "author": data["author"], "frame_step": data["frame_step"] or 1,
                "banner": data["banner"]}


class ExportForm(forms.Form):
    format = forms.ChoiceField(label=_("Format"), choices=[(f, FORMAT_LABELS[f]) for f in FORMATS])
    status = forms.ChoiceField(label=_("Regions"), widget=forms.RadioSelect, required=False,
                               choices=[(s, EXPORT_STATUS_LABELS[s]) for s in STATUSES])
    split = forms.CharField(label=_("Split (train,val,test)"), required=False,
                            widget=forms.TextInput(attrs={"placeholder": "0.8,0.1,0.1"}),
                            help_text=_("By patient: no patient is in two parts. Leave empty for no split."))
    seed = forms.IntegerField(label=_("Seed"), initial=42, required=False,
                              help_text=_("The same seed gives the same split."))
    include_images = forms.BooleanField(label=_("Include the image files"), required=False)
    keep_names = forms.BooleanField(
        label=_("Keep source file names"), required=False,
        help_text=_("Source names can identify a patient; otherwise images are named by accession and position."))

    def __init__(self, *args, default_status: str = STATUSES[0], images_by_status: dict[str, int] | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.default_status = default_status
        self.fields["status"].initial = default_status
        if images_by_status is not None:
            # Each choice says how many images it would take, so an empty one is seen before it is chosen.
            self.fields["status"].choices = [
                (status, ngettext("%(rule)s (%(count)s image)", "%(rule)s (%(count)s images)",
                                  images_by_status.get(status, 0)) % {"rule": EXPORT_STATUS_LABELS[status],
                                                                     "count": images_by_status.get(status, 0)})
                for status in STATUSES]

    def clean_split(self) -> tuple[float, ...] | None:
        text = self.cleaned_data["split"].strip()
        if not text:
            return None
        try:
            return split_parse(text)
        except ExportError:
            raise forms.ValidationError(_("Give two or three fractions that sum to 1, such as 0.8,0.1,0.1."))

    def params(self) -> dict:
        data = self.cleaned_data
        return {"format": data["format"], "status": data["status"] or self.default_status,
                "split": ",".join(format(p, "g") for p in data["split"]) if data["split"] else None,
                "seed": 42 if data["seed"] is None else data["seed"], "include_images": data["include_images"],
                "keep_names": data["keep_names"]}
