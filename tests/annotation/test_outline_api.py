"""Outline proposal API: answers for whoever may draw on the image, creates nothing, explains refusals."""

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from rest_framework.test import APIClient
from shapely.geometry import Point, Polygon

from annotation.models import Assignment, Region
from tests.annotation.scans import HEIGHT, WIDTH, lesion_outline, scan
from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db
LESION = lesion_outline()


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def setup():
    reader, other, reviewer = user_make("reader"), user_make("other"), user_make("reviewer")
    dataset = dataset_make(members={"annotator": [reader, other], "reviewer": [reviewer]})
    study = study_make(dataset)
    image = image_make(study, width=WIDTH, height=HEIGHT, content=_png(scan(LESION)))
    blank = image_make(study, width=WIDTH, height=HEIGHT, position=1,
                       content=_png(np.full((HEIGHT, WIDTH), 90, dtype=np.uint8)))
    assignment_make(blank, reader)
    return {"reader": reader, "other": other, "reviewer": reviewer, "image": image, "blank": blank,
            "assignment": assignment_make(image, reader)}


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _propose(user, image, body, **extra):
    return _api(user).post(f"/api/v1/images/{image.pk}/outline-proposals/", body, format="json", **extra)


def test_box_prompt_returns_a_polygon_around_the_lesion_and_creates_nothing(setup):
    response = _propose(setup["reader"], setup["image"], {"box": list(LESION.bounds)})
    assert response.status_code == 200
    body = response.json()
    assert body["shape"] == "polygon"
    assert 0 <= body["score"] <= 1
    outline = Polygon(body["points"])
    assert outline.intersection(LESION).area / outline.union(LESION).area >= 0.85
    assert not Region.objects.exists()


def test_accepted_proposal_saves_through_the_regions_api(setup):
    click = LESION.representative_point()
    proposal = _propose(setup["reader"], setup["image"], {"point": [click.x, click.y]}).json()
    saved = _api(setup["reader"]).post(
        "/api/v1/regions/",
        {"image": setup["image"].pk, "shape": proposal["shape"], "geometry": {"points": proposal["points"]}},
        format="json",
    )
    assert saved.status_code == 201, saved.json()
    assert saved.json()["version"] == 1


def test_excluded_click_stays_outside(setup):
    x0, y0, x1, y1 = LESION.bounds
    excluded = [x1 - 0.2 * (x1 - x0), (y0 + y1) / 2]
    response = _propose(setup["reader"], setup["image"], {"box": [x0, y0, x1, y1], "exclude": [excluded]})
    assert response.status_code == 200
    assert not Polygon(response.json()["points"]).contains(Point(excluded))


def test_nothing_to_outline_returns_422_with_a_message(setup):
    response = _propose(setup["reader"], setup["blank"], {"point": [200, 150]})
    assert response.status_code == 422
    assert "boundary" in response.json()["detail"]


@pytest.mark.parametrize(("body", "message"), [
    ({"point": [WIDTH + 10, 20]}, "outside"),
    ({"box": [100, 100, 100, 200]}, "too small"),
    ({"point": [10]}, "two numbers"),
    ({}, "either a point or a box"),
    ({"point": [10, 10], "box": [0, 0, 50, 50]}, "either a point or a box"),
    ({"point": [100, 100], "exclude": "everywhere"}, "exclude"),
])
def test_bad_prompt_returns_400_with_the_reason(setup, body, message):
    response = _propose(setup["reader"], setup["image"], body)
    assert response.status_code == 400
    assert message in str(response.json())


def test_not_a_number_is_refused_with_400(setup):
    response = _api(setup["reader"]).post(
        f"/api/v1/images/{setup['image'].pk}/outline-proposals/", data='{"point": [NaN, 10]}',
        content_type="application/json",
    )
    assert response.status_code == 400


def test_permission_follows_drawing_on_the_image(setup):
    body = {"box": list(LESION.bounds)}
    outsider = user_make("outsider")
    assert _propose(outsider, setup["image"], body).status_code == 404
    # A member of the dataset without this image in their queue cannot see it either.
    assert _propose(setup["other"], setup["image"], body).status_code == 404
    assert _propose(setup["reviewer"], setup["image"], body).status_code == 200
    Assignment.objects.filter(pk=setup["assignment"].pk).update(status=Assignment.Status.SUBMITTED)
    closed = _propose(setup["reader"], setup["image"], body)
    assert closed.status_code == 403
    assert "closed" in closed.json()["detail"]


def test_missing_image_is_404(setup):
    response = _api(setup["reader"]).post("/api/v1/images/999999/outline-proposals/", {"point": [1, 1]},
                                          format="json")
    assert response.status_code == 404
