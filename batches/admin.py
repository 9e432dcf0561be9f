from django.contrib import admin

from . import models


@admin.register(models.ImportJob, models.ExportJob)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "status", "done", "total", "created_by", "created_at", "finished_at"]
    list_filter = ["status", "dataset"]
    readonly_fields = ["status", "total", "done", "counts", "errors", "created_at", "started_at", "finished_at"]
