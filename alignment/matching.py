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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from annotation.geometry import geometry_iou
from annotation.lexicons import term_code

from .nlp.vocabulary import NON_LESION_KINDS

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
# Diffuse changes and tissue a report names without drawing anything (a region is not expected for them):
# the parser's tissue kinds (hyperplasia, duct ectasia, composition, background enhancement) and
# hydronephrosis.
NON_FOCAL_KINDS = NON_LESION_KINDS | {"hydronephrosis"}
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
    section: str | None = None
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
    site: tuple[str, ...] = ()
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
    for word, site in (("UP", "upper"), ("UPPER", "upper"), ("MID", "mid"), ("LOW", "lower"), ("LOWER", "lower"),
                       ("ISTH", "isthmus"), ("ISTHMUS", "isthmus")):
        if re.search(rf"\b{word}\b", upper):
            out["site"] = site
            break
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
        # Body markers are written by hand: an hour off is common, two hours is another lesion.
        add("clock", finding.clock, lesion.clock,
            2.5 if distance <= 0.5 else 1.0 if distance <= 1 else -1.0 if distance <= 1.5 else -4.0)
    elif finding.quadrant in _QUADRANTS and lesion.clock:
        quadrant = clock_quadrant(lesion.clock, lesion.laterality)
        if quadrant:
            add("quadrant", finding.quadrant, quadrant, 1.0 if quadrant == finding.quadrant else -1.5)
    if finding.distance_cm is not None and lesion.distance_cm is not None:
        delta = abs(finding.distance_cm - lesion.distance_cm)
        add("distance_from_nipple", finding.distance_cm, lesion.distance_cm,
            1.0 if delta <= 1 else 0.0 if delta <= 2 else -1.5)
    levels = {"upper", "mid", "lower", "isthmus"}
    finding_site, lesion_site = set(finding.site) & levels, set(lesion.site) & levels
    if finding_site and lesion_site:
        add("site", sorted(finding_site), sorted(lesion_site), 1.5 if finding_site & lesion_site else -2.0)
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
        # Lesion keys are the annotator's own numbering: weak evidence either way.
        add("order", finding.ordinal, lesion.ordinal, 0.75 if finding.ordinal == lesion.ordinal else -0.25)
    return round(sum(item["score"] for item in evidence.values()), 3), evidence


def _assign(findings: Sequence[FindingInput], lesions: Sequence[LesionInput], scores: np.ndarray,
            evidence: dict, rows: Sequence[int], cols: Sequence[int]) -> list[Match]:
    """One-to-one assignment of ``rows`` (finding indexes) to ``cols`` (lesion indexes), maximising the
    total score, where leaving a finding unmatched is worth ``MATCH_THRESHOLD``."""
    if not rows or not cols:
        return []
    sub = scores[np.ix_(rows, cols)]
    n, m = sub.shape
    cost = np.full((n, m + n), 1e6)
    cost[:, :m] = -sub
    for i in range(n):
        cost[i, m + i] = -MATCH_THRESHOLD
    chosen_rows, chosen_cols = linear_sum_assignment(cost)
    return [Match(findings[rows[i]].key, lesions[cols[j]].key, float(sub[i, j]), evidence[rows[i], cols[j]])
            for i, j in zip(chosen_rows, chosen_cols) if j < m]


def match_source(findings: Sequence[FindingInput], lesions: Sequence[LesionInput]) -> list[Match]:
    """Align the lesion findings of a report to the lesions of one annotation source.

    Primary findings (those that give a size, or sit outside the impression) are assigned one-to-one
    first. Then each secondary finding (an impression line, a restatement) attaches to the lesion it
    repeats when the evidence is firm and nothing contradicts it; the rest are assigned one-to-one to
    the lesions still free. Leaving a finding or a lesion unmatched is always possible.
    """
    findings = [f for f in findings if f.is_lesion]
    if not findings or not lesions:
        return []
    scores = np.zeros((len(findings), len(lesions)))
    evidence: dict[tuple[int, int], dict] = {}
    for i, finding in enumerate(findings):
        for j, lesion in enumerate(lesions):
            scores[i, j], evidence[i, j] = pair_score(finding, lesion)
    primary = [i for i, f in enumerate(findings) if f.size_mm or f.section != "impression"]
    secondary = [i for i in range(len(findings)) if i not in primary]
    matches = _assign(findings, lesions, scores, evidence, primary, list(range(len(lesions))))
    taken = {m.lesion for m in matches}
    index_of = {lesion.key: j for j, lesion in enumerate(lesions)}
    left = []
    for i in secondary:
        candidates = [index_of[key] for key in taken]
        best = max(candidates, key=lambda j: scores[i, j], default=None)
        if best is not None and scores[i, best] >= REPEAT_THRESHOLD and _consistent(evidence[i, best]):
            matches.append(Match(findings[i].key, lesions[best].key, float(scores[i, best]), evidence[i, best],
                                 repeat=True))
        else:
            left.append(i)
    free = [j for j, lesion in enumerate(lesions) if lesion.key not in taken]
    matches.extend(_assign(findings, lesions, scores, evidence, left, free))
    matched = {m.finding for m in matches}
    for i, finding in enumerate(findings):
        if finding.key in matched:
            continue
        j = int(np.argmax(scores[i]))
        if scores[i, j] >= REPEAT_THRESHOLD and _consistent(evidence[i, j]):
            matches.append(Match(finding.key, lesions[j].key, float(scores[i, j]), evidence[i, j], repeat=True))
    return matches


def findings_merge_continuations(findings: Sequence[FindingInput]) -> list[FindingInput]:
    """Fold a finding that only goes on describing the lesion before it ("The lesion is round.", "It
    has indistinct margins.") into that lesion's finding: no location or size of its own, no other
    lesion kind, same section. The merged finding spans both, so both sentences align."""
    merged: list[FindingInput] = []
    for finding in findings:
        previous = merged[-1] if merged else None
        continues = (
            previous is not None and previous.is_lesion and not finding.is_located and not finding.negated
            and finding.lesion in (None, "lesion", previous.lesion) and finding.section == previous.section
            and finding.assessment is None and (finding.attributes or finding.negated_attributes)
        )
        if not continues:
            merged.append(finding)
            continue
        attributes = {k: frozenset(v) for k, v in previous.attributes.items()}
        for name, values in finding.attributes.items():
            attributes[name] = attributes.get(name, frozenset()) | values
        negated = {k: frozenset(v) for k, v in previous.negated_attributes.items()}
        for name, values in finding.negated_attributes.items():
            negated[name] = negated.get(name, frozenset()) | values
        merged[-1] = replace(previous, end=max(previous.end, finding.end), attributes=attributes,
                             negated_attributes=negated)
    return merged


def _consistent(evidence: Mapping[str, Mapping]) -> bool:
    """A repeat mention restates its lesion: nothing in it may speak against the lesion (no contrary
    feature, no attribute described otherwise, a size within tolerance), and a clock position, when
    both sides have one, must agree within half an hour (a different clock is usually a different
    lesion, not a restatement)."""
    if any(item["score"] < 0 for item in evidence.values()):
        return False
    if evidence.get("attributes", {}).get("annotation"):
        return False  # it describes the lesion differently: more likely another lesion
    if "size" in evidence and evidence["size"]["score"] <= 0:
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


def attribute_conflicts(finding: FindingInput, lesion: LesionInput,
                        single_valued: Iterable[str] = ()) -> list[Conflict]:
    """Report vs annotation on one aligned pair: a value the report asserts that the lesion is tagged
    otherwise, or a value the report denies that the lesion is tagged with. For ``single_valued``
    attributes (one value per lesion) an untagged attribute counts too: the report describes a
    feature the annotation does not record. Multi-valued ones are often tagged partially on purpose."""
    conflicts = []
    single_valued = set(single_valued)
    for name, values in sorted(finding.attributes.items()):
        tagged = lesion.attributes.get(name, frozenset())
        if (tagged or name in single_valued) and not values & tagged:
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


def udaf_tirads_points_range(attributes: Mapping[str, Iterable[str]]) -> tuple[int, int] | None:
    """The ACR TI-RADS points a nodule tagged with US-365K (udaf) values can have: udaf names
    composition, echogenicity and margins closely enough, but not orientation (taller-than-wide: 0 or
    3) nor the kind of calcification (1 to 3), so the answer is a range. None without echogenicity."""
    def has(name: str, *values: str) -> bool:
        return bool(set(attributes.get(name, ())) & set(values))

    echo = set(attributes.get("echogenicity", ()))
    if not echo:
        return None
    inner = set(attributes.get("internal_characteristics", ()))
    if has("diagnosis", "cyst") or echo == {"anechoic"} and not inner & {"solid_components"}:
        composition = 0
    elif inner & {"mixed_cystic_and_solid_mass", "complex_cystic_solid", "cystic_components", "septations"}:
        composition = 1
    else:
        composition = 2
    echo_points = 0 if echo == {"anechoic"} else 2 if "hypoechoic" in echo else 1
    margin = 2 if has("shape", "irregular", "lobulated") else 0
    low = composition + echo_points + margin
    high = low + 3  # orientation unknown
    if "calcifications" in inner:
        low, high = low + 1, high + 3
    return low, high


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
        if points is not None:
            low = high = points
            source = "report points"
        elif lesion is not None and tirads_points_of is not None:
            low = high = tirads_points_of(lesion.attributes)
            source = "tagged features"
        elif lesion is not None:
            low, high = udaf_tirads_points_range(lesion.attributes) or (None, None)
            source = "tagged features (US-365K)"
        else:
            low = high = None
        if low is None:
            return None
        possible = sorted({tirads_level_of(p).upper() for p in range(low, high + 1) if tirads_level_of(p)})
        if possible and category not in possible:
            return Conflict("assessment_inconsistent", ("tirads", finding.key), "tirads_level",
                            {"report": category, "expected": possible, "points": [low, high], "from": source},
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
