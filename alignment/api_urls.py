from django.urls import path

from . import api

urlpatterns = [
    path("studies/<int:study_id>/alignment/", api.StudyAlignmentApi.as_view(), name="api-study-alignment"),
    path("alignments/", api.AlignmentManualApi.as_view(), name="api-alignments"),
    path("alignments/<int:alignment_id>/", api.AlignmentDetailApi.as_view(), name="api-alignment"),
    path("regions/<int:region_id>/report-findings/", api.RegionReportFindingsApi.as_view(),
         name="api-region-report-findings"),
]
