"""Permission-checked reads. One ``*_get_for_user`` per object type, used by pages and API alike:
an outsider gets 404 (the object's existence is not revealed), a member without the needed role 403."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from .models import Assignment, Dataset, Image, Membership, Region, Study

ALL_ROLES = frozenset(Membership.Role.values)


def dataset_roles(*, user, dataset_id: int) -> frozenset[str]:
    """The roles ``user`` holds in a dataset; staff hold every role everywhere."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    if user.is_staff:
        return ALL_ROLES
    return frozenset(
        Membership.objects.filter(user=user, dataset_id=dataset_id).values_list("role", flat=True)
    )


def _check_roles(*, user, dataset_id: int, roles: Iterable[str] | None) -> frozenset[str]:
    held = dataset_roles(user=user, dataset_id=dataset_id)
    if not held:
        raise Http404("No such object.")
    if roles is not None and not held & set(roles):
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
    study = Study.objects.select_related("dataset__lexicon").filter(pk=study_id).first()
    if study is None:
        raise Http404("No such study.")
    _check_roles(user=user, dataset_id=study.dataset_id, roles=roles)
    return study


def image_get_for_user(*, user, image_id: int, roles: Iterable[str] | None = None) -> Image:
    """The image, if ``user`` may see it. An annotator may open only the images assigned to them."""
    image = Image.objects.select_related("study__dataset__lexicon").filter(pk=image_id).first()
    if image is None:
        raise Http404("No such image.")
    held = _check_roles(user=user, dataset_id=image.study.dataset_id, roles=roles)
    if held == {"annotator"} and not Assignment.objects.filter(image=image, annotator=user).exists():
        raise Http404("No such image.")
    return image


def region_get_for_user(*, user, region_id: int, roles: Iterable[str] | None = None) -> Region:
    region = (
        Region.objects.select_related("image__study__dataset__lexicon", "assignment")
        .filter(pk=region_id, is_deleted=False)
        .first()
    )
    if region is None:
        raise Http404("No such region.")
    held = _check_roles(user=user, dataset_id=region.image.study.dataset_id, roles=roles)
    if held == {"annotator"} and region not in regions_visible(user=user, image=region.image):
        raise Http404("No such region.")
    return region


def image_readers_all_submitted(*, image: Image) -> bool:
    statuses = list(image.assignments.values_list("status", flat=True))
    return bool(statuses) and all(status == Assignment.Status.SUBMITTED for status in statuses)


def regions_visible(*, user, image: Image) -> QuerySet[Region]:
    """Live regions of ``image`` that ``user`` may see.

    Blind double reading: an annotator sees their own regions and imported pre-annotations; other
    readers' regions and the consensus only once every reader of the image has submitted. Reviewers
    and admins see everything.
    """
    live = Region.objects.filter(image=image, is_deleted=False).select_related("author")
    held = dataset_roles(user=user, dataset_id=image.study.dataset_id)
    if held & {"reviewer", "admin"}:
        return live
    if image_readers_all_submitted(image=image):
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
