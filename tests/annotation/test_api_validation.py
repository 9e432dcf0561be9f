"""Region API: every bad geometry or attribute gets 400 with a message a person can act on, through
the same service the importer uses; history through the API."""

import pytest
from rest_framework.test import APIClient

from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader_image():
    reader = user_make("reader")
    dataset = dataset_make(members={"annotator": [reader]})
    image = image_make(study_make(dataset), width=400, height=300, spacing=0.2)
    assignment_make(image, reader)
    client = APIClient()
    client.force_authenticate(reader)
    return client, image


@pytest.mark.parametrize(("shape", "geometry", "field", "message"), [
    ("polygon", {"points": [[1, 1], [401, 1], [1, 50]]}, "geometry", "outside the image"),
    ("polygon", {"points": [[1, 1], [50, 1]]}, "geometry", "at least 3 points"),
    ("polygon", {"points": [[0, 0], [100, 100], [100, 0], [0, 100]]}, "geometry", "crosses itself"),
    ("polygon", {"points": [[1, 1], [1e308, 1], [1, 50]]}, "geometry", "out of range"),
    ("line", {"points": [[5, 5]]}, "geometry", "at least 2 points"),
    ("point", {"points": [[-1, 5]]}, "geometry", "outside the image"),
    ("ellipse", {"center": [200, 150], "radii": [-3, 4]}, "geometry", "greater than zero"),
    ("hexagon", {"points": [[1, 1]]}, "shape", "unknown shape"),
])
def test_bad_geometry_returns_400_naming_the_problem(reader_image, shape, geometry, field, message):
    client, image = reader_image
    response = client.post("/api/v1/regions/", {"image": image.pk, "shape": shape, "geometry": geometry},
                           format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]


@pytest.mark.parametrize(("geometry", "message"), [
    ({"points": [[0, 0], [100, 100], [100, 0], [0, 100]]}, "多边形自相交（Self-intersection["),
    ({"points": [[1, 1], ["a", 1], [1, 50]]}, "第 1 个点的 x 必须是数字，实际为 str"),
])
def test_a_bad_outline_is_named_in_the_readers_language(reader_image, geometry, message):
    client, image = reader_image
    response = client.post("/api/v1/regions/", {"image": image.pk, "shape": "polygon", "geometry": geometry},
                           format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 400
    assert response.json()["geometry"][0].startswith(message)


def test_a_value_outside_the_lexicon_is_named_in_the_readers_language(reader_image):
    client, image = reader_image
    response = client.post("/api/v1/regions/", {
        "image": image.pk, "shape": "rectangle", "geometry": {"points": [[10, 10], [60, 40]]},
        "attributes": {"echogenicity": "sparkly"}}, format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 400
    assert response.json()["attributes"][0].startswith("echogenicity: 'sparkly' 不是 echogenicity 的取值（可用：")


def test_nan_in_the_json_body_returns_400(reader_image):
    client, image = reader_image
    body = f'{{"image": {image.pk}, "shape": "polygon", "geometry": {{"points": [[1, 1], [NaN, 1], [1, 50]]}}}}'
    response = client.post("/api/v1/regions/", body, content_type="application/json")
    assert response.status_code == 400


def test_unknown_attribute_value_returns_400(reader_image):
    client, image = reader_image
    response = client.post("/api/v1/regions/", {
        "image": image.pk, "shape": "rectangle", "geometry": {"points": [[10, 10], [60, 40]]},
        "attributes": {"echogenicity": "sparkly"}}, format="json")
    assert response.status_code == 400
    assert "sparkly" in response.json()["attributes"][0] and "echogenicity" in response.json()["attributes"][0]


def test_measures_in_mm_follow_pixel_spacing(reader_image):
    client, image = reader_image
    body = client.post("/api/v1/regions/", {"image": image.pk, "shape": "rectangle",
                                            "geometry": {"points": [[10, 10], [60, 40]]}}, format="json").json()
    assert body["area_mm2"] == pytest.approx(50 * 30 * 0.2 * 0.2)
    assert body["long_axis_mm"] == pytest.approx((50**2 + 30**2) ** 0.5 * 0.2, abs=0.01)
    line = client.post("/api/v1/regions/", {"image": image.pk, "shape": "line",
                                            "geometry": {"points": [[0, 0], [30, 40]]}}, format="json").json()
    assert line["long_axis_mm"] == pytest.approx(10.0)


def test_every_save_is_in_the_history_with_who_and_what(reader_image):
    client, image = reader_image
    region = client.post("/api/v1/regions/", {"image": image.pk, "shape": "rectangle",
                                              "geometry": {"points": [[10, 10], [60, 40]]}}, format="json").json()
    client.patch(f"/api/v1/regions/{region['id']}/", {"version": 1, "attributes": {"diagnosis": "cyst"}},
                 format="json")
    admin = user_make("boss", staff=True)
    staff = APIClient()
    staff.force_authenticate(admin)
    history = staff.get(f"/api/v1/regions/{region['id']}/history/").json()["results"]
    assert [(h["version"], h["action"], h["actor"]) for h in history] == [(1, "create", "reader"), (2, "update", "reader")]
    assert history[1]["changed"] == ["attributes"]
