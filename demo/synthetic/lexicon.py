"""The lexicons the generator writes in, read from the platform's lexicon files.

Every code, label and TI-RADS point the generator uses comes from here, so a synthetic study speaks
the vocabulary the annotator's form, the importer and the report parser read from the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from annotation.lexicons import lexicon_attribute_map, lexicon_load, term_label

UDAF = lexicon_load("udaf")
TIRADS = lexicon_load("tirads")
BIRADS = lexicon_load("birads-us")

UDAF_CODES: dict[str, frozenset[str]] = {
    code: frozenset(value["code"] for value in attribute["values"])
    for code, attribute in lexicon_attribute_map(UDAF).items()
}
# Dimensions whose value is a list (cardinality "many"); the others hold one code.
UDAF_MANY = frozenset(
    code for code, attribute in lexicon_attribute_map(UDAF).items() if attribute["cardinality"] == "many"
)


@cache
def _values(system: str, attribute: str) -> dict[str, Mapping]:
    return {value["code"]: value for value in lexicon_attribute_map(lexicon_load(system))[attribute]["values"]}


@cache
def _categories(system: str) -> dict[str, Mapping]:
    return {category["code"]: category for category in lexicon_load(system)["assessment"]["categories"]}


def value_term(lexicon: Mapping, attribute: str, code: str) -> Mapping:
    """The lexicon entry of value `code` of `attribute`; KeyError when the lexicon has no such value."""
    return _values(lexicon["system"], attribute)[code]


def value_label(lexicon: Mapping, attribute: str, code: str, language: str = "en") -> str:
    """The label of a value in `language`, as the lexicon writes it."""
    return term_label(value_term(lexicon, attribute, code), language)


def value_points(attribute: str, code: str) -> int:
    """The ACR TI-RADS points of a feature value."""
    return value_term(TIRADS, attribute, code)["points"]


def attribute_label(lexicon: Mapping, attribute: str, language: str = "en") -> str:
    """The label of an attribute (a report's field name) in `language`."""
    return term_label(lexicon_attribute_map(lexicon)[attribute], language)


def category_label(lexicon: Mapping, code: str) -> str:
    """The label of an assessment category as reports write it ("4A", "TR4"); KeyError when unknown."""
    return _categories(lexicon["system"])[code]["label"]


def body_system(organ: str) -> str:
    """The UDAF body system an organ belongs to."""
    return value_term(UDAF, "organ_level", organ)["body_system"]
