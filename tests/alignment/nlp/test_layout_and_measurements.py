"""Real report layouts (flattened one-line reports, run-on "Label: value" fields, bracketed categories) and
organ measurements as findings of their own kind."""

from __future__ import annotations

import pytest

from alignment.nlp import parse_report
from alignment.nlp.vocabulary import NON_LESION_KINDS

THYROID_FLAT = (
    "EXAM: US THYROID CLINICAL HISTORY: Palpable nodule. COMPARISON: None. FINDINGS: Right lobe: 4.9 x 1.6 x "
    "1.8 cm Left lobe: 4.4 x 1.5 x 1.7 cm Isthmus: 0.3 cm AP Nodule 1: Location: right lobe, lower pole "
    "Size: 1.2 x 0.9 x 1.0 cm Composition: Solid (2 points) Echogenicity: Hypoechoic (2 points) Shape: "
    "Wider-than-tall (0 points) Margin: Smooth (0 points) Echogenic foci: None (0 points) ACR TI-RADS: TR4 "
    "(4 points) IMPRESSION: TR4 nodule in the right lobe. Recommend FNA."
)
BREAST_FLAT = (
    "EXAM: US BREAST LEFT INDICATION: Palpable lump. FINDINGS: Left breast: At 2 o'clock, 4 cm from the "
    "nipple, there is a 1.1 x 0.6 x 0.8 cm oval circumscribed hypoechoic mass parallel to the skin. No "
    "axillary lymphadenopathy. IMPRESSION: Probably benign mass. Recommend short interval follow-up in 6 "
    "months (BI-RADS 3)."
)


def _texts(report_text: str) -> list[str]:
    return [s.text for s in parse_report(report_text).sentences]


def _measurements(report_text: str) -> list[dict]:
    return [f.to_dict() for f in parse_report(report_text).findings if f.lesion == "organ_measurement"]


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "FINDINGS: Right lobe: 4.6 x 1.9 x 1.5 cm Left lobe: 4.1 x 1.7 x 1.6 cm Isthmus: 0.4 cm AP",
            ["FINDINGS:", "Right lobe:", "4.6 x 1.9 x 1.5 cm", "Left lobe:", "4.1 x 1.7 x 1.6 cm", "Isthmus:",
             "0.4 cm AP"],
        ),
        (
            "Recommend short interval follow-up in 6 months (BI-RADS 3).",
            ["Recommend short interval follow-up in 6 months (BI-RADS 3)."],
        ),
        (
            "Composition: Solid (2 points) Echogenicity: Hypoechoic (2 points) Shape: Taller-than-wide (3 points)",
            ["Composition: Solid (2 points)", "Echogenicity: Hypoechoic (2 points)",
             "Shape: Taller-than-wide (3 points)"],
        ),
        (
            "EXAM: US THYROID CLINICAL HISTORY: Goiter. COMPARISON: None.",
            ["EXAM:", "US THYROID", "CLINICAL HISTORY:", "Goiter.", "COMPARISON:", "None."],
        ),
        (
            "Cyst at 3 o'clock (2 mm) and a mass at 9 o'clock (BR 4).",
            ["Cyst at 3 o'clock (2 mm) and a mass at 9 o'clock (BR 4)."],
        ),
        (
            "IMPRESSION: 1. Right thyroid nodule (TR 4). 2. Left thyroid cyst (TR 1).",
            ["IMPRESSION:", "1. Right thyroid nodule (TR 4).", "2. Left thyroid cyst (TR 1)."],
        ),
    ],
)
def test_flattened_layouts_split_one_field_per_label(text: str, sentences: list[str]) -> None:
    assert _texts(text) == sentences


def test_flattened_thyroid_template_keeps_headers_fields_and_every_finding() -> None:
    report = parse_report(THYROID_FLAT)
    sections = {s.text: s.section for s in report.sentences}
    assert sections["CLINICAL HISTORY:"] == "history"
    assert sections["FINDINGS:"] == "findings"
    assert sections["IMPRESSION:"] == "impression"
    lobes = [(f["laterality"], f["site"], f["size_mm"]) for f in _measurements(THYROID_FLAT)]
    assert lobes == [("right", [], [49.0, 16.0, 18.0]), ("left", [], [44.0, 15.0, 17.0]), (None, ["isthmus"], [3.0])]
    nodule = next(f for f in report.findings if f.lesion == "nodule" and f.size_mm)
    assert (nodule.laterality, nodule.site, nodule.size_mm) == ("right", ["lower"], [12.0, 9.0, 10.0])
    assert nodule.assessment is not None and (nodule.assessment.category, nodule.assessment.points) == ("TR4", 4)
    assert {a.name for a in nodule.attributes if a.text} >= {"echogenicity", "shape", "margin", "echogenic_foci"}


def test_flattened_breast_template_keeps_the_bracketed_category() -> None:
    report = parse_report(BREAST_FLAT)
    mass = next(f for f in report.findings if f.lesion == "mass")
    assert (mass.laterality, mass.clock, mass.distance_from_nipple_cm) == ("left", "2:00", 4.0)
    assert report.sentences[-1].text == "Recommend short interval follow-up in 6 months (BI-RADS 3)."
    # the category assesses the mass the impression just named
    impression = [f for f in report.findings if f.lesion == "mass" and f.uncertain]
    assert [f.assessment.category for f in impression if f.assessment] == ["3"]


@pytest.mark.parametrize(
    ("text", "organ", "laterality", "site", "size_mm", "measurement"),
    [
        ("The left thyroid lobe measures 5.1 x 2.0 x 1.6 cm.", "Thyroid gland", "left", [], [51.0, 20.0, 16.0], "size"),
        ("The right kidney measures 11.2 cm.", "Kidney and ureter", "right", [], [112.0], "size"),
        ("Liver span 15.2 cm.", "Liver", None, [], [152.0], "length"),
        ("The spleen measures 10.5 cm in length.", "Spleen", None, [], [105.0], "length"),
        ("The common bile duct measures 4 mm in diameter.", "Gallbladder and bile ducts", None, [], [4.0], "diameter"),
        ("Gallbladder wall thickness 2 mm.", "Gallbladder and bile ducts", None, [], [2.0], "thickness"),
        ("Endometrial thickness 8 mm.", "Uterus", None, [], [8.0], "thickness"),
        ("甲状腺：右叶大小约4.5×1.6×1.5cm。", "Thyroid gland", "right", [], [45.0, 16.0, 15.0], "size"),
        ("甲状腺峡部厚约0.3cm。", "Thyroid gland", None, ["isthmus"], [3.0], "thickness"),
        ("左肾大小约10.5×4.8cm。", "Kidney and ureter", "left", [], [105.0, 48.0], "size"),
        ("肝右叶最大斜径13.5cm。", "Liver", "right", [], [135.0], "length"),
        ("子宫前位。内膜厚约0.8cm。", "Uterus", None, [], [8.0], "thickness"),
    ],
)
def test_organ_measurement_wordings(
    text: str, organ: str, laterality: str | None, site: list[str], size_mm: list[float], measurement: str
) -> None:
    (f,) = _measurements(text)
    assert (f["organ"], f["laterality"], f["site"], f["size_mm"], f["measurement"]) == (
        organ, laterality, site, size_mm, measurement
    )
    assert ("organ_level", f["organ"].lower().replace(" ", "_")) in {(a["name"], a["value"]) for a in f["attributes"]}


def test_two_lobes_in_one_sentence_each_get_their_side() -> None:
    text = "Thyroid gland: The right lobe measures 4.5 x 1.5 x 1.4 cm, and the left lobe 4.0 x 1.3 x 1.2 cm."
    assert [(f["organ"], f["laterality"], f["size_mm"]) for f in _measurements(text)] == [
        ("Thyroid gland", "right", [45.0, 15.0, 14.0]),
        ("Thyroid gland", "left", [40.0, 13.0, 12.0]),
    ]


def test_volumes_are_read_as_volumes() -> None:
    ovary, bladder = _measurements("The right ovary measures 3.0 x 2.0 x 1.5 cm, volume 4.7 mL. Bladder volume 350 mL.")
    assert (ovary["organ"], ovary["size_mm"], ovary["volume_ml"]) == ("Adnexa", [30.0, 20.0, 15.0], 4.7)
    assert (bladder["organ"], bladder["size_mm"], bladder["volume_ml"], bladder["measurement"]) == (
        "Bladder", None, 350.0, "volume"
    )


def test_organ_measurements_are_never_lesions() -> None:
    assert "organ_measurement" in NON_LESION_KINDS


def test_a_number_without_an_organ_measures_nothing() -> None:
    assert _measurements("Follow-up in 6 months. 4.6 x 1.9 x 1.5 cm.") == []
    assert _measurements("There is a 1.2 cm hypoechoic nodule in the right lobe.") == []


def test_a_lesion_label_takes_its_side_and_site_from_the_line_after_it() -> None:
    text = ("Nodule 1: left lobe, mid portion. Size: 1.7 x 1.0 cm. Nodule 2: right lobe, lower pole. "
            "Size: 0.9 cm.")
    findings = [f for f in parse_report(text).findings if f.lesion == "nodule"]
    assert [(f.laterality, f.site, f.size_mm) for f in findings] == [
        ("left", ["mid"], [17.0, 10.0]), ("right", ["lower"], [9.0])]


def test_a_sentence_naming_another_organ_leaves_the_label_before_it() -> None:
    findings = _measurements("Isthmus: 0.4 cm AP. The right kidney measures 11.2 cm.")
    assert [(f["organ"], f["laterality"], f["site"]) for f in findings] == [
        ("Thyroid gland", None, ["isthmus"]), ("Kidney and ureter", "right", [])]


@pytest.mark.parametrize(
    ("lexicon", "attribute", "value"),
    [("udaf", "echogenicity", "mixed_echogenicity"), ("tirads", "echogenicity", "hyperechoic_or_isoechoic"),
     ("birads-us", "echo_pattern", "heterogeneous")],
)
def test_mixed_echo_predominantly_isoechoic_is_mixed_but_scores_as_isoechoic(
    lexicon: str, attribute: str, value: str
) -> None:
    report = parse_report("Nodule 1: right lobe, upper pole. Echogenicity: mixed, predominantly isoechoic (1).",
                          lexicon=lexicon)
    assert [(a.name, a.value) for a in report.findings[0].attributes if a.text] == [(attribute, value)]


def test_chinese_mixed_echo_with_a_predominant_echo() -> None:
    report = parse_report("甲状腺右叶可见一结节，混合回声，以低回声为主。", lexicon="udaf")
    assert [(a.name, a.value) for a in report.findings[0].attributes if a.text] == [
        ("echogenicity", "mixed_echogenicity")]


def test_calcifications_without_a_place_describe_the_open_lesion() -> None:
    report = parse_report(
        "In the left breast at 5 o'clock there is a hypoechoic nodule measuring 1.0 x 0.6 cm. No calcifications "
        "are seen. No internal vascularity. Right breast, 9 o'clock: oval cyst, 0.5 cm. Internal calcifications "
        "are noted.", lexicon="udaf")
    first, second = report.findings
    assert (first.lesion, second.lesion) == ("nodule", "cyst")
    assert {(a.name, a.value, a.negated) for a in first.attributes if a.text} == {
        ("echogenicity", "hypoechoic", False), ("internal_characteristics", "calcifications", True),
        ("vascularity", "no_vascularity", False)}
    assert any("calcifications" in (a.name, a.value) and not a.negated for a in second.attributes)


def test_calcifications_with_a_place_or_without_a_lesion_stay_findings() -> None:
    assert [(f.lesion, f.negated) for f in parse_report("No calcifications are seen.").findings] == [
        ("calcification", True)]
    placed = parse_report("Oval cyst at 3 o'clock in the left breast. Scattered calcifications in the right breast.")
    assert [(f.lesion, f.laterality) for f in placed.findings] == [("cyst", "left"), ("calcification", "right")]
