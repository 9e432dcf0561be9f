"""HTML doors of the alignment app: the report panel of the annotate page (an htmx partial) and the
reviewer's link / unlink buttons on it. Small function views over ``selectors`` and ``services``; the
JSON API (``alignment.api``) uses the same functions."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from annotation import selectors as annotation_selectors
from annotation.models import Report
from annotation.permissions import ADMIN_ROLES, REVIEW_ROLES, may_review
from annotation.request_input import id_or_none

from . import selectors, services
from .models import Sentence


def _int(value) -> int | None:
    # Bounded: an id past 64 bits would overflow the database driver.
    return id_or_none(value)


def _report_panel(request, image, region_id: int | None):
    study = image.study
    can_review = may_review(annotation_selectors.dataset_roles(user=request.user, dataset_id=study.dataset_id))
    # Link controls only for a region on this image the reviewer has selected.
    if region_id is not None and not (
        can_review and annotation_selectors.regions_visible(user=request.user, image=image).filter(pk=region_id).exists()
    ):
        region_id = None
    sentences = selectors.study_alignment_for_user(user=request.user, study=study, image=image, region_id=region_id)
    report = Report.objects.filter(study=study).first()
    return render(request, "alignment/_report_sentences.html", {
        "image": image, "report": report, "sentences": sentences, "parsed": bool(sentences),
        # Before the pipeline has parsed the report the reader still sees it, split plainly.
        "plain": [] if sentences else annotation_selectors.report_sentences_plain(report=report),
        "can_review": can_review, "region_id": region_id,
    })


@login_required
@require_GET
def report_panel(request, image_id: int):
    """The report beside the image: sentences with findings highlighted, each carrying the ids of the
    regions on this image it is linked to (for the hover highlight); for a reviewer with a region
    selected (``?region=ID``), link / unlink buttons for that pair."""
    image = annotation_selectors.image_get_for_user(user=request.user, image_id=image_id)
    return _report_panel(request, image, _int(request.GET.get("region")))


@login_required
@require_POST
def alignment_decide(request, image_id: int):
    """A reviewer's link, unlink or back-to-automatic for (sentence, region); answers the report panel."""
    image = annotation_selectors.image_get_for_user(user=request.user, image_id=image_id)
    region_id, sentence_id = _int(request.POST.get("region")), _int(request.POST.get("sentence"))
    action = request.POST.get("action")
    if region_id is None or sentence_id is None or action not in ("link", "unlink", "auto"):
        return HttpResponseBadRequest(_("Give region, sentence and action=link|unlink|auto."))
    region = annotation_selectors.region_get_for_user(user=request.user, region_id=region_id, roles=REVIEW_ROLES)
    sentence = get_object_or_404(Sentence.objects.select_related("report"), pk=sentence_id,
                                 report__study_id=image.study_id)
    if region.image_id != image.pk:
        return HttpResponseBadRequest(_("The region is not on this image."))
    try:
        if action == "auto":
            services.alignment_manual_reset(sentence=sentence, region=region)
        else:
            services.alignment_manual_set(sentence=sentence, region=region, linked=action == "link", actor=request.user)
    except ValidationError as error:
        return HttpResponseBadRequest("; ".join(error.messages))
    return _report_panel(request, image, region.pk)


# ---------------------------------------------------------------------------------------------- dataset runs


@login_required
@require_POST
def alignment_run_start(request, dataset_id: int):
    """An admin starts a dataset-wide alignment; the page then polls its progress row."""
    from django.db import transaction
    from django.shortcuts import redirect

    from . import tasks

    dataset = annotation_selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=ADMIN_ROLES)
    run = services.dataset_align_start(dataset=dataset, created_by=request.user)
    transaction.on_commit(lambda: tasks.dataset_align.delay(dataset.pk, run.pk))
    return redirect("dataset", dataset_id=dataset.pk)


@login_required
@require_GET
def alignment_run_progress(request, dataset_id: int, run_id: int):
    """The progress partial, polled every second by htmx until the run ends."""
    dataset = annotation_selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id)
    run = services.alignment_run_refresh(run_id=run_id)
    if run is None or run.dataset_id != dataset.pk:
        return HttpResponseBadRequest(_("No such run."))
    return render(request, "alignment/_alignment_run.html", {
        "dataset": dataset, "run": run, "counts": services.disagreement_counts(dataset=dataset)})
