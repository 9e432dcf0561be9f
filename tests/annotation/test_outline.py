"""Outline proposals on generated ultrasound-like images whose lesion is known exactly (no database)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import Point, Polygon

from annotation.outline import OutlineNotFound, OutlinePromptError, outline_propose
from tests.annotation.scans import BANNER_ROWS, HEIGHT, WIDTH, caliper_marks, lesion_outline, scan


def iou(a: Polygon, b: Polygon) -> float:
    return a.intersection(b).area / a.union(b).area


def inscribed_ellipse(box) -> Polygon:
    x0, y0, x1, y1 = box
    angles = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    return Polygon(np.c_[(x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(angles), (y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(angles)])


@pytest.fixture(scope="module")
def lesion() -> Polygon:
    return lesion_outline()


@pytest.fixture(scope="module")
def pixels(lesion) -> np.ndarray:
    return scan(lesion)


def test_box_prompt_outlines_the_lesion_better_than_the_inscribed_ellipse(lesion, pixels):
    proposal = outline_propose(pixels=pixels, box=lesion.bounds)
    outline = Polygon(proposal.points)
    assert outline.is_valid
    assert iou(outline, lesion) >= 0.86
    assert iou(outline, lesion) >= iou(inscribed_ellipse(lesion.bounds), lesion) + 0.04
    assert 0.0 <= proposal.score <= 1.0


def test_click_inside_the_lesion_outlines_it(lesion, pixels):
    click = lesion.representative_point()
    proposal = outline_propose(pixels=pixels, point=(click.x, click.y))
    assert iou(Polygon(proposal.points), lesion) >= 0.75


def test_click_off_centre_still_finds_the_whole_lesion(lesion, pixels):
    x0, y0, x1, y1 = lesion.bounds
    proposal = outline_propose(pixels=pixels, point=(x0 + 0.3 * (x1 - x0), (y0 + y1) / 2))
    assert iou(Polygon(proposal.points), lesion) >= 0.7


def test_caliper_marks_do_not_pull_the_outline(lesion, pixels):
    clean = scan(lesion, calipers=False)
    click = lesion.representative_point()
    for prompt in ({"box": lesion.bounds}, {"point": (click.x, click.y)}):
        marked = Polygon(outline_propose(pixels=pixels, **prompt).points)
        unmarked = Polygon(outline_propose(pixels=clean, **prompt).points)
        assert iou(marked, unmarked) >= 0.9, prompt
        for x, y in caliper_marks(lesion):
            assert not marked.contains(Point(x, y)), prompt


def test_banner_above_a_lesion_near_the_top_stays_out_of_the_outline():
    high = lesion_outline(cx=240, cy=BANNER_ROWS + 50, rx=60, ry=36)
    pixels = scan(high)
    click = high.representative_point()
    outline = Polygon(outline_propose(pixels=pixels, point=(click.x, click.y)).points)
    assert outline.bounds[1] >= BANNER_ROWS - 2
    assert iou(outline, high) >= 0.7


def test_excluded_click_is_left_outside(lesion, pixels):
    x0, y0, x1, y1 = lesion.bounds
    excluded = (x1 - 0.2 * (x1 - x0), (y0 + y1) / 2)
    proposal = outline_propose(pixels=pixels, box=lesion.bounds, exclude=[excluded])
    assert not Polygon(proposal.points).contains(Point(excluded))


def test_outline_is_one_ring_of_at_most_a_few_hundred_vertices(lesion, pixels):
    proposal = outline_propose(pixels=pixels, box=lesion.bounds, max_vertices=40)
    assert 3 <= len(proposal.points) <= 40
    assert proposal.points[0] != proposal.points[-1]
    assert Polygon(proposal.points).is_valid


def test_colour_pixels_are_read_as_gray(lesion, pixels):
    rgb = np.repeat(pixels[:, :, None], 3, axis=2)
    gray = outline_propose(pixels=pixels, box=lesion.bounds)
    colour = outline_propose(pixels=rgb, box=lesion.bounds)
    assert gray.points == colour.points


def test_blank_image_finds_nothing():
    blank = np.full((HEIGHT, WIDTH), 90, dtype=np.uint8)
    with pytest.raises(OutlineNotFound):
        outline_propose(pixels=blank, point=(200, 150))
    with pytest.raises(OutlineNotFound):
        outline_propose(pixels=blank, box=(150, 100, 250, 200))


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ({"point": (WIDTH + 5, 10)}, "outside"),
        ({"point": (-1, 10)}, "outside"),
        ({"point": (float("nan"), 10)}, "finite"),
        ({"point": (10,)}, "two numbers"),
        ({"point": ("10", 10)}, "numbers"),
        ({"box": (100, 100, 100, 180)}, "too small"),
        ({"box": (100, 100, 180, 102)}, "too small"),
        ({"box": (100, 100, float("inf"), 180)}, "finite"),
        ({"box": (WIDTH + 10, 10, WIDTH + 50, 60)}, "outside"),
        ({"box": (1, 2, 3)}, "four numbers"),
        ({}, "either"),
        ({"point": (10, 10), "box": (0, 0, 50, 50)}, "either"),
        ({"point": (100, 100), "exclude": [(float("nan"), 3)]}, "finite"),
    ],
)
def test_bad_prompt_is_refused_with_a_reason(pixels, prompt, message):
    with pytest.raises(OutlinePromptError, match=message):
        outline_propose(pixels=pixels, **prompt)
    assert issubclass(OutlinePromptError, ValueError)


def test_box_drawn_from_any_corner_is_the_same_box(lesion, pixels):
    x0, y0, x1, y1 = lesion.bounds
    assert outline_propose(pixels=pixels, box=(x1, y1, x0, y0)) == outline_propose(pixels=pixels, box=(x0, y0, x1, y1))


def test_trees_stored_as_arrays_predict_as_fitted(tmp_path):
    from annotation.outline import Forest

    # Two stumps on feature 1 (threshold 0.5) and feature 0 (threshold -1): a leaf is its own child.
    forest = Forest(
        feature=np.array([1, 0, 0, 0, 0, 0]),
        threshold=np.array([0.5, np.inf, np.inf, -1.0, np.inf, np.inf]),
        left=np.array([1, 1, 2, 4, 4, 5]),
        right=np.array([2, 1, 2, 5, 4, 5]),
        value=np.array([0.0, 1.0, 2.0, 0.0, 10.0, 20.0]),
        roots=np.array([0, 3]),
        depth=1,
        baseline=0.5,
    )
    features = np.array([[0.0, 0.0], [0.0, 1.0], [-2.0, 0.5], [-2.0, 0.6]])
    assert forest.predict(features).tolist() == [21.5, 22.5, 11.5, 12.5]
    forest.save(tmp_path / "trees.npz")
    assert Forest.load(tmp_path / "trees.npz").predict(features).tolist() == [21.5, 22.5, 11.5, 12.5]


def test_network_layers_compute_what_they_stand_for():
    from scipy import ndimage

    from annotation.outline import _conv3, _pool, _up

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 6, 8)).astype(np.float32)
    weight = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    # A 3x3 convolution with zero padding is a correlation summed over the input channels.
    expected = np.stack(
        [[sum(ndimage.correlate(x[n, c], weight[o, c], mode="constant") for c in range(3)) + bias[o] for o in range(4)] for n in range(2)]
    )
    assert np.allclose(_conv3(x, weight, bias), expected, atol=1e-4)
    assert _pool(x).shape == (2, 3, 3, 4)
    assert _pool(x)[1, 2, 1, 3] == x[1, 2, 2:4, 6:8].max()
    # A 2x2 transposed convolution with stride 2 spreads every cell over four, weighted per position.
    up_weight = rng.normal(size=(3, 5, 2, 2)).astype(np.float32)
    up_bias = rng.normal(size=5).astype(np.float32)
    grown = _up(x, up_weight, up_bias)
    assert grown.shape == (2, 5, 12, 16)
    i, j, a, b = 4, 5, 1, 0
    assert np.isclose(grown[1, 3, 2 * i + a, 2 * j + b], (x[1, :, i, j] * up_weight[:, 3, a, b]).sum() + up_bias[3], atol=1e-5)


def test_box_network_reads_a_crop_and_its_mirror_alike(tmp_path):
    from annotation.outline import BoxNet

    rng = np.random.default_rng(3)
    width, depth = 2, 1
    arrays = {}

    def conv(name, given, out, size=3):
        arrays[f"0.{name}.w"] = rng.normal(scale=0.5, size=(out, given, size, size)).astype(np.float32)
        arrays[f"0.{name}.b"] = rng.normal(scale=0.1, size=out).astype(np.float32)

    conv("enc0.a", 4, width), conv("enc0.b", width, width)
    conv("mid.a", width, 2 * width), conv("mid.b", 2 * width, 2 * width)
    arrays["0.up0.w"] = rng.normal(scale=0.5, size=(2 * width, width, 2, 2)).astype(np.float32)
    arrays["0.up0.b"] = np.zeros(width, np.float32)
    conv("dec0.a", 2 * width, width), conv("dec0.b", width, width)
    conv("out", width, 1, size=1)
    net = BoxNet(arrays=arrays, members=1, depth=depth, margin=0.25)
    cells = rng.random((8, 8)).astype(np.float32)
    probability = net.probability(cells)
    assert probability.shape == (8, 8)
    assert ((probability > 0) & (probability < 1)).all()
    # Each member reads the crop and its mirror image, so a mirrored crop reads as the mirrored answer.
    assert np.allclose(net.probability(cells[:, ::-1]), probability[:, ::-1], atol=1e-6)
    # Stored in half precision: the same answer to well within a hundredth.
    net.save(tmp_path / "net.npz")
    assert np.allclose(BoxNet.load(tmp_path / "net.npz").probability(cells), probability, atol=0.01)
