"""Permission-checked reads. One ``*_get_for_user`` per object type, used by pages and API alike:
an outsider gets 404 (the object's existence is not revealed), a member without the needed role 403."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from . import permissions
from .models import Assignment, Dataset, Image, Region, RegionRevision, Report, Study
from .permissions import dataset_roles


def _check_roles(*, user, dataset_id: int, roles: Iterable[str] | None) -> frozenset[str]:
    held = dataset_roles(user=user, dataset_id=dataset_id)
    if not held:
        raise Http404("No such object.")
    if not permissions.roles_allow(held, roles):
        raise PermissionDenied("Your role in this dataset does not allow this.")
    return held


def datasets_for_user(*, user) -> QuerySet[Dataset]:
    qs = Dataset.objects.select_related("lexicon")
    if user.is_staff:
        return qs
    return qs.filter(memberships__user=user).distinct()


def dataset_get_for_user(*, user, dataset_id: int, roles: Iterable[str] | None = None) -> Dataset:
    _check_roles(user=user, dataset_id=dataset_id, roles=roles)
    try:
        return Dataset.objects.select_related("lexicon").get(pk=dataset_id)
    except Dataset.DoesNotExist as error:
        raise Http404("No such dataset.") from error


def study_get_for_user(*, user, study_id: int, roles: Iterable[str] | None = None) -> Study:
    """The study, if ``user`` may read it: an annotator only a study with an image assigned to them."""
    study = Study.objects.select_related("dataset__lexicon").filter(pk=study_id).first()
    if study is None:
        raise Http404("No such study.")
    held = _check_roles(user=user, dataset_id=study.dataset_id, roles=roles)
    if not permissions.may_read_study(user=user, study=study, held=held):
        raise Http404("No such study.")
    return study


def image_get_for_user(*, user, image_id: int, roles: Iterable[str] | None = None) -> Image:
    """The image, if ``user`` may see it. An annotator may open only the images assigned to them."""
    image = Image.objects.select_related("study__dataset__lexicon").filter(pk=image_id).first()
    if image is None:
        raise Http404("No such image.")
    held = _check_roles(user=user, dataset_id=image.study.dataset_id, roles=roles)
    if not permissions.may_read_image(user=user, image=image, held=held):
        raise Http404("No such image.")
    return image


def region_get_for_user(*, user, region_id: int, roles: Iterable[str] | None = None) -> Region:
    """A live region ``user`` may see; anything else, including another reader's region under blind
    reading, is 404 — the answer never tells whether the id exists."""
    region = (
        Region.objects.select_related("image__study__dataset__lexicon", "assignment")
        .filter(pk=region_id, is_deleted=False)
        .first()
    )
    if region is None:
        raise Http404("No such region.")
    held = dataset_roles(user=user, dataset_id=region.image.study.dataset_id)
    if not held or not _region_visible(user=user, region=region, held=held):
        raise Http404("No such region.")
    if not permissions.roles_allow(held, roles):
        raise PermissionDenied("Your role in this dataset does not allow this.")
    return region


def _region_visible(*, user, region: Region, held: frozenset[str]) -> bool:
    # One's own reading is always visible; only other regions need the blind-reading check (which
    # costs queries on the hot path of every save).
    if permissions.may_review(held) or permissions.is_own_reading(user=user, region=region):
        return True
    if not permissions.may_read_image(user=user, image=region.image, held=held):
        return False
    return region.source == Region.Source.IMPORT or permissions.may_see_others_on_image(
        user=user, image=region.image, held=held)


def regions_visible(*, user, image: Image) -> QuerySet[Region]:
    """Live regions of ``image`` that ``user`` may see (``permissions``: blind double reading)."""
    live = Region.objects.filter(image=image, is_deleted=False).select_related("author", "assignment")
    held = dataset_roles(user=user, dataset_id=image.study.dataset_id)
    if not permissions.may_read_image(user=user, image=image, held=held):
        return live.none()
    if permissions.may_see_others_on_image(user=user, image=image, held=held):
        return live
    return live.filter(Q(author=user, source=Region.Source.READER) | Q(source=Region.Source.IMPORT))


def queue_counts(*, user, dataset_id: int | None = None) -> dict[str, int]:
    qs = Assignment.objects.filter(annotator=user)
    if dataset_id is not None:
        qs = qs.filter(image__study__dataset_id=dataset_id)
    counts = {row["status"]: row["n"] for row in qs.values("status").annotate(n=Count("id"))}
    return {status: counts.get(status, 0) for status in Assignment.Status.values}


def assignment_next(*, user, dataset_id: int | None = None) -> Assignment | None:
    """The assignment to open next: one already in progress first, then the oldest assigned."""
    qs = Assignment.objects.filter(annotator=user).exclude(status=Assignment.Status.SUBMITTED)
    if dataset_id is not None:
        qs = qs.filter(image__study__dataset_id=dataset_id)
    in_progress = qs.filter(status=Assignment.Status.IN_PROGRESS).order_by("id").first()
    return in_progress or qs.filter(status=Assignment.Status.ASSIGNED).order_by("id").first()


# ---------------------------------------------------------------------------------------------- workspace
# Reads behind the annotator's queue and annotate page (and their API twins).

QUEUE_STATUSES = ("assigned", "in_progress", "submitted")


def assignments_for_user(*, user, status: str | None = None, dataset_id: int | None = None) -> QuerySet[Assignment]:
    """The caller's own assignments, oldest first (the order ``assignment_next`` hands them out).
    Ordered by id so the ``assignment_queue`` index (annotator, status, id) serves the page."""
    qs = Assignment.objects.filter(annotator=user)
    if status in QUEUE_STATUSES:
        qs = qs.filter(status=status)
    if dataset_id is not None:
        qs = qs.filter(image__study__dataset_id=dataset_id)
    return qs.select_related("image__study__dataset").order_by("id")


def assignment_get_for_user(*, user, assignment_id: int) -> Assignment:
    """An assignment its annotator may act on; reviewers and admins of the dataset may look at it.
    Anyone else gets 404, like every other object they cannot see."""
    assignment = (
        Assignment.objects.select_related("image__study__dataset__lexicon", "annotator")
        .filter(pk=assignment_id).first()
    )
    if assignment is None:
        raise Http404("No such assignment.")
    if assignment.annotator_id == user.pk:
        return assignment
    _check_roles(user=user, dataset_id=assignment.image.study.dataset_id, roles=permissions.REVIEW_ROLES)
    return assignment


def assignment_for_image(*, user, image: Image) -> Assignment | None:
    """The caller's reading of ``image``, if it is assigned to them."""
    return Assignment.objects.filter(image=image, annotator=user).first()


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])|(?<=[。！？；;])\s*|\n+")


def _sentences_split(text: str) -> list[dict]:
    """A plain split for reports the pipeline has not parsed yet, so the reader sees the report in
    sentences from the first minute; the pipeline's own sentences replace it once they exist."""
    sentences, start = [], 0
    for match in [*_SENTENCE_END.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[start:end]
        if piece.strip():
            offset = start + len(piece) - len(piece.lstrip())
            sentences.append({"index": len(sentences), "start": offset, "end": offset + len(piece.strip()),
                              "text": piece.strip(), "section": "", "findings": 0})
        start = match.end() if match else len(text)
    return sentences


def report_sentences_plain(*, report: Report | None) -> list[dict]:
    """The report's sentences by a plain split, for the first render of a page (the alignment layer's
    report panel replaces them with the pipeline's sentences and findings once it has parsed them)."""
    return _sentences_split(report.text) if report is not None else []


def region_history(*, region: Region) -> QuerySet[RegionRevision]:
    """Every revision of a region, oldest first, with who made it. Callers check the viewer's role
    (reviewers and admins) through ``region_get_for_user(..., roles=...)`` first."""
    return region.revisions.select_related("actor").order_by("version")


def regions_missing_attributes(*, regions: Iterable[Region], lexicon) -> dict[int, list[str]]:
    """For each area region, the required lexicon attributes it still lacks — what submit will refuse.
    Lines (calipers) and points carry no lesion description, as in ``assignment_submit``."""
    from .lexicons import AttributeValidationError, attributes_validate

    missing: dict[int, list[str]] = {}
    for region in regions:
        if region.shape in ("line", "point"):
            continue
        try:
            attributes_validate(lexicon, region.attributes, require_complete=True)
        except AttributeValidationError as error:
            missing[region.pk] = sorted(error.errors)
    return missing


def user_language(*, user) -> str:
    """The interface language ``user`` chose ('' when they never chose: the browser's language rules)."""
    if not user.is_authenticated:
        return ""
    from .models import UserPreference

    return UserPreference.objects.filter(user=user).values_list("language", flat=True).first() or ""



# ---------------------------------------------------------------------------------------------- dataset administration


def user_may_create_datasets(*, user) -> bool:
    """Staff, and anyone who already administers a dataset, may open a new one."""
    from .models import Membership

    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_staff or Membership.objects.filter(user=user, role=Membership.Role.ADMIN).exists()


def dataset_members(*, dataset: Dataset) -> list[dict]:
    """Every member of ``dataset`` once, with the roles they hold (in the order annotator, reviewer,
    admin), sorted by username."""
    from .models import Membership

    order = {role: position for position, role in enumerate(Membership.Role.values)}
    members: dict[int, dict] = {}
    for membership in Membership.objects.filter(dataset=dataset).select_related("user").order_by("user__username"):
        row = members.setdefault(membership.user_id, {"user": membership.user, "roles": []})
        row["roles"].append(membership.role)
    for row in members.values():
        row["roles"].sort(key=order.__getitem__)
    return list(members.values())


def dataset_member_get(*, dataset: Dataset, user_id: int):
    """A member of ``dataset`` by user id; 404 for anyone else."""
    from .models import Membership

    membership = Membership.objects.select_related("user").filter(dataset=dataset, user_id=user_id).first()
    if membership is None:
        raise Http404("No such member.")
    return membership.user


def dataset_annotators(*, dataset: Dataset) -> list:
    from django.contrib.auth import get_user_model

    from .models import Membership

    return list(get_user_model().objects.filter(
        memberships__dataset=dataset, memberships__role=Membership.Role.ANNOTATOR).order_by("username"))


def annotator_progress(*, dataset: Dataset, days: int = 14, today=None) -> dict:
    """Each annotator's readings in ``dataset``: to do, in progress and submitted counts, and readings
    submitted per day over the last ``days`` days (the dataset's time zone is the site's). Returns
    ``{"days": [date, ...], "rows": [{"user", "assigned", "in_progress", "submitted", "per_day": [n, ...],
    "unstarted_images": n}]}``, annotators without any reading included."""
    from datetime import timedelta

    from django.db.models.functions import TruncDate
    from django.utils import timezone

    today = today or timezone.localdate()
    window = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    rows = {user.pk: {"user": user, **{status: 0 for status in Assignment.Status.values},
                      "per_day": [0] * days} for user in dataset_annotators(dataset=dataset)}
    readings = Assignment.objects.filter(image__study__dataset=dataset)
    for row in readings.values("annotator_id", "status").annotate(n=Count("id")):
        if row["annotator_id"] in rows:
            rows[row["annotator_id"]][row["status"]] = row["n"]
    start = timezone.make_aware(timezone.datetime.combine(window[0], timezone.datetime.min.time()))
    position = {day: index for index, day in enumerate(window)}
    for row in (readings.filter(status=Assignment.Status.SUBMITTED, submitted_at__gte=start)
                .annotate(day=TruncDate("submitted_at")).values("annotator_id", "day").annotate(n=Count("id"))):
        if row["annotator_id"] in rows and row["day"] in position:
            rows[row["annotator_id"]]["per_day"][position[row["day"]]] = row["n"]
    for row in rows.values():
        row["per_day_max"] = max(row["per_day"]) or 1
    return {"days": window, "rows": list(rows.values())}


def images_with_reference_problems(*, dataset: Dataset, limit: int = 10) -> tuple[int, list[Image]]:
    """How many of the dataset's referenced images could not be served when last read (their file
    changed or vanished), and the most recent ``limit`` of them."""
    problems = Image.objects.filter(study__dataset=dataset).exclude(reference_problem="")
    return problems.count(), list(problems.select_related("study").order_by("-reference_problem_at")[:limit])


def audit_events_for_dataset(*, dataset: Dataset, limit: int = 20):
    """The latest audit events of ``dataset``, newest first."""
    from .models import AuditEvent

    return AuditEvent.objects.filter(dataset=dataset).select_related("actor").order_by("-at", "-id")[:limit]


AUDIT_TRAIL_LIMIT = 200


def audit_trail_for_user(*, user, action: str = "", limit: int = AUDIT_TRAIL_LIMIT):
    """The latest audit events of every dataset and of none (logins, failed logins), newest first,
    for staff (anyone else: ``PermissionDenied``); ``action`` keeps those whose action starts with it
    (``auth.``, ``export.``, ``adjudication.``)."""
    from .models import AuditEvent

    if not permissions.may_read_audit_trail(user=user):
        raise PermissionDenied("Only staff can read the audit trail.")
    qs = AuditEvent.objects.select_related("actor", "dataset").order_by("-at", "-id")
    if action:
        qs = qs.filter(action__startswith=action)
    return qs[:limit]
