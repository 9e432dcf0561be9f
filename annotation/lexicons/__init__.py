"""Clinical lexicons: loading, validation, attribute checking and TI-RADS scoring.

Pure Python (no Django), so the report parser, the importer and notebooks read the same files. The JSON
files beside this module are the one source of truth for the annotator's attribute form and for the
NLP patterns. Schema (unknown keys are an error)::

    {"system", "name", "version", "description"?,
     "attributes": [{"code", "label", "label_zh", "cardinality": "one"|"many", "required": bool,
                     "description"?, "values": [{"code", "label", "label_zh", "description"?,
                                                 "synonyms": {"en": [...], "zh": [...]},
                                                 "points"?: int, "us365k"?: {"key", "tag"},
                                                 "body_system"?: str}]}],
     "assessment"?: {"system", "categories": [{"code", "label", "label_zh", "min_points"?,
                                                "max_points"?, "synonyms"?, "description"?}]}}

``label`` is the English label and ``label_zh`` the Chinese (zh-Hans) one shown in the Chinese
interface; ``term_label`` picks between them. Codes never change with the language.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..messages import Message, gettext_noop

LEXICON_DIR = Path(__file__).resolve().parent
DEFAULT_SYSTEM = "udaf"

_TOP_KEYS = {"system", "name", "version", "description", "attributes", "assessment"}
_ATTRIBUTE_KEYS = {"code", "label", "label_zh", "cardinality", "required", "values", "description"}
_VALUE_KEYS = {"code", "label", "label_zh", "synonyms", "points", "us365k", "body_system", "description"}
_ASSESSMENT_KEYS = {"system", "categories", "description"}
_CATEGORY_KEYS = {"code", "label", "label_zh", "min_points", "max_points", "synonyms", "description"}
_CODE_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")


class LexiconError(ValueError):
    """A lexicon file is malformed. ``problems`` lists every problem found, each naming its place."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class AttributeValidationError(ValueError):
    """Attribute values do not fit the lexicon. ``errors`` maps each attribute code to its message."""

    def __init__(self, errors: dict[str, str]):  # each message a ``Message``
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


def term_code(term: str) -> str:
    """The stable code of a lexicon term: lower case, every run of non-alphanumerics turned into ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", term.lower()).strip("_")


def lexicon_systems(directory: Path | None = None) -> list[str]:
    """The systems for which a lexicon file exists, sorted."""
    return sorted(path.stem for path in (directory or LEXICON_DIR).glob("*.json"))


def lexicon_validate(content: Any) -> None:
    """Raise ``LexiconError`` listing every problem of ``content``; return None when it is sound."""
    problems: list[str] = []
    if not isinstance(content, Mapping):
        raise LexiconError(["lexicon: must be a JSON object"])
    _unknown(content, _TOP_KEYS, "lexicon", problems)
    for key in ("system", "name", "version"):
        if not isinstance(content.get(key), str) or not content.get(key):
            problems.append(f"lexicon: missing or empty '{key}'")
    attributes = content.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        problems.append("lexicon: 'attributes' must be a non-empty list")
        attributes = []
    seen_attributes: set[str] = set()
    for position, attribute in enumerate(attributes):
        where = f"attributes[{position}]"
        if not isinstance(attribute, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        code = attribute.get("code")
        where = f"attribute '{code}'" if isinstance(code, str) else where
        _unknown(attribute, _ATTRIBUTE_KEYS, where, problems)
        _check_code(code, where, problems)
        if code in seen_attributes:
            problems.append(f"{where}: duplicate attribute code")
        seen_attributes.add(code)
        _check_labels(attribute, where, problems)
        if attribute.get("cardinality") not in ("one", "many"):
            problems.append(f"{where}: cardinality must be 'one' or 'many'")
        if not isinstance(attribute.get("required", False), bool):
            problems.append(f"{where}: 'required' must be true or false")
        values = attribute.get("values")
        if not isinstance(values, list) or not values:
            problems.append(f"{where}: 'values' must be a non-empty list")
            continue
        seen_values: set[str] = set()
        for value_position, value in enumerate(values):
            vwhere = f"{where} values[{value_position}]"
            if not isinstance(value, Mapping):
                problems.append(f"{vwhere}: must be an object")
                continue
            vcode = value.get("code")
            vwhere = f"{where} value '{vcode}'" if isinstance(vcode, str) else vwhere
            _unknown(value, _VALUE_KEYS, vwhere, problems)
            _check_code(vcode, vwhere, problems)
            if vcode in seen_values:
                problems.append(f"{vwhere}: duplicate value code")
            seen_values.add(vcode)
            _check_labels(value, vwhere, problems)
            _check_synonyms(value.get("synonyms"), vwhere, problems, required=True)
            if "points" in value and (not isinstance(value["points"], int) or isinstance(value["points"], bool)):
                problems.append(f"{vwhere}: 'points' must be an integer")
            us365k = value.get("us365k")
            if us365k is not None and (
                not isinstance(us365k, Mapping)
                or set(us365k) != {"key", "tag"}
                or not all(isinstance(us365k[k], str) and us365k[k] for k in ("key", "tag"))
            ):
                problems.append(f"{vwhere}: 'us365k' must be {{\"key\": str, \"tag\": str}}")
    assessment = content.get("assessment")
    if assessment is not None:
        if not isinstance(assessment, Mapping):
            problems.append("assessment: must be an object")
        else:
            _unknown(assessment, _ASSESSMENT_KEYS, "assessment", problems)
            categories = assessment.get("categories")
            if not isinstance(categories, list) or not categories:
                problems.append("assessment: 'categories' must be a non-empty list")
                categories = []
            seen_categories: set[str] = set()
            for position, category in enumerate(categories):
                cwhere = f"assessment categories[{position}]"
                if not isinstance(category, Mapping):
                    problems.append(f"{cwhere}: must be an object")
                    continue
                _unknown(category, _CATEGORY_KEYS, cwhere, problems)
                _check_code(category.get("code"), cwhere, problems)
                if category.get("code") in seen_categories:
                    problems.append(f"{cwhere}: duplicate category code")
                seen_categories.add(category.get("code"))
                _check_labels(category, cwhere, problems)
                if "synonyms" in category:
                    _check_synonyms(category["synonyms"], cwhere, problems, required=False)
    if problems:
        raise LexiconError(problems)


def lexicon_parse(raw: bytes | str, *, source: str = "lexicon") -> dict:
    """Decode and validate lexicon JSON; errors name ``source``."""
    try:
        content = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LexiconError([f"{source}: not valid JSON ({error})"]) from error
    try:
        lexicon_validate(content)
    except LexiconError as error:
        raise LexiconError([f"{source}: {problem}" for problem in error.problems]) from error
    return content


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime: float) -> tuple[dict, str]:
    raw = Path(path).read_bytes()
    return lexicon_parse(raw, source=Path(path).name), hashlib.sha256(raw).hexdigest()


def lexicon_load(system: str = DEFAULT_SYSTEM, *, directory: Path | None = None) -> dict:
    """Load and validate the lexicon file of ``system``. Raises ``LexiconError`` for an unknown system
    or a malformed file. The returned dict is shared: do not mutate it."""
    return lexicon_load_with_hash(system, directory=directory)[0]


def lexicon_load_with_hash(system: str, *, directory: Path | None = None) -> tuple[dict, str]:
    path = (directory or LEXICON_DIR) / f"{system}.json"
    if not re.fullmatch(r"[a-z0-9-]+", system or "") or not path.is_file():
        known = ", ".join(lexicon_systems(directory)) or "none"
        raise LexiconError([f"unknown lexicon '{system}' (known: {known})"])
    return _load_cached(str(path), path.stat().st_mtime)


def _content(lexicon: Any) -> Mapping:
    """Accept a lexicon dict or any object with a ``content`` dict (the Lexicon model)."""
    return lexicon.content if hasattr(lexicon, "content") else lexicon


def lexicon_attribute_map(lexicon: Any) -> dict[str, Mapping]:
    return {attribute["code"]: attribute for attribute in _content(lexicon)["attributes"]}


def attributes_validate(lexicon: Any, attributes: Any, *, require_complete: bool = False) -> dict:
    """Check region attributes against a lexicon and return them normalised.

    Promises: every key is an attribute code of the lexicon; a ``one`` attribute holds one value code
    (a string); a ``many`` attribute holds a list of distinct value codes (a single string is accepted
    and wrapped); empty values are dropped. With ``require_complete`` every required attribute must be
    present. Raises ``AttributeValidationError`` naming each offending attribute.
    """
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, Mapping):
        raise AttributeValidationError({"attributes": Message(gettext_noop("must be an object mapping attribute codes to values"))})
    spec = lexicon_attribute_map(lexicon)
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, value in attributes.items():
        attribute = spec.get(name)
        if attribute is None:
            errors[str(name)[:64]] = Message(gettext_noop("unknown attribute '%(name)s' in lexicon %(lexicon)s"),
                                             name=str(name)[:64], lexicon=_content(lexicon)["system"])
            continue
        allowed = [v["code"] for v in attribute["values"]]
        if value is None or value == "" or value == []:
            continue
        if attribute["cardinality"] == "one":
            if not isinstance(value, str):
                errors[name] = Message(gettext_noop("takes one value, got %(type)s"), type=type(value).__name__)
            elif value not in allowed:
                errors[name] = Message(gettext_noop("'%(value)s' is not a value of %(name)s (allowed: %(allowed)s)"),
                                       value=value[:64], name=name, allowed=", ".join(allowed))
            else:
                clean[name] = value
        else:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                errors[name] = Message(gettext_noop("takes a list of value codes"))
                continue
            unknown = [item for item in items if item not in allowed]
            if unknown:
                errors[name] = Message(gettext_noop("'%(value)s' is not a value of %(name)s (allowed: %(allowed)s)"),
                                       value=unknown[0][:64], name=name, allowed=", ".join(allowed))
            else:
                clean[name] = list(dict.fromkeys(items))
    _fill_derived(spec, clean)
    if require_complete:
        for name, attribute in spec.items():
            if attribute.get("required") and name not in clean and name not in errors:
                errors[name] = Message(gettext_noop("is required"))
    if errors:
        raise AttributeValidationError(errors)
    return clean


def _fill_derived(spec: Mapping[str, Mapping], clean: dict[str, Any]) -> None:
    """An organ value names its body system (udaf): tagging the organ fills the body system in, so
    the annotator never has to pick both."""
    for name, value in list(clean.items()):
        if not isinstance(value, str):
            continue
        for candidate in spec[name]["values"]:
            system = candidate.get("body_system")
            if candidate["code"] == value and system:
                for target, attribute in spec.items():
                    if target not in clean and any(v["code"] == system for v in attribute["values"]):
                        clean[target] = system


def tirads_points(lexicon: Any, attributes: Mapping[str, Any]) -> int | None:
    """Sum the TI-RADS points of the tagged values; None when the lexicon scores nothing or no scored
    attribute is tagged."""
    total, scored = 0, False
    for name, attribute in lexicon_attribute_map(lexicon).items():
        points = {v["code"]: v.get("points") for v in attribute["values"]}
        if not any(p is not None for p in points.values()):
            continue
        value = attributes.get(name)
        for code in [value] if isinstance(value, str) else (value or []):
            if points.get(code) is not None:
                total += points[code]
                scored = True
    return total if scored else None


def tirads_level(lexicon: Any, points: int | None) -> str | None:
    """The assessment category code (e.g. ``tr4``) whose point range holds ``points``."""
    if points is None or (isinstance(points, float) and math.isnan(points)):
        return None
    for category in (_content(lexicon).get("assessment") or {}).get("categories", []):
        low, high = category.get("min_points"), category.get("max_points")
        if low is None:
            continue
        if points >= low and (high is None or points <= high):
            return category["code"]
    return None


def term_label(term: Mapping, language: str | None) -> str:
    """The label of a lexicon attribute, value or category in ``language`` (a language code such as
    ``zh-hans`` or ``en``): the Chinese label for any Chinese variant, else the English one."""
    if language and language.lower().startswith("zh") and term.get("label_zh"):
        return term["label_zh"]
    return term.get("label") or term.get("code", "")


def _check_labels(term: Mapping, where: str, problems: list[str]) -> None:
    # Both interface languages need a label: a term without its Chinese label would show English
    # in the middle of a Chinese form.
    for key, name in (("label", "label"), ("label_zh", "Chinese label (label_zh)")):
        if not isinstance(term.get(key), str) or not term.get(key).strip():
            problems.append(f"{where}: missing {name}")


def _unknown(obj: Mapping, allowed: set[str], where: str, problems: list[str]) -> None:
    for key in obj:
        if key not in allowed:
            problems.append(f"{where}: unknown key '{key}'")


def _check_code(code: Any, where: str, problems: list[str]) -> None:
    if not isinstance(code, str) or not _CODE_RE.match(code):
        problems.append(f"{where}: code must be lower-case letters/digits joined by '_' (got {code!r})")


def _check_synonyms(synonyms: Any, where: str, problems: list[str], *, required: bool) -> None:
    if synonyms is None and not required:
        return
    if not isinstance(synonyms, Mapping) or not set(synonyms) <= {"en", "zh"}:
        problems.append(f"{where}: 'synonyms' must be {{\"en\": [...], \"zh\": [...]}}")
        return
    for language, words in synonyms.items():
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            problems.append(f"{where}: synonyms.{language} must be a list of non-empty strings")
