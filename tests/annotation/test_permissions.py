"""The one permission module, asked by the API and the pages: blind double reading end to end, study
reports only to their readers, a submitted reading closed in the services themselves, and a dataset
admin allowed wherever a reviewer is."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from rest_framework.test import APIClient

from annotation import permissions, services
from annotation.models import Region
from tests.factories import SQUARE, assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db

REPORT = "Right breast at 10 o'clock: oval hypoechoic mass 1.0 x 0.5 cm."


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def reading(django_capture_on_commit_callbacks):
    """Two readers of one image (reader A drew a region), a third annotator of the dataset reading only
    another image, a reviewer and a dataset admin who is not staff."""
    a, b, c = user_make("reader-a"), user_make("reader-b"), user_make("reader-c")
    reviewer, admin = user_make("rev"), user_make("dataset-admin")
    dataset = dataset_make(members={"annotator": [a, b, c], "reviewer": [reviewer], "admin": [admin]})
    study = study_make(dataset, report=REPORT)
    image = image_make(study)
    other_study = study_make(dataset, report=REPORT)
    other_image = image_make(other_study)
    assignment_a, assignment_b = assignment_make(image, a), assignment_make(image, b)
    assignment_make(other_image, c)
    region = services.region_create(image=image, author=a, assignment=assignment_a, shape="polygon", geometry=SQUARE)
    return {"a": a, "b": b, "c": c, "reviewer": reviewer, "admin": admin, "dataset": dataset, "study": study,
            "image": image, "region": region, "assignment_a": assignment_a, "assignment_b": assignment_b,
            "capture": django_capture_on_commit_callbacks}


def _submit_both(reading):
    with reading["capture"](execute=True):
        for key in ("assignment_a", "assignment_b"):
            Region.objects.filter(assignment=reading[key]).update(attributes={})
            services.assignment_submit_imported(assignment=reading[key])


def test_an_annotator_who_reads_another_image_never_reaches_the_region(reading):
    _submit_both(reading)  # even once both readers submitted
    client = _api(reading["c"])
    region_id = reading["region"].pk
    assert client.get(f"/api/v1/regions/{region_id}/").status_code == 404
    assert client.get(f"/api/v1/regions/{region_id}/report-findings/").status_code == 404
    assert client.get(f"/api/v1/regions/?image={reading['image'].pk}").status_code == 404


def test_a_co_reader_sees_the_other_reading_only_after_both_submitted(reading):
    client = _api(reading["b"])
    region_id = reading["region"].pk
    assert client.get(f"/api/v1/regions/{region_id}/").status_code == 404
    assert client.get(f"/api/v1/regions/?image={reading['image'].pk}").json()["results"] == []
    _submit_both(reading)
    assert client.get(f"/api/v1/regions/{region_id}/").status_code == 200


def test_a_reader_added_later_waits_until_they_have_submitted_too(reading):
    _submit_both(reading)
    late = user_make("late-reader")
    late_assignment = assignment_make(reading["image"], late)
    client = _api(late)
    assert client.get(f"/api/v1/regions/{reading['region'].pk}/").status_code == 404
    assert client.get(f"/api/v1/regions/?image={reading['image'].pk}").json()["results"] == []
    services.assignment_submit_imported(assignment=late_assignment)
    assert client.get(f"/api/v1/regions/{reading['region'].pk}/").status_code == 200


def test_study_alignment_is_refused_to_an_annotator_with_no_image_of_the_study(reading):
    url = f"/api/v1/studies/{reading['study'].pk}/alignment/"
    assert _api(reading["c"]).get(url).status_code == 404
    client = Client()
    client.force_login(reading["c"])
    assert client.get(f"/images/{reading['image'].pk}/report/").status_code == 404
    assert _api(reading["a"]).get(url).status_code == 200
    assert _api(reading["reviewer"]).get(url).status_code == 200
    assert _api(user_make("outsider")).get(url).status_code == 404


def test_a_submitted_reading_is_closed_in_the_service_itself(reading):
    services.assignment_submit_imported(assignment=reading["assignment_a"])
    region = reading["region"]
    with pytest.raises(PermissionDenied):
        services.region_create(image=reading["image"], author=reading["a"], assignment=reading["assignment_a"],
                               shape="polygon", geometry=SQUARE)
    with pytest.raises(PermissionDenied):
        services.region_update(region=region, actor=reading["a"], expected_version=region.version,
                               changes={"label": "cyst"})
    with pytest.raises(PermissionDenied):
        services.region_delete(region=region, actor=reading["a"], expected_version=region.version)
    assert _api(reading["a"]).patch(f"/api/v1/regions/{region.pk}/", {"version": region.version, "label": "x"},
                                    format="json").status_code == 403
    # an admin's correction goes through, and is recorded
    response = _api(reading["admin"]).patch(f"/api/v1/regions/{region.pk}/",
                                            {"version": region.version, "label": "cyst"}, format="json")
    assert response.status_code == 200 and response.json()["label"] == "cyst"


def test_restoring_a_live_region_is_a_conflict_not_a_server_error(reading):
    region = reading["region"]
    response = _api(reading["a"]).post(f"/api/v1/regions/{region.pk}/restore/")
    assert response.status_code == 409
    assert response.json()["current"]["id"] == region.pk


def test_restoring_another_readers_region_is_not_revealed(reading):
    region = reading["region"]
    services.region_delete(region=region, actor=reading["a"], expected_version=region.version)
    assert _api(reading["b"]).post(f"/api/v1/regions/{region.pk}/restore/").status_code == 404
    assert _api(reading["a"]).post(f"/api/v1/regions/{region.pk}/restore/").status_code == 200


def test_a_patch_that_changes_nothing_records_no_revision(reading):
    region = reading["region"]
    response = _api(reading["a"]).patch(f"/api/v1/regions/{region.pk}/",
                                        {"version": region.version, "label": region.label}, format="json")
    assert response.status_code == 200 and response.json()["version"] == region.version
    assert region.revisions.count() == 1


def test_roles_allow_admin_wherever_a_reviewer_may():
    assert permissions.roles_allow({"admin"}, ["reviewer"])
    assert permissions.roles_allow({"reviewer"}, permissions.REVIEW_ROLES)
    assert not permissions.roles_allow({"annotator"}, ["reviewer"])
    assert not permissions.roles_allow({"reviewer"}, permissions.ADMIN_ROLES)
    assert not permissions.roles_allow(set(), None)


def test_each_region_says_whether_the_caller_may_edit_it(reading):
    region_id, image_id = reading["region"].pk, reading["image"].pk
    assert _api(reading["a"]).get(f"/api/v1/regions/?image={image_id}").json()["results"][0]["can_edit"] is True
    rows = _api(reading["reviewer"]).get(f"/api/v1/regions/?image={image_id}").json()["results"]
    assert [(row["id"], row["can_edit"]) for row in rows] == [(region_id, False)]
    assert _api(reading["admin"]).get(f"/api/v1/regions/{region_id}/").json()["can_edit"] is True
    services.assignment_submit_imported(assignment=reading["assignment_a"])
    assert _api(reading["a"]).get(f"/api/v1/regions/{region_id}/").json()["can_edit"] is False


def test_without_blind_reading_co_readers_see_each_other_at_once_and_others_still_nothing(reading):
    dataset = reading["dataset"]
    dataset.settings = {**dataset.settings, "blind_reading": False}
    dataset.save(update_fields=["settings"])
    region_id = reading["region"].pk
    assert _api(reading["b"]).get(f"/api/v1/regions/{region_id}/").status_code == 200
    assert _api(reading["c"]).get(f"/api/v1/regions/{region_id}/").status_code == 404
