"""Review rows in the Django admin: the audit is read-only."""

from django.contrib import admin

from . import models


@admin.register(models.AdjudicationDecision)
class AdjudicationDecisionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "action", "attribute", "side", "disagreement", "image", "dataset"]
    list_filter = ["action", "dataset"]
    search_fields = ["comment", "attribute", "actor__username"]
    list_select_related = ["actor", "dataset"]
    raw_id_fields = ["disagreement", "image", "consensus_region", "settled_by"]

    # The audit is appended to by the adjudication service only.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.LesionConsensus)
class LesionConsensusAdmin(admin.ModelAdmin):
    list_display = ["region", "consensus", "not_a_lesion", "image", "updated_at"]
    list_filter = ["not_a_lesion"]
    raw_id_fields = ["image", "region", "consensus", "decision"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(models.DatasetMetrics)
class DatasetMetricsAdmin(admin.ModelAdmin):
    list_display = ["dataset", "computed_at", "duration_s"]
    list_filter = ["dataset"]
    readonly_fields = ["dataset", "computed_at", "duration_s", "data"]
