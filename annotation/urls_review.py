from django.urls import path

from . import views_review

app_name = "review"

urlpatterns = [
    path("review/", views_review.review_queue, name="queue"),
    path("review/disagreements/<int:disagreement_id>/", views_review.disagreement_detail, name="disagreement"),
    path("review/disagreements/<int:disagreement_id>/resolve/", views_review.disagreement_resolve, name="resolve"),
    path("review/images/<int:image_id>/confirm/", views_review.image_confirm, name="image-confirm"),
    path("datasets/<int:dataset_id>/dashboard/", views_review.dataset_dashboard, name="dashboard"),
    path("datasets/<int:dataset_id>/dashboard.csv", views_review.dataset_dashboard_csv, name="dashboard-csv"),
    path("datasets/<int:dataset_id>/dashboard/refresh/", views_review.dataset_metrics_refresh, name="dashboard-refresh"),
]
