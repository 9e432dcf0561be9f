"""The JSON API, version 1. Each app registers its endpoints in its own ``api_urls``."""

from django.urls import include, path

urlpatterns = [
    path("", include("annotation.api_urls")),
    path("", include("alignment.api_urls")),
]
