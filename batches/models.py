"""Batch jobs: imports and exports of whole batches, each a row the admin's page polls.

The tables keep the names they had when these models lived in ``annotation`` (moved by state only)."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q

from annotation.models import Dataset, JobStatus


class Job(models.Model):
    """Shared fields of long-running admin jobs; the UI polls one row."""

    Status = JobStatus

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    params = models.JSONField(default=dict, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The claim (``batches.jobs``): which worker holds the job, and when it was last heard from.
    claimed_by = models.CharField(max_length=128, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def progress(self) -> float:
        return (self.done / self.total) if self.total else (1.0 if self.status == self.Status.DONE else 0.0)


class ImportJob(Job):
    source = models.FileField(max_length=255, blank=True)

    class Meta:
        db_table = "annotation_importjob"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="importjob_status_valid"
            )
        ]


class ExportJob(Job):
    output = models.FileField(max_length=255, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    # The archive as a whole (``manifest`` lists the files inside it): what the download page shows and
    # what a recipient checks the download against.
    output_bytes = models.BigIntegerField(null=True, blank=True)
    output_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "annotation_exportjob"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="exportjob_status_valid"
            )
        ]
