from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import views, views_manage

app_name = "annotation"

urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("queue/next/", views.queue_next, name="queue-next"),
    path("images/<int:image_id>/annotate/", views.annotate, name="annotate"),
    path("images/<int:image_id>/file", views.image_file, name="image-file"),
    path("images/<int:image_id>/regions/", views.region_list, name="region-list"),
    path("regions/<int:region_id>/history/", views.region_history, name="region-history"),
    path("assignments/<int:assignment_id>/submit/", views.assignment_submit, name="assignment-submit"),
    # Dataset administration (annotation.views_manage) and the invited member's one-time link.
    path("datasets/new/", views_manage.dataset_new, name="manage-new"),
    path("datasets/<int:dataset_id>/members/", views_manage.manage_members, name="manage-members"),
    path("datasets/<int:dataset_id>/members/<int:user_id>/roles/", views_manage.manage_member_roles,
         name="manage-member-roles"),
    path("datasets/<int:dataset_id>/work/", views_manage.manage_work, name="manage-work"),
    path("audit/", views_manage.audit_trail, name="audit-trail"),
    path("accounts/set-password/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(
        template_name="registration/set_password.html", success_url=reverse_lazy("login"),
        reset_url_token="welcome"), name="set-password"),
]
