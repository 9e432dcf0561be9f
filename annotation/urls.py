from django.urls import path

from . import views

app_name = "annotation"

urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("queue/next/", views.queue_next, name="queue-next"),
    path("images/<int:image_id>/annotate/", views.annotate, name="annotate"),
    path("images/<int:image_id>/file", views.image_file, name="image-file"),
    path("images/<int:image_id>/regions/", views.region_list, name="region-list"),
    path("regions/<int:region_id>/history/", views.region_history, name="region-history"),
    path("assignments/<int:assignment_id>/submit/", views.assignment_submit, name="assignment-submit"),
]
