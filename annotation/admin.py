"""Django admin for every annotation model: filters and search to find things, history read-only."""

from django.contrib import admin

from . import models


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(models.Lexicon)
class LexiconAdmin(admin.ModelAdmin):
    list_display = ["system", "version", "name", "created_at"]
    list_filter = ["system"]
    readonly_fields = ["system", "version", "name", "content", "sha256", "created_at"]


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "lexicon", "annotators_per_image", "created_at"]
    list_filter = ["lexicon__system"]
    search_fields = ["name", "description"]
    inlines = [MembershipInline]
    actions = ["assign_work_action"]

    @admin.action(description="Hand out images to the annotators (assign work)")
    def assign_work_action(self, request, queryset):
        from .services import assign_work

        for dataset in queryset:
            created = assign_work(dataset=dataset)
            self.message_user(request, f"{dataset.name}: {created} assignments created.")


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "dataset", "role", "created_at"]
    list_filter = ["role", "dataset"]
    search_fields = ["user__username", "dataset__name"]


class ImageInline(admin.TabularInline):
    model = models.Image
    extra = 0
    fields = ["position", "original_name", "width", "height", "laterality", "view", "body_marker", "status"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False


@admin.register(models.Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["accession", "patient", "exam_date", "body_part", "dataset"]
    list_filter = ["dataset", "body_part"]
    search_fields = ["accession", "patient"]
    inlines = [ImageInline]
    list_select_related = ["dataset"]


@admin.register(models.Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["study", "language", "version", "updated_at"]
    list_filter = ["language", "study__dataset"]
    search_fields = ["study__accession", "text"]
    readonly_fields = ["version"]
    list_select_related = ["study"]


@admin.register(models.Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "position", "original_name", "laterality", "view", "status", "width", "height"]
    list_filter = ["status", "laterality", "study__dataset"]
    search_fields = ["study__accession", "original_name", "sha256", "sop_instance_uid", "body_marker"]
    readonly_fields = ["sha256", "width", "height", "created_at"]
    list_select_related = ["study"]
    raw_id_fields = ["study"]


@admin.register(models.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "annotator", "status", "created_at", "submitted_at"]
    list_filter = ["status", "image__study__dataset"]
    search_fields = ["annotator__username", "image__study__accession"]
    raw_id_fields = ["image", "annotator"]


class RegionRevisionInline(ReadOnlyInline):
    model = models.RegionRevision
    fields = ["version", "action", "actor", "changed", "label", "attributes", "created_at"]
    readonly_fields = fields


@admin.register(models.Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "author", "source", "shape", "label", "lesion_key", "version", "is_deleted"]
    list_filter = ["source", "shape", "is_deleted", "image__study__dataset"]
    search_fields = ["label", "lesion_key", "source_id", "image__study__accession", "author__username"]
    readonly_fields = ["version", "bbox", "area_px", "area_mm2", "long_axis_mm", "short_axis_mm",
                       "created_at", "updated_at", "deleted_at"]
    raw_id_fields = ["image", "author", "assignment"]
    inlines = [RegionRevisionInline]

    def has_change_permission(self, request, obj=None):
        # Edits must go through the service (validation, locking, history), not the admin form.
        return False


@admin.register(models.RegionRevision)
class RegionRevisionAdmin(admin.ModelAdmin):
    list_display = ["region", "version", "action", "actor", "created_at"]
    list_filter = ["action"]
    search_fields = ["region__id", "actor__username"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False
