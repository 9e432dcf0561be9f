"""Behaviour of the public parser API and the CLI that a caller would notice."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from alignment.nlp import (
    PIPELINE_VERSION,
    ParsedReport,
    classify_context,
    detect_language,
    parse_report,
    parse_reports,
)
from alignment.nlp.cli import main
from alignment.nlp.pipeline import split_sentences

ROOT = Path(__file__).resolve().parents[3]
LEXICONS = ROOT / "annotation" / "lexicons"


def _findings(text: str, **kw: str) -> list[dict]:
    return [f.to_dict() for f in parse_report(text, **kw).findings]


def test_pipeline_version_is_a_string() -> None:
    assert isinstance(PIPELINE_VERSION, str) and PIPELINE_VERSION


def test_report_json_has_the_documented_shape_and_offsets() -> None:
    text = (
        "FINDINGS: There is a 1.2 x 0.7 x 0.7 cm solid hypoechoic nodule in the left lower pole of the "
        "thyroid gland. IMPRESSION: TR5, ACR TI-RADS total points: 12."
    )
    report = parse_report(text, lexicon="tirads")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["language"] == "en"
    sentence = next(s for s in data["sentences"] if s["findings"])
    assert sentence["section"] == "findings"
    assert text[sentence["start"] : sentence["end"]] == sentence["text"]
    f = sentence["findings"][0]
    assert (f["organ"], f["laterality"], f["site"], f["size_mm"], f["lesion"]) == (
        "Thyroid gland",
        "left",
        ["lower"],
        [12.0, 7.0, 7.0],
        "nodule",
    )
    echo = next(a for a in f["attributes"] if a["name"] == "echogenicity")
    assert (echo["value"], echo["lexicon"]) == ("hypoechoic", "tirads")
    assert text[echo["start"] : echo["end"]] == "hypoechoic"
    impression = [f for s in data["sentences"] if s["section"] == "impression" for f in s["findings"]]
    assert [f["assessment"] for f in impression] == [
        {"system": "ACR TI-RADS", "category": "TR5", "points": 12}
    ]


def test_two_lesions_in_one_sentence_are_kept_apart() -> None:
    fs = _findings("A 1.2 cm cyst at 2 o'clock and a 0.8 cm solid nodule at 10 o'clock.", lexicon="birads-us")
    assert [(f["lesion"], f["clock"], f["size_mm"]) for f in fs] == [
        ("cyst", "2:00", [12.0]),
        ("nodule", "10:00", [8.0]),
    ]


@pytest.mark.parametrize(
    ("text", "clock"),
    [
        ("Mass at 10 o'clock.", "10:00"),
        ("Mass at 10:30.", "10:30"),
        ("右乳9点结节", "9:00"),
        ("左乳5-7点结节", "6:00"),
        ("Cyst at 12-1 o'clock.", "12:30"),
    ],
)
def test_clock_positions_are_normalised(text: str, clock: str) -> None:
    assert _findings(text)[0]["clock"] == clock


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("nodule 1.2 x 0.8 x 0.9 cm", [12.0, 8.0, 9.0]),
        ("nodule 12 mm", [12.0]),
        ("结节大小约1.2×0.8cm", [12.0, 8.0]),
        ("结节，大小约12×8mm", [12.0, 8.0]),
        ("nodule 1.2 cm x 0.8 cm", [12.0, 8.0]),
    ],
)
def test_sizes_are_read_in_mm_in_written_order(text: str, size: list[float]) -> None:
    assert _findings(text)[0]["size_mm"] == size


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("BI-RADS 4A.", "4A"),
        ("BI-RADS3类", "3"),
        ("BI-RADS分级III级", "3"),
        ("BIRADS category 4c", "4C"),
        ("TR4.", "TR4"),
        ("ACR TI-RADS TR5", "TR5"),
    ],
)
def test_assessment_categories_are_normalised(text: str, category: str) -> None:
    assert _findings("Nodule. " + text)[0]["assessment"]["category"] == category


def test_distance_from_nipple_and_quadrant() -> None:
    f = _findings("右乳外上象限结节，距乳头3cm")[0]
    assert (f["quadrant"], f["distance_from_nipple_cm"]) == ("upper_outer", 3.0)
    f = _findings("Left breast UOQ mass, 3 cm FN")[0]
    assert (f["quadrant"], f["distance_from_nipple_cm"]) == ("upper_outer", 3.0)


def test_negated_attribute_and_lexicon_value_containing_no() -> None:
    f = _findings(
        "Hypoechoic nodule without posterior shadowing and no internal vascularity.", lexicon="birads-us"
    )[0]
    attrs = {(a["name"], a["value"]): a["negated"] for a in f["attributes"]}
    assert attrs[("posterior_features", "shadowing")] is True
    assert attrs[("vascularity", "absent")] is False
    assert f["negated"] is False


def test_chosen_lexicon_codes_win_and_others_still_reported() -> None:
    f = _findings("Hypoechoic nodule with septations.", lexicon="tirads")[0]
    got = {
        (a["lexicon"], a["name"], a["value"])
        for a in f["attributes"]
        if a["lexicon"] != "udaf" or a["name"] not in {"diagnosis", "organ_level", "body_system_level"}
    }
    assert ("tirads", "echogenicity", "hypoechoic") in got
    assert ("udaf", "internal_characteristics", "septations") in got


def test_udaf_lexicon_adds_structural_tags() -> None:
    f = parse_report("Left breast cyst.").findings[0]
    names = {(a.name, a.value) for a in f.attributes}
    assert {
        ("diagnosis", "cyst"),
        ("organ_level", "breast"),
        ("body_system_level", "breast_and_axilla"),
    } <= names


def _split(text: str) -> list[str]:
    return [text[a:b] for a, b, _, _ in split_sentences(text)]


def test_sentences_split_on_lists_headers_and_chinese_punctuation() -> None:
    assert _split("1、双侧乳腺组织增生。2、左乳低回声结节；3、双腋下未见明显肿大淋巴结。") == [
        "1、双侧乳腺组织增生。",
        "2、左乳低回声结节；",
        "3、双腋下未见明显肿大淋巴结。",
    ]
    text = "FINDINGS: Cyst approx. 5 mm at 2 o'clock. IMPRESSION: BI-RADS 2."
    assert _split(text) == ["FINDINGS:", "Cyst approx. 5 mm at 2 o'clock.", "IMPRESSION:", "BI-RADS 2."]
    assert [p[2] for p in split_sentences(text)] == ["findings", "findings", "impression", "impression"]
    # the period after an item's number is no sentence end: "1." is not a sentence of its own
    assert _split("IMPRESSION:\n1. Nodule in the left breast at 11:00, BI-RADS 4C.\n2. Core needle biopsy.") == [
        "IMPRESSION:",
        "1. Nodule in the left breast at 11:00, BI-RADS 4C.",
        "2. Core needle biopsy.",
    ]
    assert _split("1.双乳不均匀致密型腺体；2.右乳BI-RADS 2类。") == ["1.双乳不均匀致密型腺体；", "2.右乳BI-RADS 2类。"]


def test_language_detection() -> None:
    assert detect_language("Left breast cyst.") == "en"
    assert detect_language("左乳低回声结节，BI-RADS 3类。") == "zh"


def test_batch_keeps_input_order_across_languages() -> None:
    reports = parse_reports(["左乳囊肿。", "Right breast mass.", "右乳结节。"])
    assert [r.language for r in reports] == ["zh", "en", "zh"]
    assert all(isinstance(r, ParsedReport) for r in reports)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        parse_report("x", lexicon="nope")
    with pytest.raises(ValueError):
        parse_report("x", language="fr")
    with pytest.raises(TypeError):
        parse_reports([b"bytes"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        classify_context("No cyst.", "mass")


def test_empty_report_parses_to_no_sentences() -> None:
    assert parse_report("").sentences == []
    assert parse_report("   \n ").sentences == []


def test_cli_parse_reports_bad_records_and_continues(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b'{"id": 1, "text": "Left breast cyst at 2 o\'clock."}\nnot json\n{"id": 3}\n'
        b'{"id": 4, "text": ""}\n\xff\xfe\x00\n'
        b'{"id": 6, "text": "\xe5\xb7\xa6\xe4\xb9\xb3\xe5\x9b\x8a\xe8\x82\xbf"}\n'
    )
    out, err = io.StringIO(), io.StringIO()
    assert main(["parse", "--lexicon", "birads-us", str(src)], out, err) == 0
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["id"] for x in lines] == [1, 6]
    assert lines[0]["sentences"][0]["findings"][0]["clock"] == "2:00"
    assert len(err.getvalue().splitlines()) == 4


def test_cli_exit_status_non_zero_when_nothing_parsed(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"id": 1, "text": \n', encoding="utf-8")
    assert main(["parse", str(src)], io.StringIO(), io.StringIO()) == 1
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x01\x02\xff")
    err = io.StringIO()
    assert main(["parse", str(binary)], io.StringIO(), err) == 1
    assert "binary" in err.getvalue()


def test_cli_plain_text_file_is_one_report(tmp_path: Path) -> None:
    src = tmp_path / "report.txt"
    src.write_text("Right thyroid nodule, TR3.\nLeft lobe: no nodules.", encoding="utf-8")
    out = io.StringIO()
    assert main(["parse", "--lexicon", "tirads", str(src)], out, io.StringIO()) == 0
    assert len(out.getvalue().splitlines()) == 1


def test_cli_context_command(tmp_path: Path) -> None:
    src = tmp_path / "ctx.jsonl"
    src.write_text(
        json.dumps({"id": "a", "sentence": "No internal vascularity.", "target": "internal vascularity"})
        + "\n"
        + json.dumps({"id": "b", "sentence": "x"})
        + "\n",
        encoding="utf-8",
    )
    out, err = io.StringIO(), io.StringIO()
    assert main(["context", str(src)], out, err) == 0
    assert json.loads(out.getvalue()) == {
        "id": "a",
        "negated": True,
        "uncertain": False,
        "historical": False,
        "hypothetical": False,
        "experiencer": "patient",
    }
    assert "b" in err.getvalue()


# ---------------------------------------------------------------- lexicon files
def _lexicon(system: str) -> dict:
    return json.loads((LEXICONS / f"{system}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("system", ["udaf", "birads-us", "tirads"])
def test_lexicon_codes_follow_the_term_rule(system: str) -> None:
    data = _lexicon(system)
    assert data["system"] == system
    for attr in data["attributes"]:
        assert attr["code"] == re.sub(r"[^a-z0-9]+", "_", attr["code"].lower()).strip("_")
        assert attr["cardinality"] in ("one", "many")
        for value in attr["values"]:
            term = value["us365k"]["tag"] if system == "udaf" else value["label"]
            assert value["code"] == re.sub(r"[^a-z0-9]+", "_", term.lower()).strip("_")
            assert value["synonyms"]["en"] and value["synonyms"]["zh"]
            if system == "tirads":
                assert isinstance(value["points"], int)
            else:
                assert "points" not in value


def test_udaf_has_all_us365k_dimensions_organs_and_body_systems() -> None:
    data = _lexicon("udaf")
    attrs = {a["code"]: a for a in data["attributes"]}
    assert list(attrs) == [
        "diagnosis",
        "body_system_level",
        "organ_level",
        "shape",
        "margins",
        "echogenicity",
        "internal_characteristics",
        "posterior_acoustics",
        "vascularity",
    ]
    assert len(attrs["organ_level"]["values"]) == 52
    assert len(attrs["body_system_level"]["values"]) == 9
    bodies = {v["code"] for v in attrs["body_system_level"]["values"]}
    assert all(v["body_system"] in bodies for v in attrs["organ_level"]["values"])
    assert all("us365k" in v for a in data["attributes"] for v in a["values"])


def test_tirads_levels_cover_every_point_total() -> None:
    cats = [c for c in _lexicon("tirads")["assessment"]["categories"] if "min_points" in c]
    covered = sorted(p for c in cats for p in range(c["min_points"], c["max_points"] + 1))
    assert covered == list(range(0, 18))


def test_an_organ_named_only_in_a_denial_does_not_carry_to_the_impression():
    from alignment.nlp import parse_report

    text = ("FINDINGS:\nThe thyroid gland is normal in size. "
            "In the lower pole of the right lobe there is a solid nodule measuring 20 x 12 mm. "
            "No suspicious cervical lymph nodes are seen.\n\nIMPRESSION:\n"
            "1. Nodule in the lower pole of the right lobe, ACR TI-RADS TR4.")
    findings = [f for s in parse_report(text).sentences for f in s.findings if not f.negated]
    assert [f.organ for f in findings] == ["Thyroid gland", "Thyroid gland"]


def test_field_points_in_brackets_stay_in_their_sentence_but_bracketed_list_items_split():
    from alignment.nlp import parse_report

    fields = parse_report("Composition: solid or almost completely solid (2). Echogenicity: hypoechoic (2).")
    assert [s.text for s in fields.sentences] == ["Composition: solid or almost completely solid (2).",
                                                  "Echogenicity: hypoechoic (2)."]
    items = parse_report("IMPRESSION: (1) Right breast cyst. (2) Left breast nodule at 3:00, BI-RADS 3.")
    assert [s.text for s in items.sentences][1:] == ["(1) Right breast cyst.", "(2) Left breast nodule at 3:00, BI-RADS 3."]


def test_a_bare_tr_level_followed_by_chinese_is_read():
    from alignment.nlp import parse_report

    findings = [f for s in parse_report("1、甲状腺左叶中部实性结节，TR2类。").sentences for f in s.findings]
    assert findings[0].assessment.category == "TR2"


@pytest.fixture
def sentence_memo():
    """The English pipeline's sentence memo, emptied before and after the test."""
    from alignment.nlp.pipeline import get_pipeline

    memo = get_pipeline("en").get_pipe("sonoalign_matches")
    size = memo.max_entries
    memo.clear()
    yield memo
    memo.max_entries = size
    memo.clear()


def _gold_texts() -> list[str]:
    here = Path(__file__).resolve().parent
    return [
        json.loads(line)["text"]
        for name in ("gold_en.jsonl", "gold_zh.jsonl")
        for line in (here / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def test_the_sentence_memo_never_changes_the_output(sentence_memo) -> None:
    texts = _gold_texts() * 2  # the second copy is parsed from the memo
    remembered = [r.to_dict() for r in parse_reports(texts)]
    sentence_memo.max_entries = 0
    sentence_memo.clear()
    assert [r.to_dict() for r in parse_reports(texts)] == remembered


def test_sentences_that_differ_only_in_digits_keep_their_own_numbers(sentence_memo) -> None:
    texts = [
        "A 1.2 cm cyst at 3 o'clock in the left breast, BI-RADS 3.",
        "A 2.5 cm cyst at 9 o'clock in the left breast, BI-RADS 5.",
        "A 2.5 cm cyst at 13 o'clock in the left breast, BI-RADS 7.",  # no such hour, no such category
        "Echogenic foci: none (0 points).",
        "Echogenic foci: none (3 points).",
    ]
    first, second, invalid, foci0, foci3 = parse_reports(texts, language="en")
    a, b, c = first.findings[0], second.findings[0], invalid.findings[0]
    assert (a.size_mm, a.clock, a.assessment.category) == ([12.0], "3:00", "3")
    assert (b.size_mm, b.clock, b.assessment.category) == ([25.0], "9:00", "5")
    assert (c.size_mm, c.clock, c.assessment) == ([25.0], None, None)
    assert [x.text for x in foci0.findings[0].attributes if x.name == "echogenic_foci"] == ["none (0 points)."]
    assert [x.text for x in foci3.findings[0].attributes if x.name == "echogenic_foci"] == ["none (3 points)."]
    # the same reports parsed one by one, each with an empty memo, say the same
    for text, report in zip(texts, (first, second, invalid, foci0, foci3), strict=True):
        sentence_memo.clear()
        assert parse_report(text, language="en").to_dict() == report.to_dict()


def test_the_sentence_memo_is_bounded(sentence_memo) -> None:
    sentence_memo.max_entries = 8
    texts = [f"Simple cyst in the upper pole of the left kidney measuring {n}.{n % 10} cm." for n in range(40)]
    reports = parse_reports(texts, language="en")
    assert len(sentence_memo.memo) <= 8 and len(sentence_memo.drafts) <= 8
    assert [r.findings[0].size_mm for r in reports] == [[n * 10 + n % 10] for n in range(40)]


def test_a_run_on_text_is_cut_into_bounded_sentences_and_loses_no_finding() -> None:
    from alignment.nlp.pipeline import MAX_SENTENCE

    text = "left breast nodule 1.2 cm at 3 o'clock, " * 3000  # 120,000 characters, no sentence end
    spans = split_sentences(text)
    assert max(b - a for a, b, _, _ in spans) <= MAX_SENTENCE
    assert all(text[b - 1] == "," for a, b, _, _ in spans[:-1])  # cut after clause punctuation
    findings = parse_report(text, language="en").findings
    assert len(findings) == 3000
    assert {(f.laterality, f.clock, tuple(f.size_mm)) for f in findings} == {("left", "3:00", (12.0,))}
