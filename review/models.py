"""Review: the audit of adjudication, which consensus region stands for which reader's region, and the
agreement snapshots of the dashboard.

Adjudication adds, never overwrites: the annotators' regions stay as they were; reviewers' answers
live in consensus regions (``Region.source == "consensus"``) and in these rows. The tables keep the
names they had when these models lived in ``annotation`` (moved by state only)."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from annotation.models import Dataset, Image, Region


class AdjudicationDecision(models.Model):
    """The audit of review: one row per reviewer action (who, when, what, why), plus one row for each
    disagreement another decision settled. Rows are only ever added."""

    class Action(models.TextChoices):
        ACCEPT_REPORT = "accept_report", _("accept the report's value")
        ACCEPT_ANNOTATION = "accept_annotation", _("accept an annotation's value")
        OTHER_VALUE = "other_value", _("set another value")
        EDIT_GEOMETRY = "edit_geometry", _("edit the consensus outline")
        REPORT_WRONG = "report_wrong", _("report wrong")
        ANNOTATION_WRONG = "annotation_wrong", _("annotation wrong")
        NOT_A_LESION = "not_a_lesion", _("not a lesion")
        DISMISS = "dismiss", _("dismiss")
        COMMENT = "comment", _("comment")
        SETTLED = "settled", _("settled by another decision")
        CONFIRM = "confirm", _("confirm the readers' agreement")

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+")
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.CASCADE, related_name="decisions")
    # SET_NULL: the alignment job may replace an open disagreement it no longer produces; the audit stays.
    disagreement = models.ForeignKey(
        "alignment.Disagreement", null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    actor = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=24, choices=Action.choices)
    side = models.CharField(max_length=64, blank=True, help_text="The side picked: report, annotation or a reader")
    attribute = models.CharField(max_length=64, blank=True)
    value = models.JSONField(null=True, blank=True, help_text="The value decided")
    before = models.JSONField(default=dict, blank=True, help_text="Disagreement and consensus before the action")
    consensus_region = models.ForeignKey(
        Region, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    comment = models.TextField(blank=True)
    settled_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="settled"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "annotation_adjudicationdecision"
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=[
                    "accept_report", "accept_annotation", "other_value", "edit_geometry", "report_wrong",
                    "annotation_wrong", "not_a_lesion", "dismiss", "comment", "settled", "confirm",
                ]),
                name="decision_action_valid",
            )
        ]
        indexes = [
            models.Index(fields=["dataset", "created_at"], name="decision_dataset_time"),
            models.Index(fields=["image", "created_at"], name="decision_image_time"),
        ]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_id} on disagreement {self.disagreement_id}"


class LesionConsensus(models.Model):
    """Which consensus region stands for an annotator's region on its image — or that reviewers agreed
    the region is not a lesion. One row per original region; the original itself is never changed."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    region = models.OneToOneField(Region, on_delete=models.CASCADE, related_name="consensus_link")
    consensus = models.ForeignKey(
        Region, null=True, blank=True, on_delete=models.CASCADE, related_name="consensus_members"
    )
    not_a_lesion = models.BooleanField(default=False)
    decision = models.ForeignKey(
        AdjudicationDecision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "annotation_lesionconsensus"
        constraints = [
            models.CheckConstraint(
                condition=Q(not_a_lesion=True, consensus__isnull=True) | Q(not_a_lesion=False, consensus__isnull=False),
                name="lesionconsensus_region_or_no_lesion",
            )
        ]
        indexes = [models.Index(fields=["image"], name="lesionconsensus_image")]


class DatasetMetrics(models.Model):
    """A computed snapshot of a dataset's agreement metrics (``review.adjudication.
    dataset_metrics_refresh``): pairing regions across readers at a million regions takes minutes, so
    the dashboard reads the latest snapshot and a task refreshes it."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="metrics_snapshots")
    computed_at = models.DateTimeField(auto_now_add=True)
    duration_s = models.FloatField(default=0)
    data = models.JSONField(default=dict)

    class Meta:
        db_table = "annotation_datasetmetrics"
        indexes = [models.Index(fields=["dataset", "-computed_at"], name="datasetmetrics_latest")]
        verbose_name_plural = "dataset metrics"
