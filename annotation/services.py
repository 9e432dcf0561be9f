"""Writes to the annotation data. Keyword-only functions named ``<entity>_<action>``; views, API,
commands and tasks call these and nothing else to change annotation rows.

Validation lives here (and in database constraints), so the API, the pages and the importer cannot
disagree about what a valid region is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from .geometry import GeometryError, geometry_measures, geometry_validate
from .lexicons import AttributeValidationError, attributes_validate, lexicon_load_with_hash, lexicon_systems
from .models import (
    Assignment,
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


def lexicon_sync_all() -> list[Lexicon]:
    return [lexicon_sync(system=system) for system in lexicon_systems()]


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


@transaction.atomic
def report_set(*, study: Study, text: str, language: str = "en") -> Report:
    """Create or replace the study's report. The version goes up only when the text or language
    changes, so re-importing the same report changes nothing."""
    if language not in Report.Language.values:
        raise ValidationError({"language": f"unknown language '{language}' (use en or zh)"})
    if not isinstance(text, str) or not text.strip():
        raise ValidationError({"text": "the report text is empty"})
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


def _validated(*, image: Image, lexicon, shape: str, geometry: Any, attributes: Any, label: Any,
               lesion_key: Any) -> dict:
    errors: dict[str, Any] = {}
    clean: dict[str, Any] = {"shape": shape}
    try:
        clean["geometry"] = geometry_validate(shape, geometry, width=image.width, height=image.height)
    except GeometryError as error:
        errors["shape" if shape not in ("polygon", "rectangle", "ellipse", "line", "point") else "geometry"] = str(error)
    try:
        clean["attributes"] = attributes_validate(lexicon, attributes)
    except AttributeValidationError as error:
        errors["attributes"] = [f"{name}: {message}" for name, message in error.errors.items()]
    if not isinstance(label, str) or len(label) > LABEL_MAX:
        errors["label"] = f"must be text of at most {LABEL_MAX} characters"
    else:
        clean["label"] = label.strip()
    if not isinstance(lesion_key, str) or len(lesion_key) > LESION_KEY_MAX:
        errors["lesion_key"] = f"must be text of at most {LESION_KEY_MAX} characters"
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


@transaction.atomic
def region_create(
    *, image: Image, author, shape: str, geometry: Any, attributes: Any = None, label: str = "lesion",
    lesion_key: str = "", assignment: Assignment | None = None, source: str = Region.Source.READER,
    source_author: str = "", source_id: str = "",
) -> Region:
    """Create a region after validating geometry against the image and attributes against the dataset's
    pinned lexicon. Records revision 1. Raises ``ValidationError`` with a message per field."""
    lexicon = image.study.dataset.lexicon
    clean = _validated(image=image, lexicon=lexicon, shape=shape, geometry=geometry,
                       attributes=attributes or {}, label=label, lesion_key=lesion_key)
    region = Region(image=image, author=author, assignment=assignment, source=source,
                    source_author=source_author, source_id=str(source_id or "")[:128], **clean)
    _measure(region, image)
    region.save()
    _revision(region, action=RegionRevision.Action.CREATE, actor=author, changed=list(REGION_FIELDS))
    if assignment is not None and assignment.status == Assignment.Status.ASSIGNED:
        assignment_start(assignment=assignment)
    return region


@transaction.atomic
def region_update(*, region: Region, actor, expected_version: int, changes: Mapping[str, Any],
                  seen: Mapping[str, Any] | None = None) -> Region:
    """Apply ``changes`` (any of shape, geometry, label, lesion_key, attributes) if the region is still
    at ``expected_version``; otherwise raise ``RegionConflict`` — never overwrite someone else's save.

    The version check and the write are one conditional UPDATE, so two concurrent saves of the same
    version cannot both succeed.
    """
    unknown = set(changes) - set(REGION_FIELDS)
    if unknown:
        raise ValidationError({name: "cannot be changed" for name in sorted(unknown)})
    image = region.image
    merged = {name: changes.get(name, getattr(region, name)) for name in REGION_FIELDS}
    clean = _validated(image=image, lexicon=image.study.dataset.lexicon, **merged)
    changed = [name for name in REGION_FIELDS if clean[name] != getattr(region, name)]
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
def region_delete(*, region: Region, actor, expected_version: int) -> Region:
    """Soft-delete: the row and its history stay; it disappears from lists and exports."""
    updated = Region.objects.filter(pk=region.pk, version=expected_version, is_deleted=False).update(
        is_deleted=True, deleted_at=timezone.now(), version=F("version") + 1, updated_at=timezone.now()
    )
    if not updated:
        raise RegionConflict(Region.objects.get(pk=region.pk), ["deleted"])
    region.refresh_from_db()
    _revision(region, action=RegionRevision.Action.DELETE, actor=actor, changed=["deleted"])
    return region


@transaction.atomic
def region_restore(*, region: Region, actor) -> Region:
    Region.objects.filter(pk=region.pk, is_deleted=True).update(
        is_deleted=False, deleted_at=None, version=F("version") + 1, updated_at=timezone.now()
    )
    region.refresh_from_db()
    _revision(region, action=RegionRevision.Action.RESTORE, actor=actor, changed=["deleted"])
    return region


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
    if assignment.status == Assignment.Status.SUBMITTED:
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
                f"region {region.pk} ({region.label or region.shape}): {name} {message}"
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
    from .media import thumbnail_make

    image = Image.objects.filter(pk=image_id).first()
    if image is None or image.thumbnail:
        return image
    name = thumbnail_make(file_name=image.file.name)
    Image.objects.filter(pk=image_id, thumbnail="").update(thumbnail=name)
    image.refresh_from_db()
    return image


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
