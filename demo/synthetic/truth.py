"""Ground-truth records of a synthetic study, the UDAF vocabulary they use, and the assessment rules.

Everything here is plain Python (no Django, no numpy) so the plan stays fast and the records can be
stored as JSON beside the seeded rows and read back by benchmarks that score the alignment engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# --- UDAF vocabulary (US-365K), written as in LEXICONS.md; codes come from `udaf_code` -----------------
UDAF_LABELS: dict[str, list[str]] = {
    "diagnosis": ["nodule", "cyst", "mass", "fluid collection", "normal appearance"],
    "body_system_level": [
        "Abdomen and retroperitoneum",
        "Urinary Tract and male reproductive system",
        "Gynaecology",
        "Head and Neck",
        "Breast and Axilla",
        "Musculoskeletal Joints and Tendons",
        "Thorax",
        "Pediatrics",
        "Peripheral vessels",
    ],
    "organ_level": [
        "Liver",
        "Gallbladder and bile ducts",
        "Pancreas",
        "Spleen",
        "Appendix",
        "Gastrointestinal tract",
        "Peritoneum mesentery and omentum",
        "Retroperitoneum and great vessels",
        "Adrenal glands",
        "Abdominal wall",
        "Kidney and ureter",
        "Bladder",
        "Scrotum",
        "Penis and perineum",
        "Uterus",
        "Adnexa",
        "Vagina",
        "Thyroid gland",
        "Parathyroid glands",
        "Salivary glands",
        "Lymph nodes",
        "Ocular",
        "Ear",
        "Larynx",
        "Breast",
        "Axilla",
        "Shoulder",
        "Elbow",
        "Wrist and carpus",
        "Fingers",
        "Hip groin and buttock",
        "Knee",
        "Ankle",
        "Foot",
        "Peripheral nerves",
        "Soft tissues",
        "Skull",
        "Pulmonary",
        "Pleural space",
        "Heart and mediastinum",
        "Thoracic wall",
        "Pediatric abdomen and retroperitoneum",
        "Pediatric urinary tract",
        "Pediatric scrotum",
        "Pediatric gynaecological pathology and infant breast",
        "Pediatric head and neck",
        "Neonatal brain and spine",
        "Infant hip and knee",
        "Pediatric thorax",
        "Peripheral arteries",
        "Peripheral veins",
        "Dialysis fistula",
    ],
    "shape": ["round", "oval", "lobulated", "tubular/linear", "nodular", "flattened", "irregular"],
    "margins": ["well-defined", "ill-defined/indistinct"],
    "echogenicity": ["anechoic", "hypoechoic", "isoechoic", "hyperechoic", "mixed echogenicity"],
    "internal_characteristics": [
        "cystic components",
        "calcifications",
        "septations",
        "solid components",
        "mixed cystic and solid mass",
        "complex cystic solid",
    ],
    "posterior_acoustics": ["enhancement", "shadowing"],
    "vascularity": [
        "reduced/diminished vascularity",
        "normal/regular vascularity",
        "no vascularity",
        "increased vascularity",
        "indeterminate/inhomogeneous vascularity",
    ],
}
# Dimensions whose value is a list (cardinality "many"); the others hold one code.
UDAF_MANY = frozenset({"internal_characteristics"})


def udaf_code(label: str) -> str:
    """Return the lexicon code of a label: lower-case, runs of non-alphanumerics become one "_"."""
    return re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")


UDAF_CODES: dict[str, frozenset[str]] = {
    dim: frozenset(udaf_code(label) for label in labels) for dim, labels in UDAF_LABELS.items()
}

BIRADS_CATEGORIES = ("1", "2", "3", "4A", "4B", "4C", "5")
TIRADS_LEVELS = ("TR1", "TR2", "TR3", "TR4", "TR5")
DISAGREEMENT_KINDS = (
    "report_vs_annotation",
    "size_mismatch",
    "reported_not_annotated",
    "annotated_not_reported",
    "assessment_inconsistent",
)


# --- assessment rules ----------------------------------------------------------------------------------
def birads_category(attributes: dict[str, Any]) -> str:
    """BI-RADS category implied by a breast lesion's UDAF attributes (the rule the generator writes by).

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
        if attributes.get("echogenicity") == "anechoic" and not internal:
            return "2"
        return "3"
    return ("4A", "4B", "4C", "5")[min(suspicious, 4) - 1]


# ACR TI-RADS feature codes → points (LEXICONS.md §3).
TIRADS_POINTS: dict[str, dict[str, int]] = {
    "composition": {"cystic": 0, "spongiform": 0, "mixed_cystic_and_solid": 1, "solid": 2},
    "echogenicity": {"anechoic": 0, "hyperechoic_or_isoechoic": 1, "hypoechoic": 2, "very_hypoechoic": 3},
    "shape": {"wider_than_tall": 0, "taller_than_wide": 3},
    "margin": {"smooth": 0, "ill_defined": 0, "lobulated_or_irregular": 2, "extra_thyroidal_extension": 3},
    "echogenic_foci": {
        "none": 0,
        "macrocalcifications": 1,
        "peripheral_rim_calcifications": 2,
        "punctate_echogenic_foci": 3,
    },
}


def tirads_points(features: dict[str, Any]) -> int:
    """Sum of ACR TI-RADS points of `features` (composition, echogenicity, shape, margin, echogenic_foci)."""
    points = sum(
        TIRADS_POINTS[key][features[key]] for key in ("composition", "echogenicity", "shape", "margin")
    )
    return points + sum(TIRADS_POINTS["echogenic_foci"][focus] for focus in features["echogenic_foci"])


def tirads_level(points: int) -> str:
    """TR level for a point total: ≤1 → TR1 (the white paper lists 0), 2 → TR2, 3 → TR3, 4–6 → TR4, ≥7 TR5."""
    if points <= 1:
        return "TR1"
    if points <= 3:
        return f"TR{points}"
    return "TR4" if points <= 6 else "TR5"


# --- the records ---------------------------------------------------------------------------------------
@dataclass
class LesionTruth:
    """One lesion as drawn on one image (or, in `StudyTruth.unannotated`, as reported but drawn nowhere).

    `geometry` is in image pixels in the platform format; an unannotated lesion has shape "none" and an
    empty geometry. `assessment` holds the category the attributes imply: {"system": "birads_us",
    "category": "4A"} or {"system": "acr_tirads", "features": {...}, "points": 5, "level": "TR4"}.
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
    "tirads_level", "tirads_points"); denied values sit under "negated" as {dimension: [codes]}.
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
        }
