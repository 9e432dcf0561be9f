"""Agreement statistics over plain data: no Django, no database, so they are tested against values
worked out by hand and against the reference libraries on the same data.

Cohen's kappa comes from scikit-learn and Krippendorff's alpha from the ``krippendorff`` package (the
implementations the field cites); what is ours is how annotation data becomes their input:

- a *unit* is one lesion on one image as the readers saw it: regions of different readers paired by
  IoU with ``alignment.matching.regions_pair``, the rule the alignment job uses for reader-vs-reader
  conflicts;
- an attribute's value is a category: a one-value attribute its code, a many-value attribute the sorted
  codes joined by ``|``; a reader who drew the lesion but left the attribute empty said "not tagged",
  which is a category of its own (leaving it out would hide exactly the disagreements reviewers fix).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NOT_TAGGED = "(not tagged)"


# ---------------------------------------------------------------------------------------------- values


def category(value: Any) -> str:
    """The category an attribute value counts as (see the module docstring)."""
    if value is None or value == "" or value == []:
        return NOT_TAGGED
    if isinstance(value, (list, tuple, set, frozenset)):
        return "|".join(sorted(str(v) for v in value))
    return str(value)


# ---------------------------------------------------------------------------------------------- chance-corrected agreement


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two readings of the same units (scikit-learn's ``cohen_kappa_score``).

    None when it is undefined: no units, or a single category used by both (expected agreement 1, so
    kappa is 0/0; the percent agreement still says they agreed)."""
    if len(first) != len(second):
        raise ValueError("both readings must cover the same units")
    if not first or len(set(first) | set(second)) < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(cohen_kappa_score([str(v) for v in first], [str(v) for v in second]))
    return None if math.isnan(value) else value


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]]) -> float | None:
    """Krippendorff's alpha (nominal) of units each read by any number of readers; None marks a
    reader who did not read the unit. Rows are units, columns readers (the ``krippendorff`` package
    wants the transpose). None when undefined: fewer than two categories, or no unit read twice."""
    if not units:
        return None
    codes: dict[Hashable, int] = {}
    width = max(len(unit) for unit in units)
    matrix = np.full((width, len(units)), np.nan)
    for column, unit in enumerate(units):
        for row, value in enumerate(unit):
            if value is not None:
                matrix[row, column] = codes.setdefault(value, len(codes))
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    if len(codes) < 2 or not pairable.any():
        return None
    import krippendorff

    value = float(krippendorff.alpha(reliability_data=matrix[:, pairable], level_of_measurement="nominal"))
    return None if math.isnan(value) else value


def percent_agreement(units: Sequence[Sequence[Hashable | None]]) -> float | None:
    """Share of units on which every reader who read it gave the same value (units read once are
    left out: there is nothing to agree with)."""
    read_twice = [[v for v in unit if v is not None] for unit in units]
    read_twice = [values for values in read_twice if len(values) >= 2]
    if not read_twice:
        return None
    return sum(len(set(values)) == 1 for values in read_twice) / len(read_twice)


# ---------------------------------------------------------------------------------------------- regions


def dice_from_iou(iou: float) -> float:
    """Dice = 2·IoU / (1 + IoU): the two are one measure on two scales."""
    return 2 * iou / (1 + iou) if iou > 0 else 0.0


def distribution(values: Iterable[float], *, bins: int = 10, low: float = 0.0, high: float = 1.0) -> dict:
    """Summary and histogram of values in [low, high] (IoU, Dice): what the dashboard charts."""
    values = [float(v) for v in values]
    edges = [low + (high - low) * i / bins for i in range(bins + 1)]
    counts = [0] * bins
    for value in values:
        index = min(bins - 1, max(0, int((value - low) / (high - low) * bins)))
        counts[index] += 1
    summary: dict[str, Any] = {"n": len(values), "edges": [round(e, 4) for e in edges], "counts": counts}
    if values:
        ordered = sorted(values)
        summary.update(mean=statistics.fmean(values), median=statistics.median(values),
                       p10=ordered[int(0.1 * (len(ordered) - 1))], p90=ordered[int(0.9 * (len(ordered) - 1))])
    return summary


# ---------------------------------------------------------------------------------------------- dataset level


@dataclass(frozen=True)
class LesionReading:
    """One reader's description of one lesion (a paired unit): ``unit`` names the lesion across
    readers, ``attributes`` maps attribute code → value as stored on the region."""

    unit: Hashable
    reader: Hashable
    attributes: Mapping[str, Any]


def reader_agreement(readings: Iterable[LesionReading], attributes: Sequence[str]) -> dict[str, dict]:
    """Per attribute: units compared, percent agreement, Cohen's kappa (when every unit was read by
    exactly two readers — first and second reading, in reader order) and Krippendorff's alpha (any
    number of readers, missing readings allowed)."""
    by_unit: dict[Hashable, dict[Hashable, Mapping[str, Any]]] = defaultdict(dict)
    readers: set[Hashable] = set()
    for reading in readings:
        by_unit[reading.unit][reading.reader] = reading.attributes
        readers.add(reading.reader)
    order = sorted(readers, key=str)
    result = {}
    for name in attributes:
        rows = []
        for unit_readers in by_unit.values():
            if len(unit_readers) < 2:
                continue
            row = [category(unit_readers[r].get(name)) if r in unit_readers else None for r in order]
            if all(v in (None, NOT_TAGGED) for v in row):
                continue  # nobody described this attribute of this lesion: nothing to agree on
            rows.append(row)
        two = [[v for v in row if v is not None] for row in rows]
        kappa = None
        if two and all(len(values) == 2 for values in two):
            kappa = cohen_kappa([v[0] for v in two], [v[1] for v in two])
        result[name] = {"units": len(rows), "agreement": percent_agreement(rows), "cohen_kappa": kappa,
                        "krippendorff_alpha": krippendorff_alpha(rows)}
    return result


def report_annotation_agreement(
    pairs: Iterable[tuple[Mapping[str, Iterable[str]], Mapping[str, Any]]],
) -> dict[str, dict]:
    """Per attribute, over aligned (report finding, annotated lesion) pairs where the report states the
    attribute and the lesion is tagged with it: how often the tagged values include a stated one (the
    rule the alignment job flags as ``report_vs_annotation`` when it fails)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for report, annotation in pairs:
        for name, stated in report.items():
            stated = set(stated)
            tagged = annotation.get(name)
            if not stated or tagged in (None, "", []):
                continue
            tagged = {tagged} if isinstance(tagged, str) else set(tagged)
            totals[name][0] += 1
            totals[name][1] += bool(stated & tagged)
    return {name: {"n": n, "agree": agree, "agreement": agree / n if n else None}
            for name, (n, agree) in sorted(totals.items())}


def consensus_agreement(rows: Iterable[tuple[Hashable, str, Any, Any]]) -> dict[Hashable, dict]:
    """Each annotator against the adjudicated consensus: rows are ``(annotator, attribute, their value,
    consensus value)``. Returns per annotator the values compared, share equal, and Cohen's kappa of
    their values against the consensus (all attributes pooled as ``attribute=value`` categories)."""
    pooled: dict[Hashable, tuple[list, list]] = defaultdict(lambda: ([], []))
    for annotator, name, theirs, consensus in rows:
        mine, truth = pooled[annotator]
        mine.append(f"{name}={category(theirs)}")
        truth.append(f"{name}={category(consensus)}")
    result = {}
    for annotator, (mine, truth) in sorted(pooled.items(), key=lambda item: str(item[0])):
        agree = sum(a == b for a, b in zip(mine, truth))
        result[annotator] = {"n": len(mine), "agree": agree, "agreement": agree / len(mine) if mine else None,
                             "cohen_kappa": cohen_kappa(mine, truth)}
    return result
