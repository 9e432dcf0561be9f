"""Lexicon files, their loader, attribute validation and TI-RADS scoring (no database)."""

import copy
import json
import re

import pytest

from annotation.lexicons import (
    AttributeValidationError,
    LexiconError,
    attributes_validate,
    lexicon_load,
    lexicon_parse,
    lexicon_systems,
    term_code,
    term_label,
    tirads_level,
    tirads_points,
)

US365K_TAGS = {
    "Diagnosis": ["nodule", "cyst", "mass", "fluid collection", "normal appearance"],
    "Shape": ["round", "oval", "lobulated", "tubular/linear", "nodular", "flattened", "irregular"],
    "Margins": ["well-defined", "ill-defined/indistinct"],
    "Echogenicity": ["anechoic", "hypoechoic", "isoechoic", "hyperechoic", "mixed echogenicity"],
    "InternalCharacteristics": ["cystic components", "calcifications", "septations", "solid components",
                                "mixed cystic and solid mass", "complex cystic solid"],
    "PosteriorAcoustics": ["enhancement", "shadowing"],
    "Vascularity": ["reduced/diminished vascularity", "normal/regular vascularity", "no vascularity",
                    "increased vascularity", "indeterminate/inhomogeneous vascularity"],
}


def test_all_three_lexicons_load_and_validate():
    assert {"udaf", "birads-us", "tirads"} <= set(lexicon_systems())
    for system in ("udaf", "birads-us", "tirads"):
        lexicon = lexicon_load(system)
        assert lexicon["system"] == system
        assert lexicon["version"]


@pytest.mark.parametrize("system", ["udaf", "birads-us", "tirads"])
def test_codes_follow_the_term_rule_and_every_value_has_both_languages(system):
    lexicon = lexicon_load(system)
    for attribute in lexicon["attributes"]:
        assert attribute["code"] == term_code(attribute["code"])
        for value in attribute["values"]:
            term = value["us365k"]["tag"] if system == "udaf" else value["label"]
            assert value["code"] == term_code(term), (attribute["code"], value)
            assert value["synonyms"].get("en"), value["code"]
            assert value["synonyms"].get("zh"), value["code"]


def test_term_code_examples_from_the_spec():
    assert term_code("Taller-than-wide") == "taller_than_wide"
    assert term_code("solid or almost completely solid") == "solid_or_almost_completely_solid"
    assert term_code("4A") == "4a"
    assert term_code("ill-defined/indistinct") == "ill_defined_indistinct"


def test_udaf_keeps_the_exact_us365k_tag_strings():
    lexicon = lexicon_load("udaf")
    tags: dict[str, set[str]] = {}
    for attribute in lexicon["attributes"]:
        for value in attribute["values"]:
            tags.setdefault(value["us365k"]["key"], set()).add(value["us365k"]["tag"])
    for key, expected in US365K_TAGS.items():
        assert tags[key] == set(expected), key
    assert len(tags["Organ_level"]) == 52
    assert len(tags["Body_system_level"]) == 9
    assert "Gallbladder and bile ducts" in tags["Organ_level"]


def _broken(mutate):
    content = copy.deepcopy(lexicon_load("tirads"))
    mutate(content)
    return json.dumps(content)


def test_unknown_key_is_named():
    raw = _broken(lambda c: c["attributes"][0].__setitem__("colour", "red"))
    with pytest.raises(LexiconError, match=r"attribute 'composition': unknown key 'colour'"):
        lexicon_parse(raw, source="tirads.json")


def test_duplicate_value_code_is_named():
    def mutate(content):
        values = content["attributes"][1]["values"]
        values.append(copy.deepcopy(values[0]))

    with pytest.raises(LexiconError, match=r"value 'anechoic': duplicate value code"):
        lexicon_parse(_broken(mutate))


def test_missing_label_is_named():
    raw = _broken(lambda c: c["attributes"][0]["values"][0].pop("label"))
    with pytest.raises(LexiconError, match=r"missing label"):
        lexicon_parse(raw)


@pytest.mark.parametrize("system", ["udaf", "birads-us", "tirads"])
def test_every_attribute_value_and_category_has_a_chinese_label(system):
    lexicon = lexicon_load(system)
    terms = [*lexicon["attributes"], *(lexicon.get("assessment") or {}).get("categories", [])]
    terms += [value for attribute in lexicon["attributes"] for value in attribute["values"]]
    missing = [term["code"] for term in terms if not re.search(r"[\u4e00-\u9fff]", term.get("label_zh", ""))]
    assert missing == []


def test_a_value_without_its_chinese_label_is_refused():
    raw = _broken(lambda c: c["attributes"][1]["values"][2].pop("label_zh"))
    with pytest.raises(LexiconError, match=r"attribute 'echogenicity' value 'hypoechoic': missing Chinese label"):
        lexicon_parse(raw)


def test_term_label_follows_the_interface_language():
    value = lexicon_load("tirads")["attributes"][1]["values"][3]
    assert term_label(value, "zh-hans") == "极低回声"
    assert term_label(value, "zh-hant") == "极低回声"
    assert term_label(value, "en") == "Very hypoechoic"
    assert term_label(value, None) == "Very hypoechoic"


def test_bad_json_and_unknown_system_are_clear():
    with pytest.raises(LexiconError, match="not valid JSON"):
        lexicon_parse(b"{nope", source="x.json")
    with pytest.raises(LexiconError, match=r"unknown lexicon 'radlex' \(known: .*udaf"):
        lexicon_load("radlex")
    with pytest.raises(LexiconError, match="unknown lexicon"):
        lexicon_load("../etc/passwd")


def test_every_problem_is_reported_at_once():
    def mutate(content):
        content.pop("name")
        content["attributes"][0]["cardinality"] = "several"
        content["attributes"][1]["code"] = "Bad Code"

    with pytest.raises(LexiconError) as caught:
        lexicon_parse(_broken(mutate))
    assert len(caught.value.problems) >= 3


def test_attributes_validate_accepts_and_normalises():
    lexicon = lexicon_load("udaf")
    clean = attributes_validate(lexicon, {"echogenicity": "hypoechoic", "internal_characteristics": "calcifications",
                                          "shape": ""})
    assert clean == {"echogenicity": "hypoechoic", "internal_characteristics": ["calcifications"]}


def test_attributes_validate_wrong_value_names_attribute():
    with pytest.raises(AttributeValidationError) as caught:
        attributes_validate(lexicon_load("udaf"), {"echogenicity": "purple"})
    assert set(caught.value.errors) == {"echogenicity"}
    assert "'purple' is not a value of echogenicity" in caught.value.errors["echogenicity"]


def test_attributes_validate_wrong_cardinality_names_attribute():
    with pytest.raises(AttributeValidationError) as caught:
        attributes_validate(lexicon_load("udaf"), {"echogenicity": ["hypoechoic", "anechoic"]})
    assert caught.value.errors == {"echogenicity": "takes one value, got list"}


def test_attributes_validate_unknown_attribute_names_it():
    with pytest.raises(AttributeValidationError) as caught:
        attributes_validate(lexicon_load("birads-us"), {"colour": "red", "shape": "oval"})
    assert list(caught.value.errors) == ["colour"]
    assert "unknown attribute 'colour'" in caught.value.errors["colour"]


def test_attributes_validate_required_when_complete():
    lexicon = lexicon_load("tirads")
    with pytest.raises(AttributeValidationError) as caught:
        attributes_validate(lexicon, {"composition": "spongiform"}, require_complete=True)
    assert "echogenicity" in caught.value.errors and caught.value.errors["echogenicity"] == "is required"


# (composition, echogenicity, shape, margin, foci) -> points, level; one row per TI-RADS level and
# every point value of LEXICONS.md's table.
TIRADS_CASES = [
    (("cystic_or_almost_completely_cystic", "anechoic", "wider_than_tall", "smooth",
      ["none_or_large_comet_tail_artifacts"]), 0, "tr1"),
    (("spongiform", "anechoic", "wider_than_tall", "ill_defined", []), 0, "tr1"),
    (("mixed_cystic_and_solid", "anechoic", "wider_than_tall", "smooth", []), 1, "tr1"),
    (("mixed_cystic_and_solid", "hyperechoic_or_isoechoic", "wider_than_tall", "smooth", []), 2, "tr2"),
    (("solid_or_almost_completely_solid", "hyperechoic_or_isoechoic", "wider_than_tall", "smooth", []), 3, "tr3"),
    (("solid_or_almost_completely_solid", "hypoechoic", "wider_than_tall", "smooth", []), 4, "tr4"),
    (("solid_or_almost_completely_solid", "hypoechoic", "wider_than_tall", "lobulated_or_irregular",
      ["macrocalcifications"]), 7, "tr5"),
    (("solid_or_almost_completely_solid", "very_hypoechoic", "wider_than_tall", "smooth", []), 5, "tr4"),
    (("solid_or_almost_completely_solid", "hypoechoic", "wider_than_tall", "smooth",
      ["peripheral_rim_calcifications"]), 6, "tr4"),
    (("solid_or_almost_completely_solid", "very_hypoechoic", "taller_than_wide", "extra_thyroidal_extension",
      ["punctate_echogenic_foci", "macrocalcifications", "peripheral_rim_calcifications"]), 17, "tr5"),
]


@pytest.mark.parametrize(("values", "points", "level"), TIRADS_CASES)
def test_tirads_points_and_level(values, points, level):
    lexicon = lexicon_load("tirads")
    composition, echogenicity, shape, margin, foci = values
    attributes = {"composition": composition, "echogenicity": echogenicity, "shape": shape, "margin": margin,
                  "echogenic_foci": foci}
    assert tirads_points(lexicon, attributes) == points
    assert tirads_level(lexicon, points) == level


def test_tirads_points_none_when_nothing_scored():
    assert tirads_points(lexicon_load("tirads"), {}) is None
    assert tirads_points(lexicon_load("udaf"), {"echogenicity": "hypoechoic"}) is None
    assert tirads_level(lexicon_load("tirads"), None) is None


def test_lexicon_words_are_plain_text():
    # Synonyms feed the NLP matcher: no regex metacharacters or stray whitespace sneak in.
    for system in lexicon_systems():
        for attribute in lexicon_load(system)["attributes"]:
            for value in attribute["values"]:
                for words in value["synonyms"].values():
                    for word in words:
                        assert word == word.strip() and not re.search(r"[\\\[\]{}^$|]", word), word
