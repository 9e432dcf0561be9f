"""Turn the matches stored by the pipeline into sentences and findings.

Per sentence: lesion words anchor findings; several lesions in one sentence are split at the separator
before each new lesion ("... and a 0.8 cm nodule"); every other item (organ, laterality, site, clock,
quadrant, distance, size, attribute, assessment) goes to the finding whose stretch of text holds it.
A sentence without a lesion word adds to the open finding (structured "Label: value" lines, "BI-RADS 3."
after the lesion sentence) or, when it describes something on its own, starts an organ-level finding.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

from . import patterns as P
from .context import FAMILY, HISTORICAL, HYPOTHETICAL, NEGATED, UNCERTAIN, Cue, Scope, build_scopes, context_bits
from .lexicons import LexiconTables, resolve_ref, term_code
from .model import Assessment, Attribute, Finding, ParsedReport, Sentence
from .pipeline import ATTR, CUE, DIGITS_BLIND, LESION, ORGAN, SITE, remember
from .vocabulary import FIELD_HINTS, LAYER_ORGANS, NON_LESION_KINDS, NORMAL_TISSUE_INTERPRETATIONS

_FIELD_START = re.compile(
    r"(?i)\s*(?:\d{1,2}[.、)]\s*)?("
    + "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in sorted(FIELD_HINTS, key=len, reverse=True))
    + r")\s*[:：]\s*"
)
_LOCATION_FIELD = re.compile(r"(?i)\s*(?:location|size|site|side|laterality|position)\s*[:：]")
_DIGIT = re.compile(r"\d")
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

    __slots__ = ("start", "end", "kind", "value", "index")

    def __init__(self, start: int, end: int, kind: str, value: Any, index: int = -1) -> None:
        self.start = start
        self.end = end
        self.kind = kind
        self.value = value
        self.index = index  # a regex item's place in its sentence's regex items (see ``_Slots``)


# Per finding template: the index in its sentence's regex items of its clock, nipple distance, size,
# BI-RADS, TI-RADS, points and volume item (-1: none).
_Slots = tuple[int, int, int, int, int, int, int]
_NO_SLOTS = (-1, -1, -1, -1, -1, -1, -1)  # recorded as None: nothing to fill


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
        # the sentence before was a lesion's label ("Nodule 1:"), so this one may be its value
        self.label_open = False
        self.follows_label = False


def assemble(doc: Doc, nlp: Language, language: str, lexicon: str, tables: LexiconTables) -> ParsedReport:
    """Build the ``ParsedReport`` of a doc that went through ``get_pipeline(language)``.

    Each sentence's findings are first read from the sentence alone (a draft, remembered per distinct
    sentence like its matches), then placed in the report: organ, side and site from the headers and
    sentences before, a sentence without a lesion word folded into the open finding.
    """
    sents = doc.user_data.get("sono_sents", [])
    report = ParsedReport(language=language)
    if not sents:
        return report
    component: Any = nlp.get_pipe("sonoalign_matches")
    drafts: dict[tuple[str, str | None, str], _Draft] = component.drafts
    max_entries: int = component.max_entries
    digit_blind: bool = component.digit_blind
    by_key: dict[int, tuple[str, Any]] = component.table.by_key
    udaf = lexicon == "udaf"
    ctx = _Context()
    sentences = report.sentences
    for index, ((start, end, section, header), analysis, sentence_text) in enumerate(
        zip(sents, doc.user_data["sono_matches"], doc.user_data["sono_texts"], strict=True)
    ):
        sentence = Sentence(index, start, end, sentence_text, section)
        sentences.append(sentence)
        if section != ctx.section:
            ctx.section = section
            ctx.open = None
            ctx.header_laterality = ctx.header_organ = None
            ctx.header_site = []
        key = (sentence_text, header, lexicon)
        draft = drafts.get(key)
        if draft is None:
            if digit_blind and max_entries > 0:
                # sentences that differ only in their digits and match the same phrases and regex items
                # at the same places ("a 1.2 cm cyst at 3 o'clock", "a 2.5 cm cyst at 9 o'clock") read
                # alike: one draft serves them all, its numbers taken from each sentence's own items
                phrases, regex = analysis
                shared = (
                    sentence_text.translate(DIGITS_BLIND),
                    header,
                    lexicon,
                    tuple([(k, s, e) for k, s, e, _ in regex]),
                    phrases,
                )
                draft = drafts.get(shared)
                if draft is None:
                    draft = _sentence_draft(sentence_text, header, analysis, by_key, lexicon, tables, language, True)
                    if max_entries > 0:
                        remember(drafts, shared, draft, max_entries)
            else:
                draft = _sentence_draft(sentence_text, header, analysis, by_key, lexicon, tables, language)
            if max_entries > 0:
                remember(drafts, key, draft, max_entries)
        ctx.follows_label = ctx.label_open
        ctx.label_open = header == "organ" and draft.kind == _FINDINGS
        if header == "organ" and draft.kind != _ORGAN_HEADER:
            # a lesion's label ("Nodule 1:") starts a field group of its own: the side and site of the
            # organ label before it ("Isthmus:") are not its
            ctx.header_laterality = None
            ctx.header_site = []
        if draft.single is not None:
            # one lesion read from the sentence alone (the usual English sentence): ``_place`` inlined
            f = _copy(draft.single, start, ctx, sentence_text)
            if draft.slots is not None and draft.slots[0] is not None:
                _fill(f, draft.slots[0], analysis[1])
            if f.organ is None:
                f.organ = ctx.header_organ or ctx.last_organ
            if udaf and draft.single.organ is None:
                _add_udaf_structure(f, tables)
            sentence.findings.append(f)
            if draft.last_organ is not None and not f.negated:
                ctx.last_organ = draft.last_organ
            ctx.open = f
        elif draft.kind != _NOTHING:
            _place(draft, sentence, ctx, udaf, tables, analysis[1])
    return report


# What a sentence is, read on its own.
_NOTHING, _ORGAN_HEADER, _FINDINGS, _DESCRIPTION = 0, 1, 2, 3


class _Draft:
    """The findings a sentence states by itself, offsets relative to its start.

    ``findings`` are templates with their roles: a field the sentence leaves open (``laterality``/``organ``
    ``None``, ``site`` empty) is filled from the report's context when the draft is placed.
    ``_DESCRIPTION`` is a sentence without a lesion word: its finding (``probe``) adds to the open finding
    or stands alone (with ``findings``, when it names coordinated locations), and counts at all only when
    ``content`` (or ``content_if_open`` and a finding is open).  ``_ORGAN_HEADER``
    carries ``header`` = (laterality, organ, sites) for the sentences under it.
    """

    __slots__ = (
        "kind",
        "findings",
        "probe",
        "slots",
        "probe_slots",
        "content",
        "content_if_open",
        "last_organ",
        "has_lats",
        "header",
        "zh",
        "single",
        "needs_organ",
        "describes_open",
        "places",
    )

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.findings: list[tuple[Finding, int]] = []
        self.probe: Finding | None = None
        # regex items the templates' numbers come from, when the draft serves every sentence that differs
        # from its own only in its digits (see ``_fill``)
        self.slots: list[_Slots | None] | None = None
        self.probe_slots: _Slots | None = None
        self.content = False
        self.content_if_open = False
        self.last_organ: str | None = None
        self.has_lats = False
        self.header: tuple[str | None, str | None, list[str]] | None = None
        self.zh = False
        # the one template of a sentence that states one lesion, outside Chinese (see ``assemble``)
        self.single: Finding | None = None
        # a bare measurement ("4.6 x 1.9 x 1.5 cm"): a finding only under an organ label
        self.needs_organ = False
        # calcifications named without a place of their own ("No calcifications are seen.", "Echogenic
        # foci: peripheral (rim) calcifications (2)."): what the open lesion holds, if one is open
        self.describes_open = False
        # it names a side, site or size: the value of a lesion label just before it ("Nodule 1: left lobe,
        # mid portion.") places that lesion
        self.places = False


# Roles of a draft's finding templates (see ``_copies``).
_LEAD, _COPY, _FIXED = 0, 1, 2


def _items(
    analysis: tuple[tuple[Any, ...], tuple[Any, ...]], by_key: dict[int, tuple[str, Any]]
) -> tuple[dict[str, list[_Item]], list[Cue]]:
    """A sentence's matches as items by kind (each list in text order) and its context triggers."""
    by: dict[str, list[_Item]] = {}
    cues: list[Cue] = []
    phrases, regex = analysis
    for layer, key, s, e, bs, be in phrases:
        payload = by_key[key][1]
        if layer == CUE:
            cues.append(Cue(payload[0], payload[1], s, e, bs, be))
        else:
            same = by.get(layer)
            if same is None:
                by[layer] = [_Item(s, e, layer, payload)]
            else:
                same.append(_Item(s, e, layer, payload))
    for index, (kind, s, e, value) in enumerate(regex):
        same = by.get(kind)
        if same is None:
            by[kind] = [_Item(s, e, kind, value, index)]
        else:
            same.append(_Item(s, e, kind, value, index))
    return by, cues


def _sentence_draft(
    text: str,
    header: str | None,
    analysis: tuple[tuple[Any, ...], tuple[Any, ...]],
    by_key: dict[int, tuple[str, Any]],
    lexicon: str,
    tables: LexiconTables,
    language: str,
    shared: bool = False,
) -> _Draft:
    """Read the findings of the sentence ``text`` (a whole sentence: offsets start at 0) on its own.

    ``shared``: the draft will also serve sentences that differ from ``text`` only in their digits (and
    have the same phrase and regex matches): it records which regex item each number comes from."""
    if header == "section":
        return _Draft(_NOTHING)
    by, cues = _items(analysis, by_key)
    start, end = 0, len(text)
    scopes = build_scopes(text, start, end, language, cues) if cues else []
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
    has_colon = text.find(":") >= 0 or text.find("：") >= 0
    field = _FIELD_START.match(text) if has_colon else None
    hint = FIELD_HINTS.get(" ".join(field.group(1).lower().split())) if field else None
    if not anchors and hint is None and ATTR in by:
        by[ATTR] = [i for i in by[ATTR] if i.value[0] not in _GENERIC]
        if not by[ATTR]:
            del by[ATTR]

    if header == "organ" and not anchors:
        draft = _Draft(_ORGAN_HEADER)
        draft.header = (
            lats[0].value if lats else None,
            organs[-1].value if organs else None,
            [i.value for i in by.get(SITE, ())],
        )
        return draft
    if len(anchors) > 1:
        anchors = _drop_interpretations(text, anchors)
    zh = language == "zh"
    interpreted = 0  # context of the lesion words that interpret echo-named lesions ("考虑囊肿")
    if anchors and zh and header is None and ATTR in by:
        named = _echo_named(text, anchors, by[ATTR])
        if named is not anchors:
            for a in anchors:
                interpreted |= context_bits(scopes, a.start) if scopes else 0
            anchors = named
    if not anchors and zh and header is None:
        # Chinese conclusions name a lesion by its echo alone ("右乳10点低回声,左乳2点无回声"): each echo
        # term then stands for one lesion
        anchors = [
            _Item(i.start, i.end, LESION, None)
            for i in by.get(ATTR, ())
            if any(r.attribute in _ECHO_ATTRS for r in i.value[1])
        ]

    field_end = field.end() if field else None
    locations = zh and ("laterality" in by or "clock" in by or "quadrant" in by)
    groups = _group_anchors(text, anchors)
    slots: list[_Slots | None] | None = [] if shared else None
    if groups:
        draft = _Draft(_FINDINGS)
        draft.slots = slots
        tails = _side_categories(text, groups, lats, by.get("birads")) if zh else []
        bounds = [start]
        places = sorted(i.start for k in ("clock", "quadrant") for i in by.get(k, ())) if zh else []
        for prev, nxt in zip(groups, groups[1:], strict=False):
            bounds.append(_last_separator(text, prev[-1].end, nxt[0].start, places))
        bounds.append(tails[0][0].start if tails else end)
        for i, group in enumerate(groups):
            f = _finding_from(
                text, bounds[i], bounds[i + 1], group, by, scopes, lexicon, tables, hint, field_end, cues, slots
            )
            if interpreted & UNCERTAIN:
                f.uncertain = True
            if zh:
                _breast_layer(f, organs)
            draft.findings.append((_template(f), _LEAD))
            if locations:
                draft.findings.extend((g, _COPY) for g in _coordinated_locations(text, bounds[i], group[0].start, f, by))
        for i, (side, category) in enumerate(tails):
            g = Finding(lesion=None, start=side.start, end=tails[i + 1][0].start if i + 1 < len(tails) else end)
            g.laterality, g.organ = side.value, "Breast"
            g.assessment = Assessment("BI-RADS", category.value)
            draft.findings.append((_template(g), _FIXED))
        if lexicon == "udaf":
            # a finding whose sentence names its organ keeps it: its structural tags are known now
            for t, _ in draft.findings:
                if t.organ is not None:
                    t.attributes[:0] = _structure(t, tables)
    elif header is None and ("size" in by or "volume" in by) and (
        measured := _organ_measurements(text, by, scopes, slots)
    ):
        draft = _Draft(_FINDINGS)
        draft.slots = slots
        draft.findings = [(_template(f), _LEAD) for f in measured]
        draft.needs_organ = all(f.organ is None and f.laterality is None and not f.site for f in measured)
        if lexicon == "udaf":
            for t, _ in draft.findings:
                if t.organ is not None:
                    t.attributes[:0] = _structure(t, tables)
    else:
        draft = _Draft(_DESCRIPTION)
        draft.content = any(k in by for k in (ATTR, "birads", "tirads", "points", "clock", "quadrant", "distance"))
        # a structured field line ("Location: right lobe, lower pole", "Size: 2.8 x 2.0 cm") describes the
        # open lesion even with only a side, site or size
        located = field is not None or (has_colon and _LOCATION_FIELD.match(text) is not None)
        draft.places = any(k in by for k in ("laterality", SITE, "size"))
        draft.content_if_open = located and draft.places
        no_foci = field is not None and hint is not None and "echogenic_foci" in hint
        if no_foci and _NONE_VALUE.match(text[field_end:]):
            draft.content = True
        else:
            no_foci = False
        if draft.content or draft.places:
            f = _finding_from(text, start, end, [], by, scopes, lexicon, tables, hint, field_end, cues, slots)
            if slots:
                draft.probe_slots = slots[0]
            if no_foci:
                f.attributes.append(
                    Attribute(
                        "echogenic_foci",
                        "none_or_large_comet_tail_artifacts",
                        "tirads",
                        False,
                        False,
                        field_end,
                        end,
                        text[field_end:end],
                    )
                )
            if zh:
                _breast_layer(f, organs)
            draft.probe = _template(f)
            if locations:
                # the locations go to the copies only if the finding stands alone (is not merged)
                lead = _template(_copy(f, 0, None, text))
                copies = _coordinated_locations(text, start, end, lead, by)
                if copies:
                    draft.findings = [(lead, _LEAD), *((g, _COPY) for g in copies)]
    draft.last_organ = organs[-1].value if organs else None
    draft.has_lats = bool(lats)
    draft.zh = zh
    if (
        draft.kind == _FINDINGS
        and anchors
        and all(a.value == "calcification" for a in anchors)
        and not any(k in by for k in ("laterality", ORGAN, SITE, "clock", "quadrant", "distance", "size", "volume"))
    ):
        draft.describes_open = True
    if draft.kind == _FINDINGS and len(draft.findings) == 1 and not zh and not draft.needs_organ:
        if not draft.describes_open:
            draft.single = draft.findings[0][0]
    return draft


def _organ_measurements(
    text: str, by: dict[str, list[_Item]], scopes: list[Scope], slots: list[_Slots | None] | None
) -> list[Finding]:
    """Organ measurements of a sentence without a lesion word: "The left thyroid lobe measures 5.1 x 2.0 x
    1.6 cm", "The right lobe measures 4.5 x 1.5 x 1.4 cm and the left lobe 4.0 x 1.3 x 1.2 cm", "肝右叶最大斜径
    13.5cm", "Bladder volume 350 mL"; a bare measurement ("4.6 x 1.9 x 1.5 cm", "0.4 cm AP") is one too,
    for the organ label before it.  Each size starts a measurement when an organ, lobe, side or site
    word stands between it and the previous one (else it is a further dimension of that one); a volume
    goes to the measurement before it.  Empty when the sentence names no organ or does not say it
    measures one."""
    low = P.lowered(text)
    organs = by.get(ORGAN, [])
    lobes = [m.start() for m in P.LOBE.finditer(low)]
    bare = P.BARE_MEASUREMENT.fullmatch(text) is not None
    if not bare and not ((organs or lobes) and P.MEASURE_CUE.search(low)):
        return []
    places = sorted(
        [*((i.start, i) for i in organs), *((i.start, i) for i in by.get("laterality", ())),
         *((i.start, i) for i in by.get(SITE, ())), *((p, None) for p in lobes)],
        key=lambda t: t[0],
    )
    values = sorted([*by.get("size", ()), *by.get("volume", ())], key=lambda i: i.start)
    out: list[Finding] = []
    own: list[_Slots] = []
    prev = 0
    for v in values:
        mine = [i for p, i in places if prev <= p < v.start]
        if out and (v.kind == "volume" or not mine):
            f = out[-1]
            if v.kind == "volume" and f.volume_ml is None:
                f.volume_ml = v.value
                f.end = v.end
                own[-1] = (*own[-1][:6], v.index)
            prev = v.end
            continue
        f = Finding(lesion="organ_measurement", start=prev, end=v.end)
        items = [i for i in mine if i is not None]
        organ = [i.value for i in items if i.kind == ORGAN]
        sides = [i.value for i in items if i.kind == "laterality"]
        f.organ = organ[-1] if organ else (out[-1].organ if out else None)
        f.laterality = sides[-1] if sides else None
        f.site = list(dict.fromkeys(i.value for i in items if i.kind == SITE))
        if f.organ is None and "isthmus" in f.site:
            f.organ = "Thyroid gland"
        slot = [-1] * 7
        if v.kind == "size":
            f.size_mm = list(v.value)
            slot[2] = v.index
        else:
            f.volume_ml = v.value
            slot[6] = v.index
        # the words before the number and those after it up to the next clause ("4 mm in diameter")
        after = P.CLAUSE_STOP.search(low, v.end)
        stretch = low[prev : after.start() if after is not None else len(low)]
        f.measurement = "volume" if v.kind == "volume" else next(
            (kind for kind, rx in P.MEASURE_KIND if kind != "volume" and rx.search(stretch)), "size"
        )
        if scopes:
            bits = context_bits(scopes, v.start)
            f.historical = bool(bits & HISTORICAL)
            f.hypothetical = bool(bits & HYPOTHETICAL)
        out.append(f)
        own.append(tuple(slot))  # type: ignore[arg-type]
        prev = v.end
    if slots is not None:
        slots.extend(own)
    return out


def _place(
    draft: _Draft, sentence: Sentence, ctx: _Context, udaf: bool, tables: LexiconTables, regex: tuple[Any, ...]
) -> None:
    """Put a sentence's draft into the report: fill what it leaves open from ``ctx`` and update ``ctx``."""
    if draft.kind == _ORGAN_HEADER:
        assert draft.header is not None
        ctx.header_laterality, organ, sites = draft.header
        if organ is not None:
            ctx.header_organ = ctx.last_organ = organ
        ctx.header_site = list(sites)
        return
    off = sentence.start
    if draft.needs_organ and ctx.header_laterality is None and ctx.header_organ is None and not ctx.header_site:
        return  # a number with no organ label before it measures nothing we can name
    if draft.describes_open and _describes(ctx.open):
        op = ctx.open
        for i, (t, _) in enumerate(draft.findings):
            f = _copy(t, off, None, sentence.text)
            if draft.slots is not None and draft.slots[i] is not None:
                _fill(f, draft.slots[i], regex)
            f.attributes = [a for a in f.attributes if a.text]  # the structural udaf tags are the lesion's own
            f.organ = f.lesion = None
            _merge(op, f)
        return
    if draft.kind == _FINDINGS:
        templates = draft.findings
        if len(templates) == 1:  # one lesion: the usual sentence
            new_findings = [_copy(templates[0][0], off, ctx, sentence.text)]
        else:
            new_findings = _copies(templates, off, ctx, None, sentence.text)
        if draft.slots is not None:
            for f, slot in zip(new_findings, draft.slots, strict=True):
                if slot is not None:
                    _fill(f, slot, regex)
    else:
        op = ctx.open
        if not (draft.content or ((draft.content_if_open or (draft.places and ctx.follows_label)) and op is not None)):
            if draft.last_organ is not None:
                ctx.last_organ = draft.last_organ
            return
        assert draft.probe is not None
        f = _copy(draft.probe, off, ctx, sentence.text)
        if draft.probe_slots is not None:
            _fill(f, draft.probe_slots, regex)
        if (
            op is not None
            and not op.negated
            and not op.historical
            and op.lesion not in _NO_MERGE
            and (f.organ is None or op.organ is None or f.organ == op.organ or draft.last_organ is None)
            and (f.laterality is None or op.laterality is None or f.laterality == op.laterality or not draft.has_lats)
            # a place of its own that differs from the open finding's is another lesion
            and not (f.quadrant and op.quadrant and f.quadrant != op.quadrant)
            and not (f.clock and op.clock and f.clock != op.clock)
        ):
            _merge(op, f)
            if draft.last_organ is not None:
                ctx.last_organ = draft.last_organ
            return
        if f.laterality is None and op is not None and (f.organ is None or f.organ == op.organ):
            # "双侧乳腺组织增生。BI-RADS2类。": the category is about the breasts just named
            f.laterality = op.laterality
        new_findings = _copies(draft.findings, off, ctx, f, sentence.text) if draft.findings else [f]
    if draft.zh:
        new_findings = _split_breast_assessments(new_findings)
    for f in new_findings:
        if f.organ is None:
            # a BI-RADS category assesses a breast, whatever organ the report named before
            birads = draft.zh and f.assessment is not None and f.assessment.system == "BI-RADS"
            f.organ = "Breast" if birads else ctx.header_organ or ctx.last_organ
        if udaf:
            attrs = f.attributes
            if not (attrs and attrs[0].lexicon == "udaf" and not attrs[0].text):  # added by the draft
                _add_udaf_structure(f, tables)
    sentence.findings.extend(new_findings)
    # An organ named only to deny something there ("No suspicious cervical lymph nodes.") is not the
    # organ that later sentences without one of their own are about.
    if draft.last_organ is not None and not (new_findings and all([f.negated for f in new_findings])):
        ctx.last_organ = draft.last_organ
    if new_findings:
        ctx.open = new_findings[-1]


def _describes(op: Finding | None) -> bool:
    """Whether a sentence without a lesion of its own may describe the open finding ``op``."""
    return (
        op is not None
        and op.lesion is not None
        and op.lesion != "calcification"
        and not op.negated
        and not op.historical
        and op.lesion not in _NO_MERGE
    )


def _copies(
    templates: list[tuple[Finding, int]], off: int, ctx: _Context, placed: Finding | None, text: str
) -> list[Finding]:
    """New findings from a draft's templates.  A lead (``_LEAD``) takes what its sentence leaves open from
    the report's context; a coordinated location's copy (``_COPY``) takes it from its lead; a side's own
    category (``_FIXED``) takes nothing.  ``placed`` is a description's finding already placed: its
    templates all copy it (the first with the first location's side, clock and quadrant)."""
    out = []
    lead = placed
    for t, role in templates:
        if role == _LEAD and placed is None:
            f = lead = _copy(t, off, ctx, text)
        else:
            f = _copy(t, off, None, text)
            if role != _FIXED:
                assert lead is not None
                if f.laterality is None:
                    f.laterality = lead.laterality
                if f.organ is None:
                    f.organ = lead.organ
                if not f.site:
                    f.site = list(lead.site)
        out.append(f)
    return out


def _template(f: Finding) -> Finding:
    """Turn ``f`` into a draft's template: its attributes become plain tuples, cheap to copy from."""
    # a text with digits is taken from each sentence the draft serves ("Echogenic foci: none (0 points)")
    f.attributes = [  # type: ignore[misc]
        (a.name, a.value, a.lexicon, a.negated, a.uncertain, a.start, a.end, None if _DIGIT.search(a.text) else a.text)
        for a in f.attributes
    ]
    return f


def _copy(t: Finding, off: int, ctx: _Context | None, text: str) -> Finding:
    """A new finding from the template ``t`` of a draft (see ``_template``), moved by ``off`` characters,
    with what the sentence left open taken from the report's context (when ``ctx`` is given).  ``text``
    is the sentence, for the attribute texts the template leaves to it."""
    asm = t.assessment
    f = Finding(
        t.organ,
        t.laterality,
        list(t.site),
        t.clock,
        t.quadrant,
        t.distance_from_nipple_cm,
        None if t.size_mm is None else list(t.size_mm),
        t.lesion,
        t.negated,
        t.uncertain,
        t.historical,
        t.hypothetical,
        t.experiencer,
        [
            Attribute(n, v, lx, ng, u, a + off, b + off, text[a:b] if tx is None else tx)
            for n, v, lx, ng, u, a, b, tx in t.attributes
        ],
        None if asm is None else Assessment(asm.system, asm.category, asm.points),
        t.start + off,
        t.end + off,
        t.measurement,
        t.volume_ml,
    )
    if ctx is None:
        return f
    if f.organ is not None and ctx.header_organ is not None and f.organ != ctx.header_organ:
        # a sentence naming another organ than its label's ("Isthmus: 0.4 cm AP. The right kidney measures
        # 11.2 cm.") is outside that field: the label's side and site are not its own
        return f
    if f.laterality is None:
        f.laterality = ctx.header_laterality
    if f.organ is None:
        f.organ = ctx.header_organ
        if f.organ is None and (f.clock is not None or f.quadrant is not None or f.distance_from_nipple_cm is not None):
            # clock faces, nipple distances and quadrants only locate breast lesions
            f.organ = "Breast"
    if not f.site:
        f.site = list(ctx.header_site)
    return f


def _echo_named(text: str, anchors: list[_Item], attrs: list[_Item]) -> list[_Item]:
    """Chinese conclusions name a lesion by its echo and then interpret it ("右乳6点低回声,考虑瘤样增生？",
    "右乳极低回声、左侧乳腺内无回声,考虑囊肿"): when every lesion word stands after an echo term and an
    interpretation cue (考虑, 可能, 符合, 待排 ...), the echo terms are the lesions, one each.  The
    interpretation gives their kind unless it is tissue (增生 interprets a focal finding, it does not
    remove it) or several kinds are offered."""
    last = anchors[-1].start
    echoes = [i for i in attrs if i.start < last and any(r.attribute in _ECHO_ATTRS for r in i.value[1])]
    if not echoes:
        return anchors
    for a in anchors:
        before = [e for e in echoes if e.end <= a.start]
        if not before or P.INTERPRETATION.search(text, before[-1].end, a.start) is None:
            return anchors
    kinds = {a.value for a in anchors}
    kind = next(iter(kinds)) if len(kinds) == 1 and not kinds & NON_LESION_KINDS else None
    return [_Item(e.start, e.end, LESION, kind) for e in echoes]


def _coordinated_locations(text: str, a: int, b: int, f: Finding, by: dict[str, list[_Item]]) -> list[Finding]:
    """Chinese names one lesion phrase for several coordinated locations ("左乳11点、右乳10点低回声",
    "右乳外下及左乳内上见局灶性不对称", "左侧乳腺5-7点及5点占位"): ``f`` takes the first location and a copy
    of it is returned for each further one.

    Locations are side, clock and quadrant items in ``a``..``b`` (the text before the lesion word); two are
    coordinated when only side/organ filler ("乳", "侧乳腺", "方向", "处") stands between the first and a
    coordinator (及、和与) and the second starts right after it.  A location without a side of its own
    keeps the side before it ("右乳外象限及内上象限结节"); a clock or quadrant is not carried over.
    """
    locs = sorted(
        (i for k in ("laterality", "clock", "quadrant") for i in by.get(k, ()) if a <= i.start < b),
        key=lambda i: i.start,
    )
    if len(locs) < 2:
        return []
    units: list[list[_Item]] = [[locs[0]]]
    for prev, nxt in zip(locs, locs[1:], strict=False):
        m = P.LOCATION_COORDINATOR.search(text, prev.end, nxt.start)
        if (
            m is not None
            and m.end() == nxt.start
            and P.LOCATION_FILLER.fullmatch(text, prev.end, m.start()) is not None
        ):
            units.append([nxt])
        else:
            units[-1].append(nxt)
    if len(units) < 2:
        return []
    own_clock = any(i.kind == "clock" for i in locs)
    own_quad = any(i.kind == "quadrant" for i in locs)
    out: list[Finding] = []
    lat = f.laterality
    for n, unit in enumerate(units):
        g = f if n == 0 else copy.copy(f)
        if n:
            g.site, g.attributes = list(f.site), list(f.attributes)
            g.assessment = copy.copy(f.assessment)
            g.start = unit[0].start
            out.append(g)
        lat = next((i.value for i in unit if i.kind == "laterality"), lat)
        g.laterality = lat
        if own_clock:
            g.clock = next((i.value for i in unit if i.kind == "clock"), None)
        if own_quad:
            g.quadrant = next((i.value for i in unit if i.kind == "quadrant"), None)
    return out


def _side_categories(
    text: str, groups: list[list[_Item]], lats: list[_Item], birads: list[_Item] | None
) -> list[tuple[_Item, _Item]]:
    """(side, category) pairs after the last lesion of a Chinese sentence where a side is named right before
    the category ("双乳良性钙化，右乳BI-RADS2类"): each assesses that breast, not the lesion before."""
    if not birads or not lats:
        return []
    last = groups[-1][-1].end
    out = []
    for b in birads:
        if b.start <= last:
            continue
        m = P.SIDE_BEFORE_CATEGORY.search(text, max(last, b.start - 8), b.start)
        side = next((i for i in lats if m is not None and i.start == m.start()), None)
        if side is not None:
            out.append((side, b))
    return out


def _fill(f: Finding, slots: _Slots, regex: tuple[Any, ...]) -> None:
    """Set the numbers of ``f`` from its sentence's regex items (``regex``, the sentence's own): clock,
    nipple distance, size and assessment, as ``_finding_from`` would for this sentence."""
    clock, dist, size, birads, tirads, points, volume = slots
    if volume >= 0:
        f.volume_ml = regex[volume][3]
    if clock >= 0:
        f.clock = regex[clock][3]
    if dist >= 0:
        f.distance_from_nipple_cm = regex[dist][3]
    if size >= 0:
        f.size_mm = list(regex[size][3])
    if birads >= 0 or tirads >= 0 or points >= 0:
        if birads >= 0:
            assessment: Assessment | None = Assessment("BI-RADS", regex[birads][3])
        elif tirads >= 0:
            system, category, pts = regex[tirads][3]
            assessment = Assessment(system, category, pts)
        else:
            assessment = None
        if points >= 0:
            if assessment is None:
                assessment = Assessment("ACR TI-RADS", None, regex[points][3])
            elif assessment.system == "ACR TI-RADS" and assessment.points is None:
                assessment.points = regex[points][3]
        f.assessment = assessment


def _breast_layer(f: Finding, organs: list[_Item]) -> None:
    """"左乳内下象限皮下类圆形异常信号": a tissue layer (皮下) right after a breast is that breast's layer."""
    if f.organ in LAYER_ORGANS and organs:
        layer = next((i for i in organs if i.value == f.organ and f.start <= i.start < f.end), None)
        before = [i for i in organs if layer is not None and i.end <= layer.start]
        if before and before[-1].value == "Breast" and before[-1].start >= f.start:
            f.organ = "Breast"


def _split_breast_assessments(findings: list[Finding]) -> list[Finding]:
    """A BI-RADS category given with tissue ("双侧乳腺组织囊性增生,BI-RADS2类", "左乳不均匀致密腺体型，
    BI-RADS1类") or with an absent lesion ("左乳未见明显肿块，BI-RADS1类") assesses the breast on that side:
    it becomes an organ-level finding of its own, as when it stands in a sentence of its own."""
    out: list[Finding] = []
    for f in findings:
        out.append(f)
        a = f.assessment
        if a is not None and a.system == "BI-RADS" and (f.negated or f.lesion in NON_LESION_KINDS):
            g = Finding(lesion=None, start=f.start, end=f.end)
            g.organ, g.laterality, g.assessment = f.organ, f.laterality, a
            f.assessment = None
            out.append(g)
    return out


def _drop_interpretations(text: str, anchors: list[_Item]) -> list[_Item]:
    """Drop lesion words that interpret the lesion before them ("mass ..., likely fibroadenoma",
    "nodule, possibly a colloid cyst", "结节，考虑纤维腺瘤")."""
    kept = [anchors[0]]
    for prev, a in zip(anchors, anchors[1:], strict=False):
        between = text[prev.end : a.start]
        if P.INTERPRETATION.search(between) and not P.NEW_LESION.search(between):
            if a.value in NORMAL_TISSUE_INTERPRETATIONS:
                # "强化小结节影，考虑背景强化": the lesion word turns out to be normal tissue
                kept[-1] = _Item(kept[-1].start, kept[-1].end, LESION, a.value)
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


def _last_separator(text: str, a: int, b: int, places: list[int] | None = None) -> int:
    """Where the stretch of the lesion word ending at ``a`` gives way to the one starting at ``b``: the
    last separator between them, or (``places``: where Chinese clock positions and quadrants start) the
    first separator that a place follows, since Chinese names a lesion's place before it
    ("右乳癌保乳术后,外下象限、外上象限见液性暗区": the quadrants are the fluid's)."""
    pos = a
    for m in P.LESION_SEPARATOR.finditer(text, a, b):
        if places:
            after = m.end()
            while after < b and text[after].isspace():
                after += 1
            if after in places:
                return m.start()
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
    lexicon: str,
    tables: LexiconTables,
    hint: frozenset[str] | None,
    field_end: int | None = None,
    cues: list[Cue] | None = None,
    slots: list[_Slots | None] | None = None,
) -> Finding:
    """The finding of ``text[a:b]`` (a stretch of the sentence ``text``) anchored on ``group`` (lesion
    words naming one lesion; empty for a sentence without one).  Side, organ and site stay unset
    (``None``/empty) when the sentence does not state them: the report's context fills them in.  The
    regex items its numbers come from are appended to ``slots``."""
    lesion = None
    for g in group:
        if g.value is not None:
            if lesion is None or lesion == "lesion":
                lesion = g.value
            if lesion != "lesion":
                break
    anchor = group[0].start if group else a
    # the items of this stretch: all of the sentence's when it is the whole sentence (the usual case)
    if a == 0 and b == len(text):
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
    f.laterality = lat.value if lat is not None else None

    f.organ = _choose_organ(by, a, b, anchor, lesion)
    clock = seg.get("clock")
    quad = seg.get("quadrant")
    dist = seg.get("distance")

    sites = seg.get(SITE)
    f.site = list(dict.fromkeys([i.value for i in sites])) if sites else []
    if clock:
        f.clock = clock[0].value
    if quad:
        f.quadrant = quad[0].value
    if dist:
        f.distance_from_nipple_cm = dist[0].value
    sizes = seg.get("size")
    size = None
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
                size = None
        f.historical = bool(bits & HISTORICAL)
        f.hypothetical = bool(bits & HYPOTHETICAL)
        if bits & FAMILY:
            f.experiencer = "family"
    if slots is not None:
        slot = (
            clock[0].index if clock else -1,
            dist[0].index if dist else -1,
            size.index if size is not None else -1,
            birads[0].index if birads else -1,
            tirads[0].index if tirads else -1,
            points[0].index if points else -1,
            -1,
        )
        slots.append(None if slot == _NO_SLOTS else slot)

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
    body = tables.organ_body_system.get(f.organ) if f.organ is not None else None
    pairs = _udaf_pairs(f.lesion, f.organ, body)
    if pairs:
        start, negated, uncertain = f.start, f.negated, f.uncertain
        f.attributes[:0] = [Attribute(n, v, "udaf", negated, uncertain, start, start, "") for n, v in pairs]


def _structure(t: Finding, tables: LexiconTables) -> list[tuple[str, str, str, bool, bool, int, int, str]]:
    """The structural udaf tags of a draft's template, as its attribute tuples (see ``_template``)."""
    body = tables.organ_body_system.get(t.organ) if t.organ is not None else None
    return [(n, v, "udaf", t.negated, t.uncertain, t.start, t.start, "") for n, v in _udaf_pairs(t.lesion, t.organ, body)]


@lru_cache(maxsize=4096)
def _udaf_pairs(lesion: str | None, organ: str | None, body: str | None) -> tuple[tuple[str, str], ...]:
    """(attribute, code) of the structural udaf tags of a finding: diagnosis, organ and body system."""
    out = []
    if lesion in _UDAF_DIAGNOSES:
        assert lesion is not None
        out.append(("diagnosis", lesion))
    if organ is not None:
        organ_code, body_code = _organ_codes(organ, body)
        out.append(("organ_level", organ_code))
        if body_code:
            out.append(("body_system_level", body_code))
    return tuple(out)


@lru_cache(maxsize=4096)
def _organ_codes(organ: str, body: str | None) -> tuple[str, str | None]:
    """Codes of an organ tag and its body-system tag (a pure function of the two strings)."""
    return term_code(organ), (term_code(body) if body else None)
