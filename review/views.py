"""Reviewer pages: the disagreement queue, the adjudication page, and the dataset dashboard.

Small function views over ``review.adjudication``: they read the request, call one selector or the
one decision service, and render. htmx requests get the partial beside the page (``_review_*.html``);
the plain forms and links work without JavaScript.
"""

from __future__ import annotations

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from alignment import selectors as alignment_selectors
from alignment.labels import KIND_LABELS
from annotation import selectors
from annotation.geometry import geometry_polygon_points
from annotation.lexicons import term_code, term_label
from annotation.models import Dataset
from annotation.permissions import REVIEW_ROLES
from annotation.request_input import IdFormField, json_loads_bounded

from . import adjudication
from .models import AdjudicationDecision

PAGE_SIZE = 25
# Side values the alignment job stores as text (``matching.Outline``), as the reviewer reads them.
STORED_TEXTS = {"drawn": gettext_lazy("drawn"), "no matching region": gettext_lazy("no matching region")}
# Why the service settled a disagreement or confirmed a lesion, stored as English text in the
# resolution and the decision's comment (``adjudication``), as the reviewer reads it.
STORED_REASONS = {
    "not a lesion": gettext_lazy("not a lesion"),
    "same question about the same lesion": gettext_lazy("same question about the same lesion"),
    "lesion confirmed": gettext_lazy("lesion confirmed"),
    "readers agreed on this lesion": gettext_lazy("readers agreed on this lesion"),
}
LAYER_COLOURS = ["#22d3ee", "#f59e0b", "#e879f9", "#a3e635"]
CONSENSUS_COLOUR = "#22c55e"


def _labels(dataset) -> dict[str, dict[str, str]]:
    """code → label for every attribute value of the dataset's lexicon (what reviewers read), in the
    interface language; the codes stay as they are."""
    language = get_language()
    return {a["code"]: {"": term_label(a, language), **{v["code"]: term_label(v, language) for v in a.get("values", [])}}
            for a in dataset.lexicon.content.get("attributes", [])}


def _value_text(value, labels: dict[str, str]) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_value_text(v, {})}" for k, v in value.items() if v not in (None, "", []))
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v, labels) for v in value) or _("(none)")
    text = str(value)
    if text.startswith("no ") and text[3:] in labels:
        return _("no %(value)s") % {"value": labels[text[3:]]}
    if text in STORED_TEXTS:
        return str(STORED_TEXTS[text])
    return labels.get(text, text.replace("_", " "))


def _organ_text(labels: dict, body_part: str) -> str:
    """A study's organ (free text from the import) in the interface language where the lexicon names
    it (udaf's ``organ_level``), else as it was written."""
    return labels.get("organ_level", {}).get(term_code(body_part or ""), body_part or "")


def _reason_text(reason: str, labels: dict) -> str:
    if reason in STORED_REASONS:
        return str(STORED_REASONS[reason])
    attribute = reason.removesuffix(" decided")
    if attribute != reason and attribute in labels:
        return _("%(attribute)s decided") % {"attribute": labels[attribute][""]}
    return reason


def _action_label(action: str | None) -> str:
    if not action:
        return ""
    try:
        return str(AdjudicationDecision.Action(action).label)
    except ValueError:
        return action.replace("_", " ")


def _assessment_labels(dataset, labels: dict) -> dict[str, str]:
    """What an assessment disagreement's sides hold: categories (the report's "TR4", stored by their
    label) and the values the tagged descriptors imply them from."""
    flat = {code: label for attribute in labels.values() for code, label in attribute.items() if code}
    for category in (dataset.lexicon.content.get("assessment") or {}).get("categories", []):
        flat[category["code"]] = flat[category["label"]] = term_label(category, get_language())
    return flat


def _side_rows(disagreement, labels) -> list[dict]:
    if disagreement.kind == "assessment_inconsistent":
        attribute_labels = _assessment_labels(disagreement.dataset, labels)
    else:
        attribute_labels = labels.get(disagreement.attribute, {})
    return [{"side": side, "text": _value_text(side.values, attribute_labels)}
            for side in adjudication.disagreement_sides(disagreement)]


def _queue_context(request, filters: adjudication.ReviewFilters) -> dict:
    queue = adjudication.review_queue(user=request.user, filters=filters).prefetch_related("regions__author")
    page = Paginator(queue, PAGE_SIZE).get_page(request.GET.get("page"))
    counts = adjudication.review_counts(user=request.user, filters=filters)
    labels_by_dataset: dict[int, dict] = {}
    rows = []
    for disagreement in page.object_list:
        labels = labels_by_dataset.setdefault(disagreement.dataset_id, _labels(disagreement.dataset))
        rows.append({"d": disagreement, "kind_label": KIND_LABELS.get(disagreement.kind, disagreement.kind),
                     "sides": _side_rows(disagreement, labels),
                     "attribute_label": labels.get(disagreement.attribute, {}).get("", disagreement.attribute),
                     "organ": _organ_text(labels, disagreement.study.body_part),
                     "readers": sorted({r.author.username for r in disagreement.regions.all() if r.author})})
    return {"filters": filters, "page": page, "rows": rows, "total": sum(counts.values()),
            "kinds": [{"kind": k, "label": KIND_LABELS[k], "n": counts[k]} for k in KIND_LABELS],
            "query": filters.query(), "query_nokind": filters.query(kind="")}


@login_required
@require_GET
def review_queue(request):
    adjudication.review_check(user=request.user)
    filters = adjudication.ReviewFilters.from_query(request.GET)
    context = _queue_context(request, filters)
    if request.htmx:
        return render(request, "review/_review_list.html", context)
    context["options"] = options = adjudication.review_filter_options(user=request.user)
    labels: dict = {}
    for dataset in Dataset.objects.filter(pk__in=[d["id"] for d in options["datasets"]]).select_related("lexicon"):
        labels.setdefault("organ_level", {}).update(_labels(dataset).get("organ_level", {}))
    context["organs"] = [(organ, _organ_text(labels, organ)) for organ in options["organs"]]
    context["ages"] = [("new", _("under a day")), ("week", _("1–7 days")), ("old", _("over a week"))]
    return render(request, "review/review_queue.html", context)


def _decision_input(request) -> dict:
    geometry = request.POST.get("geometry") or ""
    try:
        geometry = json_loads_bounded(geometry) if geometry else None
    except ValueError:
        raise ValidationError({"geometry": _("The outline could not be read; draw it again.")})
    value = request.POST.getlist("value")
    value = [v for v in value if v]
    return {"action": request.POST.get("action", ""), "side": request.POST.get("side", ""),
            "value": (value[0] if len(value) == 1 else value) if value else None,
            "shape": request.POST.get("shape") or None, "geometry": geometry,
            "comment": request.POST.get("comment", ""), "revise": request.POST.get("revise") == "1"}


@login_required
@require_POST
def disagreement_resolve(request, disagreement_id: int):
    """Every review action, from the queue (htmx: the list comes back) or the adjudication page (the
    next disagreement opens, or the same one for a comment or an outline edit)."""
    disagreement = adjudication.disagreement_get_for_user(user=request.user, disagreement_id=disagreement_id)
    filters = adjudication.ReviewFilters.from_query(request.POST)
    error = None
    try:
        fields = _decision_input(request)
        image = None
        image_id = IdFormField().clean(request.POST.get("image"))
        if image_id is not None:
            image = selectors.image_get_for_user(user=request.user, image_id=image_id)
        adjudication.disagreement_resolve(disagreement=disagreement, actor=request.user, image=image, **fields)
    except (ValidationError, ValueError) as problem:
        error = "; ".join(getattr(problem, "messages", [str(problem)]))
    if request.htmx and request.POST.get("from") == "queue":
        context = _queue_context(request, filters)
        context["error"] = error
        # 200 even on a refused action: htmx swaps only 2xx, and the list carries the reason.
        return render(request, "review/_review_list.html", context)
    if error:
        messages.error(request, error)
        target = disagreement.pk
    else:
        messages.success(request, _("Decision recorded."))
        disagreement.refresh_from_db()
        stays = disagreement.status == "open"
        # Neighbours after the decision: the ones it settled are no longer in the queue.
        previous, following = adjudication.review_neighbours(user=request.user, disagreement=disagreement,
                                                             filters=filters)
        target = disagreement.pk if stays else (following or previous)
    query = filters.query()
    if target is None:
        return redirect(f"{reverse('review:queue')}?{query}")
    return redirect(f"{reverse('review:disagreement', args=[target])}?{query}")


@login_required
@require_GET
def disagreement_detail(request, disagreement_id: int):
    disagreement = adjudication.disagreement_get_for_user(user=request.user, disagreement_id=disagreement_id)
    filters = adjudication.ReviewFilters.from_query(request.GET)
    dataset = disagreement.dataset
    image = disagreement.image or disagreement.study.images.order_by("position", "id").first()
    labels = _labels(dataset)
    regions = adjudication.adjudication_regions(disagreement=disagreement, image=image) if image else []
    layers, colours = [], {}
    for row in regions:
        if row["layer"] not in colours:
            colours[row["layer"]] = CONSENSUS_COLOUR if row["layer"] == "consensus" else \
                LAYER_COLOURS[len([c for c in colours if c != "consensus"]) % len(LAYER_COLOURS)]
            layers.append({"name": row["layer"], "colour": colours[row["layer"]]})
        row["colour"] = colours[row["layer"]]
        row["measures"] = row["region"].long_axis_mm
    consensus = next((r["region"] for r in regions if r["layer"] == "consensus"
                      and r["region"].consensus_members.filter(region__disagreements=disagreement).exists()), None)
    edit_points = geometry_polygon_points(consensus.shape, consensus.geometry) if consensus else []
    report = getattr(disagreement.study, "report", None)
    sentences = alignment_selectors.report_sentences(report=report)
    findings = []
    if disagreement.sentence_id:
        for finding in disagreement.sentence.findings.all():
            findings.append({"finding": finding, "attributes": [
                {"name": labels.get(a.get("name"), {}).get("", a.get("name")),
                 "value": labels.get(a.get("name"), {}).get(a.get("value"), a.get("value")),
                 "negated": a.get("negated"), "uncertain": a.get("uncertain")}
                for a in (finding.data or {}).get("attributes", [])]})
    involved = [r["region"] for r in regions if r["involved"]]
    if consensus:
        involved.append(consensus)
    history = [{"region": region, "revisions": list(selectors.region_history(region=region))} for region in involved]
    previous, following = adjudication.review_neighbours(user=request.user, disagreement=disagreement, filters=filters)
    counts = adjudication.review_counts(user=request.user, filters=filters)
    others = list(adjudication.image_disagreements(image=image)) if image else []
    for other in others:
        other.kind_label = KIND_LABELS.get(other.kind, other.kind)
        other.attribute_label = labels.get(other.attribute, {}).get("", other.attribute)
    decisions = list(adjudication.image_decisions(image=image)[:30]) if image else []
    for decision in decisions:
        decision.attribute_label = labels.get(decision.attribute, {}).get("", decision.attribute)
        decision.value_text = _value_text(decision.value, labels.get(decision.attribute, {}))
        # The service's own comments (a settled or confirmed lesion) are translated; a reviewer's are theirs.
        by_service = decision.action in (AdjudicationDecision.Action.SETTLED, AdjudicationDecision.Action.CONFIRM)
        decision.comment_text = _reason_text(decision.comment, labels) if by_service else decision.comment
    spec = next((a for a in dataset.lexicon.content.get("attributes", []) if a["code"] == disagreement.attribute), None)
    query = filters.query()
    return render(request, "review/review_adjudicate.html", {
        "d": disagreement, "dataset": dataset, "study": disagreement.study, "image": image,
        "organ": _organ_text(labels, disagreement.study.body_part),
        "kind_label": KIND_LABELS[disagreement.kind],
        "attribute_label": labels.get(disagreement.attribute, {}).get("", disagreement.attribute),
        "sides": _side_rows(disagreement, labels), "regions": regions, "layers": layers,
        "consensus": consensus, "edit_points": edit_points,
        "report": report, "sentences": sentences, "sentence_index": disagreement.sentence.index if disagreement.sentence else None,
        "findings": findings, "history": history, "attribute_spec": spec,
        "decisions": decisions,
        "others": others, "open_total": sum(counts.values()),
        "count_pills": [{"kind": k, "label": KIND_LABELS[k], "n": n} for k, n in counts.items() if n],
        "filter_fields": [(k, v) for k, v in vars(filters).items() if v],
        "previous": previous, "following": following, "query": query, "filters": filters,
        "is_open": disagreement.status == "open",
        "resolution_action": _action_label((disagreement.resolution or {}).get("requested")
                                           or (disagreement.resolution or {}).get("action")),
        "resolution_reason": _reason_text((disagreement.resolution or {}).get("reason") or "", labels),
        "resolution_text": _value_text((disagreement.resolution or {}).get("value"),
                                       labels.get(disagreement.attribute, {})),
    })


@login_required
@require_POST
def image_confirm(request, image_id: int):
    image = selectors.image_get_for_user(user=request.user, image_id=image_id, roles=REVIEW_ROLES)
    try:
        adjudication.image_confirm(image=image, actor=request.user, comment=request.POST.get("comment", ""))
        messages.success(request, _("Image confirmed."))
    except ValidationError as problem:
        messages.error(request, "; ".join(problem.messages))
    return redirect(_local_url(request, request.POST.get("next")) or reverse("review:queue"))


def _local_url(request, url: str | None) -> str | None:
    """``url`` if it stays on this site (a form's ``next``), else ``None``: a crafted link must not send
    a signed-in reviewer on to another site."""
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
        return url
    return None


# ---------------------------------------------------------------------------------------------- dashboard


def _bars(points: list, *, width: int = 560, height: int = 140) -> dict:
    """A server-rendered bar chart: bar rectangles in SVG units for ``[(label, value), ...]``."""
    top = max((v for _, v in points), default=0) or 1
    slot = min(width / max(1, len(points)), 28.0)  # a few days stay bars, not blocks
    bars = [{"label": label, "value": value, "x": round(i * slot + slot * 0.12, 2), "w": round(slot * 0.76, 2),
             "h": round(value / top * (height - 18), 2), "y": round(height - value / top * (height - 18), 2)}
            for i, (label, value) in enumerate(points)]
    return {"bars": bars, "width": width, "height": height, "top": top}


def _dashboard_context(request, dataset_id: int, *, use_cache: bool = True) -> dict:
    dataset = selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=REVIEW_ROLES)
    data = adjudication.dashboard_data(dataset=dataset, use_cache=use_cache)
    live, snapshot = data["live"], data["metrics"] or {}
    labels = _labels(dataset)
    agreement = [{"code": code, "label": labels.get(code, {}).get("", code), **values}
                 for code, values in (snapshot.get("reader_agreement") or {}).items() if values["units"]]
    for row in agreement:
        row["kappa_pct"] = max(0, round(100 * row["cohen_kappa"])) if row["cohen_kappa"] is not None else None
    report = [{"code": code, "label": labels.get(code, {}).get("", code), **values}
              for code, values in (snapshot.get("report_vs_annotation") or {}).items()]
    iou = snapshot.get("iou") or {}
    iou_chart = _bars([(f"{iou['edges'][i]:.1f}", n) for i, n in enumerate(iou.get("counts", []))]) if iou else None
    days = sorted({d for series in live["progress"].values() for d, _ in series})
    submitted, resolved = dict(live["progress"]["submitted"]), dict(live["progress"]["resolved"])
    progress = {"submitted": _bars([(d, submitted.get(d, 0)) for d in days]),
                "resolved": _bars([(d, resolved.get(d, 0)) for d in days])} if days else None
    total = live["image_total"] or 1
    statuses = [{"status": s, "n": n, "share": round(100 * n / total, 1)} for s, n in live["images"].items()]
    kinds = [{"kind": k, "label": KIND_LABELS[k], **v} for k, v in live["disagreements"].items()]
    from django.utils.dateparse import parse_datetime

    return {"dataset": dataset, "data": data, "as_of": parse_datetime(live["as_of"]),
            "refresh_minutes": adjudication.PROGRESS_CACHE_SECONDS // 60, "snapshot": data["snapshot"], "metrics": snapshot,
            "agreement": agreement, "report_rows": report, "iou": iou, "dice": snapshot.get("dice") or {},
            "iou_chart": iou_chart, "progress": progress, "statuses": statuses, "kinds": kinds,
            "consensus_rows": sorted((snapshot.get("consensus_agreement") or {}).items()),
            "open_total": sum(k["open"] for k in kinds), "closed_total": sum(k["resolved"] + k["dismissed"] for k in kinds)}


@login_required
@require_GET
def dataset_dashboard(request, dataset_id: int):
    context = _dashboard_context(request, dataset_id)
    return render(request, "review/dashboard.html", context)


@login_required
@require_GET
def dataset_dashboard_csv(request, dataset_id: int):
    dataset = selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=REVIEW_ROLES)
    data = adjudication.dashboard_data(dataset=dataset)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="agreement-{dataset.pk}.csv"'
    writer = csv.writer(response)
    for row in adjudication.dashboard_csv_rows(dataset=dataset, data=data):
        writer.writerow(row)
    return response


@login_required
@require_POST
def dataset_metrics_refresh(request, dataset_id: int):
    """Queue a new agreement snapshot (a task: at a million regions it takes minutes)."""
    from django.db import transaction

    from .tasks import dataset_metrics_refresh as task

    dataset = selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=REVIEW_ROLES)
    transaction.on_commit(lambda: task.delay(dataset.pk))
    messages.info(request, _("Agreement metrics are being recomputed; reload in a moment."))
    return redirect("review:dashboard", dataset_id=dataset.pk)

