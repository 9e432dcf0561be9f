"""Organ measurements in the grounded JSONL export: a report that measures the thyroid lobes ("Right
lobe: 4.9 x 1.6 x 1.8 cm ...", "右叶大小约4.5×1.5×1.4cm") is parsed and aligned when its reading is
submitted, and each exported line carries those sentences with findings of kind ``organ_measurement``
(organ, side, site, size), and the caliper drawn on the lobe linked to the lobe's sentence."""

from __future__ import annotations

import json

import pytest

from annotation import services
from batches.exporting import ExportOptions, export_run
from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db

ENGLISH = ("EXAM: Thyroid ultrasound. FINDINGS: Right lobe: 4.9 x 1.6 x 1.8 cm Left lobe: 4.4 x 1.5 x 1.7 cm "
           "Isthmus: 0.3 cm AP")
CHINESE = "甲状腺：右叶大小约4.5×1.5×1.4cm，左叶大小约4.3×1.4×1.3cm，峡部厚约0.3cm。"


def _exported_line(capture, tmp_path, *, report: str, language: str, caliper_mm: float) -> dict:
    """Export the JSONL line of a one-image study whose reader drew one caliper along the right lobe."""
    annotator = user_make()
    dataset = dataset_make(annotators_per_image=1)
    with capture(execute=True):
        study = study_make(dataset, report=report, language=language)
        study.body_part = "thyroid"
        study.save(update_fields=["body_part"])
        image = image_make(study, width=600, height=300, spacing=0.1, laterality="right")
        image.body_marker = "RT THY LONG"
        image.save()
        assignment = assignment_make(image, annotator)
        length_px = caliper_mm / 0.1
        services.region_create(image=image, author=annotator, assignment=assignment, shape="line",
                               geometry={"points": [[40, 150], [40 + length_px, 150]]}, attributes={},
                               lesion_key="L1", label="lobe")
        services.assignment_submit(assignment=assignment)
    out = tmp_path / f"export-{language}"
    export_run(dataset=dataset, out=out, options=ExportOptions(format="jsonl", status="all"))
    lines = [json.loads(line) for line in (out / "pairs.jsonl").open(encoding="utf-8")]
    assert len(lines) == 1
    return lines[0]


def _measurements(line: dict) -> list[tuple[str, dict]]:
    return [(sentence["text"], finding) for sentence in line["sentences"] for finding in sentence["findings"]
            if finding["lesion"] == "organ_measurement"]


def test_jsonl_record_carries_english_lobe_measurements_with_their_sentences(django_capture_on_commit_callbacks,
                                                                              tmp_path):
    line = _exported_line(django_capture_on_commit_callbacks, tmp_path, report=ENGLISH, language="en",
                          caliper_mm=48.0)
    measured = _measurements(line)
    by_side = {(finding["laterality"], tuple(finding["site"])): (text, finding) for text, finding in measured}
    assert set(by_side) == {("right", ()), ("left", ()), ("", ("isthmus",))}
    for key, size in ((("right", ()), [49.0, 16.0, 18.0]), (("left", ()), [44.0, 15.0, 17.0]),
                      (("", ("isthmus",)), [3.0])):
        text, finding = by_side[key]
        assert finding["size_mm"] == size and finding["measurement"] == "size"
        assert finding["organ"] == "Thyroid gland"
        assert text in line["report"] and f"{size[0] / 10:g}" in text  # the sentence that states it
    # The caliper along the right lobe is linked to the right lobe's sentence, and to no other.
    region = line["regions"][0]["id"]
    linked = [s["text"] for s in line["sentences"] if region in s["regions"]]
    assert linked == [by_side["right", ()][0]]


def test_jsonl_record_carries_chinese_lobe_measurements_with_their_sentences(django_capture_on_commit_callbacks,
                                                                              tmp_path):
    line = _exported_line(django_capture_on_commit_callbacks, tmp_path, report=CHINESE, language="zh",
                          caliper_mm=45.0)
    measured = _measurements(line)
    right = [(text, f) for text, f in measured if f["laterality"] == "right"]
    assert len(right) == 1
    text, finding = right[0]
    assert "右叶大小约4.5×1.5×1.4cm" in text and finding["size_mm"] == [45.0, 15.0, 14.0]
    assert finding["organ"] == "Thyroid gland"
    assert any(f["laterality"] == "left" and f["size_mm"] == [43.0, 14.0, 13.0] for _, f in measured)
    assert any("isthmus" in f["site"] and f["size_mm"] == [3.0] for _, f in measured)
    region = line["regions"][0]["id"]
    assert [s["text"] for s in line["sentences"] if region in s["regions"]] == [text]
