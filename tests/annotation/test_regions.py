"""Region service and API: validation, measures, optimistic locking, history, blind reading."""

import math

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from annotation import services
from annotation.models import RegionRevision
from tests.factories import SQUARE, assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db
COMPLETE = {"diagnosis": "nodule", "organ_level": "breast", "echogenicity": "hypoechoic"}


@pytest.fixture
def setup():
    reader, other = user_make("reader"), user_make("other")
    dataset = dataset_make(members={"annotator": [reader, other]})
    image = image_make(study_make(dataset), width=400, height=300, spacing=0.1)
    return {"reader": reader, "other": other, "dataset": dataset, "image": image,
            "assignment": assignment_make(image, reader), "other_assignment": assignment_make(image, other)}


def _create(setup, **overrides):
    kwargs = {"image": setup["image"], "author": setup["reader"], "assignment": setup["assignment"],
              "shape": "polygon", "geometry": SQUARE, "attributes": COMPLETE}
    kwargs.update(overrides)
    return services.region_create(**kwargs)


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_create_measures_in_mm_and_records_revision(setup):
    region = _create(setup)
    assert region.version == 1
    assert region.bbox == [10, 10, 100, 50]
    assert region.area_px == 5000
    assert region.area_mm2 == pytest.approx(50.0)
    assert region.long_axis_mm == pytest.approx(math.hypot(10, 5), abs=0.01)
    assert region.revisions.get().action == RegionRevision.Action.CREATE
    setup["assignment"].refresh_from_db()
    assert setup["assignment"].status == "in_progress"


def test_line_length_in_mm_without_area(setup):
    region = _create(setup, shape="line", geometry={"points": [[0, 0], [30, 40]]}, attributes={})
    assert region.long_axis_mm == pytest.approx(5.0)
    assert region.area_px == 0


@pytest.mark.parametrize(("shape", "geometry", "message"), [
    ("polygon", {"points": [[1, 1], [500, 1], [1, 50]]}, "outside the image"),
    ("polygon", {"points": [[1, 1], [50, 1]]}, "at least 3 points"),
    ("polygon", {"points": [[0, 0], [100, 100], [100, 0], [0, 100]]}, "crosses itself"),
    ("polygon", {"points": [[1, 1], [float("nan"), 1], [1, 50]]}, "finite number"),
    ("polygon", {"points": [[1, 1], [1e300, 1], [1, 50]]}, "out of range"),
    ("polygon", {"points": [[1, 1], ["a", 1], [1, 50]]}, "must be a number"),
    ("ellipse", {"center": [5, 5], "radii": [50, 10]}, "outside the image"),
    ("ellipse", {"center": [100, 100], "radii": [0, 10]}, "greater than zero"),
    ("rectangle", {"points": [[1, 1], [1, 50]]}, "no area"),
    ("star", {"points": [[1, 1]]}, "unknown shape"),
])
def test_bad_geometry_is_refused_with_a_clear_message(setup, shape, geometry, message):
    with pytest.raises(ValidationError) as caught:
        _create(setup, shape=shape, geometry=geometry)
    assert message in str(caught.value)


def test_bad_attributes_are_refused_naming_the_attribute(setup):
    with pytest.raises(ValidationError) as caught:
        _create(setup, attributes={"echogenicity": "glowing"})
    assert "echogenicity" in caught.value.message_dict["attributes"][0]


def test_stale_update_raises_conflict_and_keeps_the_first_save(setup):
    region = _create(setup)
    services.region_update(region=region, actor=setup["reader"], expected_version=1,
                           changes={"label": "cyst"})
    with pytest.raises(services.RegionConflict) as caught:
        services.region_update(region=region, actor=setup["reader"], expected_version=1,
                               changes={"attributes": {"echogenicity": "anechoic"}})
    assert caught.value.current.version == 2
    assert caught.value.changed == ["label"]
    region.refresh_from_db()
    assert region.label == "cyst" and region.attributes["echogenicity"] == "hypoechoic"


def test_history_lists_every_change_in_order(setup):
    region = _create(setup)
    region = services.region_update(region=region, actor=setup["reader"], expected_version=1,
                                    changes={"geometry": {"points": [[0, 0], [50, 0], [50, 50]]}})
    services.region_delete(region=region, actor=setup["reader"], expected_version=2)
    history = list(region.revisions.values_list("version", "action", "changed"))
    assert history[0][:2] == (1, "create")
    assert history[1] == (2, "update", ["geometry"])
    assert history[2] == (3, "delete", ["deleted"])
    region.refresh_from_db()
    assert region.is_deleted and region.area_px == 1250


def test_api_stale_save_returns_409_with_current_region(setup):
    region = _create(setup)
    client = _api(setup["reader"])
    first = client.patch(f"/api/v1/regions/{region.pk}/", {"version": 1, "label": "mass"}, format="json")
    assert first.status_code == 200 and first.json()["version"] == 2
    second = client.patch(f"/api/v1/regions/{region.pk}/", {"version": 1, "label": "cyst"}, format="json")
    assert second.status_code == 409
    body = second.json()
    assert body["current"]["label"] == "mass" and body["current"]["version"] == 2
    assert body["changed"] == ["label"]


def test_api_bad_geometry_returns_400_with_message(setup):
    response = _api(setup["reader"]).post("/api/v1/regions/", {
        "image": setup["image"].pk, "shape": "polygon", "geometry": {"points": [[1, 1], [2, 2]]}}, format="json")
    assert response.status_code == 400
    assert "at least 3 points" in response.json()["geometry"][0]


def test_blind_reading_hides_the_other_readers_regions_until_both_submit(setup):
    _create(setup)
    other_client = _api(setup["other"])
    listed = other_client.get(f"/api/v1/regions/?image={setup['image'].pk}").json()["results"]
    assert listed == []
    services.assignment_submit(assignment=setup["assignment"])
    assert other_client.get(f"/api/v1/regions/?image={setup['image'].pk}").json()["results"] == []
    services.assignment_submit(assignment=setup["other_assignment"])
    listed = other_client.get(f"/api/v1/regions/?image={setup['image'].pk}").json()["results"]
    assert len(listed) == 1


def test_outsider_gets_404_and_reader_cannot_see_history(setup):
    region = _create(setup)
    outsider = user_make("outsider")
    assert _api(outsider).get(f"/api/v1/regions/?image={setup['image'].pk}").status_code == 404
    assert _api(outsider).get(f"/api/v1/regions/{region.pk}/").status_code == 404
    assert _api(setup["reader"]).get(f"/api/v1/regions/{region.pk}/history/").status_code == 403
    reviewer = user_make("rev")
    services.membership_add(dataset=setup["dataset"], user=reviewer, role="reviewer")
    history = _api(reviewer).get(f"/api/v1/regions/{region.pk}/history/").json()["results"]
    assert [h["action"] for h in history] == ["create"] and history[0]["actor"] == "reader"


def test_submit_requires_the_lexicons_required_attributes(setup):
    region = _create(setup, attributes={"echogenicity": "hypoechoic"})
    with pytest.raises(ValidationError) as caught:
        services.assignment_submit(assignment=setup["assignment"])
    assert f"region {region.pk} (lesion): diagnosis is required" in caught.value.message_dict["regions"]
    from django.utils import translation

    with translation.override("zh-hans"), pytest.raises(ValidationError) as caught:
        services.assignment_submit(assignment=setup["assignment"])
    assert f"区域 {region.pk}（lesion）：diagnosis 为必填项" in caught.value.message_dict["regions"]
    services.region_update(region=region, actor=setup["reader"], expected_version=1, changes={"attributes": COMPLETE})
    assert services.assignment_submit(assignment=setup["assignment"]).status == "submitted"


def test_organ_fills_in_its_body_system(setup):
    assert _create(setup).attributes["body_system_level"] == "breast_and_axilla"


def test_author_restores_a_deleted_region_with_its_history(setup):
    region = _create(setup)
    client = _api(setup["reader"])
    assert client.delete(f"/api/v1/regions/{region.pk}/?version=1").status_code == 204
    assert client.get(f"/api/v1/regions/{region.pk}/").status_code == 404
    # another reader's region, deleted or not, is not revealed
    assert _api(setup["other"]).post(f"/api/v1/regions/{region.pk}/restore/").status_code == 404
    restored = client.post(f"/api/v1/regions/{region.pk}/restore/")
    assert restored.status_code == 200 and restored.json()["id"] == region.pk and restored.json()["version"] == 3
    assert list(region.revisions.values_list("action", flat=True)) == ["create", "delete", "restore"]
