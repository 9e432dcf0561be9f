"""Django admin for alignment results."""

from django.contrib import admin

from . import models


@admin.register(models.Sentence)
class SentenceAdmin(admin.ModelAdmin):
    list_display = ["report", "index", "section", "text", "pipeline_version"]
    search_fields = ["text", "report__study__accession"]
    raw_id_fields = ["report"]


@admin.register(models.Finding)
class FindingAdmin(admin.ModelAdmin):
    list_display = ["id", "sentence", "organ", "laterality", "clock", "lesion", "negated", "uncertain"]
    list_filter = ["organ", "laterality", "lesion", "negated"]
    raw_id_fields = ["sentence"]


@admin.register(models.Alignment)
class AlignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "sentence", "image", "region", "score", "source", "linked"]
    list_filter = ["source", "linked"]
    raw_id_fields = ["finding", "sentence", "image", "region", "created_by"]


@admin.register(models.Disagreement)
class DisagreementAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "attribute", "study", "image", "status", "created_at"]
    list_filter = ["kind", "status", "dataset"]
    search_fields = ["study__accession", "attribute"]
    raw_id_fields = ["study", "image", "sentence", "regions", "resolved_by"]
    readonly_fields = ["fingerprint", "input_hash"]


@admin.register(models.StudyAlignmentState)
class StudyAlignmentStateAdmin(admin.ModelAdmin):
    list_display = ["study", "status", "runs", "aligned_at", "claimed_by"]
    list_filter = ["status"]
    raw_id_fields = ["study"]


@admin.register(models.AlignmentRun)
class AlignmentRunAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "status", "done", "failed", "total", "created_at", "finished_at"]
    list_filter = ["status"]
