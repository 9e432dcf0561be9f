"""Parsing, alignment and disagreement results.

Parse results are keyed by (report version, pipeline version); alignment results by the study's input
hash. Re-running a job replaces its own rows and keeps what people made (manual alignments,
resolutions).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Dataset, Image, JobStatus, Region, Report, Study


class Sentence(models.Model):
    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="sentences")
    report_version = models.PositiveIntegerField()
    pipeline_version = models.CharField(max_length=32)
    index = models.PositiveIntegerField()
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    text = models.TextField()
    section = models.CharField(max_length=32, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["report", "report_version", "pipeline_version", "index"], name="sentence_unique_per_parse"
            )
        ]
        ordering = ["report_id", "index"]

    def __str__(self) -> str:
        return self.text[:80]


class Finding(models.Model):
    sentence = models.ForeignKey(Sentence, on_delete=models.CASCADE, related_name="findings")
    index = models.PositiveSmallIntegerField(default=0)
    organ = models.CharField(max_length=64, blank=True)
    laterality = models.CharField(max_length=16, blank=True)
    clock = models.CharField(max_length=8, blank=True)
    quadrant = models.CharField(max_length=32, blank=True)
    distance_from_nipple_cm = models.FloatField(null=True, blank=True)
    size_mm = models.JSONField(default=list, blank=True)
    lesion = models.CharField(max_length=32, blank=True)
    negated = models.BooleanField(default=False)
    uncertain = models.BooleanField(default=False)
    attributes = models.JSONField(default=list, blank=True)
    assessment = models.JSONField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="The parser's full output for this finding")

    class Meta:
        ordering = ["sentence_id", "index"]

    def __str__(self) -> str:
        return f"{self.lesion or 'finding'} in sentence {self.sentence_id}"


class Alignment(models.Model):
    """A link between a report finding and an image (and a region on it), with the evidence for it."""

    class Source(models.TextChoices):
        AUTO = "auto"
        MANUAL = "manual"

    finding = models.ForeignKey(Finding, null=True, blank=True, on_delete=models.CASCADE, related_name="alignments")
    sentence = models.ForeignKey(Sentence, on_delete=models.CASCADE, related_name="alignments")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="alignments")
    region = models.ForeignKey(Region, null=True, blank=True, on_delete=models.CASCADE, related_name="alignments")
    score = models.FloatField(default=0)
    evidence = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.AUTO)
    linked = models.BooleanField(default=True, help_text="False records a reviewer's explicit unlink")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(source__in=["auto", "manual"]), name="alignment_source_valid")
        ]
        indexes = [
            models.Index(fields=["image", "source"], name="alignment_image_source"),
            models.Index(fields=["region"], name="alignment_region"),
        ]


class Disagreement(models.Model):
    class Kind(models.TextChoices):
        REPORT_VS_ANNOTATION = "report_vs_annotation"
        SIZE_MISMATCH = "size_mismatch"
        REPORTED_NOT_ANNOTATED = "reported_not_annotated"
        ANNOTATED_NOT_REPORTED = "annotated_not_reported"
        READER_VS_READER = "reader_vs_reader"
        ASSESSMENT_INCONSISTENT = "assessment_inconsistent"

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        DISMISSED = "dismissed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="disagreements")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="disagreements")
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.CASCADE, related_name="disagreements")
    regions = models.ManyToManyField(Region, blank=True, related_name="disagreements")
    sentence = models.ForeignKey(Sentence, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    attribute = models.CharField(max_length=64, blank=True)
    values = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(max_length=64, help_text="Identity of the conflict across re-runs")
    input_hash = models.CharField(max_length=64, help_text="Hash of the inputs that produced it")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    resolution = models.JSONField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "fingerprint"], name="disagreement_unique_per_study"),
            models.CheckConstraint(condition=Q(status__in=["open", "resolved", "dismissed"]), name="disagreement_status_valid"),
            models.CheckConstraint(
                condition=Q(
                    kind__in=[
                        "report_vs_annotation", "size_mismatch", "reported_not_annotated",
                        "annotated_not_reported", "reader_vs_reader", "assessment_inconsistent",
                    ]
                ),
                name="disagreement_kind_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["dataset", "status", "kind"], name="disagreement_queue"),
            models.Index(fields=["image", "status"], name="disagreement_image"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} in {self.study_id} ({self.status})"


class StudyAlignmentState(models.Model):
    """One row per study: what was last aligned, and who holds the claim to align it now."""

    Status = JobStatus

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="alignment_state")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    input_hash = models.CharField(max_length=64, blank=True)
    pipeline_version = models.CharField(max_length=32, blank=True)
    claimed_by = models.CharField(max_length=128, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    aligned_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True, help_text="Last time a job looked at it")
    runs = models.PositiveIntegerField(default=0, help_text="How many times the study was really aligned")
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="studyalignment_status_valid"
            )
        ]
        indexes = [models.Index(fields=["checked_at"], name="studyalignment_checked")]


class AlignmentRun(models.Model):
    """Progress of a dataset-wide alignment run, polled by the admin page."""

    Status = JobStatus

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="alignment_runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="alignmentrun_status_valid"
            )
        ]
