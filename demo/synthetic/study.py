"""`study_plan`: one synthetic study (metadata, images, lesions, report, planted disagreements), no pixels."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from dataclasses import replace

from .report import ReportLesion, report_write
from .scene import (
    SIDE_ABBREV,
    VIEW_ABBREV,
    LesionEntity,
    lesion_entity,
    pooled_lesion_entity,
    pooled_survey_image,
    survey_image,
    weighted,
)
from .truth import (
    ImageTruth,
    LesionTruth,
    PlantedDisagreement,
    StudyTruth,
)

# Images per study: 1–5, mean 3.05, so 364,000 images take about 119,000 studies.
IMAGES_PER_STUDY = ((1, 2, 3, 4, 5), (10, 20, 35, 25, 10))
MEAN_IMAGES_PER_STUDY = sum(n * w for n, w in zip(*IMAGES_PER_STUDY, strict=True)) / sum(IMAGES_PER_STUDY[1])
DISAGREEMENT_WEIGHTS = {
    "report_vs_annotation": 35,
    "size_mismatch": 20,
    "reported_not_annotated": 15,
    "annotated_not_reported": 15,
    "assessment_inconsistent": 15,
}
# A value the report may claim instead of the drawn one, per dimension.
_SWAPS = {
    "echogenicity": {
        "anechoic": ["hypoechoic"],
        "hypoechoic": ["isoechoic", "hyperechoic", "anechoic"],
        "isoechoic": ["hypoechoic", "hyperechoic"],
        "hyperechoic": ["hypoechoic", "isoechoic"],
        "mixed_echogenicity": ["hypoechoic", "anechoic"],
    },
    "margins": {"well_defined": ["ill_defined_indistinct"], "ill_defined_indistinct": ["well_defined"]},
    "shape": {
        "oval": ["irregular", "round"],
        "round": ["irregular", "oval"],
        "lobulated": ["oval", "irregular"],
        "irregular": ["oval", "round"],
    },
    "posterior_acoustics": {
        "enhancement": ["shadowing"],
        "shadowing": ["enhancement"],
        None: ["shadowing", "enhancement"],
    },
    "vascularity": {
        "no_vascularity": ["increased_vascularity"],
        "increased_vascularity": ["no_vascularity"],
        "normal_regular_vascularity": ["no_vascularity", "increased_vascularity"],
    },
}
# Studies planted as a whole, each instead of the ordinary planted disagreement: the readers drew nothing
# although the report describes lesions ("empty_reading": each reported lesion is reported_not_annotated),
# or the lesion drawn lies where its image's body marker contradicts the report's place for it, the axilla
# against a clock position or the isthmus against a lobe ("location_veto": the report's lesion is
# reported_not_annotated and the region annotated_not_reported, with no link between them).
SCENARIO_RATES = {"empty_reading": 0.02, "location_veto": 0.02}
_WRONG_BIRADS = {"1": "4B", "2": "4B", "3": "4C", "4A": "2", "4B": "2", "4C": "3", "5": "3"}
_WRONG_TIRADS = {"TR1": "TR4", "TR2": "TR5", "TR3": "TR5", "TR4": "TR2", "TR5": "TR2"}
_EPOCH = dt.date(2023, 1, 1)


def _entity_ids(rng: random.Random, index: int, count: int, pool: int | None, tag: str) -> list[str]:
    """Distinct entity ids: unique to the study without a pool, else drawn from a pool of `pool` ids."""
    if not pool:
        return [f"{index}{tag}{k}" for k in range(count)]
    if count > pool:
        raise ValueError(f"image_pool={pool} is too small for {count} distinct lesions in one study")
    return [f"p{k}" for k in rng.sample(range(pool), count)]


def _lesion_truth(key: str, entity: LesionEntity, view_slot: int | None) -> LesionTruth:
    """The study-level record of `entity` as drawn in view `view_slot` (None: reported, drawn nowhere)."""
    if view_slot is None:
        view = entity.views[0]
        shape, geometry = "none", {}
    else:
        view = entity.views[view_slot]
        shape, geometry = view.shape, view.geometry
    return LesionTruth(
        key=key,
        label=entity.label,
        shape=shape,
        geometry=geometry,
        attributes=entity.attributes,
        size_mm=view.size_mm,
        clock=entity.clock,
        distance_from_nipple_cm=entity.distance_cm,
        site=list(entity.site),
        laterality=entity.laterality,
        assessment=entity.assessment,
    )


def _elsewhere(drawn: LesionTruth, view: str, key: str) -> tuple[LesionTruth, str]:
    """The lesion ``drawn`` moved where the report does not place it, under ``key``, and its image's body
    marker: a breast lesion into the axilla of the same side, a thyroid nodule into the isthmus."""
    side = SIDE_ABBREV[drawn.laterality]
    if drawn.clock is not None:
        marker, site = f"{side} AXILLA {VIEW_ABBREV[view]}", ["axilla"]
    else:
        marker, site = f"THY {VIEW_ABBREV[view]} ISTH", ["isthmus"]
    moved = replace(drawn, key=key, clock=None, distance_from_nipple_cm=None, site=site)
    return moved, marker


def study_plan(
    seed: int,
    index: int,
    *,
    language: str | None = None,
    image_pool: int | None = None,
    zh_share: float = 0.5,
    disagreement_rate: float = 0.2,
) -> StudyTruth:
    """Plan study number `index` of a demo generated with `seed`: metadata, images (no pixels), report.

    Pure and deterministic: the same arguments give an equal `StudyTruth` in any process and order.
    `language` forces "en" or "zh" (otherwise Chinese with probability `zh_share`) and changes nothing
    else. `image_pool` (e.g. 2,000) draws lesions and survey images from that many entities per body part,
    so studies share `render_key`s and a bulk seeder renders a few thousand files for any number of
    rows; without it every image is unique. About `disagreement_rate` of studies get one planted
    disagreement, recorded in `disagreements` (and, for a reported lesion drawn nowhere, in `unannotated`).
    """
    if language not in (None, "en", "zh"):
        raise ValueError(f"language must be 'en', 'zh' or None, not {language!r}")
    # A stream of its own, so that adding the scenarios left every other study as it was.
    roll = random.Random(f"{seed}:scenario:{index}").random()
    scenario = next(
        (name for name, edge in zip(SCENARIO_RATES, itertools.accumulate(SCENARIO_RATES.values())) if roll < edge),
        "",
    )
    rng = random.Random(f"{seed}:study:{index}")
    drawn_language = "zh" if rng.random() < zh_share else "en"
    language = language or drawn_language
    body_part = "breast" if rng.random() < 0.6 else "thyroid"
    n_lesions = 1 if rng.random() < 0.6 else 2
    n_images = weighted(rng, *IMAGES_PER_STUDY)
    exam_date = (_EPOCH + dt.timedelta(days=rng.randrange(730))).isoformat()
    planted = (
        weighted(rng, tuple(DISAGREEMENT_WEIGHTS), tuple(DISAGREEMENT_WEIGHTS.values()))
        if rng.random() < disagreement_rate
        else None
    )
    if scenario:
        planted = None

    ids = _entity_ids(rng, index, n_lesions + 1, image_pool, "-")
    make_entity = pooled_lesion_entity if image_pool else lesion_entity
    make_survey = pooled_survey_image if image_pool else survey_image
    entities = [make_entity(seed, body_part, entity_id) for entity_id in ids[:-1]]
    keys = [f"L{k + 1}" for k in range(n_lesions)]

    # Views per lesion: as many of the entity's views as the image budget allows, at least one each.
    shown = [len(entity.views) if rng.random() < 0.7 else 1 for entity in entities]
    while sum(shown) > n_images and max(shown) > 1:
        shown[shown.index(max(shown))] -= 1
    n_images = max(n_images, sum(shown))
    slots: list[tuple[str, LesionEntity, int] | None] = [
        (key, entity, slot)
        for key, entity, count in zip(keys, entities, shown, strict=True)
        for slot in range(count)
    ]
    for _ in range(n_images - len(slots)):
        slots.insert(rng.randint(0, len(slots)), None)
    if scenario == "empty_reading":
        slots = [None] * len(slots)  # the lesions are not on the images the study holds
    # The lesion drawn where its body marker contradicts the report: another lesion for the truth.
    elsewhere = (
        random.Random(f"{seed}:elsewhere:{index}").randrange(n_lesions) if scenario == "location_veto" else None
    )
    sides = [entity.laterality for entity in entities]
    survey_ids = _entity_ids(rng, index, n_images, image_pool, "-s")
    images: list[ImageTruth] = []
    for number, item in enumerate(slots):
        if item is None:
            side = rng.choice(sides) if rng.random() < 0.6 else rng.choice(("left", "right"))
            survey = make_survey(seed, body_part, survey_ids[number], side)
            images.append(
                ImageTruth(
                    index=number,
                    width=survey.width,
                    height=survey.height,
                    pixel_spacing_mm=survey.spacing,
                    laterality=survey.laterality,
                    view=survey.view,
                    body_marker=survey.body_marker,
                    lesions=[],
                    render_key=survey.render_key,
                    body_part=body_part,
                    probe=survey.probe,
                )
            )
            continue
        key, entity, slot = item
        view = entity.views[slot]
        drawn = _lesion_truth(key, entity, slot)
        marker, render_key = view.body_marker, view.render_key
        if elsewhere is not None and key == keys[elsewhere]:
            drawn, marker = _elsewhere(drawn, view.view, f"L{n_lesions + 1}")
            render_key = f"{render_key}:elsewhere"
        images.append(
            ImageTruth(
                index=number,
                width=view.width,
                height=view.height,
                pixel_spacing_mm=view.spacing,
                laterality=entity.laterality,
                view=view.view,
                body_marker=marker,
                lesions=[drawn],
                render_key=render_key,
                body_part=body_part,
                probe=view.probe,
            )
        )

    # What the report says about each lesion, then the planted change.
    reported = []
    for key, entity, count in zip(keys, entities, shown, strict=True):
        size = (*entity.views[0].size_mm,) + (
            (entity.views[1].size_mm[0],) if count > 1 and rng.random() < 0.4 else ()
        )
        category = entity.assessment.get("category") or entity.assessment["level"]
        reported.append(
            ReportLesion(
                key=key, entity=entity, written=dict(entity.attributes), size_mm=size, category=category
            )
        )
    disagreements: list[PlantedDisagreement] = []
    unannotated: list[LesionTruth] = []
    if planted == "report_vs_annotation":
        target = rng.choice(reported)
        dims = [d for d in _SWAPS if d in target.written or d == "posterior_acoustics"]
        if body_part == "thyroid":
            dims = [d for d in dims if d != "shape"]  # a thyroid's shape also moves its TI-RADS points
        dim = rng.choice(dims)
        truth_value = target.written.get(dim)
        claim = rng.choice(_SWAPS[dim][truth_value])
        target.written[dim] = claim
        target.force.add(dim)
        disagreements.append(PlantedDisagreement(planted, target.key, dim, claim, truth_value))
    elif planted == "size_mismatch":
        target = rng.choice(reported)
        factor = rng.uniform(1.5, 2.0) if rng.random() < 0.5 else rng.uniform(0.45, 0.6)
        true_size = target.size_mm
        target.size_mm = tuple(v * factor for v in true_size)
        target.force.add("size")
        disagreements.append(
            PlantedDisagreement(planted, target.key, "size_mm", None, [round(v, 1) for v in true_size])
        )
    elif planted == "assessment_inconsistent":
        target = rng.choice(reported)
        wrong = (_WRONG_BIRADS if body_part == "breast" else _WRONG_TIRADS)[target.category]
        disagreements.append(
            PlantedDisagreement(
                planted,
                target.key,
                "birads" if body_part == "breast" else "tirads_level",
                wrong,
                target.category,
            )
        )
        target.category = wrong
    elif planted == "annotated_not_reported":
        target = rng.choice(reported)
        reported.remove(target)
        disagreements.append(PlantedDisagreement(planted, target.key, None, None, None))
    elif planted == "reported_not_annotated":
        key = f"L{n_lesions + 1}"
        extra = make_entity(seed, body_part, ids[-1])
        category = extra.assessment.get("category") or extra.assessment["level"]
        ghost = ReportLesion(
            key=key,
            entity=extra,
            written=dict(extra.attributes),
            size_mm=extra.views[0].size_mm,
            category=category,
        )
        reported.insert(rng.randint(0, len(reported)), ghost)
        unannotated.append(_lesion_truth(key, extra, None))
        disagreements.append(PlantedDisagreement(planted, key, None, None, None))
    elif scenario == "empty_reading":
        for lesion, entity in zip(reported, entities, strict=True):
            unannotated.append(_lesion_truth(lesion.key, entity, None))
            disagreements.append(PlantedDisagreement("reported_not_annotated", lesion.key, None, None, None))
    elif scenario == "location_veto":
        target = reported[elsewhere]
        unannotated.append(_lesion_truth(target.key, entities[elsewhere], None))
        disagreements.append(PlantedDisagreement("reported_not_annotated", target.key, None, None, None))
        disagreements.append(PlantedDisagreement("annotated_not_reported", f"L{n_lesions + 1}", None, None, None))
    if len(reported) == 2 and rng.random() < 0.3:
        reported.reverse()

    text, sentences = report_write(rng, language, body_part, reported)
    if planted == "size_mismatch":  # the fullest size the report states for the lesion
        key = disagreements[0].lesion_key
        disagreements[0].report_value = max(
            (s.attributes_for(key)["size_mm"] for s in sentences if "size_mm" in s.attributes_for(key)),
            key=len,
        )
    return StudyTruth(
        scenario=scenario,
        accession=f"SYN{seed}-{index:07d}",
        patient=f"SYNP{seed}-{index // 2:07d}",
        exam_date=exam_date,
        body_part=body_part,
        language=language,
        report_text=text,
        images=images,
        sentences=sentences,
        disagreements=disagreements,
        unannotated=unannotated,
        seed=seed,
        index=index,
    )
