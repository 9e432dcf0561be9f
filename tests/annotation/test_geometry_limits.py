"""Geometry bounds that keep one region save cheap: a vertex cap, numbers a float can hold, axes measured
in O(n log n), and measures recomputed only when the outline changes."""

import math
import random

import pytest
from rest_framework.test import APIClient
from shapely.geometry import MultiPoint

from annotation import geometry, services
from annotation.geometry import MAX_POINTS, GeometryError, _axes, geometry_measures, geometry_validate
from annotation.models import Region
from tests.factories import SQUARE, assignment_make, dataset_make, image_make, study_make, user_make

COMPLETE = {"diagnosis": "nodule", "organ_level": "breast", "echogenicity": "hypoechoic"}


def circle(count: int, *, radius: float = 400.0, centre: float = 500.0) -> dict:
    return {"points": [[centre + radius * math.cos(2 * math.pi * i / count),
                        centre + radius * math.sin(2 * math.pi * i / count)] for i in range(count)]}


def axes_exhaustive(coords):
    """The definition, over all pairs: longest chord, then the extent perpendicular to it (the first
    longest pair in vertex order wins a tie)."""
    best, pair = -1.0, (coords[0], coords[0])
    for i, a in enumerate(coords):
        for b in coords[i + 1:]:
            d = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
            if d > best:
                best, pair = d, (a, b)
    long_axis = math.sqrt(best)
    ux, uy = (pair[1][0] - pair[0][0]) / long_axis, (pair[1][1] - pair[0][1]) / long_axis
    projections = [-uy * x + ux * y for x, y in coords]
    return long_axis, max(projections) - min(projections)


def test_default_cap_is_two_thousand_five_hundred_points():
    assert MAX_POINTS == 2_500


def test_ten_thousand_point_convex_polygon_is_refused_with_the_cap_in_the_message():
    with pytest.raises(GeometryError, match=r"10,000 points; a region may have at most 2,500"):
        geometry_validate("polygon", circle(10_000), width=1000, height=1000)


def test_cap_is_a_parameter_for_lines_and_polygons():
    line = {"points": [[i, i] for i in range(1, 12)]}
    with pytest.raises(GeometryError, match="at most 10"):
        geometry_validate("line", line, width=100, height=100, max_points=10)
    assert len(geometry_validate("line", line, width=100, height=100, max_points=11)["points"]) == 11


def test_a_polygon_at_the_cap_is_accepted_and_measured_correctly():
    geometry = geometry_validate("polygon", circle(2_500), width=1000, height=1000)
    measures = geometry_measures("polygon", geometry, spacing_x_mm=0.1, spacing_y_mm=0.1)
    # A regular 2,500-gon of radius 400: opposite vertices 800 px apart both ways (2,500 is a multiple
    # of 4), area (n/2)·r²·sin(2π/n).
    assert measures.long_axis_px == pytest.approx(800.0, abs=0.01)
    assert measures.short_axis_px == pytest.approx(800.0, abs=0.01)
    assert measures.long_axis_mm == pytest.approx(80.0, abs=0.01)
    assert measures.area_px == pytest.approx(1250 * 400**2 * math.sin(2 * math.pi / 2500), rel=1e-9)


def test_axes_keep_their_meaning_on_a_rectangle_and_an_ellipse():
    # Long axis: the diagonal. Short axis: the extent perpendicular to the diagonal, 2·w·h/diagonal
    # (not the rectangle's narrow side).
    rectangle = geometry_measures("polygon", SQUARE)
    assert rectangle.long_axis_px == pytest.approx(math.hypot(100, 50), abs=0.01)
    assert rectangle.short_axis_px == pytest.approx(2 * 100 * 50 / math.hypot(100, 50), abs=0.01)
    ellipse = geometry_measures("ellipse", {"center": [100, 100], "radii": [40, 15], "rotation": 30},
                                spacing_x_mm=0.1, spacing_y_mm=0.2)
    assert ellipse.long_axis_px == pytest.approx(80.0, abs=0.01)
    assert ellipse.short_axis_px == pytest.approx(30.0, abs=0.05)


@pytest.mark.parametrize("brute_force", [0, geometry.BRUTE_FORCE_AXES], ids=["calipers", "pairs"])
@pytest.mark.parametrize("seed", range(40))
def test_axes_equal_the_exhaustive_definition_on_random_hulls(seed, brute_force, monkeypatch):
    monkeypatch.setattr(geometry, "BRUTE_FORCE_AXES", brute_force)
    rng = random.Random(seed)
    count = rng.choice([4, 5, 12, 60, 300])
    if seed % 2:  # integer grids give parallel edges and equally long diameters
        points = [(rng.randint(0, 12), rng.randint(0, 12)) for _ in range(count)]
    else:
        points = [(rng.uniform(0, 1000), rng.uniform(0, 1000)) for _ in range(count)]
    hull = MultiPoint(points).convex_hull
    if hull.geom_type != "Polygon":
        pytest.skip("collinear sample")
    coords = list(hull.exterior.coords)[:-1]
    assert _axes(coords) == axes_exhaustive(coords)


@pytest.mark.parametrize("bad", [10**400, -(10**400)])
@pytest.mark.parametrize("shape", ["polygon", "ellipse"])
def test_integer_too_large_for_a_float_is_a_geometry_error(shape, bad):
    geometry = ({"points": [[1, 1], [bad, 1], [1, 50]]} if shape == "polygon"
                else {"center": [50, 50], "radii": [bad, 10]})
    with pytest.raises(GeometryError, match="out of range"):
        geometry_validate(shape, geometry, width=100, height=100)


# ------------------------------------------------------------------------------ through the service and API


@pytest.fixture
def setup(db):
    reader = user_make()
    dataset = dataset_make(members={"annotator": [reader]})
    image = image_make(study_make(dataset), width=1000, height=1000, spacing=0.1)
    return {"reader": reader, "image": image, "assignment": assignment_make(image, reader)}


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_refuses_a_polygon_over_the_cap_with_400(setup):
    response = _api(setup["reader"]).post("/api/v1/regions/", {
        "image": setup["image"].pk, "shape": "polygon", "geometry": circle(10_000)}, format="json")
    assert response.status_code == 400
    assert "at most 2,500" in str(response.json())


def test_the_cap_is_the_configured_one(setup, settings):
    settings.REGION_MAX_VERTICES = 100
    response = _api(setup["reader"]).post("/api/v1/regions/", {
        "image": setup["image"].pk, "shape": "polygon", "geometry": circle(200)}, format="json")
    assert response.status_code == 400 and "at most 100" in str(response.json())


def test_api_refuses_a_coordinate_of_10_to_the_400_with_400(setup):
    huge = "1" + "0" * 400  # JSON allows it; Python reads it as an int no float can hold
    body = f'{{"image": {setup["image"].pk}, "shape": "polygon", "geometry": {{"points": [[1, 1], [{huge}, 1], [1, 50]]}}}}'

    response = _api(setup["reader"]).post("/api/v1/regions/", body, content_type="application/json")
    assert response.status_code == 400
    assert "out of range" in str(response.json())


def test_label_only_update_keeps_the_stored_measures(setup):
    region = services.region_create(image=setup["image"], author=setup["reader"], assignment=setup["assignment"],
                                    shape="polygon", geometry=SQUARE, attributes=COMPLETE)
    # Stored measures that a recomputation would overwrite show whether the update measured again.
    Region.objects.filter(pk=region.pk).update(area_px=1.0, long_axis_mm=1.0)
    region.refresh_from_db()
    region = services.region_update(region=region, actor=setup["reader"], expected_version=1,
                                    changes={"label": "mass"})
    assert (region.label, region.area_px, region.long_axis_mm) == ("mass", 1.0, 1.0)
    moved = {"points": [[x + 5, y] for x, y in SQUARE["points"]]}
    region = services.region_update(region=region, actor=setup["reader"], expected_version=2,
                                    changes={"geometry": moved})
    assert region.area_px == 5000 and region.long_axis_mm == pytest.approx(math.hypot(10, 5), abs=0.01)
