"""Turn the lexicon files into phrase tables for the matcher.

The files in ``annotation/lexicons/`` are the single source of the attribute vocabulary.  They are read
and validated by ``annotation.lexicons.lexicon_load`` (pure Python, no Django), the same loader the
annotation forms use, from that directory or from ``SONOALIGN_LEXICON_DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from annotation.lexicons import LEXICON_DIR, lexicon_load, term_code

from .vocabulary import EXTRA_VALUES

__all__ = ["LEXICON_SYSTEMS", "LexiconTables", "ValueRef", "load_tables", "resolve_ref", "term_code"]

LEXICON_SYSTEMS: tuple[str, ...] = ("udaf", "birads-us", "tirads")

# udaf attributes that describe where/what rather than how: the parser reads them from organ and lesion
# words instead of matching them as descriptors.
_UDAF_STRUCTURAL = frozenset({"diagnosis", "body_system_level", "organ_level"})


def lexicon_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding ``udaf.json``, ``birads-us.json`` and ``tirads.json``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("SONOALIGN_LEXICON_DIR")
    if env:
        return Path(env)
    return LEXICON_DIR


@dataclass(frozen=True, slots=True)
class ValueRef:
    """One lexicon value a phrase can stand for."""

    lexicon: str
    attribute: str
    value: str


@dataclass(frozen=True, slots=True)
class LexiconTables:
    """Phrase tables built from the three lexicons.

    ``attributes[lang]`` maps a phrase to the values it can stand for (all lexicons); ``organs[lang]`` maps
    a phrase to the udaf Organ_level tag; ``organ_body_system`` maps an organ tag to its Body_system tag;
    ``versions`` maps each system to its file version (part of the cache key of parsed output).
    """

    attributes: dict[str, dict[str, tuple[ValueRef, ...]]]
    organs: dict[str, dict[str, str]]
    organ_body_system: dict[str, str]
    versions: dict[str, str]


_RANK = {name: i for i, name in enumerate(LEXICON_SYSTEMS)}


def resolve_ref(refs: tuple[ValueRef, ...], lexicon: str, hint: frozenset[str] | None = None) -> ValueRef:
    """Pick the lexicon value a phrase stands for: a field label's attribute (``hint``) first, then the
    caller's lexicon, then udaf, birads-us, tirads."""
    if len(refs) == 1:
        return refs[0]
    return min(
        refs,
        key=lambda r: (hint is not None and r.attribute not in hint, r.lexicon != lexicon, _RANK[r.lexicon]),
    )


def _norm(phrase: str, lang: str) -> str:
    phrase = " ".join(phrase.split())
    return phrase.lower() if lang == "en" else phrase


@lru_cache(maxsize=4)
def load_tables(directory: str | None = None) -> LexiconTables:
    """Load the three lexicon files once per process (per directory) and build the phrase tables.

    Raises ``annotation.lexicons.LexiconError`` when a lexicon file is missing or malformed: the parser
    cannot run without them.
    """
    root = lexicon_dir(directory)
    attributes: dict[str, dict[str, list[ValueRef]]] = {"en": {}, "zh": {}}
    organs: dict[str, dict[str, str]] = {"en": {}, "zh": {}}
    organ_body: dict[str, str] = {}
    versions: dict[str, str] = {}
    for system in LEXICON_SYSTEMS:
        data = lexicon_load(system, directory=root)
        versions[system] = str(data.get("version", ""))
        body_tags: dict[str, str] = {}
        for attr in data["attributes"]:
            if system == "udaf" and attr["code"] == "body_system_level":
                body_tags = {v["code"]: v["us365k"]["tag"] for v in attr["values"]}
        for attr in data["attributes"]:
            for value in attr["values"]:
                synonyms = value.get("synonyms", {})
                if system == "udaf" and attr["code"] == "organ_level":
                    tag = value["us365k"]["tag"]
                    organ_body[tag] = body_tags.get(value.get("body_system", ""), "")
                    for lang in ("en", "zh"):
                        for phrase in synonyms.get(lang, []):
                            organs[lang].setdefault(_norm(phrase, lang), tag)
                    continue
                if system == "udaf" and attr["code"] in _UDAF_STRUCTURAL:
                    continue
                ref = ValueRef(system, attr["code"], value["code"])
                phrases = {
                    "en": [value["label"], *synonyms.get("en", [])],
                    "zh": [value.get("label_zh", ""), *synonyms.get("zh", [])],
                }
                for lang, items in phrases.items():
                    for phrase in items:
                        if not phrase or (lang == "zh" and len(phrase) < 2):
                            # one Chinese character ("软", "硬") is far too ambiguous to match alone
                            continue
                        refs = attributes[lang].setdefault(_norm(phrase, lang), [])
                        if ref not in refs:
                            refs.append(ref)
    for lang, extra in EXTRA_VALUES.items():
        for phrase, values in extra.items():
            refs = attributes[lang].setdefault(_norm(phrase, lang), [])
            refs.extend(ref for ref in (ValueRef(*value) for value in values) if ref not in refs)
    return LexiconTables(
        attributes={lang: {p: tuple(r) for p, r in table.items()} for lang, table in attributes.items()},
        organs=organs,
        organ_body_system=organ_body,
        versions=versions,
    )
