"""The synthetic study generator: deterministic, self-consistent ground truth, plausible pixels. No Django."""

from __future__ import annotations

import ast
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from annotation.lexicons import attributes_validate, lexicon_attribute_map, lexicon_load, tirads_level, tirads_points
from demo.synthetic import (
    DISAGREEMENT_KINDS,
    UDAF_CODES,
    UDAF_MANY,
    WORDING,
    StudyTruth,
    birads_category,
    field_of_view,
    image_render,
    image_render_png,
    in_field,
    study_plan,
)
from demo.synthetic import report as report_module
from demo.synthetic import study as study_module

ROOT = Path(__file__).resolve().parents[2]
SEED = 11
N = 600
UDAF, TIRADS, BIRADS = lexicon_load("udaf"), lexicon_load("tirads"), lexicon_load("birads-us")


@pytest.fixture(autouse=True)
def _isolated_media_and_eager_tasks():
    """These tests touch neither Django settings nor Celery (they run with `-p no:django`)."""
    yield


@pytest.fixture(scope="module")
def plans() -> list[StudyTruth]:
    return [study_plan(SEED, index) for index in range(N)]


def _outline(lesion) -> list[tuple[float, float]]:
    if lesion.shape == "polygon":
        return [tuple(p) for p in lesion.geometry["points"]]
    (cx, cy), (rx, ry) = lesion.geometry["center"], lesion.geometry["radii"]
    rot = math.radians(lesion.geometry["rotation"])
    out = []
    for i in range(72):
        a = 2 * math.pi * i / 72
        px, py = rx * math.cos(a), ry * math.sin(a)
        out.append(
            (cx + px * math.cos(rot) - py * math.sin(rot), cy + px * math.sin(rot) + py * math.cos(rot))
        )
    return out


def _udaf_values(attributes: dict):
    """(dimension, code) pairs of the UDAF dimensions in a written or true attribute dict."""
    for dim, value in attributes.items():
        if dim in UDAF_CODES:
            for code in value if isinstance(value, list) else [value]:
                yield dim, code
    for dim, codes in attributes.get("negated", {}).items():
        if dim in UDAF_CODES:
            for code in codes:
                yield dim, code


# --- determinism ---------------------------------------------------------------------------------------
def test_same_seed_and_index_give_equal_studies_in_any_order():
    forward = [study_plan(5, i).to_dict() for i in range(30)]
    backward = [study_plan(5, i).to_dict() for i in reversed(range(30))][::-1]
    assert forward == backward
    assert json.dumps(forward, sort_keys=True) == json.dumps(backward, sort_keys=True)


def test_different_seed_gives_a_different_demo():
    assert [study_plan(1, i).report_text for i in range(10)] != [
        study_plan(2, i).report_text for i in range(10)
    ]


def test_rendering_is_byte_identical_for_the_same_seed_and_differs_for_another():
    image = study_plan(3, 0).images[0]
    assert image_render_png(image, seed=3) == image_render_png(image, seed=3)
    assert image_render_png(image, seed=3) != image_render_png(image, seed=4)


def test_pooled_studies_share_render_keys_and_identical_regions():
    by_key: dict[str, object] = {}
    shared = 0
    for index in range(400):
        for image in study_plan(9, index, image_pool=50).images:
            drawn = [(lesion.shape, lesion.geometry, lesion.attributes) for lesion in image.lesions]
            record = (image.width, image.height, image.pixel_spacing_mm, image.body_marker, drawn)
            if image.render_key in by_key:
                shared += 1
                assert by_key[image.render_key] == record
            by_key[image.render_key] = record
    assert shared > 500
    assert len(by_key) < 0.5 * (shared + len(by_key))


def test_forcing_the_language_changes_only_the_report():
    for index in range(20):
        english, chinese = study_plan(4, index, language="en"), study_plan(4, index, language="zh")
        assert english.language == "en" and chinese.language == "zh"
        assert [i.to_dict() for i in english.images] == [i.to_dict() for i in chinese.images]
        assert english.exam_date == chinese.exam_date
        assert [d.kind for d in english.disagreements] == [d.kind for d in chinese.disagreements]


# --- report and sentence truth -------------------------------------------------------------------------
def test_sentence_offsets_index_the_report_text(plans):
    for plan in plans:
        previous_end = 0
        for sentence in plan.sentences:
            assert plan.report_text[sentence.start : sentence.end] == sentence.text
            assert sentence.start >= previous_end
            previous_end = sentence.end


def test_both_languages_and_varied_phrasing_are_generated(plans):
    languages = Counter(plan.language for plan in plans)
    assert 0.35 < languages["zh"] / N < 0.65
    english = "\n".join(p.report_text for p in plans if p.language == "en")
    chinese = "\n".join(p.report_text for p in plans if p.language == "zh")
    for phrase in (
        "FINDINGS",
        "IMPRESSION",
        "o'clock",
        "from the nipple",
        " cm",
        " mm",
        "BI-RADS",
        "TR",
        "No internal vascularity",
        "without posterior",
        "No axillary lymphadenopathy",
    ):
        assert phrase in english, phrase
    for phrase in (
        "超声",
        "点钟",
        "距乳头",
        "大小约",
        "mm",
        "cm",
        "BI-RADS",
        "未见明显血流信号",
        "双侧腋下未见明显肿大淋巴结",
        "1、",
        "2、",
    ):
        assert phrase in chinese, phrase
    assert len({p.report_text for p in plans}) == N


def test_every_lesion_is_described_unless_planted_otherwise(plans):
    for plan in plans:
        omitted = {d.lesion_key for d in plan.disagreements if d.kind == "annotated_not_reported"}
        described = {key for sentence in plan.sentences for key in sentence.lesion_keys}
        keys = set(plan.lesion_keys()) | {lesion.key for lesion in plan.unannotated}
        assert described == keys - omitted


def test_some_sentences_describe_two_lesions(plans):
    assert any(len(sentence.lesion_keys) == 2 for plan in plans for sentence in plan.sentences)


def test_all_codes_belong_to_the_udaf_vocabulary(plans):
    for plan in plans:
        lesions = [lesion for image in plan.images for lesion in image.lesions] + plan.unannotated
        for lesion in lesions:
            for dim, code in _udaf_values(lesion.attributes):
                assert code in UDAF_CODES[dim], (dim, code)
            assert all(isinstance(lesion.attributes[d], list) for d in UDAF_MANY if d in lesion.attributes)
        for sentence in plan.sentences:
            for attrs in [sentence.attributes, *sentence.attributes.get("by_lesion", {}).values()]:
                for dim, code in _udaf_values(attrs):
                    assert code in UDAF_CODES[dim], (dim, code)


def _values(lexicon: dict, attribute: str) -> dict[str, dict]:
    return {value["code"]: value for value in lexicon_attribute_map(lexicon)[attribute]["values"]}


def _category_labels(lexicon: dict) -> set[str]:
    return {category["label"] for category in lexicon["assessment"]["categories"]}


def test_every_code_the_generator_emits_exists_in_the_lexicon_files(plans):
    tirads_fields = {f"tirads_{code}": code for code in lexicon_attribute_map(TIRADS)}
    categories = {"birads": _category_labels(BIRADS), "tirads_level": _category_labels(TIRADS)}
    for plan in plans:
        lesions = [lesion for image in plan.images for lesion in image.lesions] + plan.unannotated
        for lesion in lesions:
            # The platform's own validator: what the seeder stores on regions is a valid UDAF tagging.
            assert attributes_validate(UDAF, lesion.attributes) == lesion.attributes
            assessment = lesion.assessment
            if assessment["system"] == "acr_tirads":
                assert attributes_validate(TIRADS, assessment["features"], require_complete=True)
                assert assessment["level"] in categories["tirads_level"]
            else:
                assert assessment["category"] in categories["birads"]
        for sentence in plan.sentences:
            for attrs in [sentence.attributes, *sentence.attributes.get("by_lesion", {}).values()]:
                udaf = {dim: value for dim, value in attrs.items() if dim in UDAF_CODES}
                assert attributes_validate(UDAF, udaf) == udaf, plan.accession
                features = {tirads_fields[f]: value for f, value in attrs.items() if f in tirads_fields}
                attributes_validate(TIRADS, features)
                for field, labels in categories.items():
                    if field in attrs:
                        assert attrs[field] in labels, (plan.accession, field)
        for item in plan.disagreements:
            if item.attribute in UDAF_CODES:
                attributes_validate(UDAF, {item.attribute: item.report_value})
                attributes_validate(UDAF, {item.attribute: item.annotation_value})
            elif item.attribute in categories:
                assert {item.report_value, item.annotation_value} <= categories[item.attribute]


def test_the_generators_tables_are_keyed_by_lexicon_codes():
    for dim, wording in report_module.WORDING.items():
        assert set(wording) <= UDAF_CODES[dim], dim
    for table, dim in (
        (report_module.EN_ECHO, "echogenicity"),
        (report_module.EN_SHAPE, "shape"),
        (report_module.ZH_SHAPE, "shape"),
        (report_module.EN_MARGIN, "margins"),
        (report_module.ZH_MARGIN, "margins"),
        (report_module.EN_POSTERIOR, "posterior_acoustics"),
        (report_module.ZH_POSTERIOR, "posterior_acoustics"),
        (report_module.EN_VASC, "vascularity"),
        (report_module.ZH_VASC, "vascularity"),
    ):
        assert set(table) <= UDAF_CODES[dim], dim
    for table in (report_module.EN_COMPOSITION, report_module.ZH_COMPOSITION):
        assert set(table) <= set(_values(TIRADS, "composition"))
    assert set(report_module.FOCI_ZH) <= set(_values(TIRADS, "echogenic_foci"))
    for dim, swaps in study_module._SWAPS.items():
        for truth, claims in swaps.items():
            assert {truth, *claims} - {None} <= UDAF_CODES[dim], dim
    for table, lexicon in ((study_module._WRONG_BIRADS, BIRADS), (study_module._WRONG_TIRADS, TIRADS)):
        assert {*table, *table.values()} <= _category_labels(lexicon)


def _literal_point_tables(tree: ast.AST) -> list[int]:
    """Line numbers of dict literals that map TI-RADS value codes to whole numbers."""
    scored = {code for attribute in lexicon_attribute_map(TIRADS) for code in _values(TIRADS, attribute)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and node.keys:
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
            numbers = [v for v in node.values if isinstance(v, ast.Constant) and type(v.value) is int]
            if numbers and set(keys) & scored:
                lines.append(node.lineno)
    return lines


def test_the_generator_keeps_no_tirads_point_table_of_its_own():
    for path in sorted((ROOT / "demo").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not _literal_point_tables(tree), path
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        defined |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
        assert not defined & {"TIRADS_POINTS", "tirads_points", "tirads_level"}, path
    # The check does find a table where one is written.
    assert _literal_point_tables(ast.parse('{"composition": {"spongiform": 0, "mixed_cystic_and_solid": 1}}'))


def test_tirads_field_lists_print_the_lexicons_labels_and_points():
    field = re.compile(r"^(?P<label>[A-Z][a-z ]+): (?P<values>.+)\.$")
    labels = {attribute["label"]: code for code, attribute in lexicon_attribute_map(TIRADS).items()}
    checked = Counter()
    for index in range(400):
        plan = study_plan(SEED, index, language="en")
        truth = {lesion.key: lesion for image in plan.images for lesion in image.lesions}
        truth.update({lesion.key: lesion for lesion in plan.unannotated})
        for sentence in plan.sentences:
            match = field.match(sentence.text)
            if not match or match["label"] not in labels:
                continue
            attribute = labels[match["label"]]
            features = truth[sentence.lesion_keys[0]].assessment["features"]
            codes = features[attribute] if isinstance(features[attribute], list) else [features[attribute]]
            values = _values(TIRADS, attribute)
            written = [f"{values[code]['label'].lower()} ({values[code]['points']})" for code in codes]
            if attribute == "echogenicity" or features[attribute] == "lobulated_or_irregular":
                # Written in the region's UDAF words, with the TI-RADS value's points.
                assert match["values"].endswith(f"({values[codes[0]]['points']})"), sentence.text
            else:
                assert match["values"] == ", ".join(written), sentence.text
            checked[attribute] += 1
    assert set(checked) == set(labels.values())


def test_written_values_match_the_drawn_lesion_except_where_planted(plans):
    checked = 0
    for plan in plans:
        truth = {lesion.key: lesion for image in plan.images for lesion in image.lesions}
        truth.update({lesion.key: lesion for lesion in plan.unannotated})
        planted = {(d.lesion_key, d.attribute) for d in plan.disagreements}
        for sentence in plan.sentences:
            for key in sentence.lesion_keys:
                written, lesion = sentence.attributes_for(key), truth[key]
                for dim, value in written.items():
                    if dim not in UDAF_CODES or (key, dim) in planted:
                        continue
                    if dim in UDAF_MANY:
                        assert set(value) <= set(lesion.attributes.get(dim, [])), (plan.accession, dim)
                    else:
                        assert value == lesion.attributes.get(dim), (plan.accession, key, dim)
                    checked += 1
                for dim, codes in written.get("negated", {}).items():
                    if dim in UDAF_CODES:
                        assert not set(codes) & set(
                            lesion.attributes.get(dim, [])
                            if dim in UDAF_MANY
                            else [lesion.attributes.get(dim)]
                        )
                if "clock" in written:
                    assert written["clock"] == lesion.clock
                if "laterality" in written:
                    assert written["laterality"] == lesion.laterality
    assert checked > 3 * N


def test_assessment_categories_follow_the_descriptors_unless_planted(plans):
    for plan in plans:
        planted = {d.lesion_key for d in plan.disagreements if d.kind == "assessment_inconsistent"}
        truth = {lesion.key: lesion for image in plan.images for lesion in image.lesions}
        truth.update({lesion.key: lesion for lesion in plan.unannotated})
        for lesion in truth.values():
            if plan.body_part == "breast":
                assert lesion.assessment["category"] == birads_category(lesion.attributes)
            else:
                points = tirads_points(TIRADS, lesion.assessment["features"])
                level = next(c["label"] for c in TIRADS["assessment"]["categories"]
                             if c["code"] == tirads_level(TIRADS, points))
                assert (lesion.assessment["points"], lesion.assessment["level"]) == (points, level)
        for sentence in plan.sentences:
            for key in sentence.lesion_keys:
                written = sentence.attributes_for(key)
                expected = truth[key].assessment.get("category") or truth[key].assessment["level"]
                for field in ("birads", "tirads_level"):
                    if field in written:
                        assert (written[field] != expected) == (key in planted), plan.accession
                if "tirads_points" in written:
                    assert written["tirads_points"] == truth[key].assessment["points"]


# --- geometry and sizes --------------------------------------------------------------------------------
def test_regions_lie_inside_the_image_and_the_imaging_field(plans):
    for plan in plans:
        for image in plan.images:
            fov = field_of_view(image.width, image.height, image.probe)
            assert 0.05 <= image.pixel_spacing_mm <= 0.12
            assert 640 <= image.width <= 800 and 480 <= image.height <= 600
            for lesion in image.lesions:
                for x, y in _outline(lesion):
                    assert 0 <= x < image.width and 0 <= y < image.height
                    assert in_field(fov, x, y), (plan.accession, image.index, x, y)


def test_region_size_in_mm_matches_the_drawn_outline(plans):
    for plan in plans:
        for image in plan.images:
            for lesion in image.lesions:
                points = np.array(_outline(lesion))
                span = np.ptp(points, axis=0).max() * image.pixel_spacing_mm
                diameters = (
                    np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)).max() * image.pixel_spacing_mm
                )
                long_mm, short_mm = lesion.size_mm
                assert long_mm >= short_mm > 0
                assert 0.85 * long_mm <= diameters <= 1.2 * long_mm + 0.2, (plan.accession, lesion.key)
                assert span <= diameters + 1e-6


def test_reported_sizes_agree_with_regions_unless_a_mismatch_is_planted(plans):
    checked = 0
    for plan in plans:
        mismatched = {d.lesion_key: d for d in plan.disagreements if d.kind == "size_mismatch"}
        axes: dict[str, list[float]] = {}
        for image in plan.images:
            for lesion in image.lesions:
                axes.setdefault(lesion.key, []).extend(lesion.size_mm)
        for sentence in plan.sentences:
            for key in sentence.lesion_keys:
                size = sentence.attributes_for(key).get("size_mm")
                if not size or key not in axes:
                    continue
                if key in mismatched:
                    ratio = max(size) / max(mismatched[key].annotation_value)
                    assert ratio > 1.3 or ratio < 0.7, (plan.accession, size)
                    continue
                for value in size:  # each written dimension is one the regions measure
                    nearest = min(axes[key], key=lambda axis: abs(axis - value))
                    assert abs(value - nearest) <= max(0.6, 0.06 * nearest), (plan.accession, size, axes[key])
                    checked += 1
    assert checked > N


# --- planted disagreements -----------------------------------------------------------------------------
def test_planted_disagreement_rate_and_kinds():
    plans = [study_plan(SEED, index) for index in range(2000)]
    with_any = sum(bool(plan.disagreements) for plan in plans) / len(plans)
    assert 0.15 <= with_any <= 0.25
    kinds = Counter(d.kind for plan in plans for d in plan.disagreements)
    assert set(kinds) == set(DISAGREEMENT_KINDS)


def test_planted_disagreements_are_really_in_the_text(plans):
    seen = Counter()
    for plan in plans:
        drawn_keys = set(plan.lesion_keys())
        for item in plan.disagreements:
            seen[item.kind] += 1
            about = [s for s in plan.sentences if item.lesion_key in s.lesion_keys]
            if item.kind == "report_vs_annotation":
                truth = next(
                    lesion for i in plan.images for lesion in i.lesions if lesion.key == item.lesion_key
                )
                assert truth.attributes.get(item.attribute) == item.annotation_value != item.report_value
                stating = [
                    s
                    for s in about
                    if s.attributes_for(item.lesion_key).get(item.attribute) == item.report_value
                ]
                assert stating, plan.accession
                words = WORDING[item.attribute][item.report_value]
                assert any(w.lower() in s.text.lower() for s in stating for w in words), (
                    plan.accession,
                    words,
                )
            elif item.kind == "size_mismatch":
                assert any(
                    s.attributes_for(item.lesion_key).get("size_mm") == item.report_value for s in about
                )
            elif item.kind == "reported_not_annotated":
                assert item.lesion_key not in drawn_keys and about
                ghost = next(lesion for lesion in plan.unannotated if lesion.key == item.lesion_key)
                assert ghost.geometry == {} and ghost.shape == "none"
                if not plan.scenario:
                    assert [lesion.key for lesion in plan.unannotated] == [item.lesion_key]
            elif item.kind == "annotated_not_reported":
                assert item.lesion_key in drawn_keys and not about
            elif item.kind == "assessment_inconsistent":
                field = item.attribute
                assert any(s.attributes_for(item.lesion_key).get(field) == item.report_value for s in about)
                label = item.report_value  # "4A", or "TR2" which Chinese may write as "TI-RADS 2类"
                spellings = [label.lower()] + ([f"{label[2:]}类"] if field == "tirads_level" else [])
                assert any(w in s.text.lower() for s in about for w in spellings), (plan.accession, label)
    assert set(seen) == set(DISAGREEMENT_KINDS)


# --- pixels --------------------------------------------------------------------------------------------
def _inside_and_ring(lesion, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the lesion and of a band around it that excludes the region below it (posterior effects)."""
    outline = _outline(lesion)
    inner, outer = Image.new("L", (width, height)), Image.new("L", (width, height))
    ImageDraw.Draw(inner).polygon(outline, fill=255)
    ys = [y for _, y in outline]
    cx = sum(x for x, _ in outline) / len(outline)
    cy = sum(ys) / len(ys)
    grown = [(cx + 1.6 * (x - cx), cy + 1.6 * (y - cy)) for x, y in outline]
    ImageDraw.Draw(outer).polygon(grown, fill=255)
    inside = np.asarray(inner) > 0
    ring = (np.asarray(outer) > 0) & ~inside
    ring[int(cy) :, :] = False
    shrunk = [(cx + 0.7 * (x - cx), cy + 0.7 * (y - cy)) for x, y in outline]
    core = Image.new("L", (width, height))
    ImageDraw.Draw(core).polygon(shrunk, fill=255)
    return np.asarray(core) > 0, ring


def test_rendered_lesions_show_their_echogenicity():
    checked = Counter()
    for index in range(300):
        for image in study_plan(21, index).images:
            if not image.lesions:
                continue
            lesion = image.lesions[0]
            echo = lesion.attributes["echogenicity"]
            if echo not in ("anechoic", "hypoechoic", "hyperechoic") or checked[echo] >= 4:
                continue
            internal = lesion.attributes.get("internal_characteristics", [])
            if "calcifications" in internal or "septations" in internal:
                continue
            pixels = np.asarray(image_render(image, seed=21), dtype=np.float32)
            core, ring = _inside_and_ring(lesion, image.width, image.height)
            inside_mean, ring_mean = pixels[core].mean(), pixels[ring & (pixels > 0)].mean()
            if echo == "hyperechoic":
                assert inside_mean > 1.15 * ring_mean, (image.render_key, inside_mean, ring_mean)
            else:
                assert inside_mean < 0.7 * ring_mean, (image.render_key, inside_mean, ring_mean)
                if echo == "anechoic":
                    assert inside_mean < 25
            checked[echo] += 1
    assert set(checked) == {"anechoic", "hypoechoic", "hyperechoic"}


def test_rendered_image_matches_its_record():
    image = next(i for i in study_plan(2, 1).images)
    picture = image_render(image, seed=2)
    assert picture.mode == "L" and picture.size == (image.width, image.height)
    pixels = np.asarray(picture)
    assert pixels[:, : image.width // 2].std() > 10  # not blank: speckle and tissue
    assert pixels[0:30, :].mean() < 30  # the header strip is dark apart from its text


def test_ground_truth_round_trips_through_json(plans):
    for plan in plans[:200]:
        stored = plan.to_dict()
        assert json.loads(json.dumps(stored, ensure_ascii=False)) == stored


# --- studies planted as a whole ------------------------------------------------------------------------
def _scenario_plans(scenario: str, count: int = 8) -> list[StudyTruth]:
    found = []
    for index in range(3000):
        plan = study_plan(SEED, index)
        if plan.scenario == scenario:
            found.append(plan)
            if len(found) == count:
                return found
    raise AssertionError(f"no {scenario} study in 3,000")


def test_an_empty_reading_draws_nothing_and_reports_every_lesion_missing():
    for plan in _scenario_plans("empty_reading"):
        assert not plan.lesion_keys() and plan.images
        described = {key for sentence in plan.sentences for key in sentence.lesion_keys}
        assert described == {lesion.key for lesion in plan.unannotated}
        assert sorted((d.kind, d.lesion_key) for d in plan.disagreements) == sorted(
            ("reported_not_annotated", key) for key in described)
        assert study_plan(SEED, plan.index) == plan


def test_a_location_veto_draws_the_lesion_where_its_body_marker_contradicts_the_report():
    for plan in _scenario_plans("location_veto"):
        kinds = {d.kind: d.lesion_key for d in plan.disagreements}
        assert set(kinds) == {"reported_not_annotated", "annotated_not_reported"}
        moved, reported = kinds["annotated_not_reported"], kinds["reported_not_annotated"]
        markers = [image.body_marker for image in plan.images if any(lesion.key == moved for lesion in image.lesions)]
        assert markers and all(("AXILLA" in m) if plan.body_part == "breast" else m.endswith("ISTH") for m in markers)
        assert not any(moved in sentence.lesion_keys for sentence in plan.sentences)
        assert any(reported in sentence.lesion_keys for sentence in plan.sentences)
        assert reported not in plan.lesion_keys()
        ghost = next(lesion for lesion in plan.unannotated if lesion.key == reported)
        drawn = next(lesion for image in plan.images for lesion in image.lesions if lesion.key == moved)
        # a lookalike: the same side and attributes, only the place differs
        assert (drawn.attributes, drawn.laterality) == (ghost.attributes, ghost.laterality)
        assert study_plan(SEED, plan.index) == plan
