from django.urls import path

from . import api

urlpatterns = [
    path("me/", api.MeApi.as_view(), name="api-me"),
    path("regions/", api.RegionListCreateApi.as_view(), name="api-regions"),
    path("regions/<int:region_id>/", api.RegionDetailApi.as_view(), name="api-region"),
    path("regions/<int:region_id>/restore/", api.RegionRestoreApi.as_view(), name="api-region-restore"),
    path("regions/<int:region_id>/history/", api.RegionHistoryApi.as_view(), name="api-region-history"),
    path("images/<int:image_id>/outline-proposals/", api.OutlineProposalApi.as_view(),
         name="api-outline-proposals"),
    path("queue/", api.QueueApi.as_view(), name="api-queue"),
    path("queue/next/", api.QueueNextApi.as_view(), name="api-queue-next"),
    path("assignments/<int:assignment_id>/", api.AssignmentDetailApi.as_view(), name="api-assignment"),
    path("assignments/<int:assignment_id>/submit/", api.AssignmentSubmitApi.as_view(),
         name="api-assignment-submit"),
]
