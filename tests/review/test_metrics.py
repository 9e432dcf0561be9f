"""Agreement statistics against values worked out by hand and against the reference formulas on the
same data. No database: ``review.metrics`` is pure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alignment.matching import regions_pair
from review import metrics


def _kappa_by_hand(a, b) -> float:
    categories = sorted(set(a) | set(b))
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    expected = sum((a.count(c) / n) * (b.count(c) / n) for c in categories)
    return (observed - expected) / (1 - expected)


def test_cohen_kappa_perfect_chance_and_systematic_disagreement():
    assert metrics.cohen_kappa(["hypo", "iso", "hypo", "an"], ["hypo", "iso", "hypo", "an"]) == pytest.approx(1.0)
    # Agreement exactly at chance level: observed 0.5, expected 0.5.
    assert metrics.cohen_kappa(["y", "y", "n", "n"], ["y", "n", "y", "n"]) == pytest.approx(0.0)
    # Systematic disagreement: every "y" of one reader is an "n" of the other.
    assert metrics.cohen_kappa(["y", "y", "n", "n"], ["n", "n", "y", "y"]) == pytest.approx(-1.0)


def test_cohen_kappa_textbook_table():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 → po 0.70, pe 0.50, κ 0.40.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert metrics.cohen_kappa(a, b) == pytest.approx(0.4)
    assert metrics.cohen_kappa(a, b) == pytest.approx(_kappa_by_hand(a, b))


def test_cohen_kappa_matches_the_formula_on_random_data():
    rng = np.random.default_rng(7)
    a = list(rng.choice(["a", "b", "c", "d"], size=300))
    b = [x if rng.random() < 0.6 else rng.choice(["a", "b", "c", "d"]) for x in a]
    assert metrics.cohen_kappa(a, b) == pytest.approx(_kappa_by_hand(a, b))


def test_cohen_kappa_undefined_cases_are_none():
    assert metrics.cohen_kappa([], []) is None
    assert metrics.cohen_kappa(["x", "x"], ["x", "x"]) is None  # one category: 0/0
    with pytest.raises(ValueError):
        metrics.cohen_kappa(["x"], ["x", "y"])


def test_krippendorff_alpha_on_krippendorffs_own_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, missing
    # values; nominal alpha = 0.743.
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [list(column) for column in zip(*coders)]
    assert metrics.krippendorff_alpha(units) == pytest.approx(0.743, abs=0.001)


def test_krippendorff_alpha_perfect_systematic_and_undefined():
    assert metrics.krippendorff_alpha([["a", "a"], ["b", "b"], ["a", "a"]]) == pytest.approx(1.0)
    assert metrics.krippendorff_alpha([["a", "b"], ["b", "a"]]) < 0
    assert metrics.krippendorff_alpha([["a", "a"], ["a", "a"]]) is None  # one category
    assert metrics.krippendorff_alpha([["a", None], [None, "b"]]) is None  # nothing read twice


def test_percent_agreement_ignores_units_read_once():
    assert metrics.percent_agreement([["a", "a"], ["a", "b"], ["a", None]]) == 0.5


def test_iou_and_dice_of_known_polygons():
    from annotation.geometry import geometry_iou

    left = {"points": [[0, 0], [2, 0], [2, 2], [0, 2]]}
    right = {"points": [[1, 0], [3, 0], [3, 2], [1, 2]]}
    iou = geometry_iou("polygon", left, "polygon", right)
    assert iou == pytest.approx(1 / 3)  # overlap 2, union 6
    assert metrics.dice_from_iou(iou) == pytest.approx(0.5)  # 2·2 / (4 + 4)
    assert geometry_iou("rectangle", {"points": [[0, 0], [2, 2]]}, "polygon", left) == pytest.approx(1.0)
    far = {"points": [[10, 10], [12, 10], [12, 12]]}
    assert geometry_iou("polygon", left, "polygon", far) == 0.0
    circle = {"center": [0, 0], "radii": [10, 10], "rotation": 0}
    half = {"center": [0, 0], "radii": [5, 5], "rotation": 0}
    assert geometry_iou("ellipse", circle, "ellipse", half) == pytest.approx(0.25, abs=0.002)


def test_regions_pair_uses_the_best_assignment_and_the_threshold():
    a = [("polygon", {"points": [[0, 0], [10, 0], [10, 10], [0, 10]]}),
         ("polygon", {"points": [[20, 0], [30, 0], [30, 10], [20, 10]]})]
    b = [("polygon", {"points": [[21, 0], [31, 0], [31, 10], [21, 10]]}),
         ("polygon", {"points": [[1, 0], [11, 0], [11, 10], [1, 10]]}),
         ("polygon", {"points": [[100, 100], [110, 100], [110, 110]]})]
    pairs = regions_pair(a, b)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)]
    assert pairs[0][2] == pytest.approx(90 / 110)
    assert regions_pair(a, b, threshold=0.95) == []
    assert regions_pair(a, []) == [] and regions_pair([], b) == []


def test_distribution_histogram_and_quantiles():
    summary = metrics.distribution([0.05, 0.55, 0.95, 1.0])
    assert summary["n"] == 4 and summary["counts"][0] == 1 and summary["counts"][5] == 1 and summary["counts"][9] == 2
    assert summary["median"] == pytest.approx(0.75)


def test_reader_agreement_per_attribute_two_and_three_readers():
    two = [metrics.LesionReading(unit=u, reader=r, attributes={"echo": v})
           for u, values in enumerate([("hypo", "hypo"), ("iso", "iso"), ("hypo", "iso"), ("an", "an")])
           for r, v in zip(("r1", "r2"), values)]
    result = metrics.reader_agreement(two, ["echo", "margins"])
    assert result["echo"]["units"] == 4 and result["echo"]["agreement"] == 0.75
    assert result["echo"]["cohen_kappa"] == pytest.approx(
        _kappa_by_hand(["hypo", "iso", "hypo", "an"], ["hypo", "iso", "iso", "an"]))
    assert result["margins"]["units"] == 0  # nobody tagged it
    three = two + [metrics.LesionReading(unit=0, reader="r3", attributes={"echo": "hypo"})]
    mixed = metrics.reader_agreement(three, ["echo"])["echo"]
    assert mixed["cohen_kappa"] is None and mixed["krippendorff_alpha"] is not None
    # A reader who drew the lesion but left the attribute empty disagrees with one who tagged it.
    untagged = [metrics.LesionReading(0, "r1", {"echo": "hypo"}), metrics.LesionReading(0, "r2", {})]
    assert metrics.reader_agreement(untagged, ["echo"])["echo"]["agreement"] == 0.0


def test_report_vs_annotation_and_consensus_agreement():
    pairs = [({"echo": {"hypo"}}, {"echo": "hypo"}), ({"echo": {"hypo"}}, {"echo": "iso"}),
             ({"echo": {"hypo"}, "margins": {"wd"}}, {"margins": ["wd", "x"]}), ({"echo": {"an"}}, {})]
    result = metrics.report_annotation_agreement(pairs)
    assert result["echo"] == {"n": 2, "agree": 1, "agreement": 0.5}
    assert result["margins"] == {"n": 1, "agree": 1, "agreement": 1.0}
    rows = [("a", "echo", "hypo", "hypo"), ("a", "margins", "wd", "wd"), ("b", "echo", "iso", "hypo"),
            ("b", "margins", "wd", "wd")]
    consensus = metrics.consensus_agreement(rows)
    assert consensus["a"]["agreement"] == 1.0 and consensus["a"]["cohen_kappa"] == pytest.approx(1.0)
    assert consensus["b"]["agreement"] == 0.5 and consensus["b"]["n"] == 2
    assert not math.isnan(consensus["b"]["cohen_kappa"])
