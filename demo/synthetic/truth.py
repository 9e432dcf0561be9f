"""Ground-truth records of a synthetic study and the assessment rules.

Everything here is plain Python (no Django, no numpy) so the plan stays fast and the records can be
stored as JSON beside the seeded rows and read back by benchmarks that score the alignment engine.
Codes, category labels and TI-RADS points come from the lexicon files (`lexicon`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from annotation.lexicons import tirads_level, tirads_points

from .lexicon import BIRADS, TIRADS, category_label

DISAGREEMENT_KINDS = (
    "report_vs_annotation",
    "size_mismatch",
    "reported_not_annotated",
    "annotated_not_reported",
    "assessment_inconsistent",
)


# --- assessment rules ----------------------------------------------------------------------------------
def birads_category(attributes: dict[str, Any]) -> str:
    """BI-RADS category implied by a breast lesion's UDAF attributes (the rule the generator writes by),
    as the BI-RADS lexicon labels it.

    Simple cyst (anechoic, well-defined, oval/round, nothing suspicious) → 2; a cyst with septations or a
    circumscribed solid lesion → 3; otherwise one point for each suspicious feature (irregular shape,
    ill-defined margins, shadowing, calcifications, increased vascularity, mixed echogenicity / complex
    cystic-solid): 1 → 4A, 2 → 4B, 3 → 4C, 4 or more → 5.
    """
    internal = set(attributes.get("internal_characteristics", []))
    suspicious = sum(
        (
            attributes.get("shape") == "irregular",
            attributes.get("margins") == "ill_defined_indistinct",
            attributes.get("posterior_acoustics") == "shadowing",
            "calcifications" in internal,
            attributes.get("vascularity") == "increased_vascularity",
            attributes.get("echogenicity") == "mixed_echogenicity" or "complex_cystic_solid" in internal,
        )
    )
    if suspicious == 0:
        code = "2" if attributes.get("echogenicity") == "anechoic" and not internal else "3"
    else:
        code = ("4a", "4b", "4c", "5")[min(suspicious, 4) - 1]
    return category_label(BIRADS, code)


def tirads_assessment(features: dict[str, Any]) -> dict:
    """The ACR TI-RADS assessment of a nodule's features (TI-RADS lexicon codes): its points and its TR
    level as reports write it ("TR4"), both read from the lexicon."""
    points = tirads_points(TIRADS, features)
    return {
        "system": "acr_tirads",
        "features": features,
        "points": points,
        "level": category_label(TIRADS, tirads_level(TIRADS, points)),
    }


# --- the records ---------------------------------------------------------------------------------------
@dataclass
class LesionTruth:
    """One lesion as drawn on one image (or, in `StudyTruth.unannotated`, as reported but drawn nowhere).

    `geometry` is in image pixels in the platform format; an unannotated lesion has shape "none" and an
    empty geometry. `assessment` holds the category the attributes imply, as the lexicon labels it:
    {"system": "birads_us", "category": "4A"} or {"system": "acr_tirads", "features": {...}, "points": 5,
    "level": "TR4"}, whose features are TI-RADS lexicon codes ({"composition": "mixed_cystic_and_solid",
    ..., "echogenic_foci": ["none_or_large_comet_tail_artifacts"]}).
    """

    key: str
    label: str
    shape: str
    geometry: dict
    attributes: dict
    size_mm: tuple[float, float]
    clock: str | None
    distance_from_nipple_cm: float | None
    site: list[str]
    laterality: str = ""
    assessment: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return {
            "key": self.key,
            "label": self.label,
            "shape": self.shape,
            "geometry": self.geometry,
            "attributes": self.attributes,
            "size_mm": list(self.size_mm),
            "clock": self.clock,
            "distance_from_nipple_cm": self.distance_from_nipple_cm,
            "site": list(self.site),
            "laterality": self.laterality,
            "assessment": self.assessment,
        }


@dataclass
class ImageTruth:
    """One image of a study. Images with equal `render_key` (and seed) have identical pixels and regions."""

    index: int
    width: int
    height: int
    pixel_spacing_mm: float
    laterality: str
    view: str
    body_marker: str
    lesions: list[LesionTruth]
    render_key: str
    body_part: str = "breast"
    probe: str = "linear"

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return {
            "index": self.index,
            "width": self.width,
            "height": self.height,
            "pixel_spacing_mm": self.pixel_spacing_mm,
            "laterality": self.laterality,
            "view": self.view,
            "body_marker": self.body_marker,
            "lesions": [lesion.to_dict() for lesion in self.lesions],
            "render_key": self.render_key,
            "body_part": self.body_part,
            "probe": self.probe,
        }


@dataclass
class SentenceTruth:
    """A report sentence: `report_text[start:end] == text`, the lesions it describes, what it says.

    `attributes` holds the values as WRITTEN (UDAF codes for the nine dimensions, plus "laterality",
    "clock", "distance_from_nipple_cm", "site", "size_mm" as a list in written order, "birads",
    "tirads_level", "tirads_points", and TI-RADS lexicon codes as "tirads_<feature>"); denied values
    sit under "negated" as {dimension: [codes]}.
    A sentence about two lesions keeps each lesion's values under "by_lesion": {key: {...}}.
    """

    start: int
    end: int
    text: str
    lesion_keys: list[str]
    attributes: dict
    section: str = "findings"

    def attributes_for(self, key: str) -> dict:
        """The written values this sentence gives for lesion `key` (empty if it does not describe it)."""
        if key not in self.lesion_keys:
            return {}
        return self.attributes.get("by_lesion", {}).get(key, self.attributes)

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "lesion_keys": list(self.lesion_keys),
            "attributes": self.attributes,
            "section": self.section,
        }


@dataclass
class PlantedDisagreement:
    """A deliberate report/image disagreement; values are UDAF codes, sizes in mm, or categories."""

    kind: str
    lesion_key: str | None
    attribute: str | None
    report_value: object
    annotation_value: object

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return {
            "kind": self.kind,
            "lesion_key": self.lesion_key,
            "attribute": self.attribute,
            "report_value": list(self.report_value)
            if isinstance(self.report_value, tuple)
            else self.report_value,
            "annotation_value": list(self.annotation_value)
            if isinstance(self.annotation_value, tuple)
            else self.annotation_value,
        }


@dataclass
class StudyTruth:
    """A whole synthetic study: metadata, report, images with their drawn lesions, and what is planted.

    `unannotated` lists lesions the report describes that are drawn on no image (each is also recorded
    as a "reported_not_annotated" disagreement); they have shape "none" and empty geometry.
    """

    accession: str
    patient: str
    exam_date: str
    body_part: str
    language: str
    report_text: str
    images: list[ImageTruth]
    sentences: list[SentenceTruth]
    disagreements: list[PlantedDisagreement]
    unannotated: list[LesionTruth] = field(default_factory=list)
    seed: int = 0
    index: int = 0
    scenario: str = ""  # "", or a study planted as a whole: "empty_reading", "location_veto" (see study_plan)

    def lesion_keys(self) -> list[str]:
        """Keys of the lesions drawn on at least one image, in first-seen order."""
        seen: dict[str, None] = {}
        for image in self.images:
            for lesion in image.lesions:
                seen.setdefault(lesion.key, None)
        return list(seen)

    def to_dict(self) -> dict:
        """JSON-serialisable ground truth, stored beside the seeded study."""
        return {
            "accession": self.accession,
            "patient": self.patient,
            "exam_date": self.exam_date,
            "body_part": self.body_part,
            "language": self.language,
            "report_text": self.report_text,
            "images": [image.to_dict() for image in self.images],
            "sentences": [sentence.to_dict() for sentence in self.sentences],
            "disagreements": [item.to_dict() for item in self.disagreements],
            "unannotated": [lesion.to_dict() for lesion in self.unannotated],
            "seed": self.seed,
            "index": self.index,
            "scenario": self.scenario,
        }
