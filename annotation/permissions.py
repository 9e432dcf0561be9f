"""Who may do what: the one place that decides. Pages, the JSON API and templates ask these
predicates; they never re-decide.

Roles are per dataset (``Membership``); Django staff hold every role everywhere. A dataset admin may
do everything a reviewer may. Blind double reading: an annotator reaches only the images assigned to
them, sees their own regions and imported pre-annotations, and another reader's regions (and the
consensus) only once every reader of that image has submitted.

Predicates take the caller's roles in the dataset (``dataset_roles``) so a view that asks several
questions reads the memberships once. Fetching with a check (outsider → 404, role that may not → 403)
is ``annotation.selectors.*_get_for_user``, built on these.
"""

from __future__ import annotations

from collections.abc import Iterable

from .models import Assignment, Membership, Region

ANNOTATE_ROLES = frozenset({Membership.Role.ANNOTATOR.value})
REVIEW_ROLES = frozenset({Membership.Role.REVIEWER.value, Membership.Role.ADMIN.value})
ADMIN_ROLES = frozenset({Membership.Role.ADMIN.value})
ALL_ROLES = frozenset(Membership.Role.values)


def dataset_roles(*, user, dataset_id: int) -> frozenset[str]:
    """The roles ``user`` holds in a dataset; staff hold every role everywhere; nobody inactive or
    anonymous holds any."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    if user.is_staff:
        return ALL_ROLES
    return frozenset(
        Membership.objects.filter(user=user, dataset_id=dataset_id).values_list("role", flat=True)
    )


def roles_allow(held: Iterable[str], wanted: Iterable[str] | None) -> bool:
    """Whether ``held`` roles include one of ``wanted`` (``None``: any membership will do). Asking for
    the reviewer role is answered yes for admins too."""
    held = frozenset(held)
    if wanted is None:
        return bool(held)
    wanted = frozenset(wanted)
    if wanted & REVIEW_ROLES:
        wanted |= ADMIN_ROLES
    return bool(held & wanted)


def may_review(held: Iterable[str]) -> bool:
    """Review queue, adjudication, every reader's work, region history, manual alignment."""
    return bool(frozenset(held) & REVIEW_ROLES)


def may_administer(held: Iterable[str]) -> bool:
    """Members, work, imports, exports, alignment runs."""
    return bool(frozenset(held) & ADMIN_ROLES)


def may_read_image(*, user, image, held: Iterable[str]) -> bool:
    """Reviewers and admins read every image of their dataset; an annotator only those assigned to them."""
    if may_review(held):
        return True
    return bool(frozenset(held)) and Assignment.objects.filter(image=image, annotator=user).exists()


def may_read_study(*, user, study, held: Iterable[str]) -> bool:
    """A study's report and alignment: as its images — an annotator needs one of them assigned."""
    if may_review(held):
        return True
    return bool(frozenset(held)) and Assignment.objects.filter(image__study=study, annotator=user).exists()


def may_see_others_on_image(*, user, image, held: Iterable[str]) -> bool:
    """Whether ``user`` may see every reader's regions on ``image`` (not only their own and imports):
    reviewers and admins always; an annotator only as a reader of the image, and under blind reading
    only once all its readers have submitted (a reader added later waits until they too have
    submitted)."""
    if may_review(held):
        return True
    readers = list(Assignment.objects.filter(image=image).values_list("annotator_id", "status"))
    if not any(reader == user.pk for reader, _ in readers):
        return False
    if not blind_reading(image.study.dataset):
        return True
    return all(status == Assignment.Status.SUBMITTED for _, status in readers)


def blind_reading(dataset) -> bool:
    """Whether the dataset reads blind (the default): a dataset admin may turn it off, for a team that
    reads together; readers of an image then see each other's regions as they are drawn."""
    return bool((dataset.settings or {}).get("blind_reading", True))


def is_own_reading(*, user, region: Region) -> bool:
    return region.author_id == user.pk and region.source == Region.Source.READER


def may_edit_region(*, user, region: Region, held: Iterable[str]) -> bool:
    """Its author while the reading is open; an admin of the dataset at any time (consensus regions
    are written by the review service, not through this door)."""
    if may_administer(held):
        return True
    if region.author_id != user.pk:
        return False
    return region.assignment_id is None or region.assignment.status != Assignment.Status.SUBMITTED


def may_draw_on_image(*, user, image, held: Iterable[str], assignment: Assignment | None) -> bool:
    """Its reader while the reading is open; reviewers and admins of the dataset."""
    if assignment is not None:
        return assignment.status != Assignment.Status.SUBMITTED
    return may_review(held)


def may_read_audit_trail(*, user) -> bool:
    """The whole audit trail (logins of everyone, every dataset's changes) is for staff; a dataset's
    admins read their dataset's events on its administration pages."""
    return bool(user.is_authenticated and user.is_active and user.is_staff)
