from django.urls import path

from . import views

app_name = "annotation"

urlpatterns = [
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset"),
]
