from django.urls import path

from . import api

urlpatterns = [
    path("me/", api.MeApi.as_view(), name="api-me"),
    path("regions/", api.RegionListCreateApi.as_view(), name="api-regions"),
    path("regions/<int:region_id>/", api.RegionDetailApi.as_view(), name="api-region"),
    path("regions/<int:region_id>/history/", api.RegionHistoryApi.as_view(), name="api-region-history"),
]
