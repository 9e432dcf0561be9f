"""Free-text reports (English and Chinese) written from the lesions a synthetic study holds.

The writer records every sentence it emits with its character span, the lesions it describes and the
values it states (as lexicon codes), so the report is its own ground truth. Phrasing varies by template,
clause order, size/clock/distance formats and section layout. Labels, field names and TI-RADS points
come from the lexicon files; the tables here hold only the report's own wording variants.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .lexicon import TIRADS, UDAF, attribute_label, value_label, value_points
from .scene import COMPOSITION_INTERNAL, LesionEntity
from .truth import SentenceTruth

# Wording variants per UDAF code. Every phrase listed here names its code unambiguously.
EN_ECHO = {
    "anechoic": ["anechoic"],
    "hypoechoic": ["hypoechoic"],
    "isoechoic": ["isoechoic"],
    "hyperechoic": ["hyperechoic", "echogenic"],
    "mixed_echogenicity": ["heterogeneous", "mixed-echogenicity"],
}
EN_SHAPE = {
    "oval": ["oval", "ovoid"],
    "round": ["round"],
    "lobulated": ["lobulated", "gently lobulated"],
    "irregular": ["irregular", "irregularly shaped"],
}
EN_MARGIN = {
    "well_defined": ["circumscribed margins", "well-defined margins", "smooth, well-circumscribed margins"],
    "ill_defined_indistinct": [
        "indistinct margins",
        "ill-defined margins",
        "angular, indistinct margins",
        "spiculated margins",
    ],
}
EN_POSTERIOR = {
    "enhancement": [
        "posterior acoustic enhancement",
        "posterior enhancement",
        "increased through-transmission",
    ],
    "shadowing": ["posterior acoustic shadowing", "posterior shadowing", "dense posterior shadowing"],
}
EN_VASC = {
    "no_vascularity": [
        "No internal vascularity is seen on color Doppler.",
        "No internal vascularity.",
        "Color Doppler shows no internal flow.",
    ],
    "normal_regular_vascularity": [
        "Color Doppler shows regular vascularity.",
        "Normal vascularity on color Doppler.",
    ],
    "increased_vascularity": [
        "Color Doppler shows increased internal vascularity.",
        "Increased internal vascularity is present.",
        "There is increased vascularity within the lesion.",
    ],
}
EN_SITE = {
    "upper": ["upper pole", "superior pole"],
    "mid": ["mid portion", "interpolar region"],
    "lower": ["lower pole", "inferior pole"],
}

ZH_SHAPE = {
    "oval": ["呈椭圆形", "形态规则，呈椭圆形"],
    "round": ["呈圆形", "形态规则，呈圆形"],
    "lobulated": ["呈分叶状", "形态欠规则，呈分叶状"],
    "irregular": ["形态不规则"],
}
ZH_MARGIN = {
    "well_defined": ["边界清", "边界清晰", "边界清楚"],
    "ill_defined_indistinct": ["边界不清", "边界欠清", "边缘可见毛刺", "边缘成角，边界不清"],
}
ZH_POSTERIOR = {"enhancement": ["后方回声增强"], "shadowing": ["后方回声衰减", "后方伴声影"]}
ZH_VASC = {
    "no_vascularity": [
        "CDFI：其内未见明显血流信号。",
        "CDFI：未见明显血流信号。",
        "CDFI：内未探及血流信号。",
    ],
    "normal_regular_vascularity": ["CDFI：内部血流分布正常。", "CDFI：其内血流未见异常。"],
    "increased_vascularity": ["CDFI：内可见较丰富血流信号。", "CDFI：其内血流信号丰富。"],
}
ZH_SITE = {"upper": "上极", "mid": "中部", "lower": "下极"}
ZH_SIDE = {"right": "右", "left": "左"}

def _en_word(attribute: str, code: str) -> str:
    """The UDAF label of a value as it reads inside an English sentence ("hypoechoic", "nodule")."""
    return value_label(UDAF, attribute, code).lower()


def _zh_word(attribute: str, code: str) -> str:
    """The UDAF Chinese label of a value ("低回声", "结节")."""
    return value_label(UDAF, attribute, code, "zh")


# Words each code may appear as in a report, for checks that a planted value is really in the text.
WORDING: dict[str, dict[str, list[str]]] = {
    "echogenicity": {code: [*EN_ECHO[code], _zh_word("echogenicity", code)] for code in EN_ECHO},
    "shape": {code: EN_SHAPE[code] + [p.split("，")[-1] for p in ZH_SHAPE[code]] for code in EN_SHAPE},
    "margins": {
        code: [p.split(",")[-1].strip() for p in EN_MARGIN[code]] + ["边界清", "边界不清", "边界欠清", "毛刺"]
        for code in EN_MARGIN
    },
    "posterior_acoustics": {code: EN_POSTERIOR[code] + ZH_POSTERIOR[code] for code in EN_POSTERIOR},
    "vascularity": {code: [p.rstrip(".。") for p in EN_VASC[code] + ZH_VASC[code]] for code in EN_VASC},
}
WORDING["margins"]["well_defined"] = ["circumscribed", "well-defined", "边界清"]
WORDING["margins"]["ill_defined_indistinct"] = [
    "indistinct",
    "ill-defined",
    "spiculated",
    "边界不清",
    "边界欠清",
    "毛刺",
]

# A thyroid nodule's TI-RADS composition as the noun phrase says it ("a solid hypoechoic nodule").
EN_COMPOSITION = {
    "cystic_or_almost_completely_cystic": "cystic",
    "mixed_cystic_and_solid": "mixed cystic and solid",
    "solid_or_almost_completely_solid": "solid",
}
ZH_COMPOSITION = {
    "cystic_or_almost_completely_cystic": "囊性",
    "mixed_cystic_and_solid": "囊实性",
    "solid_or_almost_completely_solid": "实性",
}
FOCI_ZH = {
    "macrocalcifications": "内见粗大钙化",
    "peripheral_rim_calcifications": "周边可见环状钙化",
    "punctate_echogenic_foci": "内见点状强回声",
}


@dataclass
class ReportLesion:
    """A lesion as the report will describe it. `written` holds UDAF values to write (a planted
    disagreement has already changed one); `force` names dimensions that must appear in the text."""

    key: str
    entity: LesionEntity
    written: dict
    size_mm: tuple[float, ...]
    category: str
    force: set[str] = field(default_factory=set)


class _Writer:
    """Accumulates report text and the sentence records with exact character offsets."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.parts: list[str] = []
        self.length = 0
        self.sentences: list[SentenceTruth] = []
        self.section = "findings"

    def raw(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def sentence(self, text: str, keys: list[str], attrs: dict) -> None:
        if (
            self.sentences
            and self.parts
            and not self.parts[-1].endswith(("\n", " "))
            and self.language == "en"
        ):
            self.raw(" ")
        start = self.length
        self.raw(text)
        self.sentences.append(
            SentenceTruth(
                start=start,
                end=self.length,
                text=text,
                lesion_keys=list(keys),
                attributes=attrs,
                section=self.section,
            )
        )

    def text(self) -> str:
        return "".join(self.parts).rstrip() + "\n"


# --- numbers -------------------------------------------------------------------------------------------
def _size_text(rng: random.Random, size_mm: tuple[float, ...], language: str) -> tuple[str, list[float]]:
    """Size as written and the written values in mm (cm rounded to 0.1, mm to whole numbers)."""
    use_cm = rng.random() < (0.65 if language == "en" else 0.4)
    if use_cm:
        values = [max(0.1, round(v / 10, 1)) for v in size_mm]
        numbers = [f"{v:.1f}" for v in values]
        written = [round(v * 10, 1) for v in values]
        unit = "cm"
    else:
        values_mm = [max(1, round(v)) for v in size_mm]
        numbers = [str(v) for v in values_mm]
        written = [float(v) for v in values_mm]
        unit = "mm"
    if language == "zh":
        if rng.random() < 0.25:
            return "×".join(f"{n}{unit}" for n in numbers), written
        return "×".join(numbers) + unit, written
    joiner = rng.choice((" x ", " x ", " × ", "×"))
    space = "" if joiner == "×" else " "
    return joiner.join(numbers) + space + unit, written


def _one_size(rng: random.Random, size_mm: float, language: str) -> tuple[str, float]:
    text, written = _size_text(rng, (size_mm,), language)
    return text, written[0]


def _article(word: str) -> str:
    return "an" if word[0] in "aeio" else "a"


# --- English -------------------------------------------------------------------------------------------
def _en_clock(rng: random.Random, clock: str) -> str:
    hour = clock.split(":", maxsplit=1)[0]
    return rng.choice((f"{hour} o'clock", f"the {hour} o'clock position", clock, f"{clock}"))


def _en_distance(rng: random.Random, distance: float) -> str:
    return rng.choice(
        (
            f"{distance:g} cm from the nipple",
            f"{distance:g} cm FN",
            f"approximately {distance:g} cm from the nipple",
        )
    )


def _en_location(rng: random.Random, lesion: ReportLesion, attrs: dict) -> str:
    """Location clause; records laterality and clock/distance or site in `attrs`."""
    entity = lesion.entity
    attrs["laterality"] = entity.laterality
    if entity.body_part == "breast":
        attrs["clock"] = entity.clock
        attrs["distance_from_nipple_cm"] = entity.distance_cm
        clock, dist = _en_clock(rng, entity.clock or ""), _en_distance(rng, entity.distance_cm or 0)
        return rng.choice(
            (
                f"In the {entity.laterality} breast at {clock}, {dist}, there is",
                f"At {clock} in the {entity.laterality} breast, {dist}, there is",
                f"{entity.laterality.capitalize()} breast, {clock}, {dist}:",
            )
        )
    attrs["site"] = list(entity.site)
    site = rng.choice(EN_SITE[entity.site[0]])
    return rng.choice(
        (
            f"In the {site} of the {entity.laterality} lobe there is",
            f"{entity.laterality.capitalize()} lobe, {site}:",
            f"Arising from the {site} of the {entity.laterality} thyroid lobe is",
        )
    )


def _en_noun_phrase(rng: random.Random, lesion: ReportLesion, attrs: dict, with_shape: bool) -> str:
    w = lesion.written
    words = []
    if with_shape and "shape" in w:
        words.append(rng.choice(EN_SHAPE[w["shape"]]))
        attrs["shape"] = w["shape"]
    if lesion.entity.body_part == "thyroid" and w["diagnosis"] != "cyst":
        comp = lesion.entity.assessment["features"]["composition"]
        words.append(EN_COMPOSITION[comp])
        attrs["internal_characteristics"] = [COMPOSITION_INTERNAL[comp]]
    words.append(rng.choice(EN_ECHO[w["echogenicity"]]))
    attrs["echogenicity"] = w["echogenicity"]
    words.append(_en_word("diagnosis", w["diagnosis"]))
    attrs["diagnosis"] = w["diagnosis"]
    return " ".join(words)


def _en_lesion_findings(rng: random.Random, out: _Writer, lesion: ReportLesion, sizes: list[float]) -> None:
    """Findings sentences for one lesion (narrative; a field list for some thyroid nodules)."""
    w, key, entity = lesion.written, lesion.key, lesion.entity
    if entity.body_part == "thyroid" and not lesion.force and rng.random() < 0.4:
        _en_tirads_fields(rng, out, lesion, sizes)
        return
    attrs: dict = {}
    location = _en_location(rng, lesion, attrs)
    size, attrs["size_mm"] = _size_text(rng, lesion.size_mm, "en")
    sizes.append(max(attrs["size_mm"]))
    shape_first = rng.random() < 0.6
    noun = _en_noun_phrase(rng, lesion, attrs, with_shape=shape_first)
    clauses = []
    margin_inline = rng.random() < 0.6 or "margins" in lesion.force
    if margin_inline:
        clauses.append(f"with {rng.choice(EN_MARGIN[w['margins']])}")
        attrs["margins"] = w["margins"]
    posterior = w.get("posterior_acoustics")
    if posterior and (rng.random() < 0.85 or "posterior_acoustics" in lesion.force):
        clauses.append(("and " if clauses else "with ") + rng.choice(EN_POSTERIOR[posterior]))
        attrs["posterior_acoustics"] = posterior
    elif not posterior and rng.random() < 0.3:
        denied = rng.choice((["shadowing"], ["enhancement", "shadowing"]))
        clauses.append(
            "without posterior acoustic shadowing"
            if len(denied) == 1
            else "without posterior acoustic features"
        )
        attrs["negated"] = {"posterior_acoustics": denied}
    tail = (", " + ", ".join(clauses)) if clauses else ""
    if location.endswith(":"):
        first = f"{location} {noun}, {size}{tail}."
    else:
        first = f"{location} {_article(noun)} {noun} measuring {size}{tail}."
    out.sentence(first, [key], attrs)
    second: dict = {}
    bits = []
    if not shape_first and "shape" in w:
        second["shape"] = w["shape"]
        bits.append(
            rng.choice(
                (
                    f"It is {EN_SHAPE[w['shape']][0]} in shape",
                    f"The lesion is {rng.choice(EN_SHAPE[w['shape']])}",
                )
            )
        )
    if not margin_inline:
        second["margins"] = w["margins"]
        margin = rng.choice(EN_MARGIN[w["margins"]])
        bits.append(f"with {margin}" if bits else f"It has {margin}")
    if entity.body_part == "thyroid" and entity.assessment["features"]["shape"] == "taller_than_wide":
        second["tirads_shape"] = "taller_than_wide"
        bits.append("and is taller-than-wide" if bits else "It is taller-than-wide")
    if bits:
        out.sentence(" ".join(bits) + ".", [key], second)
    internal = [
        code
        for code in w.get("internal_characteristics", [])
        if code in ("calcifications", "septations", "complex_cystic_solid")
    ]
    if internal:
        code = internal[0]
        text = {
            "calcifications": rng.choice(
                (
                    "Internal microcalcifications are present.",
                    "Punctate echogenic foci are seen within it.",
                    "Internal calcifications are noted.",
                )
            ),
            "septations": rng.choice(
                ("Thin internal septations are noted.", "A few thin septations are present.")
            ),
            "complex_cystic_solid": "It has a complex cystic and solid appearance.",
        }[code]
        out.sentence(text, [key], {"internal_characteristics": [code]})
    elif w["diagnosis"] != "cyst" and rng.random() < 0.25:
        out.sentence(
            rng.choice(("No calcifications are seen.", "No internal calcifications.")),
            [key],
            {"negated": {"internal_characteristics": ["calcifications"]}},
        )
    vasc = w.get("vascularity")
    if vasc in EN_VASC and (rng.random() < 0.7 or "vascularity" in lesion.force):
        out.sentence(rng.choice(EN_VASC[vasc]), [key], {"vascularity": vasc})


def _en_tirads_fields(rng: random.Random, out: _Writer, lesion: ReportLesion, sizes: list[float]) -> None:
    """ACR-style "Label: value (points)" field list for a thyroid nodule; one sentence per field."""
    key, entity, w = lesion.key, lesion.entity, lesion.written
    features = entity.assessment["features"]
    number = key[1:]
    site = rng.choice(EN_SITE[entity.site[0]])
    out.sentence(
        f"Nodule {number}: {entity.laterality} lobe, {site}.",
        [key],
        {"laterality": entity.laterality, "site": list(entity.site)},
    )
    size, written = _size_text(rng, lesion.size_mm, "en")
    out.sentence(f"Size: {size}.", [key], {"size_mm": written})
    sizes.append(max(written))
    comp = features["composition"]
    out.sentence(
        _tirads_field("composition", comp),
        [key],
        {"internal_characteristics": [COMPOSITION_INTERNAL[comp]], "tirads_composition": comp},
    )
    # Echogenicity and a lobulated or irregular margin are written in the UDAF words the region is
    # tagged with, so the field also states its UDAF value; the points stay those of the TI-RADS value.
    echo = w["echogenicity"]
    echo_word = "mixed, predominantly isoechoic" if echo == "mixed_echogenicity" else _en_word("echogenicity", echo)
    out.sentence(
        _tirads_field("echogenicity", features["echogenicity"], word=echo_word), [key], {"echogenicity": echo}
    )
    out.sentence(_tirads_field("shape", features["shape"]), [key], {"tirads_shape": features["shape"]})
    margin = features["margin"]
    margin_attrs: dict = {"tirads_margin": margin}
    margin_word = None
    if margin == "smooth":
        margin_attrs["margins"] = "well_defined"
    elif margin == "ill_defined":
        margin_attrs["margins"] = "ill_defined_indistinct"
    else:
        margin_word = _en_word("shape", w["shape"])
        margin_attrs["shape"] = w["shape"]
    out.sentence(_tirads_field("margin", margin, word=margin_word), [key], margin_attrs)
    foci = features["echogenic_foci"]
    foci_attrs: dict = {"tirads_echogenic_foci": list(foci)}
    if foci == ["none_or_large_comet_tail_artifacts"]:
        foci_attrs["negated"] = {"internal_characteristics": ["calcifications"]}
    else:
        foci_attrs["internal_characteristics"] = ["calcifications"]
    out.sentence(_tirads_field("echogenic_foci", *foci), [key], foci_attrs)
    points_total = entity.assessment["points"]
    out.sentence(
        f"ACR TI-RADS total points: {points_total} ({lesion.category}).",
        [key],
        {"tirads_points": points_total, "tirads_level": lesion.category},
    )


def _tirads_field(attribute: str, *codes: str, word: str | None = None) -> str:
    """ "Label: value (points)." for TI-RADS feature values: the field name, each value's label and its
    points as the TI-RADS lexicon gives them; `word` replaces the label of a single value."""
    values = ", ".join(
        f"{word or value_label(TIRADS, attribute, code).lower()} ({value_points(attribute, code)})"
        for code in codes
    )
    return f"{attribute_label(TIRADS, attribute)}: {values}."


def _recommendation(body_part: str, category: str, largest_cm: float) -> str:
    """ "biopsy", "follow_up", "benign" or "" for a category (and, for TI-RADS, the largest size)."""
    if body_part == "breast":
        return {"1": "", "2": "benign", "3": "follow_up"}.get(category, "biopsy")
    thresholds = {"TR3": (2.5, 1.5), "TR4": (1.5, 1.0), "TR5": (1.0, 0.5)}.get(category)
    if not thresholds:
        return "benign"
    if largest_cm >= thresholds[0]:
        return "biopsy"
    return "follow_up" if largest_cm >= thresholds[1] else "no_fna"


_ADVICE_EN = {
    "breast": {
        "benign": "Benign finding.",
        "follow_up": "Short-interval follow-up in 6 months is recommended.",
        "biopsy": "Ultrasound-guided core needle biopsy is recommended.",
    },
    "thyroid": {
        "benign": "No FNA or follow-up needed.",
        "follow_up": "Follow-up ultrasound is recommended.",
        "biopsy": "Fine-needle aspiration is recommended.",
        "no_fna": "No FNA needed.",
    },
}


def _recommendation_en(body_part: str, category: str, largest_cm: float) -> str:
    return _ADVICE_EN[body_part].get(_recommendation(body_part, category, largest_cm), "")


def _en_impression(rng: random.Random, out: _Writer, lesion: ReportLesion, largest_mm: float) -> None:
    key, entity, w = lesion.key, lesion.entity, lesion.written
    attrs: dict = {"laterality": entity.laterality, "diagnosis": w["diagnosis"]}
    noun = _en_word("diagnosis", w["diagnosis"])
    if entity.body_part == "breast":
        attrs["clock"] = entity.clock
        attrs["birads"] = lesion.category
        hour = (entity.clock or "").split(":")[0]
        where = rng.choice(
            (
                f"{entity.laterality} breast {noun} at {hour} o'clock",
                f"{noun} in the {entity.laterality} breast at {entity.clock}",
            )
        )
        label = rng.choice((f"BI-RADS {lesion.category}", f"BI-RADS category {lesion.category}"))
    else:
        attrs["site"] = list(entity.site)
        attrs["tirads_level"] = lesion.category
        where = f"{noun} in the {EN_SITE[entity.site[0]][0]} of the {entity.laterality} lobe"
        label = f"ACR TI-RADS {lesion.category}"
        if rng.random() < 0.6:
            label += f" ({entity.assessment['points']} points)"
            attrs["tirads_points"] = entity.assessment["points"]
    if rng.random() < 0.5:
        echo = rng.choice(EN_ECHO[w["echogenicity"]])
        where = where.replace(noun, f"{echo} {noun}", 1)
        attrs["echogenicity"] = w["echogenicity"]
    where = where[0].upper() + where[1:]
    advice = _recommendation_en(entity.body_part, lesion.category, largest_mm / 10)
    text = f"{where}, {label}." + (f" {advice}" if advice else "")
    out.sentence(text, [key], attrs)


def _write_en(
    rng: random.Random, body_part: str, lesions: list[ReportLesion], sizes: dict[str, float]
) -> _Writer:
    out = _Writer("en")
    sides = sorted({lesion.entity.laterality for lesion in lesions}) or ["right", "left"]
    organ = "breast" if body_part == "breast" else "thyroid"
    title = (
        f"{'BILATERAL' if len(sides) > 1 or rng.random() < 0.5 else sides[0].upper()} {organ.upper()} "
        "ULTRASOUND\n\n"
    )
    if rng.random() < 0.7:
        out.raw(title)
    out.raw(rng.choice(("FINDINGS:\n", "Findings:\n", "FINDINGS: ")))
    if rng.random() < 0.7:
        general = (
            "The breast tissue is heterogeneously fibroglandular."
            if body_part == "breast"
            else "The thyroid gland is normal in size with homogeneous background echotexture."
        )
        out.sentence(general, [], {})
    if len(lesions) == 2 and rng.random() < 0.3 and body_part == "breast":
        _en_pair_sentence(rng, out, lesions)
    for lesion in lesions:
        local: list[float] = []
        _en_lesion_findings(rng, out, lesion, local)
        sizes[lesion.key] = max(local)
    if not lesions:
        out.sentence(
            "No discrete solid or cystic mass is identified."
            if body_part == "breast"
            else "No thyroid nodule is identified.",
            [],
            {"negated": {"diagnosis": ["nodule", "mass", "cyst"]}},
        )
    if rng.random() < 0.7:
        text = (
            "No axillary lymphadenopathy."
            if body_part == "breast"
            else "No suspicious cervical lymph nodes are seen."
        )
        out.sentence(text, [], {"negated": {"lymph_nodes": ["enlarged"]}})
    out.raw("\n\n")
    out.section = "impression"
    out.raw(rng.choice(("IMPRESSION:\n", "Impression:\n")))
    if not lesions:
        out.sentence(
            "Negative ultrasound. BI-RADS 1." if body_part == "breast" else "Normal thyroid ultrasound.",
            [],
            {"birads": "1"} if body_part == "breast" else {},
        )
    numbered = len(lesions) > 1 or rng.random() < 0.5
    for number, lesion in enumerate(lesions, 1):
        if numbered:
            out.raw(f"{number}. ")
        _en_impression(rng, out, lesion, sizes[lesion.key])
        out.raw("\n" if numbered else " ")
    return out


def _en_pair_sentence(rng: random.Random, out: _Writer, lesions: list[ReportLesion]) -> None:
    """One sentence naming two lesions, e.g. "a 1.2 cm cyst at 2 o'clock and a 0.8 cm nodule at 10:00"."""
    by_lesion: dict = {}
    parts = []
    same_side = lesions[0].entity.laterality == lesions[1].entity.laterality
    for lesion in lesions:
        w, entity = lesion.written, lesion.entity
        size, mm = _one_size(rng, max(lesion.size_mm), "en")
        echo = rng.choice(EN_ECHO[w["echogenicity"]])
        noun = f"{echo} {_en_word('diagnosis', w['diagnosis'])}"
        where = f"at {_en_clock(rng, entity.clock or '')}"
        if not same_side:
            where = f"in the {entity.laterality} breast {where}"
        parts.append(f"a {size} {noun} {where}")
        by_lesion[lesion.key] = {
            "laterality": entity.laterality,
            "clock": entity.clock,
            "size_mm": [mm],
            "echogenicity": w["echogenicity"],
            "diagnosis": w["diagnosis"],
        }
    lead = (
        f"In the {lesions[0].entity.laterality} breast there are two lesions: "
        if same_side
        else "There are two lesions: "
    )
    out.sentence(
        f"{lead}{parts[0]} and {parts[1]}.", [lesion.key for lesion in lesions], {"by_lesion": by_lesion}
    )


# --- Chinese -------------------------------------------------------------------------------------------
def _zh_quadrant(laterality: str, hour: int) -> str | None:
    """Quadrant of a clock position (right breast: 9–12 upper outer), None on a quadrant border."""
    if hour in (3, 6, 9, 12):
        return None
    upper = hour in (10, 11, 1, 2)
    outer_right = hour in (7, 8, 10, 11)
    outer = outer_right if laterality == "right" else not outer_right
    return ("外" if outer else "内") + ("上" if upper else "下")


def _zh_location(rng: random.Random, lesion: ReportLesion, attrs: dict) -> str:
    entity = lesion.entity
    side = ZH_SIDE[entity.laterality]
    attrs["laterality"] = entity.laterality
    if entity.body_part == "breast":
        attrs["clock"] = entity.clock
        attrs["distance_from_nipple_cm"] = entity.distance_cm
        hour = int((entity.clock or "12:00").split(":")[0])
        dist = f"{entity.distance_cm:g}"
        quadrant = _zh_quadrant(entity.laterality, hour)
        options = [
            f"{side}乳{hour}点钟方向距乳头约{dist}cm处",
            f"{side}侧乳腺{hour}点位，距乳头{dist}cm处",
            f"{side}乳{hour}点距乳头{dist}cm处",
        ]
        if quadrant:
            options.append(f"{side}乳{quadrant}象限（{hour}点钟，距乳头约{dist}cm）")
        return rng.choice(options)
    attrs["site"] = list(entity.site)
    return rng.choice(
        (f"甲状腺{side}叶{ZH_SITE[entity.site[0]]}", f"{side}叶甲状腺{ZH_SITE[entity.site[0]]}")
    )


def _zh_lesion_findings(rng: random.Random, out: _Writer, lesion: ReportLesion, sizes: list[float]) -> None:
    w, key, entity = lesion.written, lesion.key, lesion.entity
    attrs: dict = {}
    location = _zh_location(rng, lesion, attrs)
    echo = w["echogenicity"]
    attrs["echogenicity"] = echo
    prefix = ""
    if entity.body_part == "thyroid" and w["diagnosis"] != "cyst":
        comp = entity.assessment["features"]["composition"]
        prefix = ZH_COMPOSITION[comp]
        attrs["internal_characteristics"] = [COMPOSITION_INTERNAL[comp]]
    if w["diagnosis"] == "cyst" and echo == "anechoic" and rng.random() < 0.6:
        noun = "无回声区"
    else:
        noun = f"{prefix}{_zh_word('echogenicity', echo)}{_zh_word('diagnosis', w['diagnosis'])}"
        attrs["diagnosis"] = w["diagnosis"]
        if w["diagnosis"] == "cyst":
            noun = f"{_zh_word('echogenicity', echo)}囊性结节"
    size, attrs["size_mm"] = _size_text(rng, lesion.size_mm, "zh")
    sizes.append(max(attrs["size_mm"]))
    clauses = [f"大小约{size}" if rng.random() < 0.8 else f"范围约{size}"]
    optional: list[tuple[str, str]] = []
    if "shape" in w:
        optional.append(("shape", rng.choice(ZH_SHAPE[w["shape"]])))
    optional.append(("margins", rng.choice(ZH_MARGIN[w["margins"]])))
    rng.shuffle(optional)
    for dim, text in optional:
        if rng.random() < 0.85 or dim in lesion.force:
            clauses.append(text)
            attrs[dim] = w[dim]
    if entity.body_part == "thyroid" and rng.random() < 0.6:
        ttw = entity.assessment["features"]["shape"]
        clauses.append("纵横比>1" if ttw == "taller_than_wide" else "纵横比<1")
        attrs["tirads_shape"] = ttw
    internal = w.get("internal_characteristics", [])
    if entity.body_part == "thyroid" and "calcifications" in internal:
        foci = entity.assessment["features"]["echogenic_foci"][0]
        clauses.append(FOCI_ZH[foci])
        attrs.setdefault("internal_characteristics", []).append("calcifications")
        attrs["tirads_echogenic_foci"] = [foci]
    elif "calcifications" in internal:
        clauses.append(rng.choice(("内可见点状强回声", "内见多发微钙化", "内可见簇状微钙化")))
        attrs["internal_characteristics"] = ["calcifications"]
    elif "septations" in internal:
        clauses.append(rng.choice(("内可见分隔", "内见细分隔光带")))
        attrs["internal_characteristics"] = ["septations"]
    elif "complex_cystic_solid" in internal:
        clauses.append("内部呈复杂囊实性")
        attrs["internal_characteristics"] = ["complex_cystic_solid"]
    elif w["diagnosis"] != "cyst" and rng.random() < 0.3:
        clauses.append("内未见明显钙化")
        attrs["negated"] = {"internal_characteristics": ["calcifications"]}
    posterior = w.get("posterior_acoustics")
    if posterior and (rng.random() < 0.85 or "posterior_acoustics" in lesion.force):
        clauses.append(rng.choice(ZH_POSTERIOR[posterior]))
        attrs["posterior_acoustics"] = posterior
    elif not posterior and rng.random() < 0.3:
        clauses.append("后方回声无明显改变")
        attrs.setdefault("negated", {})["posterior_acoustics"] = ["enhancement", "shadowing"]
    verb = rng.choice(("可见一", "见一", "探及一"))
    out.sentence(f"{location}{verb}{noun}，{'，'.join(clauses)}。", [key], attrs)
    vasc = w.get("vascularity")
    if vasc in ZH_VASC and (rng.random() < 0.75 or "vascularity" in lesion.force):
        out.sentence(rng.choice(ZH_VASC[vasc]), [key], {"vascularity": vasc})


def _recommendation_zh(body_part: str, category: str, largest_cm: float) -> str:
    advice = _recommendation(body_part, category, largest_cm)
    return {"biopsy": "，建议穿刺活检", "follow_up": "，建议定期复查"}.get(advice, "")


def _zh_impression(rng: random.Random, out: _Writer, lesion: ReportLesion, largest_mm: float) -> None:
    key, entity, w = lesion.key, lesion.entity, lesion.written
    side = ZH_SIDE[entity.laterality]
    attrs: dict = {"laterality": entity.laterality, "diagnosis": w["diagnosis"]}
    noun = _zh_word("diagnosis", w["diagnosis"])
    if entity.body_part == "breast":
        hour = (entity.clock or "12:00").split(":")[0]
        attrs["clock"] = entity.clock
        attrs["birads"] = lesion.category
        if w["diagnosis"] != "cyst" or rng.random() < 0.5:
            noun = _zh_word("echogenicity", w["echogenicity"]) + noun
            attrs["echogenicity"] = w["echogenicity"]
        label = rng.choice(
            (
                f"BI-RADS {lesion.category}类",
                f"BI-RADS分类：{lesion.category.lower()}类",
                f"BI-RADS {lesion.category}级",
            )
        )
        text = rng.choice((f"{side}乳{noun}（{hour}点钟），{label}", f"{side}乳{hour}点{noun}，{label}"))
    else:
        attrs["tirads_level"] = lesion.category
        attrs["site"] = list(entity.site)
        comp = entity.assessment["features"]["composition"]
        if w["diagnosis"] != "cyst":
            noun = ZH_COMPOSITION[comp] + noun
        level = lesion.category[2:]
        label = rng.choice((f"ACR TI-RADS {lesion.category}", f"TI-RADS {level}类", f"{lesion.category}类"))
        if rng.random() < 0.5:
            label += f"（{entity.assessment['points']}分）"
            attrs["tirads_points"] = entity.assessment["points"]
        text = f"甲状腺{side}叶{ZH_SITE[entity.site[0]]}{noun}，{label}"
    out.sentence(
        text + _recommendation_zh(entity.body_part, lesion.category, largest_mm / 10) + "。", [key], attrs
    )


def _write_zh(
    rng: random.Random, body_part: str, lesions: list[ReportLesion], sizes: dict[str, float]
) -> _Writer:
    out = _Writer("zh")
    out.raw(rng.choice(("超声所见：\n", "检查所见：\n", "【超声所见】\n")))
    if rng.random() < 0.7:
        general = rng.choice(
            ("双侧乳腺腺体层增厚，回声不均匀，呈增生样改变。", "双乳腺体结构清晰，回声分布尚均匀。")
            if body_part == "breast"
            else ("甲状腺大小形态正常，包膜完整，实质回声均匀。", "甲状腺左右叶大小正常，实质回声尚均匀。")
        )
        out.sentence(general, [], {})
    if len(lesions) == 2 and rng.random() < 0.3 and body_part == "breast":
        _zh_pair_sentence(rng, out, lesions)
    for lesion in lesions:
        local: list[float] = []
        _zh_lesion_findings(rng, out, lesion, local)
        sizes[lesion.key] = max(local)
    if not lesions:
        out.sentence(
            "双侧乳腺内未见明显占位性病变。" if body_part == "breast" else "甲状腺内未见明显结节。",
            [],
            {"negated": {"diagnosis": ["nodule", "mass", "cyst"]}},
        )
    axilla = rng.random() < 0.75
    node_text = (
        "双侧腋下未见明显肿大淋巴结。" if body_part == "breast" else "双侧颈部未见明显异常肿大淋巴结。"
    )
    if axilla:
        out.sentence(node_text, [], {"negated": {"lymph_nodes": ["enlarged"]}})
    out.raw("\n")
    out.section = "impression"
    out.raw(rng.choice(("超声提示：\n", "超声诊断：\n", "诊断意见：\n")))
    inline = rng.random() < 0.5
    number = 0
    if not lesions:
        number += 1
        out.raw(f"{number}、")
        if body_part == "breast":
            out.sentence("双侧乳腺未见明显占位，BI-RADS 1类。", [], {"birads": "1"})
        else:
            out.sentence("甲状腺未见明显异常。", [], {})
        out.raw("" if inline else "\n")
    for lesion in lesions:
        number += 1
        out.raw(f"{number}、")
        _zh_impression(rng, out, lesion, sizes[lesion.key])
        out.raw("" if inline else "\n")
    if axilla and rng.random() < 0.7:
        out.raw(f"{number + 1}、")
        out.sentence(node_text, [], {"negated": {"lymph_nodes": ["enlarged"]}})
    return out


def _zh_pair_sentence(rng: random.Random, out: _Writer, lesions: list[ReportLesion]) -> None:
    by_lesion: dict = {}
    parts = []
    same_side = lesions[0].entity.laterality == lesions[1].entity.laterality
    for lesion in lesions:
        w, entity = lesion.written, lesion.entity
        size, mm = _one_size(rng, max(lesion.size_mm), "zh")
        hour = (entity.clock or "12:00").split(":")[0]
        where = f"{hour}点钟方向" if same_side else f"{ZH_SIDE[entity.laterality]}乳{hour}点钟方向"
        echo, noun = _zh_word("echogenicity", w["echogenicity"]), _zh_word("diagnosis", w["diagnosis"])
        parts.append(f"{where}{echo}{noun}，大小约{size}")
        by_lesion[lesion.key] = {
            "laterality": entity.laterality,
            "clock": entity.clock,
            "size_mm": [mm],
            "echogenicity": w["echogenicity"],
            "diagnosis": w["diagnosis"],
        }
    lead = f"{ZH_SIDE[lesions[0].entity.laterality]}乳可见两个病灶：" if same_side else "双乳可见两个病灶："
    out.sentence(
        f"{lead}{parts[0]}；{parts[1]}。", [lesion.key for lesion in lesions], {"by_lesion": by_lesion}
    )


def report_write(
    rng: random.Random, language: str, body_part: str, lesions: list[ReportLesion]
) -> tuple[str, list[SentenceTruth]]:
    """Write the report for `lesions` in `language`; return its text and sentence records.

    Promises: every record satisfies `text[start:end] == record.text`; each lesion is described by at
    least one findings sentence and one impression sentence; values written come from `lesion.written`
    (UDAF codes) and the lesion's entity (location, TI-RADS features), and dimensions in `lesion.force`
    are always written.
    """
    sizes: dict[str, float] = {}
    writer = (
        _write_en(rng, body_part, lesions, sizes)
        if language == "en"
        else _write_zh(rng, body_part, lesions, sizes)
    )
    return writer.text(), writer.sentences
