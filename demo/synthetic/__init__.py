"""Deterministic synthetic ultrasound studies for the demo and for scoring the alignment engine.

Pure Python + numpy + Pillow (no Django). `study_plan(seed, index)` returns a `StudyTruth`: metadata,
images with their lesion regions in image pixels, a free-text report (English or Chinese) written from
those lesions, a record of which sentence describes which lesion and what it says, and the planted
report/image disagreements. `image_render(image, seed=seed)` draws an image's pixels.

Conventions a scorer can rely on:
- Every code, label and TI-RADS point is read from the platform's lexicon files (`lexicon`); the
  generator keeps no copy of their vocabulary. Attribute values are UDAF codes (`UDAF_CODES`); breast
  lesions also carry a BI-RADS category and thyroid nodules their ACR TI-RADS features (TI-RADS lexicon
  codes), points and TR level (`LesionTruth.assessment`), categories written as the lexicon labels them.
- Absent flow is written with negation cues ("no internal vascularity", "未见明显血流信号") and recorded
  as the lexicon's own value `no_vascularity`; other denied values go under `attributes["negated"]`.
- A lesion reported but drawn on no image lives in `StudyTruth.unannotated` (shape "none", empty
  geometry) and in a "reported_not_annotated" disagreement; a drawn lesion left out of the report is an
  "annotated_not_reported" disagreement and no sentence names its key.
- A size mismatch's `report_value` is the size as written, in mm; `annotation_value` the drawn size.
"""

from .lexicon import UDAF_CODES, UDAF_MANY
from .render import image_render, image_render_png
from .report import WORDING
from .scene import field_of_view, in_field
from .study import MEAN_IMAGES_PER_STUDY, study_plan
from .truth import (
    DISAGREEMENT_KINDS,
    ImageTruth,
    LesionTruth,
    PlantedDisagreement,
    SentenceTruth,
    StudyTruth,
    birads_category,
    tirads_assessment,
)

__all__ = [
    "DISAGREEMENT_KINDS",
    "MEAN_IMAGES_PER_STUDY",
    "UDAF_CODES",
    "UDAF_MANY",
    "WORDING",
    "ImageTruth",
    "LesionTruth",
    "PlantedDisagreement",
    "SentenceTruth",
    "StudyTruth",
    "birads_category",
    "field_of_view",
    "image_render",
    "image_render_png",
    "in_field",
    "study_plan",
    "tirads_assessment",
]
