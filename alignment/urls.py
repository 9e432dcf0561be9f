from django.urls import path

from . import views

app_name = "alignment"

urlpatterns = [
    path("images/<int:image_id>/report/", views.report_panel, name="report-panel"),
    path("images/<int:image_id>/report/alignments/", views.alignment_decide, name="alignment-decide"),
]
