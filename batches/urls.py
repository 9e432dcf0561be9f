"""Pages of the batch import/export jobs (wired into ``sonoalign/urls.py`` with ``include``)."""

from django.urls import path

from . import views

app_name = "batches"

urlpatterns = [
    path("datasets/<int:dataset_id>/import/", views.dataset_import, name="import"),
    path("datasets/<int:dataset_id>/export/", views.dataset_export, name="export"),
    path("datasets/<int:dataset_id>/export/preview/", views.export_preview, name="export-preview"),
    path("jobs/import/<int:job_id>/", views.import_job_detail, name="import-job"),
    path("jobs/import/<int:job_id>/report.csv", views.import_report_csv, name="import-report-csv"),
    path("jobs/import/<int:job_id>/failed-manifest.jsonl", views.import_failed_lines, name="import-failed-lines"),
    path("jobs/export/<int:job_id>/", views.export_job_detail, name="export-job"),
    path("jobs/export/<int:job_id>/download/", views.export_job_download, name="export-download"),
]
