"""Review and adjudication: the reviewer's queue, the one service every decision goes through, the
image's adjudicated status and the agreement metrics the dashboard shows.

Adjudication adds, never overwrites. The annotators' regions are never changed; each answer is written
to the image's *consensus* regions (``Region.source == "consensus"``, created and edited through
``services.region_create/region_update``, so they are validated and keep a history) and recorded as an
``AdjudicationDecision`` row: who, when, what, why. ``LesionConsensus`` says which consensus region
stands for which original region, or that reviewers agreed it is not a lesion.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import TruncDate
from django.http import Http404
from django.utils import timezone
from django.utils.translation import get_language, gettext, pgettext

from alignment import matching
from alignment.models import Alignment, Disagreement
from annotation import permissions, services
from annotation.lexicons import term_label
from annotation.models import Assignment, Dataset, Image, Membership, Region
from annotation.request_input import id_or_none
from annotation.selectors import dataset_roles

from . import metrics
from .models import AdjudicationDecision, DatasetMetrics, LesionConsensus

AREA_SHAPES = ("polygon", "rectangle", "ellipse")
Action = AdjudicationDecision.Action


# ---------------------------------------------------------------------------------------------- permissions


def review_dataset_ids(*, user, roles: Iterable[str] = permissions.REVIEW_ROLES) -> list[int]:
    """Datasets whose disagreements ``user`` may work on (staff: all)."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_staff:
        return list(Dataset.objects.values_list("id", flat=True))
    return sorted(set(Membership.objects.filter(user=user, role__in=list(roles)).values_list("dataset_id", flat=True)))


def review_check(*, user) -> list[int]:
    """The reviewer's datasets; a user who reviews none gets 403 (they are a member somewhere, or they
    would not be here: the pages need a login)."""
    ids = review_dataset_ids(user=user)
    if not ids:
        raise PermissionDenied(gettext("Only reviewers can open the review queue."))
    return ids


def disagreement_get_for_user(*, user, disagreement_id: int, roles: Iterable[str] = permissions.REVIEW_ROLES):
    """One disagreement, for a reviewer of its dataset: an outsider gets 404, another member 403."""
    disagreement = (
        Disagreement.objects.select_related("dataset__lexicon", "study", "image", "sentence", "resolved_by")
        .filter(pk=disagreement_id).first()
    )
    if disagreement is None:
        raise Http404(gettext("No such disagreement."))
    held = dataset_roles(user=user, dataset_id=disagreement.dataset_id)
    if not held:
        raise Http404(gettext("No such disagreement."))
    if not permissions.roles_allow(held, roles):
        raise PermissionDenied(gettext("Only reviewers of this dataset can adjudicate."))
    return disagreement


# ---------------------------------------------------------------------------------------------- queue


@dataclass(frozen=True)
class ReviewFilters:
    """What the queue is narrowed to; empty fields do not filter. ``age`` buckets how long a
    disagreement has waited: ``new`` (under a day), ``week`` (1–7 days), ``old`` (over 7 days)."""

    dataset: int | None = None
    kind: str = ""
    attribute: str = ""
    annotator: int | None = None
    organ: str = ""
    age: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ReviewFilters:
        def number(name: str) -> int | None:
            # Not str.isdigit(): it accepts "²"; and an id past 64 bits would overflow the driver.
            return id_or_none(query.get(name))

        kinds = Disagreement.Kind.values
        kind = query.get("kind") or ""
        age = query.get("age") or ""
        return cls(dataset=number("dataset"), kind=kind if kind in kinds else "",
                   attribute=(query.get("attribute") or "").strip()[:64], annotator=number("annotator"),
                   organ=(query.get("organ") or "").strip()[:64], age=age if age in AGES else "")

    def query(self, **override) -> str:
        """The filters as a query string, for links that keep them (next/previous, paging)."""
        from urllib.parse import urlencode

        values = {"dataset": self.dataset or "", "kind": self.kind, "attribute": self.attribute,
                  "annotator": self.annotator or "", "organ": self.organ, "age": self.age, **override}
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


AGES = {"new": (None, timedelta(days=1)), "week": (timedelta(days=1), timedelta(days=7)), "old": (timedelta(days=7), None)}
# Impact decides the default order: what changes a patient's category or a training label first.
SUSPICIOUS_ATTRIBUTES = ("margins", "shape", "posterior_acoustics", "vascularity", "internal_characteristics",
                         "margin", "orientation", "calcifications", "echo_pattern", "birads", "tirads_level")
IMPACT = Case(
    When(kind="assessment_inconsistent", then=Value(100)),
    When(kind="reported_not_annotated", then=Value(80)),
    When(kind="reader_vs_reader", attribute="region", then=Value(70)),
    When(attribute__in=SUSPICIOUS_ATTRIBUTES, then=Value(60)),
    When(kind="size_mismatch", then=Value(50)),
    When(kind__in=["report_vs_annotation", "reader_vs_reader"], then=Value(40)),
    default=Value(20), output_field=IntegerField(),
)


def _filtered(*, user, filters: ReviewFilters, with_kind: bool = True) -> QuerySet:
    ids = review_dataset_ids(user=user)
    if filters.dataset:
        ids = [i for i in ids if i == filters.dataset]
    qs = Disagreement.objects.filter(dataset_id__in=ids, status=Disagreement.Status.OPEN)
    if with_kind and filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.attribute:
        qs = qs.filter(attribute=filters.attribute)
    if filters.annotator:
        qs = qs.filter(regions__author_id=filters.annotator)
    if filters.organ:
        qs = qs.filter(study__body_part__iexact=filters.organ)
    if filters.age:
        older, newer = AGES[filters.age]
        now = timezone.now()
        if older:
            qs = qs.filter(created_at__lte=now - older)
        if newer:
            qs = qs.filter(created_at__gt=now - newer)
    return qs.distinct() if filters.annotator else qs


def review_queue(*, user, filters: ReviewFilters) -> QuerySet:
    """Open disagreements of the user's review datasets, highest impact first, then oldest."""
    return (_filtered(user=user, filters=filters).annotate(impact=IMPACT)
            .select_related("study", "image", "dataset__lexicon").order_by("-impact", "created_at", "id"))


def review_counts(*, user, filters: ReviewFilters) -> dict[str, int]:
    """Open disagreements per kind under every filter but the kind (so the tabs show what each holds)."""
    counts = {kind: 0 for kind in Disagreement.Kind.values}
    rows = _filtered(user=user, filters=filters, with_kind=False).order_by().values("kind").annotate(n=Count("id", distinct=True))
    counts.update({row["kind"]: row["n"] for row in rows})
    return counts


def review_neighbours(*, user, disagreement, filters: ReviewFilters) -> tuple[int | None, int | None]:
    """The previous and next open disagreement around ``disagreement`` in queue order (keyset, so it
    costs the same on the millionth row as on the first)."""
    qs = review_queue(user=user, filters=filters)
    impact = qs.model.objects.filter(pk=disagreement.pk).annotate(impact=IMPACT).values_list("impact", flat=True).first()
    if impact is None:
        return None, None
    at, pk = disagreement.created_at, disagreement.pk
    after = Q(impact__lt=impact) | Q(impact=impact, created_at__gt=at) | Q(impact=impact, created_at=at, id__gt=pk)
    before = Q(impact__gt=impact) | Q(impact=impact, created_at__lt=at) | Q(impact=impact, created_at=at, id__lt=pk)
    following = qs.filter(after).values_list("id", flat=True).first()
    previous = qs.filter(before).order_by("impact", "-created_at", "-id").values_list("id", flat=True).first()
    return previous, following


def review_filter_options(*, user) -> dict[str, list]:
    """Choices of the filter bar: datasets, attributes in conflict, annotators, organs."""
    ids = review_dataset_ids(user=user)
    open_ = Disagreement.objects.filter(dataset_id__in=ids, status=Disagreement.Status.OPEN)
    from django.contrib.auth import get_user_model

    annotators = get_user_model().objects.filter(
        memberships__dataset_id__in=ids, memberships__role=Membership.Role.ANNOTATOR).distinct().order_by("username")
    labels = {a["code"]: term_label(a, get_language()) for dataset in Dataset.objects.filter(pk__in=ids).select_related("lexicon")
              for a in dataset.lexicon.content.get("attributes", [])}
    labels.update(region=gettext("Outline (region)"), size_mm=gettext("Size"))
    codes = sorted(a for a in open_.order_by().values_list("attribute", flat=True).distinct() if a)
    return {
        "datasets": list(Dataset.objects.filter(pk__in=ids).values("id", "name")),
        "attributes": [(code, labels.get(code, code.replace("_", " "))) for code in codes],
        "annotators": list(annotators.values("id", "username")),
        "organs": sorted({o for o in open_.order_by().values_list("study__body_part", flat=True).distinct() if o}),
    }


# ---------------------------------------------------------------------------------------------- sides


@dataclass
class Side:
    """One side of a disagreement as a reviewer reads it."""

    key: str  # "report", "annotation" or a reader's username
    label: str
    values: Any
    region_id: int | None = None
    claims_lesion: bool = True  # False: this side says there is no lesion here


def disagreement_sides(disagreement) -> list[Side]:
    """The two sides, left (key A) then right (key S)."""
    values = disagreement.values or {}
    # ``.all()`` so a queue page that prefetched the regions and their authors asks nothing per row.
    regions = sorted(disagreement.regions.all(), key=lambda region: region.pk)
    by_author = {r.author.username: r for r in regions if r.author_id and r.source == Region.Source.READER}
    first_region = regions[0] if regions else None
    kind = disagreement.kind
    if kind == "reader_vs_reader":
        readers = [k for k in values if k not in ("iou", "best_iou")]
        sides = []
        for reader in sorted(readers):
            region = by_author.get(reader)
            drawn = values[reader] != matching.Outline.MISSING
            sides.append(Side(reader, reader, values[reader], region.pk if region else None, claims_lesion=drawn))
        return sides
    annotation_label = gettext("Annotation")
    if first_region is not None:
        annotation_label = gettext("Annotation · %(author)s") % {
            "author": first_region.author.username if first_region.author else first_region.source}
    report_value = values.get("report")
    if kind == "assessment_inconsistent":
        other = values.get("expected") or values.get("suspicious_features")
        return [Side("report", gettext("Report"), report_value),
                Side("annotation", gettext("Descriptors imply"), other, first_region.pk if first_region else None)]
    return [
        Side("report", gettext("Report"), report_value, None, claims_lesion=report_value is not None),
        Side("annotation", annotation_label, values.get("annotation"), first_region.pk if first_region else None,
             claims_lesion=values.get("annotation") is not None),
    ]


# ---------------------------------------------------------------------------------------------- lesions


def _lesion_members(image: Image, region_ids: Iterable[int]) -> list[Region]:
    """The original regions on ``image`` that show the same lesion as ``region_ids``: regions of
    different readers paired by IoU (``matching.regions_pair``), joined transitively, plus whatever
    is already linked to the same consensus region."""
    live = list(Region.objects.filter(image=image, is_deleted=False, source__in=[Region.Source.READER, Region.Source.IMPORT],
                                      shape__in=AREA_SHAPES).order_by("id"))
    wanted = {pk for pk in region_ids if any(r.pk == pk for r in live)}
    if not wanted:
        return []
    parent = {r.pk: r.pk for r in live}

    def find(pk: int) -> int:
        while parent[pk] != pk:
            parent[pk] = parent[parent[pk]]
            pk = parent[pk]
        return pk

    by_author: dict[Any, list[Region]] = defaultdict(list)
    for region in live:
        by_author[(region.source, region.author_id, region.source_author)].append(region)
    groups = list(by_author.values())
    for i, first in enumerate(groups):
        for second in groups[i + 1:]:
            for a, b, _ in matching.regions_pair([(r.shape, r.geometry) for r in first],
                                                [(r.shape, r.geometry) for r in second]):
                parent[find(first[a].pk)] = find(second[b].pk)
    links = {link.region_id: link.consensus_id for link in LesionConsensus.objects.filter(region__in=live)}
    by_consensus: dict[int, list[int]] = defaultdict(list)
    for region_id, consensus_id in links.items():
        if consensus_id:
            by_consensus[consensus_id].append(region_id)
    for members in by_consensus.values():
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    roots = {find(pk) for pk in wanted}
    return [r for r in live if find(r.pk) in roots]


def _consensus_of(members: Iterable[Region]) -> Region | None:
    members = list(members)
    # A disagreement the alignment job raised about the consensus region itself (it counts as
    # annotation once it exists) is answered on that region, not on a copy of it.
    own = next((m for m in members if m.source == Region.Source.CONSENSUS and not m.is_deleted), None)
    if own is not None:
        return own
    link = (LesionConsensus.objects.filter(region__in=list(members), consensus__isnull=False, consensus__is_deleted=False)
            .select_related("consensus").order_by("consensus_id").first())
    return link.consensus if link else None


def _lexicon_attribute(dataset: Dataset, code: str) -> dict | None:
    return next((a for a in dataset.lexicon.content.get("attributes", []) if a["code"] == code), None)


def _as_attribute_value(dataset: Dataset, code: str, values: Any) -> Any:
    """A decided value in the shape the lexicon stores it: one code, or a list for many-value
    attributes; None removes the attribute."""
    spec = _lexicon_attribute(dataset, code)
    if spec is None:
        raise ValidationError({"attribute": gettext("“%(code)s” is not an attribute of the %(lexicon)s lexicon.") % {
            "code": code, "lexicon": dataset.lexicon.name}})
    if values in (None, "", []):
        return None
    listed = [values] if isinstance(values, str) else list(values)
    if spec.get("cardinality") == "many":
        return sorted(set(listed))
    if len(listed) != 1:
        raise ValidationError({"value": gettext("%(attribute)s takes one value; the side picked gives %(values)s. "
                                                "Choose one with “Other value”.") % {
            "attribute": term_label(spec, get_language()), "values": ", ".join(listed)}})
    return listed[0]


@dataclass
class _Effect:
    images: set[int] = field(default_factory=set)
    members: set[int] = field(default_factory=set)
    lesion: bool | None = None  # True: a lesion is there; False: agreed not a lesion
    attribute: str = ""
    value: Any = None
    consensus: Region | None = None


def _consensus_write(*, image: Image, members: list[Region], actor, template: Region | None, decision_value: Any,
                     attribute: str, shape: str | None, geometry: dict | None, set_attribute: bool,
                     copy_geometry: bool = False) -> Region:
    """Create or update the consensus region of one lesion on one image and link its members to it.
    A new consensus copies ``template`` (the side picked, else the first member); then the decided
    attribute and geometry are applied; an existing consensus takes the template's outline only when
    ``copy_geometry`` (the reviewer picked that reader's lesion), so an edited outline is not lost to a
    later attribute decision. Goes through the region services (validation + history)."""
    consensus = _consensus_of(members)
    template = template or (members[0] if members else None)
    if consensus is None:
        if template is None and geometry is None:
            raise ValidationError({"geometry": gettext("Nobody outlined this lesion: draw its outline on the image first.")})
        attributes = dict(template.attributes) if template else {}
        if set_attribute:
            attributes = _with_attribute(attributes, attribute, decision_value)
        consensus = services.region_create(
            image=image, author=actor, shape=shape or template.shape, geometry=geometry or template.geometry,
            attributes=attributes, label=template.label if template else "lesion",
            lesion_key=template.lesion_key if template else "", source=Region.Source.CONSENSUS,
        )
    else:
        changes: dict[str, Any] = {}
        if set_attribute:
            changes["attributes"] = _with_attribute(dict(consensus.attributes), attribute, decision_value)
        if geometry is not None:
            changes.update(shape=shape or consensus.shape, geometry=geometry)
        elif copy_geometry and template is not None:
            changes.update(shape=template.shape, geometry=template.geometry)
        if changes:
            consensus = services.region_update(region=consensus, actor=actor, expected_version=consensus.version,
                                               changes=changes)
    for member in members:
        if member.source != Region.Source.CONSENSUS:
            LesionConsensus.objects.update_or_create(region=member, defaults={
                "image": image, "consensus": consensus, "not_a_lesion": False})
    return consensus


def _with_attribute(attributes: dict, code: str, value: Any) -> dict:
    if not code:
        return attributes
    if value is None:
        attributes.pop(code, None)
    else:
        attributes[code] = value
    return attributes


def _not_a_lesion(*, image: Image, members: list[Region], actor) -> None:
    """Reviewers agree there is no lesion: members link to no consensus; a consensus region made
    earlier for them is (soft-)deleted — it is the reviewers' own, never an original."""
    consensus = _consensus_of(members)
    if consensus is not None:
        services.region_delete(region=consensus, actor=actor, expected_version=consensus.version)
    for member in members:
        if member.source != Region.Source.CONSENSUS:
            LesionConsensus.objects.update_or_create(region=member, defaults={
                "image": image, "consensus": None, "not_a_lesion": True})


# ---------------------------------------------------------------------------------------------- the one service

ACTIONS = frozenset(Action.values) - {Action.SETTLED, Action.CONFIRM}
RESOLVING = {Action.ACCEPT_REPORT, Action.ACCEPT_ANNOTATION, Action.OTHER_VALUE, Action.REPORT_WRONG,
             Action.ANNOTATION_WRONG, Action.NOT_A_LESION}


def _snapshot(disagreement) -> dict:
    return {"status": disagreement.status, "values": disagreement.values, "resolution": disagreement.resolution,
            "consensus": [
                {"id": r.pk, "version": r.version, "attributes": r.attributes}
                for r in Region.objects.filter(consensus_members__region__in=disagreement.regions.all(),
                                               is_deleted=False).distinct()
            ]}


@dataclass
class AdjudicationPlan:
    """What a reviewer's action means for the lesion, before anything is written.

    ``action`` is the action applied (a "report is wrong" becomes accepting the annotation), ``side``
    the side picked; ``lesion`` says the lesion is there (True), is not (False) or is not in question
    (None); ``template`` is the region whose outline a new consensus copies; with ``set_attribute``,
    ``value`` is the attribute's decided value; ``resolves`` says the disagreement closes."""

    action: str
    side: str = ""
    lesion: bool | None = None
    template: int | None = None
    set_attribute: bool = False
    value: Any = None
    resolves: bool = True


def _picked_values(picked: Any, tagged: Iterable[str] | None) -> Any:
    """The values a reviewer means by accepting the report's side: where the report denies values
    ("no shadowing"), the tagged values without the denied ones; otherwise the report's values."""
    denied = {d.value for d in (matching.Denied.parse(v) for v in picked or []) if d is not None}
    if not denied:
        return picked
    return [v for v in tagged or [] if v not in denied]


def _plan(disagreement, *, action: str, side: str, value: Any, geometry: dict | None) -> AdjudicationPlan:
    """Turn a reviewer's action into what it means for the lesion (see ``AdjudicationPlan``). Raises
    ``ValidationError`` for an action that does not fit the disagreement."""
    kind, attribute = disagreement.kind, disagreement.attribute
    sides = {s.key: s for s in disagreement_sides(disagreement)}
    attribute_kind = kind in ("report_vs_annotation", "reader_vs_reader") and attribute not in ("region", "")
    if action == Action.ACCEPT_REPORT:
        side = "report"
    elif action == Action.REPORT_WRONG:
        action, side = Action.ACCEPT_ANNOTATION, "annotation" if "annotation" in sides else side
    elif action == Action.ANNOTATION_WRONG:
        if "report" in sides:
            action, side = Action.ACCEPT_REPORT, "report"
        elif value is None and geometry is None:
            raise ValidationError({"value": gettext("Say which value is right (Other value) or redraw the outline.")})
        else:
            action = Action.OTHER_VALUE if value is not None else Action.EDIT_GEOMETRY
    plan = AdjudicationPlan(action=action, side=side)
    if action in (Action.ACCEPT_REPORT, Action.ACCEPT_ANNOTATION):
        if side not in sides:
            raise ValidationError({"side": gettext("“%(side)s” is not a side of this disagreement (%(sides)s).") % {
                "side": side, "sides": ", ".join(sides)}})
        chosen = sides[side]
        plan.template = chosen.region_id
        if attribute_kind:
            plan.lesion, plan.set_attribute = True, True
            picked = chosen.values
            if side == "report" and kind == "report_vs_annotation":
                picked = _picked_values(picked, sides["annotation"].values)
            plan.value = _as_attribute_value(disagreement.dataset, attribute, picked)
        elif kind == "assessment_inconsistent":
            plan.lesion = None  # the category is the report's business: recorded, no outline changes
        elif kind == "size_mismatch":
            plan.lesion = True
        else:  # a lesion one side drew and the other did not
            plan.lesion = chosen.claims_lesion
            if chosen.claims_lesion and chosen.region_id is None and geometry is None:
                raise ValidationError({"geometry": gettext("Nobody outlined this lesion: draw its outline on the image, "
                                                           "then accept the report.")})
    elif action == Action.OTHER_VALUE:
        if not attribute_kind:
            raise ValidationError({"value": gettext("This disagreement is not about an attribute value.")})
        plan.lesion, plan.set_attribute = True, True
        plan.value = _as_attribute_value(disagreement.dataset, attribute, value)
    elif action == Action.EDIT_GEOMETRY:
        if not geometry:
            raise ValidationError({"geometry": gettext("Draw the outline first.")})
        plan.lesion = True
        plan.resolves = kind in ("size_mismatch", "reported_not_annotated", "annotated_not_reported") \
            or attribute == "region"
    elif action == Action.NOT_A_LESION:
        plan.lesion = False
    elif action in (Action.DISMISS, Action.COMMENT):
        plan.resolves = action == Action.DISMISS
    return plan


@transaction.atomic
def disagreement_resolve(*, disagreement, actor, action: str, side: str = "", value: Any = None,
                         shape: str | None = None, geometry: dict | None = None, comment: str = "",
                         image: Image | None = None, revise: bool = False) -> AdjudicationDecision:
    """Apply a reviewer's decision on one disagreement — the one path for every review action.

    Preconditions: ``actor`` is a reviewer of the dataset (callers fetch through
    ``disagreement_get_for_user``); the disagreement is open unless ``revise`` (a reviewer changing a
    decision on purpose). ``action`` is one of ``ACTIONS``; ``side`` names a side for the accept actions
    (``report``, ``annotation`` or a reader's username); ``value`` is the value for ``other_value``;
    ``shape``/``geometry`` an outline (image pixels) for ``edit_geometry`` or a lesion nobody drew.

    Promises: the annotators' regions are untouched; the lesion's consensus region on each image it is
    on is created or updated (or, for "not a lesion", removed and the originals linked as no lesion);
    the disagreement is resolved/dismissed (a comment leaves it as it is); one ``AdjudicationDecision``
    row records who, when, what and why, plus one ``settled`` row for every other open disagreement
    of the same lesion that the answer now settles; the images' adjudicated status is refreshed.
    """
    if action not in ACTIONS:
        raise ValidationError({"action": gettext("Unknown action “%(action)s”.") % {"action": action}})
    comment = (comment or "").strip()
    if action == Action.COMMENT and not comment:
        raise ValidationError({"comment": gettext("Write the comment first.")})
    locked = Disagreement.objects.select_for_update().get(pk=disagreement.pk)
    if locked.status != Disagreement.Status.OPEN and action != Action.COMMENT and not revise:
        raise ValidationError({"status": gettext("This disagreement was already %(status)s by %(who)s; "
                                                 "reload to see the decision.") % {
            "status": pgettext("disagreement status", locked.status), "who": locked.resolved_by or gettext("someone")}})
    disagreement.refresh_from_db()
    plan = _plan(disagreement, action=action, side=side, value=value, geometry=geometry)
    before = _snapshot(disagreement)
    decision = AdjudicationDecision.objects.create(
        dataset_id=disagreement.dataset_id, image_id=disagreement.image_id, disagreement=disagreement, actor=actor,
        action=action, side=plan.side or "", attribute=disagreement.attribute, value=plan.value,
        before=before, comment=comment,
    )
    effect = _Effect(lesion=plan.lesion, attribute=disagreement.attribute if plan.set_attribute else "",
                     value=plan.value)
    regions = list(disagreement.regions.filter(is_deleted=False).select_related("image__study__dataset__lexicon"))
    template_id = plan.template
    by_image: dict[int, list[Region]] = defaultdict(list)
    for region in regions:
        by_image[region.image_id].append(region)
    if not by_image and plan.lesion and geometry is not None:
        target = image or disagreement.image or disagreement.study.images.order_by("position", "id").first()
        if target is None or target.study_id != disagreement.study_id:
            raise ValidationError({"image": gettext("Choose an image of this study to outline the lesion on.")})
        by_image[target.pk] = []
    consensus_ids = []
    for image_id, image_regions in by_image.items():
        target = Image.objects.select_related("study__dataset__lexicon").get(pk=image_id)
        members = _lesion_members(target, [r.pk for r in image_regions]) or [
            r for r in image_regions if r.shape in AREA_SHAPES]
        effect.images.add(image_id)
        effect.members.update(m.pk for m in members)
        if plan.lesion is False:
            _not_a_lesion(image=target, members=members, actor=actor)
        elif plan.lesion is True:
            template = next((r for r in members + image_regions if r.pk == template_id), None)
            consensus = _consensus_write(
                image=target, members=members, actor=actor, template=template, decision_value=plan.value,
                attribute=disagreement.attribute, shape=shape, geometry=geometry, set_attribute=plan.set_attribute,
                copy_geometry=template is not None and not plan.set_attribute)
            effect.consensus = consensus
            consensus_ids.append(consensus.pk)
    if effect.consensus is not None:
        AdjudicationDecision.objects.filter(pk=decision.pk).update(consensus_region=effect.consensus)
        decision.consensus_region = effect.consensus
    if plan.resolves:
        status = Disagreement.Status.DISMISSED if action == Action.DISMISS else Disagreement.Status.RESOLVED
        resolution = {"action": plan.action, "requested": action, "side": plan.side or "",
                      "attribute": disagreement.attribute, "value": plan.value, "comment": comment,
                      "decision": decision.pk, "consensus_regions": consensus_ids,
                      "lesion": plan.lesion}
        Disagreement.objects.filter(pk=disagreement.pk).update(
            status=status, resolution=resolution, resolved_by=actor, resolved_at=timezone.now())
        _settle_others(disagreement=disagreement, decision=decision, effect=effect, actor=actor)
    images = set(effect.images) | ({disagreement.image_id} if disagreement.image_id else set())
    for image_id in images:
        image_adjudication_refresh(image_id=image_id, actor=actor)
    services.audit_record(actor=actor, dataset=disagreement.dataset, action="adjudication.decide", detail={
        "disagreement": disagreement.pk, "action": action, "decision": decision.pk})
    disagreement.refresh_from_db()
    return decision


def _settle_others(*, disagreement, decision: AdjudicationDecision, effect: _Effect, actor) -> list[int]:
    """Close the other open disagreements of the same lesion that the decision answers:

    - "not a lesion": everything about those regions;
    - an attribute value: the disagreements about the same attribute of the same lesion (report vs
      each reader, reader vs reader);
    - "there is a lesion": the reader-vs-reader "drawn / no matching region" ones of its regions;
    - the same question (kind and attribute) asked of another reader's outline of the lesion.
    A disagreement counts as "of the same lesion" when all its regions are among the lesion's members.
    """
    if not effect.members:
        return []
    ids = set(Disagreement.objects.filter(status=Disagreement.Status.OPEN, regions__in=effect.members)
              .exclude(pk=disagreement.pk).values_list("id", flat=True))
    # Locked by id: PostgreSQL refuses FOR UPDATE with the DISTINCT the join above would need.
    candidates = Disagreement.objects.select_for_update().filter(pk__in=ids, status=Disagreement.Status.OPEN).order_by("id")
    settled = []
    now = timezone.now()
    for other in candidates:
        region_ids = set(other.regions.values_list("id", flat=True))
        if not region_ids or not region_ids <= effect.members:
            continue
        if effect.lesion is False:
            reason = "not a lesion"
        elif other.kind == disagreement.kind and other.attribute == disagreement.attribute:
            reason = "same question about the same lesion"
        elif effect.attribute and other.attribute == effect.attribute and other.kind in ("report_vs_annotation",
                                                                                        "reader_vs_reader"):
            reason = f"{effect.attribute} decided"
        elif effect.lesion is True and other.kind == "reader_vs_reader" and other.attribute == "region":
            reason = "lesion confirmed"
        else:
            continue
        row = AdjudicationDecision.objects.create(
            dataset_id=other.dataset_id, image_id=other.image_id, disagreement=other, actor=actor,
            action=Action.SETTLED, attribute=other.attribute, value=effect.value if effect.attribute else None,
            before={"status": other.status, "values": other.values}, settled_by=decision,
            consensus_region=effect.consensus, comment=reason)
        Disagreement.objects.filter(pk=other.pk).update(
            status=Disagreement.Status.RESOLVED, resolved_by=actor, resolved_at=now,
            resolution={"action": "settled", "by_decision": decision.pk, "by_disagreement": disagreement.pk,
                        "reason": reason, "value": effect.value if effect.attribute else None, "decision": row.pk})
        settled.append(other.pk)
    return settled


# ---------------------------------------------------------------------------------------------- image status


def _open_for_image(image: Image) -> QuerySet:
    # A study-level disagreement (a reported lesion nobody drew, on no image yet) holds every image of
    # the study: the lesion may be on any of them.
    # Three indexed lookups joined by id: one OR across the regions join makes PostgreSQL scan.
    open_items = Disagreement.objects.filter(status=Disagreement.Status.OPEN)
    ids = open_items.filter(image=image).values("id").union(
        open_items.filter(regions__image=image).values("id"),
        open_items.filter(study_id=image.study_id, image__isnull=True).values("id"))
    return open_items.filter(pk__in=[row["id"] for row in ids])


def image_adjudication_refresh(*, image_id: int, actor=None) -> str:
    """Set the image's status from its review state and return it: *adjudicated* when none of its
    disagreements is open and it has a consensus region or a consensus that there is no lesion;
    back to *annotated* when a disagreement (re)opens. When the last disagreement closes, the lesions
    the readers agreed on get their consensus region too (copied from the first reader, audited as
    ``confirm``), so an adjudicated image carries every lesion, not only the disputed ones."""
    image = Image.objects.select_related("study__dataset__lexicon").filter(pk=image_id).first()
    if image is None:
        return "gone"
    if _open_for_image(image).exists():
        if image.status == Image.Status.ADJUDICATED:
            Image.objects.filter(pk=image.pk).update(status=Image.Status.ANNOTATED)
            return Image.Status.ANNOTATED
        return image.status
    decided = AdjudicationDecision.objects.filter(Q(image=image) | Q(disagreement__regions__image=image)).exclude(
        action=Action.COMMENT).exists()
    if actor is not None and decided:
        _agreed_lesions_promote(image=image, actor=actor)
    has_consensus = Region.objects.filter(image=image, source=Region.Source.CONSENSUS, is_deleted=False).exists()
    no_lesion = LesionConsensus.objects.filter(image=image, not_a_lesion=True).exists() or \
        AdjudicationDecision.objects.filter(image=image, action__in=[Action.NOT_A_LESION, Action.CONFIRM]).exists()
    if has_consensus or (decided and no_lesion):
        Image.objects.filter(pk=image.pk).update(status=Image.Status.ADJUDICATED)
        return Image.Status.ADJUDICATED
    return image.status


def studies_adjudication_refresh(*, changes: dict[int, list[int] | None]) -> None:
    """Follow a change of studies' disagreements (study id -> the ids of its images concerned, None for
    all of them): each read image concerned gets the status its review state gives (see
    ``image_adjudication_refresh``). One query finds them, however many studies changed."""
    studies = list(changes)
    for start in range(0, len(studies), 500):
        for image_id, study_id in (Image.objects.filter(
                study_id__in=studies[start:start + 500],
                status__in=[Image.Status.ANNOTATED, Image.Status.ADJUDICATED]).order_by("study_id", "position", "id")
                .values_list("id", "study_id")):
            if changes[study_id] is None or image_id in changes[study_id]:
                image_adjudication_refresh(image_id=image_id)


def _agreed_lesions_promote(*, image: Image, actor) -> int:
    """Give each agreed lesion without a consensus its consensus region (see above)."""
    linked = set(LesionConsensus.objects.filter(image=image).values_list("region_id", flat=True))
    made = 0
    pending = [r for r in Region.objects.filter(image=image, is_deleted=False, source=Region.Source.READER,
                                                shape__in=AREA_SHAPES).order_by("author_id", "id") if r.pk not in linked]
    while pending:
        members = _lesion_members(image, [pending[0].pk]) or [pending[0]]
        members = [m for m in members if m.pk not in linked] or [pending[0]]
        consensus = _consensus_write(image=image, members=members, actor=actor, template=members[0], decision_value=None,
                                     attribute="", shape=None, geometry=None, set_attribute=False)
        AdjudicationDecision.objects.create(dataset_id=image.study.dataset_id, image=image, actor=actor,
                                            action=Action.CONFIRM, consensus_region=consensus,
                                            comment="readers agreed on this lesion")
        made += 1
        linked.update(m.pk for m in members)
        pending = [r for r in pending if r.pk not in linked]
    return made


@transaction.atomic
def image_confirm(*, image: Image, actor, comment: str = "") -> str:
    """A reviewer confirms an image with no open disagreement: the readers' agreed lesions become the
    consensus (or, if nobody drew anything, the consensus is that there is no lesion)."""
    if _open_for_image(image).exists():
        raise ValidationError({"image": gettext("Resolve this image's open disagreements first.")})
    AdjudicationDecision.objects.create(dataset_id=image.study.dataset_id, image=image, actor=actor,
                                        action=Action.CONFIRM, comment=(comment or "").strip())
    services.audit_record(actor=actor, dataset=image.study.dataset, action="adjudication.confirm",
                          detail={"image": image.pk})
    return image_adjudication_refresh(image_id=image.pk, actor=actor)


# ---------------------------------------------------------------------------------------------- page data


def adjudication_regions(*, disagreement, image: Image) -> list[dict]:
    """Every live region of the image for the overlay: each reader, imports and the consensus, with
    the ones in this disagreement marked. Outlines are SVG-ready (ellipses keep their own element)."""
    from annotation.geometry import geometry_polygon_points

    involved = set(disagreement.regions.values_list("id", flat=True))
    rows = []
    for region in Region.objects.filter(image=image, is_deleted=False).select_related("author").order_by("source", "author_id", "id"):
        if region.source == Region.Source.CONSENSUS:
            layer = "consensus"
        elif region.source == Region.Source.IMPORT:
            layer = f"import:{region.source_author or 'import'}"
        else:
            layer = region.author.username if region.author else "reader"
        row = {"region": region, "layer": layer, "involved": region.pk in involved, "shape": region.shape}
        if region.shape == "ellipse":
            (cx, cy), (rx, ry) = region.geometry["center"], region.geometry["radii"]
            row.update(cx=cx, cy=cy, rx=rx, ry=ry, rotation=region.geometry.get("rotation", 0))
        elif region.shape in ("polygon", "rectangle"):
            row["points"] = " ".join(f"{x:g},{y:g}" for x, y in geometry_polygon_points(region.shape, region.geometry))
        elif region.shape == "line":
            row["points"] = " ".join(f"{x:g},{y:g}" for x, y in region.geometry["points"])
        else:
            row["cx"], row["cy"] = region.geometry["points"][0]
        rows.append(row)
    return rows


def image_decisions(*, image: Image) -> QuerySet[AdjudicationDecision]:
    return (AdjudicationDecision.objects.filter(Q(image=image) | Q(disagreement__regions__image=image))
            .select_related("actor", "disagreement").distinct().order_by("-created_at", "-id"))


def image_disagreements(*, image: Image) -> QuerySet:
    return (Disagreement.objects.filter(Q(image=image) | Q(regions__image=image)).distinct()
            .select_related("resolved_by").order_by("status", "kind", "id"))


# ---------------------------------------------------------------------------------------------- metrics

# The image-status and submissions-per-day aggregates scan every image and reading of the dataset
# (about a second at 364,000 images): they are cached, refreshed by the metrics task and recomputed by
# the database only when the cache is empty. Disagreement counts are cheap (indexed) and always live.
PROGRESS_CACHE_SECONDS = 15 * 60
PROGRESS_DAYS = 90


def _progress_key(dataset_id: int) -> str:
    return f"sonoalign:dashboard:progress:{dataset_id}"


def dashboard_cache_clear(*, dataset_id: int) -> None:
    cache.delete(_progress_key(dataset_id))


def dataset_progress_counts(*, dataset: Dataset) -> dict:
    """Images per status and readings submitted per day (last 90 days), counted by the database."""
    images = {row["status"]: row["n"] for row in
              Image.objects.filter(study__dataset=dataset).order_by().values("status").annotate(n=Count("id"))}
    since = timezone.now() - timedelta(days=PROGRESS_DAYS)
    submitted = (Assignment.objects.filter(image__study__dataset=dataset, status=Assignment.Status.SUBMITTED,
                                           submitted_at__gte=since)
                 .annotate(day=TruncDate("submitted_at")).order_by("day").values("day").annotate(n=Count("id"))
                 .values_list("day", "n"))
    return {"images": {status: images.get(status, 0) for status in Image.Status.values},
            "image_total": sum(images.values()), "submitted": [(str(d), n) for d, n in submitted],
            "as_of": timezone.now().isoformat()}


def dataset_progress_refresh(*, dataset: Dataset) -> dict:
    progress = dataset_progress_counts(dataset=dataset)
    cache.set(_progress_key(dataset.pk), progress, PROGRESS_CACHE_SECONDS)
    return progress


def dataset_review_counts(*, dataset: Dataset) -> dict:
    """Disagreements per kind and status, and closed per day: served by the disagreement indexes."""
    kinds: dict[str, dict[str, int]] = {kind: {"open": 0, "resolved": 0, "dismissed": 0} for kind in Disagreement.Kind.values}
    for row in Disagreement.objects.filter(dataset=dataset).order_by().values("kind", "status").annotate(n=Count("id")):
        kinds[row["kind"]][row["status"]] = row["n"]
    since = timezone.now() - timedelta(days=PROGRESS_DAYS)
    resolved = (Disagreement.objects.filter(dataset=dataset, resolved_at__gte=since)
                .annotate(day=TruncDate("resolved_at")).order_by("day").values("day").annotate(n=Count("id"))
                .values_list("day", "n"))
    return {"disagreements": kinds, "resolved": [(str(d), n) for d, n in resolved]}


def dataset_live_counts(*, dataset: Dataset, use_cache: bool = True) -> dict:
    progress = cache.get(_progress_key(dataset.pk)) if use_cache else None
    if progress is None:
        progress = dataset_progress_refresh(dataset=dataset)
    review = dataset_review_counts(dataset=dataset)
    return {"images": progress["images"], "image_total": progress["image_total"], "as_of": progress["as_of"],
            "disagreements": review["disagreements"],
            "progress": {"submitted": progress["submitted"], "resolved": review["resolved"]}}


def dashboard_data(*, dataset: Dataset, use_cache: bool = True) -> dict:
    """Everything the dashboard shows: the counts (see ``dataset_live_counts``) and the latest
    agreement snapshot (refreshed by the ``dataset_metrics_refresh`` task)."""
    live = dataset_live_counts(dataset=dataset, use_cache=use_cache)
    snapshot = DatasetMetrics.objects.filter(dataset=dataset).order_by("-computed_at").first()
    return {"live": live, "snapshot": snapshot, "metrics": snapshot.data if snapshot else None}


def dataset_metrics_compute(*, dataset: Dataset, batch: int = 5000) -> dict:
    """Agreement metrics of a dataset from its regions, streamed image by image (ordered by image id,
    so memory stays flat at a million regions). See ``review.metrics`` for the statistics."""
    attributes = [a["code"] for a in dataset.lexicon.content.get("attributes", [])]
    readings: list[metrics.LesionReading] = []
    ious: list[float] = []
    consensus_rows: list[tuple] = []
    # A join on the reading's status, not ``assignment__in=<subquery>``: PostgreSQL runs that IN as a
    # scan of the whole subquery per region (hours at a million regions).
    regions = (Region.objects.filter(image__study__dataset=dataset, is_deleted=False, shape__in=AREA_SHAPES)
               .filter(Q(source=Region.Source.CONSENSUS)
                       | Q(source=Region.Source.READER, assignment__status=Assignment.Status.SUBMITTED))
               .order_by("image_id", "id")
               .values_list("id", "image_id", "author__username", "source", "shape", "geometry", "attributes"))
    images_compared = 0

    def flush(rows: list[tuple]) -> None:
        nonlocal images_compared
        by_reader: dict[str, list[tuple]] = defaultdict(list)
        consensus = []
        for row in rows:
            (consensus if row[3] == Region.Source.CONSENSUS else by_reader[row[2]]).append(row)
        readers = sorted(by_reader)
        if len(readers) >= 2:
            images_compared += 1
            # Units: regions of the first reader, joined by IoU with each other reader's.
            base = readers[0]
            unit_of = {row[0]: f"{row[1]}:{row[0]}" for row in by_reader[base]}
            for other in readers[1:]:
                for a, b, iou in matching.regions_pair([(r[4], r[5]) for r in by_reader[base]],
                                                      [(r[4], r[5]) for r in by_reader[other]]):
                    ious.append(iou)
                    unit_of[by_reader[other][b][0]] = unit_of[by_reader[base][a][0]]
            for reader in readers:
                for row in by_reader[reader]:
                    unit = unit_of.get(row[0], f"{row[1]}:{row[0]}")
                    readings.append(metrics.LesionReading(unit=unit, reader=reader, attributes=row[6] or {}))
        if consensus:
            for reader in readers:
                for a, b, _ in matching.regions_pair([(r[4], r[5]) for r in by_reader[reader]],
                                                    [(r[4], r[5]) for r in consensus]):
                    mine, truth = by_reader[reader][a][6] or {}, consensus[b][6] or {}
                    for name in set(mine) | set(truth):
                        consensus_rows.append((reader, name, mine.get(name), truth.get(name)))

    current, rows = None, []
    for row in regions.iterator(chunk_size=batch):
        if row[1] != current and rows:
            flush(rows)
            rows = []
        current = row[1]
        rows.append(row)
    if rows:
        flush(rows)
    report_pairs = list(_report_annotation_pairs(dataset=dataset))
    agreement = metrics.reader_agreement(readings, attributes)
    return {
        "attributes": [{"code": a["code"], "label": a["label"]} for a in dataset.lexicon.content.get("attributes", [])],
        "images_compared": images_compared,
        "units": len({r.unit for r in readings}),
        "reader_agreement": agreement,
        "iou": metrics.distribution(ious),
        "dice": metrics.distribution([metrics.dice_from_iou(v) for v in ious]),
        "report_vs_annotation": metrics.report_annotation_agreement(report_pairs),
        "consensus_agreement": {str(k): v for k, v in metrics.consensus_agreement(consensus_rows).items()},
    }


def _report_annotation_pairs(*, dataset: Dataset):
    """(report's stated values, lesion's tagged attributes) for each automatic link of a finding to a
    reader's region: the same statements the alignment job compares."""
    rows = (Alignment.objects.filter(image__study__dataset=dataset, linked=True, finding__isnull=False,
                                     region__isnull=False, region__source=Region.Source.READER)
            .values_list("finding_id", "region_id", "finding__data", "region__attributes").distinct()
            .order_by("finding_id", "region_id"))
    system = dataset.lexicon.system
    for _finding, _region, data, attributes in rows.iterator(chunk_size=5000):
        stated = matching.stated_values((data or {}).get("attributes", []), lexicon=system)
        yield {name: set(values) for name, values in stated.asserted.items()}, attributes or {}


def dataset_metrics_refresh(*, dataset_id: int) -> DatasetMetrics | None:
    """Compute and store a new snapshot (a task calls this; re-running only adds a newer snapshot, and
    older ones beyond the last ten are dropped)."""
    dataset = Dataset.objects.select_related("lexicon").filter(pk=dataset_id).first()
    if dataset is None:
        return None
    started = time.perf_counter()
    dataset_progress_refresh(dataset=dataset)
    # In a transaction the region cursor streams (outside one, Django declares it WITH HOLD and
    # PostgreSQL materialises all million rows before the first comes back).
    with transaction.atomic():
        data = dataset_metrics_compute(dataset=dataset)
    snapshot = DatasetMetrics.objects.create(dataset=dataset, data=data, duration_s=time.perf_counter() - started)
    keep = DatasetMetrics.objects.filter(dataset=dataset).order_by("-computed_at").values_list("id", flat=True)[:10]
    DatasetMetrics.objects.filter(dataset=dataset).exclude(pk__in=list(keep)).delete()
    return snapshot


def dashboard_csv_rows(*, dataset: Dataset, data: dict) -> list[list]:
    """The dashboard's tables as CSV rows: one section per table, named in the first column."""
    rows: list[list] = [["section", "key", "measure", "value"]]
    live = data["live"]
    for status, n in live["images"].items():
        rows.append(["images", status, "count", n])
    for kind, statuses in live["disagreements"].items():
        for status, n in statuses.items():
            rows.append(["disagreements", kind, status, n])
    for series, points in live["progress"].items():
        for day, n in points:
            rows.append([f"progress_{series}", day, "count", n])
    snapshot = data["metrics"] or {}
    for attribute, values in (snapshot.get("reader_agreement") or {}).items():
        for measure, value in values.items():
            rows.append(["reader_agreement", attribute, measure, value])
    for name in ("iou", "dice"):
        dist = snapshot.get(name) or {}
        for measure in ("n", "mean", "median", "p10", "p90"):
            if measure in dist:
                rows.append([name, "all", measure, dist[measure]])
    for attribute, values in (snapshot.get("report_vs_annotation") or {}).items():
        for measure, value in values.items():
            rows.append(["report_vs_annotation", attribute, measure, value])
    for annotator, values in (snapshot.get("consensus_agreement") or {}).items():
        for measure, value in values.items():
            rows.append(["consensus_agreement", annotator, measure, value])
    return rows
