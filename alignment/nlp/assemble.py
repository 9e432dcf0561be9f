"""Turn the matches stored by the pipeline into sentences and findings.

Per sentence: lesion words anchor findings; several lesions in one sentence are split at the separator
before each new lesion ("... and a 0.8 cm nodule"); every other item (organ, laterality, site, clock,
quadrant, distance, size, attribute, assessment) goes to the finding whose stretch of text holds it.
A sentence without a lesion word adds to the open finding (structured "Label: value" lines, "BI-RADS 3."
after the lesion sentence) or, when it describes something on its own, starts an organ-level finding.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

from . import patterns as P
from .context import FAMILY, HISTORICAL, HYPOTHETICAL, NEGATED, UNCERTAIN, Cue, Scope, build_scopes, context_bits
from .lexicons import LexiconTables, resolve_ref, term_code
from .model import Assessment, Attribute, Finding, ParsedReport, Sentence
from .pipeline import ATTR, CUE, LESION, ORGAN, SITE, doc_text
from .vocabulary import FIELD_HINTS, NON_LESION_KINDS

_FIELD_START = re.compile(
    r"(?i)\s*(?:\d{1,2}[.、)]\s*)?("
    + "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in sorted(FIELD_HINTS, key=len, reverse=True))
    + r")\s*[:：]\s*"
)
_LOCATION_FIELD = re.compile(r"(?i)\s*(?:location|size|site|side|laterality|position)\s*[:：]")
_NONE_VALUE = re.compile(r"(?i)^(?:none|no\b|nil|absent|无|未见)")
# Words too generic to stand for a lexicon value unless a field label says which attribute is meant.
_GENERIC = frozenset(
    {
        "absent",
        "soft",
        "hard",
        "intermediate",
        "internal",
        "none",
        "solid",
        "cystic",
        "linear",
        "flat",
        "parallel",
        "smooth",
        "shadow",
        "echogenic",
        "irregular",
        "collection",
    }
)
# ... of which these are safe next to a lesion word ("solid nodule", "irregular mass").
_KEEP_GENERIC_IN_CONTEXT = frozenset({"solid", "cystic", "echogenic", "irregular", "smooth", "parallel"})
# Findings a following description never belongs to ("乳腺增生。左乳低回声" describes a new lesion).
_NO_MERGE = frozenset({"lymph_node", *NON_LESION_KINDS})
_ECHO_ATTRS = frozenset({"echogenicity", "echo_pattern"})
_UDAF_DIAGNOSES = frozenset({"nodule", "cyst", "mass", "fluid_collection"})


class _Item:
    """A matched item inside a sentence (start, end, kind, value)."""

    __slots__ = ("start", "end", "kind", "value")

    def __init__(self, start: int, end: int, kind: str, value: Any) -> None:
        self.start = start
        self.end = end
        self.kind = kind
        self.value = value


def _nearest(items: list[_Item], anchor: int, skip: tuple[int, int] | None = None) -> _Item | None:
    best: _Item | None = None
    best_d = 1 << 30
    for it in items:
        if skip is not None and it.start < skip[1] and skip[0] < it.end:
            continue
        # prefer a word before the anchor on ties ("左乳低回声结节", "right breast mass")
        d = anchor - it.end if it.end <= anchor else it.start - anchor + 1
        if d < best_d:
            best, best_d = it, d
    return best


class _Context:
    """What carries across sentences of one report."""

    def __init__(self) -> None:
        self.header_laterality: str | None = None
        self.header_organ: str | None = None
        self.header_site: list[str] = []
        self.last_organ: str | None = None
        self.open: Finding | None = None
        self.section: str | None = None


def assemble(doc: Doc, nlp: Language, language: str, lexicon: str, tables: LexiconTables) -> ParsedReport:
    """Build the ``ParsedReport`` of a doc that went through ``get_pipeline(language)``."""
    text = doc_text(doc)
    sents = doc.user_data.get("sono_sents", [])
    report = ParsedReport(language=language)
    if not sents:
        return report
    n = len(sents)
    # items of each sentence by kind, in text order (each kind comes from one sorted source)
    per: list[dict[str, list[_Item]]] = [{} for _ in range(n)]
    cues: list[list[Cue]] = [[] for _ in range(n)]
    phrases: Any = nlp.get_pipe("sonoalign_phrases")
    by_key: dict[int, tuple[str, Any]] = phrases.table.by_key
    si = 0
    next_start = sents[1][0] if n > 1 else 1 << 62
    sent_end = sents[0][1]
    for layer, key, s, e, bs, be in doc.user_data.get("sono_phrases", ()):
        while s >= next_start:
            si += 1
            next_start = sents[si + 1][0] if si + 1 < n else 1 << 62
            sent_end = sents[si][1]
        if s >= sent_end:
            continue
        payload = by_key[key][1]
        if layer == CUE:
            cues[si].append(Cue(payload[0], payload[1], s, e, bs, be))
        else:
            by = per[si]
            same = by.get(layer)
            if same is None:
                by[layer] = [_Item(s, e, layer, payload)]
            else:
                same.append(_Item(s, e, layer, payload))
    si = 0
    next_start = sents[1][0] if n > 1 else 1 << 62
    sent_end = sents[0][1]
    for kind, s, e, value in doc.user_data.get("sono_regex", ()):
        while s >= next_start:
            si += 1
            next_start = sents[si + 1][0] if si + 1 < n else 1 << 62
            sent_end = sents[si][1]
        if s >= sent_end:
            continue
        by = per[si]
        same = by.get(kind)
        if same is None:
            by[kind] = [_Item(s, e, kind, value)]
        else:
            same.append(_Item(s, e, kind, value))

    ctx = _Context()
    for index, (start, end, section, header) in enumerate(sents):
        sentence = Sentence(index=index, start=start, end=end, text=text[start:end], section=section)
        report.sentences.append(sentence)
        if section != ctx.section:
            ctx.section = section
            ctx.open = None
            ctx.header_laterality = ctx.header_organ = None
            ctx.header_site = []
        sentence_cues = cues[index]
        scopes = build_scopes(text, start, end, language, sentence_cues) if sentence_cues else []
        _sentence_findings(text, sentence, header, per[index], scopes, ctx, lexicon, tables, language, sentence_cues)
    return report


def _sentence_findings(
    text: str,
    sentence: Sentence,
    header: str | None,
    by: dict[str, list[_Item]],
    scopes: list[Scope],
    ctx: _Context,
    lexicon: str,
    tables: LexiconTables,
    language: str = "en",
    cues: list[Cue] | None = None,
) -> None:
    start, end = sentence.start, sentence.end
    # site words that open a quadrant or organ phrase ("lower outer quadrant", "deep vein thrombosis");
    # a site closing an organ phrase still counts ("甲状腺峡部", "thyroid isthmus")
    if SITE in by and (ORGAN in by or "quadrant" in by):
        covering = [(i.start, i.end) for i in (*by.get("quadrant", ()), *by.get(ORGAN, ()))]
        sites = [i for i in by[SITE] if not any(a == i.start and b > i.end for a, b in covering)]
        if sites:
            by[SITE] = sites
        else:
            del by[SITE]
    lats = by.get("laterality", [])
    organs = by.get(ORGAN, [])
    anchors = by.get(LESION, [])
    if len(anchors) > 1 and any(a.value != "calcification" for a in anchors):
        # calcifications next to another lesion word describe that lesion
        anchors = [a for a in anchors if a.value != "calcification"]

    # a field label ends with a colon: most sentences have none, and the label regex is long
    has_colon = text.find(":", start, end) >= 0 or text.find("：", start, end) >= 0
    field = _FIELD_START.match(text, start, end) if has_colon else None
    hint = FIELD_HINTS.get(" ".join(field.group(1).lower().split())) if field else None
    if not anchors and hint is None and ATTR in by:
        by[ATTR] = [i for i in by[ATTR] if i.value[0] not in _GENERIC]
        if not by[ATTR]:
            del by[ATTR]

    if header == "section":
        return
    if header == "organ" and not anchors:
        ctx.header_laterality = lats[0].value if lats else None
        if organs:
            ctx.header_organ = ctx.last_organ = organs[-1].value
        ctx.header_site = [i.value for i in by.get(SITE, ())]
        return
    if len(anchors) > 1:
        anchors = _drop_interpretations(text, anchors)
    if not anchors and language == "zh" and header is None:
        # Chinese conclusions name a lesion by its echo alone ("右乳10点低回声,左乳2点无回声"): each echo
        # term then stands for one lesion
        anchors = [
            _Item(i.start, i.end, LESION, None)
            for i in by.get(ATTR, ())
            if any(r.attribute in _ECHO_ATTRS for r in i.value[1])
        ]

    groups = _group_anchors(text, anchors)
    segments: list[tuple[int, int, list[_Item]]] = []
    if groups:
        bounds = [start]
        for prev, nxt in zip(groups, groups[1:], strict=False):
            bounds.append(_last_separator(text, prev[-1].end, nxt[0].start))
        bounds.append(end)
        segments = [(bounds[i], bounds[i + 1], groups[i]) for i in range(len(groups))]

    new_findings: list[Finding] = []
    if segments:
        for seg_start, seg_end, group in segments:
            f = _finding_from(
                text,
                seg_start,
                seg_end,
                group,
                by,
                scopes,
                ctx,
                lexicon,
                tables,
                hint,
                sentence_start=start,
                field_end=field.end() if field else None,
                cues=cues,
                sentence_end=end,
            )
            new_findings.append(f)
    else:
        content = any(k in by for k in (ATTR, "birads", "tirads", "points", "clock", "quadrant", "distance"))
        # a structured field line ("Location: right lobe, lower pole", "Size: 2.8 x 2.0 cm") describes the
        # open lesion even with only a side, site or size
        located = field is not None or (has_colon and _LOCATION_FIELD.match(text, start, end) is not None)
        if located and ctx.open is not None and any(k in by for k in ("laterality", SITE, "size")):
            content = True
        if field and hint and "echogenic_foci" in hint and _NONE_VALUE.match(text[field.end() : end]):
            content = True
        if not content:
            if organs:
                ctx.last_organ = organs[-1].value
            return
        f = _finding_from(
            text,
            start,
            end,
            [],
            by,
            scopes,
            ctx,
            lexicon,
            tables,
            hint,
            sentence_start=start,
            field_end=field.end() if field else None,
            cues=cues,
            sentence_end=end,
        )
        if field and hint and "echogenic_foci" in hint and _NONE_VALUE.match(text[field.end() : end]):
            f.attributes.append(
                Attribute(
                    "echogenic_foci",
                    "none_or_large_comet_tail_artifacts",
                    "tirads",
                    False,
                    False,
                    field.end(),
                    end,
                    text[field.end() : end],
                )
            )
        op = ctx.open
        if (
            op is not None
            and not op.negated
            and op.lesion not in _NO_MERGE
            and (f.organ is None or op.organ is None or f.organ == op.organ or not organs)
            and (f.laterality is None or op.laterality is None or f.laterality == op.laterality or not lats)
        ):
            _merge(op, f)
            if organs:
                ctx.last_organ = organs[-1].value
            return
        if f.laterality is None and op is not None and (f.organ is None or f.organ == op.organ):
            # "双侧乳腺组织增生。BI-RADS2类。": the category is about the breasts just named
            f.laterality = op.laterality
        new_findings.append(f)
    for f in new_findings:
        if f.organ is None:
            f.organ = ctx.header_organ or ctx.last_organ
        if lexicon == "udaf":
            _add_udaf_structure(f, tables)
    sentence.findings.extend(new_findings)
    # An organ named only to deny something there ("No suspicious cervical lymph nodes.") is not the
    # organ that later sentences without one of their own are about.
    if organs and not (new_findings and all(f.negated for f in new_findings)):
        ctx.last_organ = organs[-1].value
    if new_findings:
        ctx.open = new_findings[-1]


def _drop_interpretations(text: str, anchors: list[_Item]) -> list[_Item]:
    """Drop lesion words that interpret the lesion before them ("mass ..., likely fibroadenoma",
    "nodule, possibly a colloid cyst", "结节，考虑纤维腺瘤")."""
    kept = [anchors[0]]
    for prev, a in zip(anchors, anchors[1:], strict=False):
        between = text[prev.end : a.start]
        if P.INTERPRETATION.search(between) and not P.NEW_LESION.search(between):
            continue
        kept.append(a)
    return kept


def _choose_organ(by: dict[str, list[_Item]], a: int, b: int, anchor: int, lesion: str | None) -> str | None:
    """Organ of a finding: the organ word nearest the lesion in its stretch, else in the sentence.

    Organ words that are part of a lesion word ("lymph node", "pleural effusion") or of a lexicon
    phrase ("skin thickening", "axillary lymph node") are used only when nothing else names the organ.
    """
    organs = by.get(ORGAN)
    if lesion == "lymph_node":
        # a node's organ is named beside it ("left axillary node"); elsewhere in the sentence another
        # lesion's organ is meant ("no thyroid nodules or cervical lymphadenopathy")
        organs = _in(organs, a, b)
    if not organs:
        return "Lymph nodes" if lesion == "lymph_node" else None
    lesions = by.get(LESION, ())
    attrs = by.get(ATTR, ())
    clean: list[_Item] = []
    no_lesion: list[_Item] = []
    # lesion and attribute items are sorted by start and do not overlap each other within their kind
    for i in organs:
        s, e = i.start, i.end
        hit = False
        for x in lesions:
            if x.start >= e:
                break
            if s < x.end:
                hit = True
                break
        if hit:
            continue
        no_lesion.append(i)
        for x in attrs:
            if x.start >= e:
                break
            if s < x.end:
                hit = True
                break
        if not hit:
            clean.append(i)
    for pool in (clean, no_lesion):
        best = _nearest(_in(pool, a, b), anchor) or _nearest(pool, anchor)
        if best is not None:
            return best.value
    if lesion == "lymph_node":
        return "Lymph nodes"
    best = _nearest(organs, anchor)
    return best.value if best is not None else None


def _group_anchors(text: str, anchors: list[_Item]) -> list[list[_Item]]:
    """Group lesion words that name one lesion ("low echo mass: nodule?", "cyst or nodule")."""
    groups: list[list[_Item]] = []
    for a in anchors:
        if groups and P.LESION_SEPARATOR.search(text, groups[-1][-1].end, a.start) is None:
            groups[-1].append(a)
        else:
            groups.append([a])
    return groups


def _last_separator(text: str, a: int, b: int) -> int:
    pos = a
    for m in P.LESION_SEPARATOR.finditer(text, a, b):
        pos = m.start()
    return pos


def _in(items: list[_Item] | None, a: int, b: int) -> list[_Item]:
    if not items:
        return []
    if a <= items[0].start and items[-1].start < b:
        return items  # the usual case: one finding spans the sentence
    return [i for i in items if a <= i.start < b]


def _finding_from(
    text: str,
    a: int,
    b: int,
    group: list[_Item],
    by: dict[str, list[_Item]],
    scopes: list[Scope],
    ctx: _Context,
    lexicon: str,
    tables: LexiconTables,
    hint: frozenset[str] | None,
    sentence_start: int,
    field_end: int | None = None,
    cues: list[Cue] | None = None,
    sentence_end: int = -1,
) -> Finding:
    lesion = None
    for g in group:
        if g.value is not None:
            if lesion is None or lesion == "lesion":
                lesion = g.value
            if lesion != "lesion":
                break
    anchor = group[0].start if group else a
    # the items of this stretch: all of the sentence's when it is the whole sentence (the usual case)
    if a == sentence_start and b == sentence_end:
        seg = by
    else:
        seg = {}
        for k, v in by.items():
            inside = [i for i in v if a <= i.start < b]
            if inside:
                seg[k] = inside

    f = Finding(lesion=lesion, start=a, end=b)
    all_lats = by.get("laterality")
    lat = _nearest(seg["laterality"], anchor) if "laterality" in seg else None
    if lat is None and all_lats:
        before = [i for i in all_lats if i.start < a]
        lat = before[-1] if before else None
        if lat is None:
            # "a cyst at 2 o'clock and a nodule at 10 o'clock in the right breast": one side named for all
            values = {i.value for i in all_lats}
            lat = all_lats[0] if len(values) == 1 else None
    f.laterality = lat.value if lat is not None else ctx.header_laterality

    f.organ = _choose_organ(by, a, b, anchor, lesion)
    if f.organ is None:
        f.organ = ctx.header_organ
    clock = seg.get("clock")
    quad = seg.get("quadrant")
    dist = seg.get("distance")
    if f.organ is None and (clock or dist or quad):
        # clock faces, nipple distances and quadrants only locate breast lesions
        f.organ = "Breast"

    sites = seg.get(SITE)
    f.site = list(dict.fromkeys([i.value for i in sites])) if sites else list(ctx.header_site)
    if clock:
        f.clock = clock[0].value
    if quad:
        f.quadrant = quad[0].value
    if dist:
        f.distance_from_nipple_cm = dist[0].value
    sizes = seg.get("size")
    if sizes:
        size = _nearest(sizes, anchor) if group else sizes[0]
        if size is not None:
            f.size_mm = list(size.value)

    birads = seg.get("birads")
    tirads = seg.get("tirads")
    points = seg.get("points")
    if birads:
        f.assessment = Assessment("BI-RADS", birads[0].value)
    elif tirads:
        system, category, pts = tirads[0].value
        f.assessment = Assessment(system, category, pts)
    if points:
        if f.assessment is None:
            f.assessment = Assessment("ACR TI-RADS", None, points[0].value)
        elif f.assessment.system == "ACR TI-RADS" and f.assessment.points is None:
            f.assessment.points = points[0].value

    if scopes:
        bits = context_bits(scopes, anchor)
        if group:
            # words naming one lesion ("低回声团:结节？") share its context: any of them in scope counts
            each = 0
            for g in group:
                each |= context_bits(scopes, g.start)
            f.negated = bool(each & NEGATED)
            f.uncertain = bool(each & UNCERTAIN)
            if f.negated:
                # an absent lesion has no size: a number nearby measures the organ ("10.8 cm, no
                # hydronephrosis")
                f.size_mm = None
        f.historical = bool(bits & HISTORICAL)
        f.hypothetical = bool(bits & HYPOTHETICAL)
        if bits & FAMILY:
            f.experiencer = "family"

    absence_spans = (
        {(c.block_start, c.block_end) for c in cues if c.category == "negated" and c.block_start >= 0}
        if cues
        else ()
    )
    seen: set[tuple[str, str]] = set()
    attributes = f.attributes
    label_end = field_end if field_end is not None else a
    attrs = seg.get(ATTR) if label_end <= a else _in(by.get(ATTR), label_end, b)
    for it in attrs or ():
        phrase, refs, chosen = it.value
        if hint is None:
            if phrase in _GENERIC and not (group and phrase in _KEEP_GENERIC_IN_CONTEXT):
                continue
            ref = chosen[lexicon]
        else:
            ref = resolve_ref(refs, lexicon, hint)
        if (ref.attribute, ref.value) in seen:
            continue
        seen.add((ref.attribute, ref.value))
        ab = context_bits(scopes, it.start) if scopes else 0
        if ab and absence_spans and (it.start, it.end) in absence_spans:
            # the value itself says "absent" ("no internal vascularity", "未见明显血流信号"): an outer
            # "without ... and" does not turn it into its opposite
            ab &= ~NEGATED
        attributes.append(
            Attribute(
                ref.attribute,
                ref.value,
                ref.lexicon,
                bool(ab & NEGATED),
                bool(ab & UNCERTAIN),
                it.start,
                it.end,
                text[it.start : it.end],
            )
        )
    return f


def _merge(target: Finding, extra: Finding) -> None:
    """Fold an anchorless sentence's finding into the open finding: fill what is missing, add the rest."""
    for name in ("organ", "laterality", "clock", "quadrant", "distance_from_nipple_cm", "size_mm"):
        if getattr(target, name) is None and getattr(extra, name) is not None:
            setattr(target, name, getattr(extra, name))
    for s in extra.site:
        if s not in target.site:
            target.site.append(s)
    have = {(a.name, a.value) for a in target.attributes}
    target.attributes.extend(a for a in extra.attributes if (a.name, a.value) not in have)
    if extra.assessment is not None:
        if target.assessment is None:
            target.assessment = extra.assessment
        else:
            if (
                target.assessment.points is None
                and extra.assessment.points is not None
                and target.assessment.system == extra.assessment.system
            ):
                target.assessment.points = extra.assessment.points
            if target.assessment.category is None and extra.assessment.category is not None:
                target.assessment.category = extra.assessment.category
                target.assessment.system = extra.assessment.system
    target.end = max(target.end, extra.end)


def _add_udaf_structure(f: Finding, tables: LexiconTables) -> None:
    """With the udaf lexicon, also report the structural dimensions a region is tagged with."""
    extra: list[Attribute] = []
    if f.lesion in _UDAF_DIAGNOSES:
        extra.append(Attribute("diagnosis", f.lesion, "udaf", f.negated, f.uncertain, f.start, f.start, ""))
    if f.organ is not None:
        organ_code, body_code = _organ_codes(f.organ, tables.organ_body_system.get(f.organ))
        extra.append(Attribute("organ_level", organ_code, "udaf", f.negated, f.uncertain, f.start, f.start, ""))
        if body_code:
            extra.append(
                Attribute("body_system_level", body_code, "udaf", f.negated, f.uncertain, f.start, f.start, "")
            )
    f.attributes[:0] = extra


@lru_cache(maxsize=4096)
def _organ_codes(organ: str, body: str | None) -> tuple[str, str | None]:
    """Codes of an organ tag and its body-system tag (a pure function of the two strings)."""
    return term_code(organ), (term_code(body) if body else None)
