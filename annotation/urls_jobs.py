"""Pages of the batch import/export jobs (wired into ``sonoalign/urls.py`` with ``include``)."""

from django.urls import path

from . import views_jobs

app_name = "jobs"

urlpatterns = [
    path("datasets/<int:dataset_id>/import/", views_jobs.dataset_import, name="import"),
    path("datasets/<int:dataset_id>/export/", views_jobs.dataset_export, name="export"),
    path("jobs/import/<int:job_id>/", views_jobs.import_job_detail, name="import-job"),
    path("jobs/export/<int:job_id>/", views_jobs.export_job_detail, name="export-job"),
    path("jobs/export/<int:job_id>/download/", views_jobs.export_job_download, name="export-download"),
]
