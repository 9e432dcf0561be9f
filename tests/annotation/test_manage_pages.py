"""Dataset administration pages: who may open them, the last-admin rule, the one-time invite link,
handing out and reassigning work — each change audited."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Assignment, AuditEvent, Dataset, Membership
from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    admin, annotator, reviewer, outsider = (user_make(name) for name in ("admin1", "ann1", "rev1", "outsider"))
    staff = user_make("staff1", staff=True)
    dataset = dataset_make(members={"admin": [admin], "annotator": [annotator], "reviewer": [reviewer]})
    return {"dataset": dataset, "admin": admin, "annotator": annotator, "reviewer": reviewer,
            "outsider": outsider, "staff": staff}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


PAGES = ["annotation:manage-members", "annotation:manage-work"]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("who, status", [("outsider", 404), ("annotator", 403), ("reviewer", 403),
                                         ("admin", 200), ("staff", 200)])
def test_manage_pages_are_for_dataset_admins_and_staff(team, page, who, status):
    url = reverse(page, args=[team["dataset"].pk])
    assert _client(team[who]).get(url).status_code == status


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("who, status", [("outsider", 404), ("annotator", 403), ("reviewer", 403)])
def test_posts_are_refused_the_same_way_and_change_nothing(team, page, who, status):
    url = reverse(page, args=[team["dataset"].pk])
    response = _client(team[who]).post(url, {"identifier": "newcomer", "role": "admin"})
    assert response.status_code == status
    roles_url = reverse("annotation:manage-member-roles", args=[team["dataset"].pk, team["admin"].pk])
    assert _client(team[who]).post(roles_url, {"remove": "1"}).status_code == status
    assert Membership.objects.filter(dataset=team["dataset"]).count() == 3
    assert not AuditEvent.objects.exclude(action__startswith="auth.").exists()


def test_anonymous_is_sent_to_login(team):
    response = Client().get(reverse("annotation:manage-members", args=[team["dataset"].pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("who, status", [("outsider", 403), ("annotator", 403), ("reviewer", 403),
                                         ("admin", 200), ("staff", 200)])
def test_new_dataset_page_is_for_staff_and_dataset_admins(team, who, status):
    assert _client(team[who]).get(reverse("annotation:manage-new")).status_code == status


def test_an_admin_creates_a_dataset_and_becomes_its_admin(team):
    response = _client(team["admin"]).post(reverse("annotation:manage-new"), {
        "name": "Thyroid 2026", "lexicon": "tirads", "annotators_per_image": "3", "description": ""})
    dataset = Dataset.objects.get(name="Thyroid 2026")
    assert response.status_code == 302 and response["Location"] == reverse("annotation:manage-members", args=[dataset.pk])
    assert dataset.lexicon.system == "tirads" and dataset.annotators_per_image == 3
    assert dataset.settings == {"blind_reading": False}  # the box was left unticked
    assert Membership.objects.filter(dataset=dataset, user=team["admin"], role="admin").exists()
    assert AuditEvent.objects.exclude(action__startswith="auth.").get(dataset=dataset).action == "dataset.create"


def test_a_taken_name_is_refused_beside_the_field(team):
    response = _client(team["staff"]).post(reverse("annotation:manage-new"), {
        "name": team["dataset"].name, "lexicon": "udaf", "annotators_per_image": "2"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def test_adding_an_existing_user_by_email(team):
    team["outsider"].email = "li@example.org"
    team["outsider"].save()
    response = _client(team["admin"]).post(reverse("annotation:manage-members", args=[team["dataset"].pk]),
                                           {"identifier": "LI@example.org", "role": "reviewer"})
    assert response.status_code == 200
    assert Membership.objects.filter(dataset=team["dataset"], user=team["outsider"], role="reviewer").exists()
    assert "set-password" not in response.content.decode()
    assert AuditEvent.objects.exclude(action__startswith="auth.").get(action="membership.add").detail["user"] == "outsider"


def test_the_invite_link_sets_the_password_once(team):
    admin = _client(team["admin"])
    response = admin.post(reverse("annotation:manage-members", args=[team["dataset"].pk]),
                          {"identifier": "zhang.wei@hospital.cn", "role": "annotator"}, HTTP_HX_REQUEST="true")
    link = re.search(r'value="(http://testserver/accounts/set-password/[^"]+)"', response.content.decode()).group(1)
    invited = Membership.objects.get(dataset=team["dataset"], role="annotator", user__email="zhang.wei@hospital.cn").user
    assert invited.username == "zhang.wei" and not invited.has_usable_password()
    assert AuditEvent.objects.exclude(action__startswith="auth.").get(action="membership.invite").detail == {
        "user": "zhang.wei", "user_id": invited.pk, "role": "annotator"}

    newcomer = Client()
    form_page = newcomer.get(link, follow=True)
    assert form_page.status_code == 200 and "new_password1" in form_page.content.decode()
    done = newcomer.post(form_page.redirect_chain[-1][0], {"new_password1": "ultrasound-reader-77",
                                                           "new_password2": "ultrasound-reader-77"})
    assert done.status_code == 302 and done["Location"] == reverse("login")
    # The new password works at the login page (django-axes needs the request a real login carries).
    login = Client().post(reverse("login"), {"username": "zhang.wei", "password": "ultrasound-reader-77"})
    assert login.status_code == 302 and login["Location"] != reverse("login")

    again = Client().get(link, follow=True)
    assert "new_password1" not in again.content.decode()
    assert "no longer works" in again.content.decode()


def test_the_last_admin_cannot_be_removed_or_demoted(team):
    dataset, admin = team["dataset"], team["admin"]
    url = reverse("annotation:manage-member-roles", args=[dataset.pk, admin.pk])
    client = _client(admin)
    demoted = client.post(url, {"roles": ["annotator"]}).content.decode()
    assert "at least one admin" in demoted
    assert "at least one admin" in client.post(url, {"remove": "1"}).content.decode()
    assert Membership.objects.filter(dataset=dataset, user=admin, role="admin").exists()
    # With a second admin the first may step down.
    client.post(reverse("annotation:manage-member-roles", args=[dataset.pk, team["reviewer"].pk]),
                {"roles": ["reviewer", "admin"]})
    client.post(url, {"roles": ["annotator"]})
    assert set(Membership.objects.filter(dataset=dataset, user=admin).values_list("role", flat=True)) == {"annotator"}
    changes = AuditEvent.objects.exclude(action__startswith="auth.").order_by("id")
    assert [e.action for e in changes] == ["membership.roles", "membership.roles"]


def test_removing_a_member(team):
    dataset = team["dataset"]
    _client(team["staff"]).post(reverse("annotation:manage-member-roles", args=[dataset.pk, team["reviewer"].pk]),
                                {"remove": "1"})
    assert not Membership.objects.filter(dataset=dataset, user=team["reviewer"]).exists()
    event = AuditEvent.objects.exclude(action__startswith="auth.").get()
    assert event.action == "membership.remove" and event.actor == team["staff"]


def test_roles_of_someone_outside_the_dataset_are_not_found(team):
    url = reverse("annotation:manage-member-roles", args=[team["dataset"].pk, team["outsider"].pk])
    assert _client(team["admin"]).post(url, {"roles": ["admin"]}).status_code == 404


def _images(dataset, n):
    study = study_make(dataset)
    return [image_make(study, position=i) for i in range(n)]


def test_hand_out_and_progress(team):
    dataset = team["dataset"]
    second = user_make("ann2")
    Membership.objects.create(dataset=dataset, user=second, role="annotator")
    _images(dataset, 4)
    client = _client(team["admin"])
    response = client.post(reverse("annotation:manage-work", args=[dataset.pk]), {
        "annotators": [team["annotator"].pk, second.pk], "annotators_per_image": "1"})
    assert response.status_code == 200
    assert Assignment.objects.filter(image__study__dataset=dataset).count() == 4
    assert Assignment.objects.filter(annotator=second).count() == 2
    dataset.refresh_from_db()
    assert dataset.annotators_per_image == 1
    assert AuditEvent.objects.exclude(action__startswith="auth.").get(action="work.assign").detail["created"] == 4
    page = client.get(reverse("annotation:manage-work", args=[dataset.pk])).content.decode()
    assert "ann2" in page and "handed out 4 readings" in page


def test_hand_out_refuses_someone_who_is_not_an_annotator(team):
    dataset = team["dataset"]
    response = _client(team["admin"]).post(reverse("annotation:manage-work", args=[dataset.pk]), {
        "annotators": [team["reviewer"].pk], "annotators_per_image": "1"})
    assert response.status_code == 200
    assert not Assignment.objects.exists()


def test_reassign_moves_only_unstarted_images(team):
    dataset = team["dataset"]
    source, target = team["annotator"], user_make("ann2")
    Membership.objects.create(dataset=dataset, user=target, role="annotator")
    images = _images(dataset, 4)
    readings = [assignment_make(image, source) for image in images]
    Assignment.objects.filter(pk=readings[0].pk).update(status="in_progress")
    Assignment.objects.filter(pk=readings[1].pk).update(status="submitted")
    assignment_make(images[2], target)  # target already reads image 2
    response = _client(team["admin"]).post(reverse("annotation:manage-work", args=[dataset.pk]), {
        "action": "reassign", "source": source.pk, "target": target.pk})
    assert response.status_code == 200
    assert list(Assignment.objects.filter(annotator=target).order_by("image_id").values_list("image_id", flat=True)) == [
        images[2].pk, images[3].pk]
    assert Assignment.objects.filter(annotator=source).count() == 3
    assert AuditEvent.objects.exclude(action__startswith="auth.").get(action="work.reassign").detail == {
        "from": "ann1", "to": "ann2", "moved": 1, "kept": 1}


def test_dataset_page_and_home_link_the_admin_pages_for_admins_only(team):
    dataset = team["dataset"]
    members_url = reverse("annotation:manage-members", args=[dataset.pk])
    assert members_url in _client(team["admin"]).get(reverse("dataset", args=[dataset.pk])).content.decode()
    assert members_url in _client(team["admin"]).get(reverse("home")).content.decode()
    assert members_url not in _client(team["annotator"]).get(reverse("dataset", args=[dataset.pk])).content.decode()
    assert reverse("annotation:manage-new") not in _client(team["annotator"]).get(reverse("home")).content.decode()
