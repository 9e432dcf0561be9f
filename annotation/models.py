"""Annotation data: who works on which dataset, the studies and images, and the regions drawn on them.

Models hold fields, constraints and small properties. Every write goes through ``annotation.services``;
every permission-checked read through ``annotation.selectors``.
"""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q


class Lexicon(models.Model):
    """One version of a clinical vocabulary, frozen: datasets pin a row, so later edits of the lexicon
    files never reinterpret old annotations."""

    system = models.CharField(max_length=32, help_text="udaf | birads-us | tirads")
    version = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    content = models.JSONField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["system", "version"], name="lexicon_system_version_unique")]
        ordering = ["system", "-created_at"]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class Dataset(models.Model):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    lexicon = models.ForeignKey(Lexicon, on_delete=models.PROTECT, related_name="datasets")
    annotators_per_image = models.PositiveSmallIntegerField(default=2)
    settings = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(annotators_per_image__gte=1) & Q(annotators_per_image__lte=3),
                name="dataset_annotators_per_image_1_to_3",
            )
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ANNOTATOR = "annotator"
        REVIEWER = "reviewer"
        ADMIN = "admin"

    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "dataset", "role"], name="membership_unique_role"),
            models.CheckConstraint(condition=Q(role__in=["annotator", "reviewer", "admin"]), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.dataset} · {self.role}"


class Study(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="studies")
    accession = models.CharField(max_length=64)
    patient = models.CharField(max_length=64, help_text="Pseudonymised patient id")
    exam_date = models.DateField(null=True, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "accession"], name="study_accession_unique")]
        indexes = [models.Index(fields=["dataset", "patient"], name="study_dataset_patient")]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.accession


class Report(models.Model):
    """The free-text report of a study. ``version`` increases on every edit; parsing and alignment
    results are keyed by it."""

    class Language(models.TextChoices):
        EN = "en", "English"
        ZH = "zh", "Chinese"

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="report")
    text = models.TextField()
    language = models.CharField(max_length=8, choices=Language.choices, default=Language.EN)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(language__in=["en", "zh"]), name="report_language_valid")]

    def __str__(self) -> str:
        return f"Report of {self.study_id} v{self.version}"


class Image(models.Model):
    class Laterality(models.TextChoices):
        LEFT = "left"
        RIGHT = "right"
        BILATERAL = "bilateral"
        UNKNOWN = "", "unknown"

    class Status(models.TextChoices):
        NEW = "new"
        ANNOTATING = "annotating"
        ANNOTATED = "annotated"
        ADJUDICATED = "adjudicated"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="images")
    position = models.PositiveIntegerField(default=0)
    file = models.FileField(max_length=255, blank=True,
                            help_text="Content-addressed: identical files are stored once. Empty when referenced")
    source_path = models.CharField(
        max_length=1024, blank=True,
        help_text="Referenced in place (not copied): the file's path below IMPORT_ROOT, checked against sha256 "
                  "when served")
    reference_problem = models.CharField(max_length=255, blank=True,
                                         help_text="Why the referenced file could not be served, when it last failed")
    reference_problem_at = models.DateTimeField(null=True, blank=True)
    thumbnail = models.FileField(max_length=255, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    pixel_spacing_x_mm = models.FloatField(null=True, blank=True)
    pixel_spacing_y_mm = models.FloatField(null=True, blank=True)
    laterality = models.CharField(max_length=16, choices=Laterality.choices, blank=True, default="")
    view = models.CharField(max_length=32, blank=True)
    body_marker = models.CharField(max_length=128, blank=True)
    frame_index = models.PositiveIntegerField(default=0)
    study_instance_uid = models.CharField(max_length=64, blank=True)
    series_instance_uid = models.CharField(max_length=64, blank=True)
    sop_instance_uid = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "sha256"], name="image_file_once_per_study"),
            models.CheckConstraint(
                condition=Q(status__in=["new", "annotating", "annotated", "adjudicated"]), name="image_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(laterality__in=["left", "right", "bilateral", ""]), name="image_laterality_valid"
            ),
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="image_size_positive"),
            models.CheckConstraint(condition=~Q(file="") | ~Q(source_path=""), name="image_stored_or_referenced"),
        ]
        indexes = [
            models.Index(fields=["study", "position"], name="image_study_position"),
            models.Index(fields=["sha256"], name="image_sha256"),
            models.Index(fields=["status"], name="image_status"),
        ]
        ordering = ["study_id", "position", "id"]

    def __str__(self) -> str:
        return f"{self.study_id}/{self.position}: {self.original_name or self.sha256[:12]}"

    @property
    def has_spacing(self) -> bool:
        return bool(self.pixel_spacing_x_mm and self.pixel_spacing_y_mm)


class Assignment(models.Model):
    class Status(models.TextChoices):
        ASSIGNED = "assigned"
        IN_PROGRESS = "in_progress"
        SUBMITTED = "submitted"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ASSIGNED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "annotator"], name="assignment_once_per_reader"),
            models.CheckConstraint(
                condition=Q(status__in=["assigned", "in_progress", "submitted"]), name="assignment_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["annotator", "status", "id"], name="assignment_queue")]

    def __str__(self) -> str:
        return f"{self.annotator} → image {self.image_id} ({self.status})"


class Region(models.Model):
    """A lesion region on an image. Geometry is in image pixels. Edits bump ``version`` (optimistic
    locking) and append a ``RegionRevision``; deletion is soft."""

    class Shape(models.TextChoices):
        POLYGON = "polygon"
        RECTANGLE = "rectangle"
        ELLIPSE = "ellipse"
        LINE = "line"
        POINT = "point"

    class Source(models.TextChoices):
        READER = "reader", "annotator's reading"
        IMPORT = "import", "imported pre-annotation"
        CONSENSUS = "consensus", "adjudicated consensus"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="regions")
    author = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="regions"
    )
    assignment = models.ForeignKey(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="regions"
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.READER)
    source_author = models.CharField(max_length=64, blank=True, help_text="Named author of an import")
    source_id = models.CharField(max_length=128, blank=True, help_text="Id the region had in its source")
    shape = models.CharField(max_length=16, choices=Shape.choices)
    geometry = models.JSONField()
    label = models.CharField(max_length=64, blank=True, default="lesion")
    lesion_key = models.CharField(max_length=32, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # The outline exactly as its source drew it, kept when the importer had to repair it (made valid,
    # clipped to the image) so the original tracing is never lost; null when stored as given.
    source_points = models.JSONField(null=True, blank=True)
    # Derived measures, recomputed by the service on every geometry change.
    bbox = models.JSONField(default=list, blank=True)
    area_px = models.FloatField(default=0)
    long_axis_mm = models.FloatField(null=True, blank=True)
    short_axis_mm = models.FloatField(null=True, blank=True)
    area_mm2 = models.FloatField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    is_deleted = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(shape__in=["polygon", "rectangle", "ellipse", "line", "point"]), name="region_shape_valid"
            ),
            models.CheckConstraint(
                condition=Q(source__in=["reader", "import", "consensus"]), name="region_source_valid"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="region_version_positive"),
        ]
        indexes = [
            models.Index(fields=["image", "is_deleted"], name="region_image_live"),
            models.Index(fields=["author", "image"], name="region_author_image"),
            models.Index(fields=["source_id"], name="region_source_id"),
        ]

    def __str__(self) -> str:
        return f"{self.shape} {self.label} on image {self.image_id}"


class RegionRevision(models.Model):
    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        RESTORE = "restore"

    region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    shape = models.CharField(max_length=16)
    geometry = models.JSONField()
    label = models.CharField(max_length=64, blank=True)
    lesion_key = models.CharField(max_length=32, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    changed = models.JSONField(default=list, blank=True, help_text="Names of the fields this revision changed")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["region", "version"], name="region_revision_unique")]
        ordering = ["region_id", "version"]

    def __str__(self) -> str:
        return f"region {self.region_id} v{self.version} {self.action}"


class JobStatus(models.TextChoices):
    """The one status vocabulary of every background job and run (import, export, alignment runs and
    per-study alignment state): the UI, the claims and the constraints all read it from here."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class UserPreference(models.Model):
    """What a user chose for themselves, kept across logins and devices (the interface language)."""

    user = models.OneToOneField(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference")
    language = models.CharField(max_length=16, blank=True, help_text="Interface language code; empty: follow the browser")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} · {self.language or 'browser language'}"


class AuditEvent(models.Model):
    """One consequential action: who did what, to which dataset, when. Append-only, so the trail cannot
    be rewritten from the pages; ``action`` is a dotted name (``membership.add``, ``work.assign``, and
    later ``auth.login`` or ``export.start``), ``detail`` the facts that action needs to be read again."""

    actor = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    action = models.CharField(max_length=64)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["dataset", "at"], name="audit_dataset_at"),
                   models.Index(fields=["action", "at"], name="audit_action_at")]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action}"
