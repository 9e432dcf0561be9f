from django.urls import path

from . import views

app_name = "alignment"

urlpatterns = [
    path("images/<int:image_id>/report/", views.report_panel, name="report-panel"),
    path("images/<int:image_id>/report/alignments/", views.alignment_decide, name="alignment-decide"),
    path("datasets/<int:dataset_id>/alignment/", views.alignment_run_start, name="run-start"),
    path("datasets/<int:dataset_id>/alignment/<int:run_id>/", views.alignment_run_progress, name="run-progress"),
]
