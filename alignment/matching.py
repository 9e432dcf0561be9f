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
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np

from annotation.geometry import geometry_iou
from annotation.lexicons import term_code

from .nlp.vocabulary import NON_LESION_KINDS


def _assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns of the cheapest one-to-one assignment (SciPy, imported on first use: a
    process that never matches does not load it)."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cost)


MATCH_THRESHOLD = 1.5  # the score a pair needs to beat "no match"
REPEAT_THRESHOLD = 3.0  # a second mention of an already matched lesion needs firmer evidence
SIZE_TOLERANCE = 0.30  # relative difference of the long axis still counted as the same size
SIZE_MIN_ABS_MM = 2.0  # below this absolute difference sizes always agree (caliper placement)
IOU_THRESHOLD = 0.5  # below it two outlines are two lesions
VETO = -100.0  # a contradicting location: no score elsewhere can make the pair a match
SIZE_VETO_RATIO = 2.0  # long axes further apart than this, with no location agreement, are two lesions
CONSENSUS = "consensus"  # the source name of the reviewers' consensus regions
MEASUREMENT = "organ_measurement"  # the parser's kind for an organ measured rather than a lesion
CALIPER_SHAPES = frozenset({"line"})
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

    @property
    def is_measurement(self) -> bool:
        """Does this finding measure an organ ("Right lobe: 4.9 x 1.6 x 1.8 cm")? Such a finding is no
        lesion (never "reported, not drawn"), but a caliper drawn on that organ aligns to it."""
        return (self.lesion == MEASUREMENT and bool(self.size_mm) and not self.negated
                and not self.hypothetical and not self.historical)


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
    shapes: tuple[str, ...] = ()

    @property
    def is_caliper(self) -> bool:
        """Is it drawn only as caliper lines (a measurement, which may be of an organ)?"""
        return bool(self.shapes) and set(self.shapes) <= CALIPER_SHAPES


@dataclass(frozen=True)
class Match:
    finding: str
    lesion: str
    score: float
    evidence: dict
    repeat: bool = False
    ambiguous: bool = False  # a repeat mention that fits another lesion as well: its lesion is a guess


@dataclass(frozen=True)
class StatedValues:
    """What a finding says of each attribute in the dataset's lexicon: ``asserted`` and ``denied``
    values per attribute code, in the order the report gives them."""

    asserted: dict[str, tuple[str, ...]]
    denied: dict[str, tuple[str, ...]]


def stated_values(attributes: Iterable[Mapping[str, Any]], *, lexicon: str, inferred: bool = False) -> StatedValues:
    """The one rule for which of a finding's parsed attributes are statements: values of ``lexicon``
    only; a negated value is denied, an uncertain one is neither asserted nor denied. Values the
    parser inferred (no text of their own, e.g. the organ implied by "breast") are evidence, not
    statements to hold an annotator to; ``inferred=True`` keeps them (a suggestion may use them)."""
    asserted: dict[str, dict[str, None]] = defaultdict(dict)
    denied: dict[str, dict[str, None]] = defaultdict(dict)
    for attribute in attributes:
        if attribute.get("lexicon") != lexicon or not (inferred or attribute.get("text")):
            continue
        name, value = attribute.get("name"), attribute.get("value")
        if not name or value is None:
            continue
        if attribute.get("negated"):
            denied[name][value] = None
        elif not attribute.get("uncertain"):
            asserted[name][value] = None
    return StatedValues({k: tuple(v) for k, v in asserted.items()}, {k: tuple(v) for k, v in denied.items()})


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
                       ("ISTH", "isthmus"), ("ISTHMUS", "isthmus"), ("AXILLA", "axilla"), ("AX", "axilla"),
                       ("AXILLARY", "axilla")):
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
    veto = location_veto(finding, lesion, evidence)
    if veto:
        add("veto", veto[0], veto[1], VETO)
    return round(sum(item["score"] for item in evidence.values()), 3), evidence


_LOCATION_FEATURES = ("clock", "quadrant", "distance_from_nipple", "site")


def _is_axilla(text: str | None) -> bool:
    return bool(text) and term_code(text).startswith("axilla")


def location_veto(finding: FindingInput, lesion: LesionInput, evidence: Mapping[str, Mapping]) -> tuple | None:
    """Why the pair cannot be one lesion whatever else agrees, as (report side, annotation side), or
    None. Laterality and a shared attribute are common to most lesions of a study; a place that
    contradicts them is not: another organ, the axilla against a position on the breast's clock face,
    the isthmus against a lobe, or a long axis more than ``SIZE_VETO_RATIO`` times the other's when
    no clock, quadrant, distance or site agrees."""
    if evidence.get("organ", {}).get("score", 0) < 0:
        return finding.organ, lesion.organ
    finding_axilla = "axilla" in finding.site or _is_axilla(finding.organ)
    lesion_axilla = "axilla" in lesion.site or _is_axilla(lesion.organ)
    finding_face = bool(finding.clock or finding.quadrant or finding.distance_cm is not None)
    lesion_face = bool(lesion.clock or lesion.distance_cm is not None)
    if lesion_axilla and not finding_axilla and finding_face:
        return finding.clock or finding.quadrant or f"{finding.distance_cm:g} cm FN", "axilla"
    if finding_axilla and not lesion_axilla and lesion_face:
        return "axilla", lesion.clock or f"{lesion.distance_cm:g} cm FN"
    levels = {"upper", "mid", "lower", "isthmus"}
    finding_site, lesion_site = set(finding.site) & levels, set(lesion.site) & levels
    if finding_site and lesion_site and ("isthmus" in finding_site) != ("isthmus" in lesion_site):
        return sorted(finding_site), sorted(lesion_site)
    if finding.size_mm and lesion.long_axis_mm:
        reported = max(finding.size_mm)
        ratio = max(reported, lesion.long_axis_mm) / max(min(reported, lesion.long_axis_mm), 1e-6)
        located = any(evidence.get(name, {}).get("score", 0) > 0 for name in _LOCATION_FEATURES)
        if ratio > SIZE_VETO_RATIO and not located:
            return reported, round(lesion.long_axis_mm, 1)
    return None


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
    chosen_rows, chosen_cols = _assignment(cost)
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
    index_of = {lesion.key: j for j, lesion in enumerate(lesions)}
    finding_index = {finding.key: i for i, finding in enumerate(findings)}
    holder = {index_of[m.lesion]: findings[finding_index[m.finding]] for m in matches}

    restated: set[int] = set()  # lesions an earlier restatement took
    categories: dict[int, set[str]] = defaultdict(set)  # lesion -> the assessment categories its mentions give
    for j, first in holder.items():
        categories[j] |= _categories(first)

    def repeat_of(i: int, candidates: Iterable[int], settle: bool = True) -> Match | None:
        """The lesion finding ``i`` restates, among ``candidates``: firm evidence and nothing against
        it, judged against the lesion or, for what the report says (size, attributes), against the
        mention that took the lesion (a report that misstates a lesion misstates it every time).

        When it fits several alike ("2. Nodule in the mid portion of the left lobe" of two such nodules),
        an impression lists the lesions once each and in the order the findings described them: the
        first of those no other restatement took. ``settle=False`` returns None for such a finding, so
        the restatements that fit one lesion only are placed first.

        A report gives a lesion one category: a lesion already called TR4 is not what a line calling
        its lesion TR3 restates (of two alike nodules a reader drew one, and the other line is about
        the one not drawn). Such a line that still fits several is a guess all the same."""
        fitting = [(_repeat_score(findings[i], holder.get(j), scores[i, j], evidence[i, j]), j) for j in candidates]
        fitting = sorted(((score, j) for score, j in fitting if score is not None), key=lambda item: -item[0])
        if not fitting:
            return None
        ambiguous = len([k for other, k in fitting if other >= fitting[0][0] - 0.25]) > 1
        stated = _categories(findings[i])
        fitting = [(score, j) for score, j in fitting if not stated or not categories[j] - stated]
        if not fitting:
            return None
        score, j = fitting[0]
        tied = [k for other, k in fitting if other >= score - 0.25]
        ambiguous = ambiguous or len(tied) > 1
        if ambiguous:
            if not settle:
                return None
            free = [k for k in tied if k not in restated] or tied
            j = min(free, key=lambda k: holder[k].start if k in holder else float("inf"))
        restated.add(j)
        categories[j] |= stated
        return Match(findings[i].key, lesions[j].key, float(scores[i, j]), evidence[i, j], repeat=True,
                     ambiguous=ambiguous)

    def best_fit(i: int) -> float:
        fits = [_repeat_score(findings[i], holder.get(j), scores[i, j], evidence[i, j]) for j in holder]
        return max((score for score in fits if score is not None), default=float("-inf"))

    # The line that fits a lesion best claims it first ("Anechoic cyst ..., TR1" the cyst before "Nodule
    # ..., TR4" does), so a category taken by a poorer fit does not keep the better one out.
    left, unsettled = [], []
    for i in sorted(secondary, key=lambda i: -best_fit(i)):
        repeat = repeat_of(i, holder, settle=False)
        if repeat is not None:
            matches.append(repeat)
        else:
            unsettled.append(i)
    for i in sorted(unsettled):
        repeat = repeat_of(i, holder)
        if repeat is not None:
            matches.append(repeat)
        else:
            left.append(i)
    left.sort()
    taken = {m.lesion for m in matches}
    free = [j for j, lesion in enumerate(lesions) if lesion.key not in taken]
    assigned = _assign(findings, lesions, scores, evidence, left, free)
    matches.extend(assigned)
    holder.update({index_of[m.lesion]: findings[finding_index[m.finding]] for m in assigned})
    for m in assigned:
        categories[index_of[m.lesion]] |= _categories(findings[finding_index[m.finding]])
    matched = {m.finding for m in matches}
    for i, finding in enumerate(findings):
        if finding.key not in matched:
            repeat = repeat_of(i, holder)
            if repeat is not None:
                matches.append(repeat)
    return matches


def _categories(finding: FindingInput) -> set[str]:
    """The assessment category a finding states ("TR4", "4A"), as a set of at most one."""
    category = ((finding.assessment or {}).get("category") or "").upper()
    return {category} if category else set()


_PLACE_FEATURES = ("laterality", "clock", "quadrant", "distance_from_nipple", "site", "organ", "veto")


def _repeat_score(finding: FindingInput, first: FindingInput | None, score: float,
                  evidence: Mapping[str, Mapping]) -> float | None:
    """How firmly ``finding`` restates the lesion ``first`` was matched to, or None when it does not."""
    if score >= REPEAT_THRESHOLD and _consistent(evidence):
        return score
    if first is None or not _restates(finding, first, evidence):
        return None
    placed = sum(item["score"] for name, item in evidence.items() if name not in ("size", "attributes"))
    return placed if placed >= REPEAT_THRESHOLD else None


def _same_size(a: float, b: float) -> bool:
    return abs(a - b) <= SIZE_MIN_ABS_MM or abs(a - b) / max(a, b) <= SIZE_TOLERANCE


def _restates(finding: FindingInput, first: FindingInput, evidence: Mapping[str, Mapping]) -> bool:
    """Does ``finding`` say of the lesion what ``first`` said (the mention the lesion was matched to)?
    Its place must agree with the lesion; its size and attributes need only agree with ``first``."""
    if any(evidence[name]["score"] < 0 for name in _PLACE_FEATURES if name in evidence):
        return False
    clock = evidence.get("clock")
    if clock is not None and clock["score"] < 2.5:
        return False
    if finding.size_mm and first.size_mm and not _same_size(max(finding.size_mm), max(first.size_mm)):
        return False
    return all(values & first.attributes[name] for name, values in finding.attributes.items()
               if name in first.attributes)


def measurement_score(finding: FindingInput, lesion: LesionInput) -> tuple[float, dict] | None:
    """Score an organ measurement against a caliper: None when the caliper cannot be of that organ
    (another organ, side or part of it); otherwise agreement of side and site, and of the drawn length
    with the nearest reported dimension."""
    evidence: dict[str, dict] = {}

    def add(name: str, report: Any, annotation: Any, score: float) -> None:
        evidence[name] = {"report": report, "annotation": annotation, "score": round(score, 2)}

    if finding.organ and lesion.organ:
        a, b = term_code(finding.organ), term_code(lesion.organ)
        if not (a == b or a.startswith(b) or b.startswith(a)):
            return None
        add("organ", finding.organ, lesion.organ, 1.0)
    if finding.laterality in ("left", "right") and lesion.laterality:
        if finding.laterality != lesion.laterality:
            return None
        add("laterality", finding.laterality, lesion.laterality, 1.0)
    levels = {"upper", "mid", "lower", "isthmus"}
    finding_site, lesion_site = set(finding.site) & levels, set(lesion.site) & levels
    if finding_site and lesion_site:
        if ("isthmus" in finding_site) != ("isthmus" in lesion_site):
            return None
        add("site", sorted(finding_site), sorted(lesion_site), 0.5)
    if lesion.long_axis_mm:
        reported = _reported_size(finding, lesion)
        relative = abs(reported - lesion.long_axis_mm) / max(reported, lesion.long_axis_mm)
        add("size", reported, round(lesion.long_axis_mm, 1), 1.0 * (1 - relative))
    return round(MATCH_THRESHOLD + 0.5 + sum(item["score"] for item in evidence.values()), 3), evidence


def match_measurements(findings: Sequence[FindingInput], lesions: Sequence[LesionInput],
                       taken: Iterable[str] = ()) -> list[Match]:
    """Align organ measurements of the report to the calipers of one source that no lesion finding
    took: one-to-one, a caliper of that organ, side and part only (see ``measurement_score``)."""
    findings = [f for f in findings if f.is_measurement]
    taken = set(taken)
    calipers = [lesion for lesion in lesions if lesion.is_caliper and lesion.key not in taken]
    if not findings or not calipers:
        return []
    scores = np.full((len(findings), len(calipers)), -1e3)
    evidence: dict[tuple[int, int], dict] = {}
    for i, finding in enumerate(findings):
        for j, caliper in enumerate(calipers):
            scored = measurement_score(finding, caliper)
            if scored is not None:
                scores[i, j], evidence[i, j] = scored
    return _assign(findings, calipers, scores, evidence, list(range(len(findings))), list(range(len(calipers))))


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
        # A field of its own ("Nodule 1: left lobe, mid portion. Size: 1.7 x 1.0 cm."): a size with
        # nothing else gives the lesion before it, which had none, its size.
        sized = (
            previous is not None and previous.is_lesion and not previous.size_mm and bool(finding.size_mm)
            and finding.lesion in (None, "lesion", previous.lesion) and finding.section == previous.section
            and not (finding.clock or finding.quadrant or finding.distance_cm is not None or finding.site)
            and finding.assessment is None and not finding.negated
        )
        if sized:
            merged[-1] = replace(previous, end=max(previous.end, finding.end), size_mm=finding.size_mm)
            previous = merged[-1]
            if not (finding.attributes or finding.negated_attributes):
                continue
            continues = True
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
class Denied:
    """A value the report denies ("no internal vascularity") on the report's side of a conflict. Stored
    in the disagreement's values as the text ``"no <code>"``, which reviewers read and earlier rows hold."""

    value: str
    PREFIX = "no "

    def __str__(self) -> str:
        return f"{self.PREFIX}{self.value}"

    @classmethod
    def parse(cls, stored: Any) -> Denied | None:
        """The denied value a stored side value holds, or None for an asserted one."""
        text = str(stored)
        return cls(text[len(cls.PREFIX):]) if text.startswith(cls.PREFIX) else None


class Outline(StrEnum):
    """A reader's side of a reader-vs-reader conflict about a region: they drew it, or drew nothing that
    overlaps it by ``IOU_THRESHOLD``. Stored as these texts."""

    DRAWN = "drawn"
    MISSING = "no matching region"


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
                                      {"report": [str(Denied(v)) for v in sorted(denied & tagged)],
                                       "annotation": sorted(tagged)},
                                      finding.key, lesion.key, lesion.region_ids))
    return conflicts


def _reported_size(finding: FindingInput, lesion: LesionInput) -> float:
    """The reported size a drawn length is held to: a lesion's long axis is its largest dimension; a
    caliper on an organ measures whichever dimension the view shows, so the nearest one."""
    if finding.is_measurement:
        return min(finding.size_mm, key=lambda size: abs(size - lesion.long_axis_mm))
    return max(finding.size_mm)


def size_conflict(finding: FindingInput, lesion: LesionInput) -> Conflict | None:
    if not finding.size_mm or not lesion.long_axis_mm:
        return None
    reported = _reported_size(finding, lesion)
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


def iou_matrix(first: Sequence[tuple[str, Mapping]], second: Sequence[tuple[str, Mapping]]) -> np.ndarray:
    """IoU of every (first, second) pair of outlines, given as ``(shape, geometry)``."""
    return np.array([[geometry_iou(sa, ga, sb, gb) for sb, gb in second] for sa, ga in first]).reshape(
        len(first), len(second))


def pairs_by_iou(iou: np.ndarray, *, threshold: float = IOU_THRESHOLD) -> list[tuple[int, int, float]]:
    """The one rule that says which outlines of two readers show the same lesion: the Hungarian
    assignment on 1 − IoU, keeping pairs with IoU ≥ ``threshold``; ``(row, column, IoU)``."""
    if not iou.size:
        return []
    rows, columns = _assignment(1 - iou)
    return [(int(i), int(j), float(iou[i, j])) for i, j in zip(rows, columns) if iou[i, j] >= threshold]


def regions_pair(first: Sequence[tuple[str, Mapping]], second: Sequence[tuple[str, Mapping]], *,
                 threshold: float = IOU_THRESHOLD) -> list[tuple[int, int, float]]:
    """Pair two readers' outlines on one image (see ``pairs_by_iou``)."""
    if not first or not second:
        return []
    return pairs_by_iou(iou_matrix(first, second), threshold=threshold)


@dataclass(frozen=True)
class ReaderRegion:
    region_id: int
    source: str
    shape: str
    geometry: Mapping
    attributes: Mapping[str, frozenset[str]]


def reader_conflicts(image_id: int, regions: Sequence[ReaderRegion], readers: Iterable[str] = ()) -> list[Conflict]:
    """Annotator vs annotator on one image: regions of different readers are paired by IoU
    (``pairs_by_iou``); a region with no partner is a conflict, and so is each attribute whose values
    differ on a matched pair. ``readers`` names every reader who submitted the image, so a reader who
    drew nothing still disagrees with one who drew a lesion."""
    by_source: dict[str, list[ReaderRegion]] = {reader: [] for reader in readers}
    for region in regions:
        if region.shape in ("polygon", "rectangle", "ellipse"):
            by_source.setdefault(region.source, []).append(region)
    sources = sorted(by_source)
    conflicts: list[Conflict] = []
    for a_index, a_source in enumerate(sources):
        for b_source in sources[a_index + 1:]:
            a_regions, b_regions = by_source[a_source], by_source[b_source]
            iou = iou_matrix([(r.shape, r.geometry) for r in a_regions], [(r.shape, r.geometry) for r in b_regions])
            paired_a, paired_b = set(), set()
            for i, j, overlap in pairs_by_iou(iou):
                paired_a.add(i)
                paired_b.add(j)
                a, b = a_regions[i], b_regions[j]
                for name in sorted(set(a.attributes) | set(b.attributes)):
                    va, vb = a.attributes.get(name, frozenset()), b.attributes.get(name, frozenset())
                    if va != vb:
                        conflicts.append(Conflict(
                            "reader_vs_reader", ("rr-attr", image_id, a.region_id, b.region_id, name), name,
                            {a_source: sorted(va), b_source: sorted(vb), "iou": round(overlap, 3)},
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
                    {region.source: Outline.DRAWN, other: Outline.MISSING, "best_iou": round(best_iou, 3)},
                    region_ids=(region.region_id,), image_id=image_id)


# ----------------------------------------------------------------------------------------- a whole study


@dataclass(frozen=True)
class StudyInput:
    """Everything the matcher needs of one study, as plain data.

    ``image_ids`` are the study's images; ``readers_of`` maps each image to the readers who submitted
    it; ``fully_read`` says every reading is submitted (or, with no readings, that imports are all there
    is); ``single_valued``
    names the lexicon's one-value attributes; ``tirads_level_of(points)`` and ``tirads_points_of(tags)``
    are the TI-RADS tables (the latter only for a TI-RADS lexicon).
    """

    findings: Sequence[FindingInput]
    lesions: Sequence[LesionInput]
    image_ids: Sequence[int] = ()
    reader_regions: Mapping[int, Sequence[ReaderRegion]] = field(default_factory=dict)
    readers_of: Mapping[int, Sequence[str]] = field(default_factory=dict)
    fully_read: bool = False
    single_valued: frozenset[str] = frozenset()
    tirads_level_of: Callable[[int], str | None] | None = None
    tirads_points_of: Callable[[Mapping], int] | None = None


@dataclass(frozen=True)
class StudyMatch:
    matches: list[Match]
    conflicts: list[Conflict]


def study_match(study: StudyInput) -> StudyMatch:
    """Align a study's findings to the lesions of each annotation source and list its conflicts.

    Each source (a reader, an import, the consensus) is matched on its own. The consensus is what
    reviewers decided: it is aligned but never argued with. A lesion can be called missing only once
    every image of the study has been read (or came with imported regions) — until then it may be on
    an image nobody has opened — and then a reading that drew nothing is a reading too: each located
    lesion finding no source drew is ``reported_not_annotated``.
    """
    findings, lesions = study.findings, study.lesions
    by_source: dict[str, list[LesionInput]] = defaultdict(list)
    for lesion in lesions:
        by_source[lesion.source].append(lesion)
    lesion_by_key = {lesion.key: lesion for lesion in lesions}
    finding_by_key = {finding.key: finding for finding in findings}
    matches: list[Match] = []
    for source_lesions in by_source.values():
        found = match_source(findings, source_lesions)
        found += match_measurements(findings, source_lesions, taken={m.lesion for m in found})
        matches.extend(found)

    conflicts: list[Conflict] = []
    for match in matches:
        finding, lesion = finding_by_key[match.finding], lesion_by_key[match.lesion]
        if match.repeat or lesion.source == CONSENSUS:
            continue  # a restatement is compared through the mention it repeats; the consensus is the answer
        if not finding.is_measurement:
            conflicts.extend(attribute_conflicts(finding, lesion, study.single_valued))
        size = size_conflict(finding, lesion)
        if size:
            conflicts.append(size)
    seen_assessment = set()
    for finding in findings:
        # A mention whose lesion is a guess (it fits two) is held to what the report itself says.
        lesion = next((lesion_by_key[m.lesion] for m in matches if m.finding == finding.key
                       and lesion_by_key[m.lesion].source != CONSENSUS and not m.ambiguous), None)
        conflict = assessment_conflict(finding, lesion, tirads_level_of=study.tirads_level_of,
                                       tirads_points_of=study.tirads_points_of)
        if conflict and conflict.identity not in seen_assessment:
            seen_assessment.add(conflict.identity)
            conflicts.append(conflict)

    argued = [lesion for lesion in lesions if lesion.source != CONSENSUS]
    readers = sorted({reader for names in study.readers_of.values() for reader in names})
    # Nothing drawn anywhere is a finding of its own only when every image was read by someone.
    nothing_drawn = bool(readers) and all(study.readers_of.get(image_id) for image_id in study.image_ids)
    if study.fully_read and (argued or nothing_drawn):
        argued_matched = {m.finding for m in matches if lesion_by_key[m.lesion].source != CONSENSUS}
        matched_lesions = {m.lesion for m in matches}
        # With nothing drawn, the readers who submitted are the sources that saw no lesion.
        sources = sorted({lesion.source for lesion in argued}) or readers
        for finding in findings:
            if (finding.is_lesion and finding.is_located and not finding.uncertain
                    and finding.key not in argued_matched):
                conflicts.append(Conflict(
                    "reported_not_annotated", ("unmatched-finding", finding.key), "",
                    {"report": {"lesion": finding.lesion, "size_mm": list(finding.size_mm),
                                "laterality": finding.laterality, "clock": finding.clock},
                     "annotation": None, "sources": sources}, finding.key))
        for lesion in argued:
            if lesion.key not in matched_lesions:
                conflicts.append(Conflict(
                    "annotated_not_reported", ("unmatched-lesion", lesion.key), "",
                    {"report": None, "annotation": {"label": lesion.label, "long_axis_mm": lesion.long_axis_mm,
                                                    "source": lesion.source}},
                    None, lesion.key, lesion.region_ids, lesion.image_ids[0]))
    for image_id, image_readers in study.readers_of.items():
        if len(image_readers) > 1:
            conflicts.extend(reader_conflicts(image_id, study.reader_regions.get(image_id, ()), image_readers))
    return StudyMatch(matches, conflicts)
