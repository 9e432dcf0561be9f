"""Writes to the annotation data. Keyword-only functions named ``<entity>_<action>``; views, API,
commands and tasks call these and nothing else to change annotation rows.

Validation lives here (and in database constraints), so the API, the pages and the importer cannot
disagree about what a valid region is.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone
from django.utils.translation import gettext as _

from .geometry import GeometryError, geometry_measures, geometry_validate
from .lexicons import AttributeValidationError, attributes_validate, lexicon_load_with_hash
from .messages import Message
from .models import (
    Assignment,
    AuditEvent,
    Dataset,
    Image,
    Lexicon,
    Membership,
    Region,
    RegionRevision,
    Report,
    Study,
    UserPreference,
)
from .signals import reading_submitted, report_changed, send_on_commit

REGION_FIELDS = ("shape", "geometry", "label", "lesion_key", "attributes")
LABEL_MAX = 64
LESION_KEY_MAX = 32


class ReadingClosed(PermissionDenied):
    """The region belongs to a submitted reading: a submitted reading is closed to its reader."""


class RegionConflict(Exception):
    """A save was based on a stale version. ``current`` is the region as it now is; ``changed`` names
    the fields that differ from what the client last saw (when it said)."""

    def __init__(self, current: Region, changed: list[str]):
        self.current = current
        self.changed = changed
        super().__init__(f"region {current.pk} is at version {current.version}")


# ---------------------------------------------------------------------------------------------- lexicons


def lexicon_sync(*, system: str) -> Lexicon:
    """Store the current file of ``system`` as a Lexicon row (one row per system and version). A file
    whose content changed without a version bump is refused: pinned datasets would be reinterpreted."""
    content, digest = lexicon_load_with_hash(system)
    lexicon, created = Lexicon.objects.get_or_create(
        system=system,
        version=content["version"],
        defaults={"name": content["name"], "content": content, "sha256": digest},
    )
    if not created and lexicon.sha256 != digest and lexicon.content != content:
        raise ValidationError(
            f"lexicon {system} {content['version']} changed on disk without a version bump; "
            "bump 'version' in the file so existing datasets keep the version they pinned"
        )
    return lexicon


# ---------------------------------------------------------------------------------------------- datasets


def dataset_create(
    *, name: str, lexicon_system: str = "udaf", annotators_per_image: int = 2, description: str = "",
    created_by=None, settings: Mapping | None = None,
) -> Dataset:
    """Create a dataset pinned to the current version of ``lexicon_system``."""
    if not 1 <= int(annotators_per_image) <= 3:
        raise ValidationError({"annotators_per_image": "must be 1, 2 or 3"})
    if Dataset.objects.filter(name=name).exists():
        raise ValidationError({"name": f"a dataset named '{name}' already exists"})
    lexicon = lexicon_sync(system=lexicon_system)
    dataset = Dataset.objects.create(
        name=name, lexicon=lexicon, annotators_per_image=annotators_per_image, description=description,
        created_by=created_by, settings=dict(settings or {}),
    )
    if created_by is not None:
        membership_add(dataset=dataset, user=created_by, role=Membership.Role.ADMIN)
    return dataset


def membership_add(*, dataset: Dataset, user, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"unknown role '{role}' (use annotator, reviewer or admin)"})
    membership, _ = Membership.objects.get_or_create(dataset=dataset, user=user, role=role)
    return membership


# ---------------------------------------------------------------------------------------------- reports


def report_validate(*, text: Any, language: Any) -> None:
    """What ``report_set`` accepts; raises ``ValidationError`` otherwise (also for writers that insert
    new reports in bulk)."""
    if language not in Report.Language.values:
        raise ValidationError({"language": f"unknown language '{language}' (use en or zh)"})
    if not isinstance(text, str) or not text.strip():
        raise ValidationError({"text": "the report text is empty"})


@transaction.atomic
def report_set(*, study: Study, text: str, language: str = "en") -> Report:
    """Create or replace the study's report. The version goes up only when the text or language
    changes, so re-importing the same report changes nothing."""
    report_validate(text=text, language=language)
    report = Report.objects.select_for_update().filter(study=study).first()
    if report is None:
        report = Report.objects.create(study=study, text=text, language=language)
    elif report.text != text or report.language != language:
        report.text, report.language, report.version = text, language, report.version + 1
        report.save(update_fields=["text", "language", "version", "updated_at"])
    else:
        return report
    send_on_commit(report_changed, Report, study_id=study.pk)
    return report


# ---------------------------------------------------------------------------------------------- regions


def message_text(message: Any) -> str:
    """``message`` in the active language when it is a ``messages.Message`` (its template translated,
    and its params that are messages too), else as it is."""
    if not isinstance(message, Message):
        return str(message)
    return _(message.template) % {name: message_text(value) for name, value in message.params.items()}


def _validated(*, image: Image, lexicon, shape: str, geometry: Any, attributes: Any, label: Any,
               lesion_key: Any) -> dict:
    errors: dict[str, Any] = {}
    clean: dict[str, Any] = {"shape": shape}
    try:
        clean["geometry"] = geometry_validate(shape, geometry, width=image.width, height=image.height,
                                              max_points=django_settings.REGION_MAX_VERTICES)
    except GeometryError as error:
        errors["shape" if shape not in ("polygon", "rectangle", "ellipse", "line", "point") else "geometry"] = \
            message_text(error.message)
    try:
        clean["attributes"] = attributes_validate(lexicon, attributes)
    except AttributeValidationError as error:
        errors["attributes"] = [f"{name}: {message_text(message)}" for name, message in error.errors.items()]
    if not isinstance(label, str) or len(label) > LABEL_MAX:
        errors["label"] = _("must be text of at most %(max)s characters") % {"max": LABEL_MAX}
    else:
        clean["label"] = label.strip()
    if not isinstance(lesion_key, str) or len(lesion_key) > LESION_KEY_MAX:
        errors["lesion_key"] = _("must be text of at most %(max)s characters") % {"max": LESION_KEY_MAX}
    else:
        clean["lesion_key"] = lesion_key.strip()
    if errors:
        raise ValidationError(errors)
    return clean


def _measure(region: Region, image: Image) -> None:
    measures = geometry_measures(
        region.shape, region.geometry,
        spacing_x_mm=image.pixel_spacing_x_mm, spacing_y_mm=image.pixel_spacing_y_mm,
    )
    region.bbox = measures.bbox
    region.area_px = measures.area_px
    region.area_mm2 = measures.area_mm2
    region.long_axis_mm = measures.long_axis_mm
    region.short_axis_mm = measures.short_axis_mm


def _revision(region: Region, *, action: str, actor, changed: Sequence[str]) -> RegionRevision:
    return RegionRevision.objects.create(
        region=region, version=region.version, action=action, actor=actor, shape=region.shape,
        geometry=region.geometry, label=region.label, lesion_key=region.lesion_key,
        attributes=region.attributes, changed=list(changed),
    )


def region_build(
    *, image: Image, lexicon, author, shape: str, geometry: Any, attributes: Any = None, label: str = "lesion",
    lesion_key: str = "", assignment: Assignment | None = None, source: str = Region.Source.READER,
    source_author: str = "", source_id: str = "",
) -> Region:
    """A new region validated and measured as ``region_create`` does, not saved: for writers that insert
    many at once (``regions_insert``). ``image`` may itself be unsaved (its size and spacing are read).
    Raises ``ValidationError`` with a message per field. Checks no reading lock: the caller owns that."""
    clean = _validated(image=image, lexicon=lexicon, shape=shape, geometry=geometry,
                       attributes=attributes or {}, label=label, lesion_key=lesion_key)
    region = Region(image=image, author=author, assignment=assignment, source=source,
                    source_author=source_author, source_id=str(source_id or "")[:128], **clean)
    _measure(region, image)
    return region


def regions_insert(*, regions: Sequence[Region], batch_size: int = 500) -> list[Region]:
    """Insert regions made by ``region_build`` (their images saved) with their revision 1, in two bulk
    inserts. Precondition: inside the caller's transaction."""
    created = Region.objects.bulk_create(regions, batch_size=batch_size)
    RegionRevision.objects.bulk_create([
        RegionRevision(region=region, version=region.version, action=RegionRevision.Action.CREATE,
                       actor=region.author, shape=region.shape, geometry=region.geometry, label=region.label,
                       lesion_key=region.lesion_key, attributes=region.attributes, changed=list(REGION_FIELDS))
        for region in created], batch_size=batch_size)
    return created


@transaction.atomic
def region_create(
    *, image: Image, author, shape: str, geometry: Any, attributes: Any = None, label: str = "lesion",
    lesion_key: str = "", assignment: Assignment | None = None, source: str = Region.Source.READER,
    source_author: str = "", source_id: str = "", allow_closed: bool = False,
) -> Region:
    """Create a region after validating geometry against the image and attributes against the dataset's
    pinned lexicon. Records revision 1. Raises ``ValidationError`` with a message per field, and
    ``ReadingClosed`` when ``assignment`` is submitted (unless ``allow_closed``: an admin's correction,
    an import of readings submitted elsewhere). The assignment row is locked, so a submit sent at the
    same moment waits and then sees this region."""
    if assignment is not None:
        assignment = _reading_lock(assignment, allow_closed=allow_closed)
    region = region_build(image=image, lexicon=image.study.dataset.lexicon, author=author, shape=shape,
                          geometry=geometry, attributes=attributes, label=label, lesion_key=lesion_key,
                          assignment=assignment, source=source, source_author=source_author, source_id=source_id)
    region.save()
    _revision(region, action=RegionRevision.Action.CREATE, actor=author, changed=list(REGION_FIELDS))
    if assignment is not None and assignment.status == Assignment.Status.ASSIGNED:
        assignment_start(assignment=assignment)
    return region


@transaction.atomic
def region_update(*, region: Region, actor, expected_version: int, changes: Mapping[str, Any],
                  seen: Mapping[str, Any] | None = None, allow_closed: bool = False) -> Region:
    """Apply ``changes`` (any of shape, geometry, label, lesion_key, attributes) if the region is still
    at ``expected_version``; otherwise raise ``RegionConflict`` — never overwrite someone else's save.

    The version check and the write are one conditional UPDATE, so two concurrent saves of the same
    version cannot both succeed. A region of a submitted reading raises ``ReadingClosed`` unless
    ``allow_closed``. A save that changes nothing records no revision.
    """
    unknown = set(changes) - set(REGION_FIELDS)
    if unknown:
        raise ValidationError({name: "cannot be changed" for name in sorted(unknown)})
    if region.assignment_id is not None:
        _reading_lock(region.assignment, allow_closed=allow_closed)
    image = region.image
    merged = {name: changes.get(name, getattr(region, name)) for name in REGION_FIELDS}
    clean = _validated(image=image, lexicon=image.study.dataset.lexicon, **merged)
    changed = [name for name in REGION_FIELDS if clean[name] != getattr(region, name)]
    if not changed and region.version == expected_version and not region.is_deleted:
        return region
    candidate = Region(shape=clean["shape"], geometry=clean["geometry"])
    if "shape" in changed or "geometry" in changed:
        _measure(candidate, image)
    else:  # a label or attribute edit keeps the stored measures: re-measuring is the costly part
        candidate = region
    updated = Region.objects.filter(pk=region.pk, version=expected_version, is_deleted=False).update(
        **clean, bbox=candidate.bbox, area_px=candidate.area_px, area_mm2=candidate.area_mm2,
        long_axis_mm=candidate.long_axis_mm, short_axis_mm=candidate.short_axis_mm,
        version=F("version") + 1, updated_at=timezone.now(),
    )
    if not updated:
        current = Region.objects.get(pk=region.pk)
        base = seen or {}
        stale = [name for name in REGION_FIELDS if name in base and base[name] != getattr(current, name)]
        if not stale:
            later = RegionRevision.objects.filter(region=current, version__gt=expected_version)
            stale = [name for names in later.values_list("changed", flat=True) for name in names]
        raise RegionConflict(current, sorted(set(stale)))
    region.refresh_from_db()
    _revision(region, action=RegionRevision.Action.UPDATE, actor=actor, changed=changed)
    return region


@transaction.atomic
def region_delete(*, region: Region, actor, expected_version: int, allow_closed: bool = False) -> Region:
    """Soft-delete: the row and its history stay; it disappears from lists and exports."""
    if region.assignment_id is not None:
        _reading_lock(region.assignment, allow_closed=allow_closed)
    updated = Region.objects.filter(pk=region.pk, version=expected_version, is_deleted=False).update(
        is_deleted=True, deleted_at=timezone.now(), version=F("version") + 1, updated_at=timezone.now()
    )
    if not updated:
        raise RegionConflict(Region.objects.get(pk=region.pk), ["deleted"])
    region.refresh_from_db()
    _revision(region, action=RegionRevision.Action.DELETE, actor=actor, changed=["deleted"])
    return region


@transaction.atomic
def region_restore(*, region: Region, actor, allow_closed: bool = False) -> Region:
    """Bring back a deleted region (undo) with its id and history. A region that is not deleted raises
    ``RegionConflict`` (someone restored it already)."""
    if region.assignment_id is not None:
        _reading_lock(region.assignment, allow_closed=allow_closed)
    updated = Region.objects.filter(pk=region.pk, is_deleted=True).update(
        is_deleted=False, deleted_at=None, version=F("version") + 1, updated_at=timezone.now()
    )
    if not updated:
        raise RegionConflict(Region.objects.get(pk=region.pk), ["deleted"])
    region.refresh_from_db()
    _revision(region, action=RegionRevision.Action.RESTORE, actor=actor, changed=["deleted"])
    return region


def _reading_lock(assignment: Assignment, *, allow_closed: bool) -> Assignment:
    """Lock the reading's assignment row for the rest of the transaction (region writes and submit
    take it in the same order, so they serialise) and refuse a write to a submitted reading."""
    locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
    if locked.status == Assignment.Status.SUBMITTED and not allow_closed:
        raise ReadingClosed("This reading was submitted; its regions are closed.")
    return locked


# ---------------------------------------------------------------------------------------------- assignments


def assignment_start(*, assignment: Assignment) -> Assignment:
    if assignment.status == Assignment.Status.ASSIGNED:
        Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.ASSIGNED).update(
            status=Assignment.Status.IN_PROGRESS, started_at=timezone.now()
        )
        Image.objects.filter(pk=assignment.image_id, status=Image.Status.NEW).update(status=Image.Status.ANNOTATING)
        assignment.refresh_from_db()
    return assignment


@transaction.atomic
def assignment_submit(*, assignment: Assignment) -> Assignment:
    """Mark the reading submitted after checking that every live region of it carries the lexicon's
    required attributes. Raises ``ValidationError`` listing the incomplete regions."""
    # Locked first, as region writes lock it: a region saved at the same moment either lands before
    # this check (and is checked) or waits and then finds the reading closed.
    locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
    if locked.status == Assignment.Status.SUBMITTED:
        assignment.refresh_from_db()
        return assignment
    lexicon = assignment.image.study.dataset.lexicon
    problems: list[str] = []
    for region in Region.objects.filter(
        image=assignment.image, author=assignment.annotator, source=Region.Source.READER, is_deleted=False
    ).order_by("id"):
        if region.shape in ("line", "point"):
            continue  # measurements and markers carry no lesion description
        try:
            attributes_validate(lexicon, region.attributes, require_complete=True)
        except AttributeValidationError as error:
            problems.extend(
                _("region %(id)s (%(label)s): %(attribute)s %(problem)s") % {
                    "id": region.pk, "label": region.label or region.shape, "attribute": name,
                    "problem": message_text(message)}
                for name, message in error.errors.items()
            )
    if problems:
        raise ValidationError({"regions": problems})
    Assignment.objects.filter(pk=assignment.pk).update(
        status=Assignment.Status.SUBMITTED, submitted_at=timezone.now()
    )
    return _assignment_submitted(assignment)


def _assignment_submitted(assignment: Assignment) -> Assignment:
    """After a reading is marked submitted: the image is annotated once all its readers submitted, and
    the study is re-aligned so the reading's conflicts with the report and the other reader show."""
    assignment.refresh_from_db()
    statuses = set(Assignment.objects.filter(image=assignment.image_id).values_list("status", flat=True))
    if statuses == {Assignment.Status.SUBMITTED}:
        Image.objects.filter(pk=assignment.image_id, status__in=[Image.Status.NEW, Image.Status.ANNOTATING]).update(
            status=Image.Status.ANNOTATED
        )
    send_on_commit(reading_submitted, Assignment, study_id=assignment.image.study_id,
                   image_id=assignment.image_id, assignment_id=assignment.pk)
    return assignment


def assign_work(*, dataset: Dataset, annotators: Iterable | None = None, batch_size: int = 5000) -> int:
    """Hand out the dataset's images so each gets ``annotators_per_image`` distinct readers, giving each
    image to the least-loaded annotators. Idempotent: images that already have enough readers are left
    alone, and nobody gets the same image twice (also guarded by a unique constraint). Returns the
    number of assignments created."""
    if annotators is None:
        annotators = [m.user for m in Membership.objects.filter(dataset=dataset, role=Membership.Role.ANNOTATOR)
                      .select_related("user").order_by("user_id")]
    annotators = [user for user in annotators if user.is_active]
    need = min(dataset.annotators_per_image, len(annotators))
    if need == 0:
        return 0
    load = defaultdict(int)
    for row in (Assignment.objects.filter(annotator__in=annotators, image__study__dataset=dataset)
                .values("annotator").annotate(n=Count("id"))):
        load[row["annotator"]] += row["n"]
    existing = defaultdict(set)
    for image_id, annotator_id in Assignment.objects.filter(image__study__dataset=dataset).values_list(
        "image_id", "annotator_id"
    ).iterator(chunk_size=batch_size):
        existing[image_id].add(annotator_id)
    created = 0
    pending: list[Assignment] = []
    image_ids = Image.objects.filter(study__dataset=dataset).order_by("study_id", "position", "id")
    for image_id in image_ids.values_list("id", flat=True).iterator(chunk_size=batch_size):
        readers = existing.get(image_id, set())
        missing = need - len(readers)
        if missing <= 0:
            continue
        candidates = sorted((u for u in annotators if u.pk not in readers), key=lambda u: (load[u.pk], u.pk))
        for user in candidates[:missing]:
            pending.append(Assignment(image_id=image_id, annotator=user))
            load[user.pk] += 1
        if len(pending) >= batch_size:
            created += len(Assignment.objects.bulk_create(pending, ignore_conflicts=True))
            pending = []
    if pending:
        created += len(Assignment.objects.bulk_create(pending, ignore_conflicts=True))
    return created



# ---------------------------------------------------------------------------------------------- images


def image_thumbnail_make(*, image_id: int) -> Image | None:
    """Give the image a thumbnail if it has none. A gone image is not an error (it was deleted after the
    job was queued); an existing thumbnail makes this a no-op, so re-running is safe."""
    from .media import ReferenceProblem, thumbnail_make

    image = Image.objects.filter(pk=image_id).first()
    if image is None or image.thumbnail:
        return image
    try:
        name = thumbnail_make(image=image)
    except ReferenceProblem:  # recorded on the image for the admin; nothing to make a thumbnail from
        return image
    Image.objects.filter(pk=image_id, thumbnail="").update(thumbnail=name)
    image.refresh_from_db()
    return image


def image_reference_problem_record(*, image_id: int, problem: str) -> None:
    """Record why a referenced image's file cannot be served (gone, changed), or clear the record with
    an empty ``problem``; the dataset page lists these to admins. Only a change is written."""
    Image.objects.filter(pk=image_id).exclude(reference_problem=problem).update(
        reference_problem=problem[:255], reference_problem_at=timezone.now() if problem else None)


# ---------------------------------------------------------------------------------------------- workspace
# Writes behind the annotator's queue and annotate page, shared by the HTML views and the API.


def assignment_submit_and_next(*, assignment: Assignment) -> tuple[Assignment, Assignment | None]:
    """Submit a reading (validated by ``assignment_submit``) and return it with the reader's next
    assignment in the same dataset — or in any dataset when that one is done — or None when the queue
    is empty."""
    from .selectors import assignment_next

    assignment = assignment_submit(assignment=assignment)
    dataset_id = assignment.image.study.dataset_id
    following = assignment_next(user=assignment.annotator, dataset_id=dataset_id)
    return assignment, following or assignment_next(user=assignment.annotator)


def assignment_open(*, assignment: Assignment) -> Assignment:
    """Opening an assigned image starts the reading (queue shows it as in progress)."""
    return assignment_start(assignment=assignment)


# ---------------------------------------------------------------------------------------------- batch import
# (owned by the import/export work; see annotation/importing.py)


def assignment_submit_imported(*, assignment: Assignment) -> Assignment:
    """Mark a reading migrated from another tool as submitted, as it was there. Unlike
    ``assignment_submit`` it does not demand complete attributes: the source tool's rules applied when
    the reader worked, and refusing would lose their work. The image becomes annotated once every
    reader of it has submitted, as with a normal submission."""
    Assignment.objects.filter(pk=assignment.pk).exclude(status=Assignment.Status.SUBMITTED).update(
        status=Assignment.Status.SUBMITTED, submitted_at=timezone.now()
    )
    return _assignment_submitted(assignment)


# ---------------------------------------------------------------------------------------------- preferences


def user_language_set(*, user, language: str) -> UserPreference:
    """Remember ``user``'s interface language (a code of ``settings.LANGUAGES``; empty: follow the
    browser again). Raises ``ValidationError`` for any other code."""
    from django.conf import settings

    if language and language not in dict(settings.LANGUAGES):
        raise ValidationError({"language": f"unknown interface language '{language[:16]}'"})
    preference, _ = UserPreference.objects.update_or_create(user=user, defaults={"language": language})
    return preference


# ---------------------------------------------------------------------------------------------- dataset administration
# What a dataset admin does from the pages: open a dataset, take members in, give and take roles, hand
# out work. Each change is written together with its AuditEvent, in one transaction.

INVITE_ROLES = tuple(Membership.Role.values)


def audit_record(*, actor, action: str, dataset: Dataset | None = None, detail: Mapping | None = None) -> AuditEvent:
    """Append one audit event. Callers write it inside the transaction of the change it records."""
    return AuditEvent.objects.create(actor=actor if getattr(actor, "pk", None) else None, dataset=dataset,
                                     action=action, detail=dict(detail or {}))


@transaction.atomic
def dataset_open(*, actor, name: str, lexicon_system: str, annotators_per_image: int, blind_reading: bool = True,
                 description: str = "") -> Dataset:
    """Create a dataset for ``actor``, who becomes its first admin. Preconditions: the caller checked
    ``selectors.user_may_create_datasets``. Raises ``ValidationError`` for a taken name, an unknown
    lexicon or a reader count outside 1-3."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": _("A dataset needs a name.")})
    from .lexicons import lexicon_systems

    if lexicon_system not in lexicon_systems():
        raise ValidationError({"lexicon": _("Unknown lexicon.")})
    dataset = dataset_create(name=name, lexicon_system=lexicon_system, annotators_per_image=annotators_per_image,
                             description=description, created_by=actor,
                             settings={"blind_reading": bool(blind_reading)})
    audit_record(actor=actor, dataset=dataset, action="dataset.create", detail={
        "name": name, "lexicon": f"{dataset.lexicon.system} {dataset.lexicon.version}",
        "annotators_per_image": dataset.annotators_per_image, "blind_reading": bool(blind_reading)})
    return dataset


def _user_lookup(identifier: str):
    from django.contrib.auth import get_user_model

    User = get_user_model()
    identifier = identifier.strip()
    if "@" in identifier:
        return User.objects.filter(email__iexact=identifier).order_by("id").first()
    return User.objects.filter(username=identifier).first()


@transaction.atomic
def member_add_or_invite(*, actor, dataset: Dataset, identifier: str, role: str) -> tuple[Any, bool]:
    """Give ``role`` in ``dataset`` to the user named by ``identifier`` (a username, or an email
    address). When nobody has that username or address, an account is created for them with no usable
    password: they set one through the one-time link of ``invite_link_parts``. Returns
    ``(user, created)``. Raises ``ValidationError`` for an unknown role or an unusable name."""
    from django.contrib.auth import get_user_model
    from django.core.validators import validate_email

    if role not in INVITE_ROLES:
        raise ValidationError({"role": _("Unknown role.")})
    identifier = (identifier or "").strip()
    if not identifier:
        raise ValidationError({"identifier": _("Enter a username or an email address.")})
    user = _user_lookup(identifier)
    created = False
    if user is None:
        User = get_user_model()
        email = ""
        username = identifier
        if "@" in identifier:
            validate_email(identifier)
            email = identifier
            base = re.sub(r"[^\w.+-]", "", identifier.split("@")[0])[:140] or "user"
            username, n = base, 1
            while User.objects.filter(username=username).exists():
                n += 1
                username = f"{base}{n}"
        else:
            try:
                User.username_validator(username)
            except ValidationError as error:
                raise ValidationError({"identifier": error.messages}) from error
        user = User(username=username, email=email)
        user.set_unusable_password()
        user.save()
        created = True
    elif not user.is_active:
        raise ValidationError({"identifier": _("This account is disabled.")})
    membership_add(dataset=dataset, user=user, role=role)
    audit_record(actor=actor, dataset=dataset, action="membership.invite" if created else "membership.add",
                 detail={"user": user.username, "user_id": user.pk, "role": role})
    return user, created


def invite_link_parts(*, user) -> tuple[str, str]:
    """``(uidb64, token)`` of the set-password link for ``user``. The token is Django's password-reset
    token: it stops working once the password is set (the token covers the password hash) and after
    ``PASSWORD_RESET_TIMEOUT``, so the link works once."""
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    return urlsafe_base64_encode(force_bytes(user.pk)), default_token_generator.make_token(user)


@transaction.atomic
def member_roles_set(*, actor, dataset: Dataset, user, roles: Iterable[str]) -> set[str]:
    """Make ``user``'s roles in ``dataset`` exactly ``roles`` (none: they leave the dataset). Promises
    that the dataset keeps at least one admin: taking the admin role from its last admin raises
    ``ValidationError``. The dataset row is locked, so two admins demoting each other at the same moment
    cannot both succeed. Returns the roles now held."""
    wanted = set(roles)
    unknown = wanted - set(Membership.Role.values)
    if unknown:
        raise ValidationError({"roles": _("Unknown role.")})
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
    held = set(Membership.objects.filter(dataset=dataset, user=user).values_list("role", flat=True))
    if Membership.Role.ADMIN in held and Membership.Role.ADMIN not in wanted:
        others = Membership.objects.filter(dataset=dataset, role=Membership.Role.ADMIN, user__is_active=True)
        if not others.exclude(user=user).exists():
            raise ValidationError({"roles": _("A dataset keeps at least one admin: make someone else admin first.")})
    removed, added = held - wanted, wanted - held
    Membership.objects.filter(dataset=dataset, user=user, role__in=removed).delete()
    for role in sorted(added):
        membership_add(dataset=dataset, user=user, role=role)
    if removed or added:
        audit_record(actor=actor, dataset=dataset, action="membership.remove" if not wanted else "membership.roles",
                     detail={"user": user.username, "user_id": user.pk, "added": sorted(added),
                             "removed": sorted(removed)})
    return wanted


@transaction.atomic
def work_hand_out(*, actor, dataset: Dataset, annotators: Iterable, annotators_per_image: int) -> int:
    """Set the readers per image and hand out the dataset's images among ``annotators`` (each must hold
    the annotator role): what ``assign_work`` does, recorded. Returns the assignments created."""
    annotators = list(annotators)
    if not 1 <= int(annotators_per_image) <= 3:
        raise ValidationError({"annotators_per_image": _("Readers per image must be 1, 2 or 3.")})
    members = set(Membership.objects.filter(dataset=dataset, role=Membership.Role.ANNOTATOR)
                  .values_list("user_id", flat=True))
    if not annotators or any(user.pk not in members for user in annotators):
        raise ValidationError({"annotators": _("Choose annotators of this dataset.")})
    if dataset.annotators_per_image != int(annotators_per_image):
        dataset.annotators_per_image = int(annotators_per_image)
        dataset.save(update_fields=["annotators_per_image"])
    created = assign_work(dataset=dataset, annotators=annotators)
    audit_record(actor=actor, dataset=dataset, action="work.assign", detail={
        "annotators": [user.username for user in annotators], "annotators_per_image": dataset.annotators_per_image,
        "created": created})
    return created


@transaction.atomic
def work_reassign(*, actor, dataset: Dataset, source, target) -> tuple[int, int]:
    """Move ``source``'s unstarted readings in ``dataset`` to ``target`` (an annotator of the dataset).
    Readings already opened stay with their reader, and an image ``target`` already reads stays with
    ``source`` (nobody reads an image twice). One conditional UPDATE: a reading opened meanwhile is not
    moved. Returns ``(moved, kept)``."""
    if source.pk == target.pk:
        raise ValidationError({"target": _("Choose another annotator.")})
    if not Membership.objects.filter(dataset=dataset, user=target, role=Membership.Role.ANNOTATOR).exists():
        raise ValidationError({"target": _("Choose annotators of this dataset.")})
    unstarted = Assignment.objects.filter(annotator=source, status=Assignment.Status.ASSIGNED,
                                          image__study__dataset=dataset)
    already = Assignment.objects.filter(annotator=target, image__study__dataset=dataset).values("image_id")
    movable = unstarted.exclude(image_id__in=already)
    moved = Assignment.objects.filter(pk__in=list(movable.values_list("pk", flat=True)),
                                      status=Assignment.Status.ASSIGNED).update(annotator=target)
    kept = unstarted.count()
    audit_record(actor=actor, dataset=dataset, action="work.reassign", detail={
        "from": source.username, "to": target.username, "moved": moved, "kept": kept})
    return moved, kept
