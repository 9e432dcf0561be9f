from django.urls import path

from . import views

app_name = "review"

urlpatterns = [
    path("review/", views.review_queue, name="queue"),
    path("review/disagreements/<int:disagreement_id>/", views.disagreement_detail, name="disagreement"),
    path("review/disagreements/<int:disagreement_id>/resolve/", views.disagreement_resolve, name="resolve"),
    path("review/images/<int:image_id>/confirm/", views.image_confirm, name="image-confirm"),
    path("datasets/<int:dataset_id>/dashboard/", views.dataset_dashboard, name="dashboard"),
    path("datasets/<int:dataset_id>/dashboard.csv", views.dataset_dashboard_csv, name="dashboard-csv"),
    path("datasets/<int:dataset_id>/dashboard/refresh/", views.dataset_metrics_refresh, name="dashboard-refresh"),
]
