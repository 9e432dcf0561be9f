"""HTML pages of the annotation app: small function views over ``selectors`` and ``services``."""

from __future__ import annotations

import mimetypes

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, HttpResponseGone
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from . import media, permissions, selectors, services
from .geometry import geometry_measures

# ---------------------------------------------------------------------------------------------- workspace

QUEUE_PAGE_SIZE = 25


@login_required
def queue(request):
    """The reader's queue: counts, Start / Next, and the paginated list; filtering and paging swap only
    the list (htmx), the plain links still work without JavaScript."""
    status = request.GET.get("status", "")
    status = status if status in selectors.QUEUE_STATUSES else ""
    page = Paginator(selectors.assignments_for_user(user=request.user, status=status or None),
                     QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"counts": selectors.queue_counts(user=request.user), "status": status, "page": page,
               "next_assignment": selectors.assignment_next(user=request.user)}
    template = "annotation/_queue_list.html" if request.htmx else "annotation/queue.html"
    return render(request, template, context)


@login_required
def queue_next(request):
    """Open the next image to read, or come back to the queue saying there is none."""
    following = selectors.assignment_next(user=request.user)
    if following is None:
        messages.info(request, _("Your queue is empty: every image assigned to you is submitted."))
        return redirect("annotation:queue")
    return redirect("annotation:annotate", image_id=following.image_id)


@login_required
def annotate(request, image_id: int):
    """The annotate page of one image. Everything the drawing island needs is rendered here; every
    change it makes goes through the JSON API, so the page and the API share one set of rules."""
    image = selectors.image_get_for_user(user=request.user, image_id=image_id)
    dataset = image.study.dataset
    roles = selectors.dataset_roles(user=request.user, dataset_id=dataset.pk)
    assignment = selectors.assignment_for_image(user=request.user, image=image)
    if assignment is not None:
        assignment = services.assignment_open(assignment=assignment)
    editable = assignment is not None and assignment.status != assignment.Status.SUBMITTED
    report = getattr(image.study, "report", None)  # a study may have no report yet
    siblings = list(image.study.images.order_by("position", "id").values_list("id", flat=True))
    return render(request, "annotation/annotate.html", {
        "image": image, "study": image.study, "dataset": dataset, "assignment": assignment,
        "editable": editable, "can_review": permissions.may_review(roles),
        "report": report, "sentences": selectors.report_sentences_plain(report=report),
        "attributes": dataset.lexicon.content.get("attributes", []),
        "counts": selectors.queue_counts(user=request.user),
        "study_position": siblings.index(image.pk) + 1 if image.pk in siblings else 1,
        "study_total": len(siblings),
        "config": {
            "imageId": image.pk, "width": image.width, "height": image.height,
            "spacing": [image.pixel_spacing_x_mm, image.pixel_spacing_y_mm] if image.has_spacing else None,
            "imageUrl": reverse("annotation:image-file", args=[image.pk]),
            "regionsUrl": reverse("api-regions"),
            "regionListUrl": reverse("annotation:region-list", args=[image.pk]),
            "submitUrl": reverse("api-assignment-submit", args=[assignment.pk]) if assignment else None,
            "queueUrl": reverse("annotation:queue"),
            "editable": editable, "user": request.user.username,
        },
    })


SHAPE_LABELS = {"polygon": gettext_lazy("polygon"), "rectangle": gettext_lazy("rectangle"),
                "ellipse": gettext_lazy("ellipse"), "line": gettext_lazy("caliper line"), "point": gettext_lazy("point")}


@login_required
def region_list(request, image_id: int):
    """The region list beside the image (an htmx partial, refreshed after every save)."""
    image = selectors.image_get_for_user(user=request.user, image_id=image_id)
    regions = list(selectors.regions_visible(user=request.user, image=image).order_by("id"))
    roles = selectors.dataset_roles(user=request.user, dataset_id=image.study.dataset_id)
    missing = selectors.regions_missing_attributes(regions=regions, lexicon=image.study.dataset.lexicon)
    rows = [{"region": region, "missing": missing.get(region.pk, []), "mine": region.author_id == request.user.pk,
             "shape": SHAPE_LABELS.get(region.shape, region.shape),
             # The default label is the word "lesion" itself: shown in the reader's language.
             "label": _("lesion") if region.label == "lesion" else (region.label or SHAPE_LABELS.get(region.shape)),
             # Without pixel spacing the reader still gets a size, in pixels.
             "px": None if image.has_spacing else geometry_measures(region.shape, region.geometry)}
            for region in regions]
    return render(request, "annotation/_region_list.html", {
        "image": image, "rows": rows, "can_review": permissions.may_review(roles),
    })


@login_required
def region_history(request, region_id: int):
    """Who changed what when; reviewers and admins only (the same check as the API)."""
    region = selectors.region_get_for_user(user=request.user, region_id=region_id, roles=permissions.REVIEW_ROLES)
    context = {"region": region, "revisions": selectors.region_history(region=region)}
    template = "annotation/_region_history.html" if request.htmx else "annotation/region_history.html"
    return render(request, template, context)


@login_required
@require_POST
def assignment_submit(request, assignment_id: int):
    """Form fallback of the API's submit: validate, submit, open the next image."""
    assignment = selectors.assignment_get_for_user(user=request.user, assignment_id=assignment_id)
    if assignment.annotator_id != request.user.pk:
        messages.error(request, _("Only the reader of this image can submit it."))
        return redirect("annotation:annotate", image_id=assignment.image_id)
    try:
        _submitted, following = services.assignment_submit_and_next(assignment=assignment)
    except ValidationError as error:
        for problem in error.message_dict.get("regions", error.messages):
            messages.error(request, problem)
        return redirect("annotation:annotate", image_id=assignment.image_id)
    if following is None:
        messages.success(request, _("Submitted. Your queue is empty — thank you."))
        return redirect("annotation:queue")
    return redirect("annotation:annotate", image_id=following.image_id)


@login_required
@require_GET
def image_file(request, image_id: int):
    """The image itself, only to users who may see it: files are never exposed under a public URL."""
    image = selectors.image_get_for_user(user=request.user, image_id=image_id)
    try:
        handle = media.image_open(image=image)
    except media.ReferenceProblem as problem:  # recorded for the dataset's admins by image_open
        return HttpResponseGone(f"{problem}.", content_type="text/plain; charset=utf-8")
    content_type = mimetypes.guess_type(image.file.name or image.source_path)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    # Content-addressed files never change (a referenced one is checked against its hash), but they are
    # private: cache in this browser only.
    response["Cache-Control"] = "private, max-age=86400"
    return response
