"""Matching report findings to annotated lesions, and the conflicts that follow. Pure functions over
plain data: no Django, no database, so every rule is testable on a hand-made study.

A finding's location and description are evidence. Each (finding, lesion) pair is scored feature by
feature — laterality, clock position (circular distance), quadrant, distance from the nipple, view,
organ, size (report mm vs the region measured through pixel spacing), attribute agreement, lesion kind
and order ("second nodule") — and each annotation source (a reader, the import, the consensus) is
solved as an assignment problem with a "no match" option, so a finding may stay unaligned and a lesion
unreported. A second pass attaches repeat mentions (an impression restating a finding) to the lesion
they repeat.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from annotation.geometry import geometry_iou
from annotation.lexicons import term_code

MATCH_THRESHOLD = 1.5  # the score a pair needs to beat "no match"
REPEAT_THRESHOLD = 3.0  # a second mention of an already matched lesion needs firmer evidence
SIZE_TOLERANCE = 0.30  # relative difference of the long axis still counted as the same size
SIZE_MIN_ABS_MM = 2.0  # below this absolute difference sizes always agree (caliper placement)
IOU_THRESHOLD = 0.5
_SUSPICIOUS = {
    ("shape", "irregular"), ("margins", "ill_defined_indistinct"), ("posterior_acoustics", "shadowing"),
    ("internal_characteristics", "calcifications"), ("vascularity", "increased_vascularity"),
    ("echogenicity", "mixed_echogenicity"), ("internal_characteristics", "complex_cystic_solid"),
    ("orientation", "not_parallel"), ("margin", "indistinct"), ("margin", "angular"),
    ("margin", "microlobulated"), ("margin", "spiculated"), ("posterior_features", "shadowing"),
    ("calcifications", "calcifications_in_a_mass"), ("echo_pattern", "complex_cystic_and_solid"),
}
_DESCRIPTORS = {"shape", "margins", "margin", "echogenicity", "echo_pattern", "posterior_acoustics",
                "posterior_features", "orientation", "internal_characteristics", "vascularity", "calcifications"}
_BIRADS_ORDER = ["0", "1", "2", "3", "4", "4a", "4b", "4c", "5", "6"]
# Diffuse changes a report names without drawing anything (a region is not expected for them).
NON_FOCAL_KINDS = frozenset({"hyperplasia", "duct_ectasia", "hydronephrosis"})
_QUADRANTS = {"upper_outer", "upper_inner", "lower_outer", "lower_inner"}


@dataclass(frozen=True)
class FindingInput:
    """One lesion finding of the report, flattened from the parser's output."""

    key: str
    sentence_index: int
    start: int
    end: int
    organ: str | None = None
    laterality: str | None = None
    clock: str | None = None
    quadrant: str | None = None
    distance_cm: float | None = None
    size_mm: tuple[float, ...] = ()
    site: tuple[str, ...] = ()
    lesion: str | None = None
    ordinal: int | None = None
    view: str | None = None
    attributes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # asserted values, dataset lexicon
    negated_attributes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    assessment: Mapping[str, Any] | None = None
    negated: bool = False
    uncertain: bool = False
    hypothetical: bool = False
    historical: bool = False

    @property
    def is_located(self) -> bool:
        """Does the finding say where or how big? Only such a finding can be called missing from the
        images: "The lesion is oval." or "Internal calcifications are noted." describe a lesion already
        named, they do not report another one. Laterality alone is not enough: the parser carries it
        over from earlier sentences."""
        return bool(self.clock or self.quadrant or self.distance_cm is not None or self.size_mm or self.site)

    @property
    def is_lesion(self) -> bool:
        """Does this finding assert a focal lesion that should have a region?"""
        return (not self.negated and not self.hypothetical and not self.historical
                and self.lesion not in NON_FOCAL_KINDS and bool(self.lesion or self.size_mm))


@dataclass(frozen=True)
class LesionInput:
    """One annotated lesion of one source: its regions (one per image it is drawn on) and their facts."""

    key: str
    source: str
    region_ids: tuple[int, ...]
    image_ids: tuple[int, ...]
    laterality: str | None = None
    clock: str | None = None
    distance_cm: float | None = None
    view: str | None = None
    organ: str | None = None
    long_axis_mm: float | None = None
    label: str | None = None
    ordinal: int | None = None
    attributes: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    finding: str
    lesion: str
    score: float
    evidence: dict
    repeat: bool = False


# ----------------------------------------------------------------------------------------- evidence


def body_marker_parse(text: str | None) -> dict[str, Any]:
    """Read laterality, clock, distance from nipple and view from a body-marker annotation such as
    ``RT BREAST 10:00 3CMFN TRV`` or ``LT THY LONG``."""
    out: dict[str, Any] = {}
    if not text:
        return out
    upper = text.upper()
    if re.search(r"\b(RT|RIGHT|R)\b", upper):
        out["laterality"] = "right"
    elif re.search(r"\b(LT|LEFT|L)\b", upper):
        out["laterality"] = "left"
    clock = re.search(r"\b(1[0-2]|0?[1-9])(?::([0-5]\d))?\s*(?:O'?CLOCK|H\b|:)", upper + ":")
    clock = clock or re.search(r"\b(1[0-2]|0?[1-9]):([0-5]\d)\b", upper)
    if clock:
        out["clock"] = f"{int(clock.group(1))}:{clock.group(2) or '00'}"
    distance = re.search(r"(\d+(?:\.\d+)?)\s*CM\s*FN", upper)
    if distance:
        out["distance_cm"] = float(distance.group(1))
    for word, view in (("TRV", "transverse"), ("TRANS", "transverse"), ("LONG", "longitudinal"),
                       ("SAG", "longitudinal"), ("ARAD", "antiradial"), ("RAD", "radial")):
        if re.search(rf"\b{word}\b", upper):
            out["view"] = view
            break
    return out


def clock_hours(clock: str | None) -> float | None:
    if not clock:
        return None
    match = re.match(r"^(\d{1,2})(?::(\d{2}))?$", clock)
    if not match:
        return None
    hours = int(match.group(1)) % 12 + int(match.group(2) or 0) / 60
    return hours


def clock_distance(a: str | None, b: str | None) -> float | None:
    """Circular distance in hours between two clock positions (12:00 and 1:00 are one hour apart)."""
    ha, hb = clock_hours(a), clock_hours(b)
    if ha is None or hb is None:
        return None
    d = abs(ha - hb) % 12
    return min(d, 12 - d)


def clock_quadrant(clock: str | None, laterality: str | None) -> str | None:
    """The breast quadrant of a clock position: on the right breast 9–12 is upper outer, on the left
    12–3 is upper outer (the clock is read facing the patient)."""
    hours = clock_hours(clock)
    if hours is None or laterality not in ("left", "right"):
        return None
    upper = hours >= 9 or hours < 3
    lateral_side = (hours >= 6) if laterality == "right" else (hours < 6)
    if hours in (0.0, 3.0, 6.0, 9.0):
        return None  # on a boundary: no quadrant evidence either way
    return f"{'upper' if upper else 'lower'}_{'outer' if lateral_side else 'inner'}"


_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4}


def ordinal_of(text: str | None) -> int | None:
    """The lesion number a text names: ``L2`` or ``nodule 2`` → 2, "the second nodule" → 2, 结节2 → 2."""
    if not text:
        return None
    word = re.search(r"\b(first|second|third|fourth|1st|2nd|3rd|4th)\b", text, re.IGNORECASE)
    if word:
        return _ORDINAL_WORDS[word.group(1).lower()]
    number = re.search(r"(?:^L|(?:nodule|lesion|mass|cyst)\s*#?|结节|病灶|肿块)\s*(\d{1,2})\b", text, re.IGNORECASE)
    return int(number.group(1)) if number else None


def pair_score(finding: FindingInput, lesion: LesionInput) -> tuple[float, dict]:
    """Score one (finding, lesion) pair; returns the total and the per-feature evidence behind it."""
    evidence: dict[str, dict] = {}

    def add(name: str, report: Any, annotation: Any, score: float) -> None:
        evidence[name] = {"report": report, "annotation": annotation, "score": round(score, 2)}

    if finding.laterality and lesion.laterality:
        if finding.laterality == "bilateral" or finding.laterality == lesion.laterality:
            add("laterality", finding.laterality, lesion.laterality, 2.0)
        else:
            add("laterality", finding.laterality, lesion.laterality, -6.0)
    distance = clock_distance(finding.clock, lesion.clock)
    if distance is not None:
        add("clock", finding.clock, lesion.clock,
            2.5 if distance <= 0.5 else 1.0 if distance <= 1 else -0.5 if distance <= 2 else -3.0)
    elif finding.quadrant in _QUADRANTS and lesion.clock:
        quadrant = clock_quadrant(lesion.clock, lesion.laterality)
        if quadrant:
            add("quadrant", finding.quadrant, quadrant, 1.0 if quadrant == finding.quadrant else -1.5)
    if finding.distance_cm is not None and lesion.distance_cm is not None:
        delta = abs(finding.distance_cm - lesion.distance_cm)
        add("distance_from_nipple", finding.distance_cm, lesion.distance_cm,
            1.0 if delta <= 1 else 0.0 if delta <= 2 else -1.5)
    if finding.view and lesion.view:
        add("view", finding.view, lesion.view, 0.5 if finding.view == lesion.view else 0.0)
    if finding.organ and lesion.organ:
        a, b = term_code(finding.organ), term_code(lesion.organ)
        same = a == b or a.startswith(b) or b.startswith(a)
        add("organ", finding.organ, lesion.organ, 1.0 if same else -4.0)
    if finding.size_mm and lesion.long_axis_mm:
        reported = max(finding.size_mm)
        diff = abs(reported - lesion.long_axis_mm)
        relative = diff / max(reported, lesion.long_axis_mm)
        ok = relative <= SIZE_TOLERANCE or diff <= SIZE_MIN_ABS_MM
        add("size", reported, round(lesion.long_axis_mm, 1),
            2.0 * (1 - relative) if ok else (0.0 if relative <= 0.6 else -1.5))
    agree = disagree = 0
    for name, values in finding.attributes.items():
        tagged = lesion.attributes.get(name)
        if tagged:
            if values & tagged:
                agree += 1
            else:
                disagree += 1
    if agree or disagree:
        add("attributes", agree, disagree, 0.6 * agree - 0.6 * disagree)
    if finding.lesion and lesion.label:
        same = term_code(finding.lesion) == term_code(lesion.label)
        add("lesion_kind", finding.lesion, lesion.label, 0.5 if same else 0.0)
    if finding.ordinal and lesion.ordinal:
        add("order", finding.ordinal, lesion.ordinal, 1.0 if finding.ordinal == lesion.ordinal else -0.5)
    return round(sum(item["score"] for item in evidence.values()), 3), evidence


def match_source(findings: Sequence[FindingInput], lesions: Sequence[LesionInput]) -> list[Match]:
    """Align the lesion findings of a report to the lesions of one annotation source.

    First a one-to-one assignment maximising the total score, where leaving a finding unmatched is
    worth ``MATCH_THRESHOLD``; then every still-unmatched finding whose best lesion scores at least
    ``REPEAT_THRESHOLD`` is attached to it as a repeat mention (impressions restate findings).
    """
    findings = [f for f in findings if f.is_lesion]
    if not findings or not lesions:
        return []
    scores = np.zeros((len(findings), len(lesions)))
    evidence: dict[tuple[int, int], dict] = {}
    for i, finding in enumerate(findings):
        for j, lesion in enumerate(lesions):
            scores[i, j], evidence[i, j] = pair_score(finding, lesion)
    n, m = scores.shape
    # Columns m..m+n-1 are each finding's own "no match" option.
    cost = np.full((n, m + n), 1e6)
    cost[:, :m] = -scores
    for i in range(n):
        cost[i, m + i] = -MATCH_THRESHOLD
    rows, cols = linear_sum_assignment(cost)
    matches = [Match(findings[i].key, lesions[j].key, float(scores[i, j]), evidence[i, j])
               for i, j in zip(rows, cols) if j < m]
    matched = {match.finding for match in matches}
    for i, finding in enumerate(findings):
        if finding.key in matched:
            continue
        j = int(np.argmax(scores[i]))
        if scores[i, j] >= REPEAT_THRESHOLD and _consistent(evidence[i, j]):
            matches.append(Match(finding.key, lesions[j].key, float(scores[i, j]), evidence[i, j], repeat=True))
    return matches


def _consistent(evidence: Mapping[str, Mapping]) -> bool:
    """A repeat mention restates its lesion: nothing in it may speak against the lesion, and a clock
    position, when both sides have one, must agree within half an hour (a different clock is usually a
    different lesion, not a restatement)."""
    if any(item["score"] < 0 for item in evidence.values()):
        return False
    clock = evidence.get("clock")
    return clock is None or clock["score"] >= 2.5


# ----------------------------------------------------------------------------------------- conflicts


@dataclass(frozen=True)
class Conflict:
    """A disagreement before it is stored: ``identity`` names it across re-runs (what it is about),
    ``values`` the values on each side."""

    kind: str
    identity: tuple
    attribute: str = ""
    values: dict = field(default_factory=dict)
    finding: str | None = None
    lesion: str | None = None
    region_ids: tuple[int, ...] = ()
    image_id: int | None = None


def attribute_conflicts(finding: FindingInput, lesion: LesionInput) -> list[Conflict]:
    """Report vs annotation on one aligned pair: a value the report asserts that the lesion is tagged
    otherwise, or a value the report denies that the lesion is tagged with."""
    conflicts = []
    for name, values in sorted(finding.attributes.items()):
        tagged = lesion.attributes.get(name)
        if tagged and not values & tagged:
            conflicts.append(Conflict("report_vs_annotation", ("attr", finding.key, lesion.key, name), name,
                                      {"report": sorted(values), "annotation": sorted(tagged)},
                                      finding.key, lesion.key, lesion.region_ids))
    for name, denied in sorted(finding.negated_attributes.items()):
        tagged = lesion.attributes.get(name) or frozenset()
        if denied & tagged:
            conflicts.append(Conflict("report_vs_annotation", ("neg", finding.key, lesion.key, name), name,
                                      {"report": [f"no {v}" for v in sorted(denied & tagged)],
                                       "annotation": sorted(tagged)},
                                      finding.key, lesion.key, lesion.region_ids))
    return conflicts


def size_conflict(finding: FindingInput, lesion: LesionInput) -> Conflict | None:
    if not finding.size_mm or not lesion.long_axis_mm:
        return None
    reported = max(finding.size_mm)
    diff = abs(reported - lesion.long_axis_mm)
    if diff <= SIZE_MIN_ABS_MM or diff / max(reported, lesion.long_axis_mm) <= SIZE_TOLERANCE:
        return None
    return Conflict("size_mismatch", ("size", finding.key, lesion.key), "size_mm",
                    {"report": list(finding.size_mm), "annotation": round(lesion.long_axis_mm, 1)},
                    finding.key, lesion.key, lesion.region_ids)


def birads_rank(category: str | None) -> int | None:
    code = (category or "").lower().replace(" ", "")
    return _BIRADS_ORDER.index(code) if code in _BIRADS_ORDER else None


def suspicious_features(attributes: Mapping[str, Iterable[str]]) -> list[str]:
    return sorted(f"{name}={value}" for name, values in attributes.items() for value in values
                  if (name, value) in _SUSPICIOUS)


def assessment_conflict(finding: FindingInput, lesion: LesionInput | None, *, tirads_level_of=None,
                        tirads_points_of=None) -> Conflict | None:
    """An assessment category that the descriptors do not support.

    - TI-RADS: the level implied by the points the report states (or, with a TI-RADS lexicon, by the
      points of the tagged features) differs from the TR level written.
    - BI-RADS: category 2–3 although a suspicious feature is present (in the report or the tags), or
      4B and above with no suspicious feature at all.
    """
    assessment = finding.assessment or {}
    category = (assessment.get("category") or "").upper()
    system = (assessment.get("system") or "").upper()
    if not category:
        return None
    region_ids = lesion.region_ids if lesion else ()
    lesion_key = lesion.key if lesion else None
    if category.startswith("TR") and tirads_level_of is not None:
        points = assessment.get("points")
        source = "report points"
        if points is None and lesion is not None and tirads_points_of is not None:
            points, source = tirads_points_of(lesion.attributes), "tagged features"
        expected = tirads_level_of(points) if points is not None else None
        if expected and expected.upper() != category:
            return Conflict("assessment_inconsistent", ("tirads", finding.key), "tirads_level",
                            {"report": category, "expected": expected.upper(), "points": points, "from": source},
                            finding.key, lesion_key, region_ids)
        return None
    rank = birads_rank(category)
    if rank is None or "TI" in system:
        return None
    features = dict(finding.attributes)
    if lesion is not None:
        for name, values in lesion.attributes.items():
            features[name] = frozenset(features.get(name, frozenset()) | values)
    suspicious = suspicious_features(features)
    if rank <= _BIRADS_ORDER.index("3") and rank >= _BIRADS_ORDER.index("2") and suspicious:
        return Conflict("assessment_inconsistent", ("birads", finding.key), "birads",
                        {"report": category, "suspicious_features": suspicious}, finding.key, lesion_key, region_ids)
    described = sum(1 for name in features if name in _DESCRIPTORS)
    # Calling a high category unsupported needs a described lesion, not a one-word impression.
    if rank >= _BIRADS_ORDER.index("4b") and rank <= _BIRADS_ORDER.index("5") and not suspicious and described >= 3:
        return Conflict("assessment_inconsistent", ("birads", finding.key), "birads",
                        {"report": category, "suspicious_features": []}, finding.key, lesion_key, region_ids)
    return None


@dataclass(frozen=True)
class ReaderRegion:
    region_id: int
    source: str
    shape: str
    geometry: Mapping
    attributes: Mapping[str, frozenset[str]]


def reader_conflicts(image_id: int, regions: Sequence[ReaderRegion], readers: Iterable[str] = ()) -> list[Conflict]:
    """Annotator vs annotator on one image: regions of different readers are paired by IoU (Hungarian
    on 1 − IoU); a region with no partner above ``IOU_THRESHOLD`` is a conflict, and so is each
    attribute whose values differ on a matched pair. ``readers`` names every reader who submitted the
    image, so a reader who drew nothing still disagrees with one who drew a lesion."""
    by_source: dict[str, list[ReaderRegion]] = {reader: [] for reader in readers}
    for region in regions:
        if region.shape in ("polygon", "rectangle", "ellipse"):
            by_source.setdefault(region.source, []).append(region)
    sources = sorted(by_source)
    conflicts: list[Conflict] = []
    for a_index, a_source in enumerate(sources):
        for b_source in sources[a_index + 1:]:
            a_regions, b_regions = by_source[a_source], by_source[b_source]
            iou = np.array([[geometry_iou(a.shape, a.geometry, b.shape, b.geometry) for b in b_regions]
                            for a in a_regions])
            rows, cols = linear_sum_assignment(1 - iou) if iou.size else ([], [])
            paired_a, paired_b = set(), set()
            for i, j in zip(rows, cols):
                if iou[i, j] < IOU_THRESHOLD:
                    continue
                paired_a.add(i)
                paired_b.add(j)
                a, b = a_regions[i], b_regions[j]
                for name in sorted(set(a.attributes) | set(b.attributes)):
                    va, vb = a.attributes.get(name, frozenset()), b.attributes.get(name, frozenset())
                    if va != vb:
                        conflicts.append(Conflict(
                            "reader_vs_reader", ("rr-attr", image_id, a.region_id, b.region_id, name), name,
                            {a_source: sorted(va), b_source: sorted(vb), "iou": round(float(iou[i, j]), 3)},
                            region_ids=(a.region_id, b.region_id), image_id=image_id))
            for index, region in enumerate(a_regions):
                if index not in paired_a:
                    best = float(iou[index].max()) if iou.size else 0.0
                    conflicts.append(_unpaired(image_id, region, b_source, best))
            for index, region in enumerate(b_regions):
                if index not in paired_b:
                    best = float(iou[:, index].max()) if iou.size else 0.0
                    conflicts.append(_unpaired(image_id, region, a_source, best))
    return conflicts


def _unpaired(image_id: int, region: ReaderRegion, other: str, best_iou: float) -> Conflict:
    return Conflict("reader_vs_reader", ("rr-region", image_id, region.region_id, other), "region",
                    {region.source: "drawn", other: "no matching region", "best_iou": round(best_iou, 3)},
                    region_ids=(region.region_id,), image_id=image_id)
