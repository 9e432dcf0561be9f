"""Hand-drawn outlines as real tracing produces them — crossing themselves, straying past the image
edge — are repaired, never refused: every image and every polygon imported, the repaired ones named,
and COCO areas equal to the drawn polygon's own area wherever that polygon was valid."""

from __future__ import annotations

import json
import math
import random

import pytest
from shapely import make_valid
from shapely.geometry import Polygon

from annotation.geometry import GeometryError, geometry_validate, polygon_repair
from annotation.models import Image, Region
from batches.exporting import ExportOptions, export_run
from batches.importing import ImportOptions, batch_import, problem_text
from tests.batches.test_import_support import batch_write, jpeg_bytes
from tests.factories import dataset_make

WIDTH, HEIGHT = 320, 240


def tracing(rng: random.Random, *, kind: str) -> list[list[float]]:
    """An outline traced by hand around a nodule: a wobbly ellipse of integer points. ``cross`` ends
    past its start, so the closing edge crosses the first ones (the commonest slip); ``loop`` adds a
    small loop where the hand went back; ``edge`` strays past the right edge of the image."""
    cx, cy = rng.uniform(80, 240), rng.uniform(70, 170)
    rx, ry = rng.uniform(25, 60), rng.uniform(20, 50)
    if kind == "edge":
        cx = WIDTH - rx * 0.6
    count = rng.randint(30, 80)
    end = 2 * math.pi * (1.06 if kind == "cross" else 1.0)
    points = []
    for step in range(count):
        angle = end * step / count
        wobble = 1 + rng.uniform(-0.04, 0.04)
        points.append([round(cx + rx * wobble * math.cos(angle)), round(cy + ry * wobble * math.sin(angle))])
    if kind == "loop":
        x, y = points[count // 2]
        points[count // 2 + 1:count // 2 + 1] = [[x - 4, y - 2], [x - 4, y + 3], [x + 2, y + 3]]
    return points


def test_a_valid_outline_inside_the_image_comes_back_unchanged():
    square = [[10, 10], [110, 10], [110, 60], [10, 60]]
    assert polygon_repair(square, width=WIDTH, height=HEIGHT) == (square, [])
    assert polygon_repair([*square, [10, 10]], width=WIDTH, height=HEIGHT) == (square, [])


def test_a_bowtie_keeps_its_larger_half_and_names_the_other():
    points, warnings = polygon_repair([[0, 0], [40, 40], [40, 0], [0, 20]], width=WIDTH, height=HEIGHT)
    assert Polygon(points).is_valid and Polygon(points).area == pytest.approx(
        max(p.area for p in make_valid(Polygon([[0, 0], [40, 40], [40, 0], [0, 20]])).geoms))
    assert warnings[0].startswith("the outline crosses itself (Self-intersection[")
    assert warnings[1].startswith("kept the largest of 2 parts; dropped 1 of ")
    assert warnings[-1].startswith("area ") and warnings[-1].endswith(" px² kept")


@pytest.mark.parametrize(("points", "message"), [
    ([[1, 1], [1, 1], [2, 2]], "an outline needs at least 3 distinct points, got 2"),
    ([[0, 0], [5, 5], [10, 10], [0, 0]], "polygon has no area (its points lie on one line)"),
    ([[-90, -90], [-50, -90], [-50, -50]], "all of the outline lies outside the image (320×240 px)"),
    ([[0, 0], ["a", 1], [3, 3]], "point 1 x must be a number, got str"),
])
def test_only_what_cannot_be_a_region_is_refused_with_its_message(points, message):
    with pytest.raises(GeometryError) as error:
        polygon_repair(points, width=WIDTH, height=HEIGHT)
    assert str(error.value) == message


@pytest.mark.parametrize("kind", ["cross", "loop", "edge"])
def test_every_repaired_tracing_is_a_valid_region_close_to_what_was_drawn(kind):
    rng = random.Random(kind)
    for _ in range(200):
        drawn = tracing(rng, kind=kind)
        points, warnings = polygon_repair(drawn, width=WIDTH, height=HEIGHT)
        geometry_validate("polygon", {"points": points}, width=WIDTH, height=HEIGHT)
        assert warnings or Polygon(drawn).is_valid, drawn
        if kind != "edge":  # nothing clipped: the area is that of the region the outline encloses
            enclosed = make_valid(Polygon(drawn), method="structure").area
            assert Polygon(points).area == pytest.approx(enclosed, rel=0.02)


@pytest.mark.django_db
def test_a_hand_traced_batch_imports_every_image_and_polygon(tmp_path):
    rng = random.Random(12)
    rows, files, drawn = [], {}, {}
    kinds = ["valid", "valid", "cross", "loop", "edge"]
    for case in range(30):
        images = []
        for index in range(rng.randint(1, 2)):
            name = f"images/{case}_{index}.jpg"
            files[name] = jpeg_bytes(WIDTH, HEIGHT, seed=case * 10 + index)
            regions = []
            for k in range(rng.randint(1, 2)):
                kind = rng.choice(kinds)
                points = tracing(rng, kind="cross" if kind == "valid" else kind)
                if kind == "valid":
                    points = [[round(x), round(y)] for x, y in Polygon(points).convex_hull.exterior.coords[:-1]]
                drawn[f"{case}-{index}-{k}"] = points
                regions.append({"shape": "polygon", "points": points, "label": "nodule", "id": f"{case}-{index}-{k}"})
            images.append({"file": name, "regions": regions})
        rows.append({"study": f"CASE-{case}", "patient": f"P-{case}", "images": images})
    dataset = dataset_make(name="traced")
    path = batch_write(tmp_path / "batch", rows, files)
    report = batch_import(dataset=dataset, path=path)
    assert [p for p in report.problems if p["level"] == "error"] == []
    assert Image.objects.filter(study__dataset=dataset).count() == len(files)
    assert Region.objects.filter(image__study__dataset=dataset).count() == len(drawn)
    invalid = {key for key, points in drawn.items()
               if not Polygon(points).is_valid or any(x > WIDTH for x, _ in points)}
    named = {problem_text(p) for p in report.problems if p["level"] == "warning"}
    for region in Region.objects.filter(source_id__in=invalid).select_related("image__study"):
        where = [text for text in named if text.startswith(f"line {int(region.image.study.accession[5:]) + 1} ")]
        assert any("outline repaired: " in text for text in where)
        assert region.source_points == drawn[region.source_id]
    assert report.counts["regions_repaired"] == len(invalid) > 0

    out = tmp_path / "coco"
    export_run(dataset=dataset, out=out, options=ExportOptions(format="coco", status="all"))
    coco = json.loads(next(out.rglob("instances.json")).read_text())
    for annotation in coco["annotations"]:
        if annotation["source_id"] not in invalid:
            own = Polygon(drawn[annotation["source_id"]]).area
            assert annotation["area"] == pytest.approx(own, rel=0.02)

    again = batch_import(dataset=dataset, path=path)
    assert again.counts["regions_existing"] == len(drawn) and again.counts["images_existing"] == len(files)
    assert "regions_created" not in again.counts and "regions_updated" not in again.counts


@pytest.mark.django_db
def test_strict_keeps_the_drawn_outline_or_nothing(tmp_path):
    rows = [{"study": "CASE-1", "patient": "P-1", "images": [{"file": "a.jpg", "regions": [
        {"shape": "polygon", "points": [[0, 0], [40, 40], [40, 0], [0, 40]]}]}]}]
    dataset = dataset_make(name="strict-traced")
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, {"a.jpg": jpeg_bytes()}),
                          options=ImportOptions(strict=True))
    assert [problem_text(p) for p in report.problems][0].startswith(
        "line 1 (CASE-1) images[0].regions[0]: geometry: polygon crosses itself")
    assert not Image.objects.filter(study__dataset=dataset).exists()
