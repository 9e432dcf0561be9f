"""The spaCy pipeline: a blank language, a sentence/section splitter, and per sentence one PhraseMatcher
pass for lexicon values, organs, lesions, site words and context triggers and one regex pass for numbers
and categories, memoised per distinct sentence.

Components only store plain tuples in ``doc.user_data`` (msgpack-friendly, so ``n_process > 1`` works);
``alignment.nlp.assemble`` turns them into findings.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from functools import lru_cache
from itertools import islice
from operator import itemgetter
from typing import Any

import spacy
from spacy.attrs import IDX, LENGTH
from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import compile_suffix_regex, minibatch

from . import patterns as P
from .lexicons import LEXICON_SYSTEMS, LexiconTables, ValueRef, load_tables, resolve_ref
from .vocabulary import CUES_EN, CUES_ZH, EXTRA_ORGANS, LESIONS, SECTIONS, SITES

# Layers of the phrase matcher.  Overlaps are resolved within a layer (longest wins); across layers a
# context trigger inside a lexicon phrase ("no internal vascularity", "无回声", "not parallel") is not a
# trigger.
ATTR, ORGAN, LESION, SITE, CUE = "attr", "organ", "lesion", "site", "cue"


class MatchTable:
    """Maps PhraseMatcher keys to (layer, payload); shared by the components of one pipeline."""

    def __init__(self) -> None:
        self.by_key: dict[int, tuple[str, Any]] = {}
        self.digit_phrases = False  # whether a phrase holds a digit ("纵横比>1")

    def add(
        self, nlp: Language, matcher: PhraseMatcher, key: str, layer: str, payload: Any, phrases: list[str]
    ) -> None:
        docs = [nlp.make_doc(p) for p in dict.fromkeys(phrases) if p.strip()]
        if not docs:
            return
        self.digit_phrases = self.digit_phrases or any(ch.isdigit() for d in docs for ch in d.text)
        matcher.add(key, docs)
        self.by_key[nlp.vocab.strings[key]] = (layer, payload)


def _make_blank(lang: str) -> Language:
    nlp = spacy.blank(lang)
    if lang == "en":
        # "4A." / "TR4." / "cm." at a sentence end must not stay one token, or phrases and sentences
        # run together.
        suffixes = [*nlp.Defaults.suffixes, r"(?<=[0-9A-Za-z])\.", r"(?<=[0-9])(?:mm|cm)", r"[:：]"]
        nlp.tokenizer.suffix_search = compile_suffix_regex(suffixes).search
    return nlp


def _build(lang: str, tables: LexiconTables) -> Language:
    nlp = _make_blank(lang)
    matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
    table = MatchTable()
    for i, (phrase, refs) in enumerate(tables.attributes[lang].items()):
        # (phrase, values, the value chosen for each caller lexicon when no field label says otherwise)
        chosen = {lex: resolve_ref(refs, lex) for lex in LEXICON_SYSTEMS}
        table.add(nlp, matcher, f"A{i}", ATTR, (phrase, refs, chosen), [phrase])
    organ_phrases: dict[str, list[str]] = {}
    for phrase, organ in {**tables.organs[lang], **EXTRA_ORGANS[lang]}.items():
        organ_phrases.setdefault(organ, []).append(phrase)
    for organ, phrases in organ_phrases.items():
        table.add(nlp, matcher, f"O:{organ}", ORGAN, organ, phrases)
    col = 0 if lang == "en" else 1
    for kind, words in LESIONS.items():
        table.add(nlp, matcher, f"L:{kind}", LESION, kind, words[col])
    for site, words in SITES.items():
        table.add(nlp, matcher, f"S:{site}", SITE, site, words[col])
    cues = CUES_EN if lang == "en" else CUES_ZH
    # a phrase listed both forward and backward ("可疑", "versus") governs both sides: one key, or the
    # overlap resolution would keep only one of the two matches
    directions: dict[tuple[str, str], set[str]] = {}
    for (category, direction), words in cues.items():
        for w in words:
            directions.setdefault((category, w), set()).add(direction)
    merged: dict[tuple[str, str], list[str]] = {}
    for (category, w), dirs in directions.items():
        key = (category, "both" if {"forward", "backward"} <= dirs else next(iter(dirs)))
        merged.setdefault(key, []).append(w)
    for (category, direction), words in merged.items():
        table.add(nlp, matcher, f"C:{category}:{direction}", CUE, (category, direction), words)
    nlp.tokenizer = TextKeepingTokenizer(nlp.tokenizer)
    nlp.add_pipe("sonoalign_sentences")
    nlp.add_pipe("sonoalign_matches")
    nlp.get_pipe("sonoalign_matches").setup(matcher, table, nlp.tokenizer.inner)
    return nlp


_COLON = re.compile(r"[:：]")
_ALNUM = re.compile(r"[^\W_]")  # what str.isalnum() accepts
_NONSPACE = re.compile(r"\S")
_BR_GATE = re.compile(r"br\s?[0-6]")
_TR_GATE = re.compile(r"tr\s*-?\s*[1-5]")


def _headers(text: str) -> list[tuple[int, int, str, str]]:
    """``HEADER`` matches as ``(start, end, group name, group text)``, found by looking back from each
    colon (few per report) instead of scanning the whole text with a long alternation.

    Header names hold no colon, so a match tried anywhere after the previous colon ends at the next
    one: the header of a colon is the first match after the previous colon (within 48 characters, after
    the previous header and after the last ``.;,()``, which no header holds), tried only where a header
    word can start.
    """
    out: list[tuple[int, int, str, str]] = []
    last_end = 0
    prev_colon = -1
    for colon in _COLON.finditer(text):
        i = colon.start()
        start = max(last_end, i - 48, prev_colon + 1)
        prev_colon = i
        # no header holds one of these: its match starts after the last of them
        for c in ".;,()":
            j = text.rfind(c, start, i)
            if j >= start:
                start = j + 1
        found = _header_in(text[start - 1] if start else "", text[start : min(len(text), i + 2)])
        if found is not None and found[1] + start == i + 1:
            out.append((found[0] + start, found[1] + start, found[2], found[3]))
            last_end = i + 1
    return out


@lru_cache(maxsize=8192)
def _header_in(before: str, window: str) -> tuple[int, int, str, str] | None:
    """The first ``HEADER`` match in ``window`` (``before``: the character before it, which its
    lookbehinds see), relative to the window.  Reports repeat their labels ("Composition:", "超声提示："),
    so the answer for a window is kept."""
    m = P.header_match(before + window, len(before), len(before) + len(window))
    if m is None:
        return None
    group = m.lastgroup or ""
    offset = len(before)
    return m.start() - offset, m.end() - offset, group, m.group(group) if group else ""


def _item_period(text: str, i: int) -> int:
    """Where the period of the numbered item starting at ``i`` is ("12. ..."), or -1 for "1、", "2)"."""
    j = i
    while j < len(text) and j - i < 2 and text[j].isdecimal():
        j += 1
    return j if j < len(text) and text[j] == "." and j > i else -1


def split_sentences(text: str) -> list[tuple[int, int, str | None, str | None]]:
    """Sentence spans of ``text`` as ``(start, end, section, header_kind)``.

    Boundaries: sentence punctuation (。！？；; and a period before a capital, digit or CJK character,
    not after an abbreviation), line breaks, numbered list items ("1、", "2)", "(3)"), inline section and
    organ headers (``FINDINGS:``, ``Right lobe:``, ``超声提示：``, ``右乳：``), which stand alone, and
    structured field labels (``Composition:``), which start a sentence.  ``section`` is the section in
    force; ``header_kind`` is ``"section"``/``"organ"`` for a header-only sentence, else ``None``.
    """
    n = len(text)
    cuts = {0, n}
    kinds: dict[int, tuple[str, str | None]] = {}
    items = P.list_item_starts(text)
    cuts.update(items)
    # the period of a numbered item ("1. Nodule ...") ends its number, not a sentence
    item_periods = {j for j in (_item_period(text, i) for i in items) if j >= 0}
    tails = P.ABBREVIATION_TAILS
    for m in P.SENTENCE_END.finditer(text):
        i = m.start()
        if text[i] == "." and (
            i in item_periods
            # an abbreviation's last two characters first: most periods end a word no abbreviation ends like
            or (i > 1 and text[i - 2 : i].lower() in tails and P.abbreviation_before(text, i))
        ):
            continue
        cuts.add(m.end())
    if ":" in text or "：" in text:
        for start, end, group, label_text in _headers(text):
            if group == "caps":
                # a flattened report runs its headers together ("EXAM: US THYROID CLINICAL HISTORY: ..."):
                # the header is the longest run of final words that names a section
                words = list(re.finditer(r"\S+", label_text))
                for w in words[1:]:
                    if " ".join(label_text[w.start() :].lower().split()) in SECTIONS:
                        start += w.start()
                        label_text = label_text[w.start() :]
                        break
            if group in ("organ", "caps", "zorgan"):
                # an organ header only counts at the start of a sentence or list item ("Right lobe: ...",
                # "1、右乳：..."), not inside running text ("... in the retroareolar left breast: ..."); in a
                # flattened report a capitalised label after a value starts the next field ("... 1.5 cm
                # Left lobe: ..."), and a section in capitals is always a header
                j = start
                while j > 0 and text[j - 1].isspace():
                    j -= 1
                if (
                    j
                    and text[j - 1] not in ".;:。；：!?！？)）、\n"
                    and not (group == "organ" and text[start].isupper() and j < start)
                    and not (group == "caps" and " ".join(label_text.lower().split()) in SECTIONS)
                ):
                    continue
            cuts.add(start)
            if group in ("section", "zsection"):
                label = " ".join(label_text.lower().split())
                kinds[start] = ("section", SECTIONS.get(label))
                cuts.add(end)
            elif group == "caps":
                label = " ".join(label_text.lower().split())
                kinds[start] = ("section", SECTIONS[label]) if label in SECTIONS else ("organ", None)
                cuts.add(end)
            elif group in ("organ", "zorgan"):
                kinds[start] = ("organ", None)
                cuts.add(end)
    bounds = sorted(cuts)
    out: list[tuple[int, int, str | None, str | None]] = []
    section: str | None = None
    alnum = _ALNUM.search
    nonspace = _NONSPACE.search
    for k in range(len(bounds) - 1):
        a, b = bounds[k], bounds[k + 1]
        if text[a].isspace():
            m = nonspace(text, a, b)
            if m is None:
                continue
            a = m.start()
        while text[b - 1].isspace():  # a non-space character stands at a or after it
            b -= 1
        header = None
        if kinds:
            kind = kinds.get(a)
            if kind is not None:
                header = kind[0]
                if kind[0] == "section" and kind[1] is not None:
                    section = kind[1]
        if not text[a].isalnum() and alnum(text, a, b) is None:
            # a stray bullet or punctuation run: fold it into nothing rather than emit an empty sentence
            continue
        if b - a > MAX_SENTENCE:
            out.extend((x, y, section, header if x == a else None) for x, y in _pieces(text, a, b))
            continue
        out.append((a, b, section, header))
    return out


# Report sentences are short (the longest in the gold sets, the shared conclusions and the generated
# reports has 143 characters), and reading a sentence costs more than linear time in its lesions and
# numbers: a run-on text longer than this (pasted notes, a table flattened into one line) is cut at clause
# punctuation, else at a space, so that no input can make a parse take quadratic time.
MAX_SENTENCE = 1000
_CLAUSE_END = re.compile(r"[，,；;、:：]|\s")


def _pieces(text: str, a: int, b: int) -> Iterator[tuple[int, int]]:
    """``text[a:b]`` cut into stretches of at most ``MAX_SENTENCE`` characters, each stripped."""
    while a < b:
        stop = min(b, a + MAX_SENTENCE)
        if stop < b:
            # the last clause punctuation in the window's second half (it stays with the stretch before
            # it), else the last space, else the window's end
            punct = space = None
            for m in _CLAUSE_END.finditer(text, a + MAX_SENTENCE // 2, stop):
                if text[m.start()].isspace():
                    space = m.end()
                else:
                    punct = m.end()
            stop = punct or space or stop
        x, y = a, stop
        while x < y and text[x].isspace():
            x += 1
        while y > x and text[y - 1].isspace():
            y -= 1
        if x < y:
            yield x, y
        a = stop


@Language.factory("sonoalign_sentences")
class SentenceSplitter:
    """Store sentence spans and sections in ``doc.user_data["sono_sents"]`` (see ``split_sentences``)."""

    def __init__(self, nlp: Language, name: str) -> None:
        pass

    def __call__(self, doc: Doc) -> Doc:
        doc.user_data["sono_sents"] = split_sentences(doc_text(doc))
        return doc

    def pipe(self, docs: Iterable[Doc], batch_size: int = 256) -> Iterator[Doc]:
        # a batch at a time, like the next component: tokenizing, splitting and matching each run in
        # a tight loop of their own
        for batch in minibatch(docs, size=batch_size):
            for doc in batch:
                doc.user_data["sono_sents"] = split_sentences(doc_text(doc))
            yield from batch


# A sentence's analysis: its phrase matches ``(layer, key, start, end, block_start, block_end)`` and its
# regex items ``(kind, start, end, value)``, character offsets relative to the sentence start.
Analysis = tuple[tuple[tuple[str, int, int, int, int, int], ...], tuple[tuple[str, int, int, Any], ...]]


@Language.factory("sonoalign_matches", default_config={"max_entries": 20_000})
class SentenceMatches:
    """Per sentence: one PhraseMatcher pass and one regex pass, memoised by the sentence's text.

    Stores ``doc.user_data["sono_matches"]``, one ``Analysis`` per sentence of ``sono_sents`` (plain
    tuples, so ``n_process > 1`` works), and the sentences' text in ``sono_texts``.  A sentence is
    analysed on its own (its matches never depend on the text around it), so reports that repeat a
    sentence -- and reports are written from templates: "No suspicious axillary lymph nodes.",
    "双侧腋下未见明显肿大淋巴结。" -- analyse it once per process.
    At most ``max_entries`` sentences are remembered (the older half is dropped when full; 0 turns the
    memo off).  ``drafts`` is the same kind of memo for ``alignment.nlp.assemble``, which reads a
    sentence's findings from its analysis alone and applies the report's context afterwards.
    """

    def __init__(self, nlp: Language, name: str, max_entries: int) -> None:
        self.max_entries = max_entries
        self.matcher: PhraseMatcher | None = None
        self.table: MatchTable | None = None
        self.make_doc: Any = None
        self.memo: dict[str, Analysis] = {}
        self.phrase_memo: dict[Any, tuple[tuple[str, int, int, int, int, int], ...]] = {}
        self.digit_blind = False
        self.drafts: dict[Any, Any] = {}
        # the blank Chinese tokenizer segments by character: a sentence's tokens never depend on its
        # neighbours, while an English sentence glued to the previous one ("FINDINGS:Left") is
        # tokenized on its own
        self.context_free_tokens = nlp.lang == "zh"
        # "上极低回声" is 上极 + 低回声, not 上 + 极低回声 (very hypoechoic): Chinese has no spaces to tell
        self.pole_chars = frozenset("上下中两")

    def setup(self, matcher: PhraseMatcher, table: MatchTable, make_doc: Any) -> None:
        self.matcher = matcher
        self.table = table
        self.make_doc = make_doc
        self.digit_blind = not table.digit_phrases

    def clear(self) -> None:
        """Forget every remembered sentence (the lexicon tables are unchanged)."""
        self.memo.clear()
        self.phrase_memo.clear()
        self.drafts.clear()

    def pipe(self, docs: Iterable[Doc], batch_size: int = 256) -> Iterator[Doc]:
        """``nlp.pipe``: the new sentences of a batch of docs are analysed together, stage by stage.

        Measured on the generated reports: a batch's regex pass in one tight loop costs about a third of
        the same pass interleaved with tokenizing and splitting doc by doc, where the regex engine and
        its patterns keep leaving the CPU caches (the whole parse about 10% less)."""
        for batch in minibatch(docs, size=batch_size):
            self._annotate(batch)
            yield from batch

    def __call__(self, doc: Doc) -> Doc:
        self._annotate([doc])
        return doc

    def _annotate(self, docs: list[Doc]) -> None:
        """Store each doc's sentence texts and analyses; with the memo off, every sentence where it
        stands is analysed."""
        remembering = self.max_entries > 0
        memo = self.memo
        found: dict[str, Analysis | None] = {}
        todo: list[tuple[str, Doc, int, int]] = []  # once per new sentence (every sentence without memo)
        for doc in docs:
            text = doc_text(doc)
            spans = doc.user_data["sono_sents"]
            # the sentence strings are kept: their hashes, computed once, serve every later lookup
            sentences = doc.user_data["sono_texts"] = [text[a:b] for a, b, _, _ in spans]
            for sentence, (start, end, _, _) in zip(sentences, spans, strict=True):
                if not remembering:
                    todo.append((sentence, doc, start, end))
                elif sentence not in found:
                    found[sentence] = analysis = memo.get(sentence)
                    if analysis is None:
                        todo.append((sentence, doc, start, end))
        regex = [regex_items(sentence) for sentence, _, _, _ in todo]
        offsets: dict[int, list[list[int]]] = {}
        analyses = []
        for (sentence, doc, start, end), items in zip(todo, regex, strict=True):
            doc_offsets = offsets.get(id(doc))
            if doc_offsets is None:
                doc_offsets = offsets[id(doc)] = doc.to_array(_OFFSET_ATTRS).tolist()
            analysis = (self._phrases(doc, doc_text(doc), doc_offsets, start, end), items)
            analyses.append(analysis)
            if remembering:
                found[sentence] = analysis
                remember(memo, sentence, analysis, self.max_entries)
        each = iter(analyses)
        for doc in docs:
            doc.user_data["sono_matches"] = [
                found[sentence] if remembering else next(each) for sentence in doc.user_data["sono_texts"]
            ]

    def _phrases(
        self, doc: Doc, text: str, offsets: list[list[int]], start: int, end: int
    ) -> tuple[tuple[str, int, int, int, int, int], ...]:
        """Phrase matches of ``text[start:end]`` with overlaps resolved (longest first within a layer).

        A context trigger inside a lexicon phrase carries that phrase's span as its block (else -1, -1);
        site words inside lexicon phrases are dropped."""
        assert self.matcher is not None and self.table is not None
        span = None
        if self.context_free_tokens or (
            (start == 0 or text[start - 1].isspace()) and (end == len(text) or text[end].isspace())
        ):
            # the sentence is whole whitespace-separated chunks: its tokens are those it has alone
            span = doc.char_span(start, end)
        if span is not None:
            doclike: Doc | Span = span
            base, t0, t1 = start, span.start, span.end
        else:
            doclike = self.make_doc(text[start:end])
            offsets = doclike.to_array(_OFFSET_ATTRS).tolist()
            text = text[start:end]
            base, t0, t1 = 0, 0, len(doclike)
        key = None
        if self.digit_blind and self.max_entries > 0:
            # No phrase holds a digit, so which digits a sentence has cannot change its phrase matches,
            # given its tokens: sentences that differ only in their numbers ("a 1.2 cm cyst at 3
            # o'clock") share them.
            bounds = tuple([(o[0] - base, o[1]) for o in offsets[t0:t1]])
            key = (text[base : base + end - start].translate(DIGITS_BLIND), bounds)
            found = self.phrase_memo.get(key)
            if found is not None:
                return found
        found = self._phrase_matches(self.matcher(doclike), text, offsets, base)
        if key is not None:
            remember(self.phrase_memo, key, found, self.max_entries)
        return found

    def _phrase_matches(
        self, matches: list[tuple[int, int, int]], text: str, offsets: list[list[int]], base: int
    ) -> tuple[tuple[str, int, int, int, int, int], ...]:
        assert self.table is not None
        if not matches:
            return ()
        by_key = self.table.by_key
        pole_chars = self.pole_chars
        layers: dict[str, list[tuple[int, int, int]]] = {}
        for key, s, e in matches:
            layer = by_key[key][0]
            if layer == ATTR and s > 0 and offsets[s][0] > base:
                first, before = offsets[s], offsets[s - 1]
                if (
                    first[1] == 1
                    and text[first[0]] == "极"
                    and text[before[0] : before[0] + before[1]] in pole_chars
                ):
                    continue
            spans = layers.get(layer)
            if spans is None:
                layers[layer] = [(s, e, key)]
            else:
                spans.append((s, e, key))
        out: list[tuple[str, int, int, int, int, int]] = []
        blocked: list[tuple[int, int]] = []
        n = len(offsets)
        for layer in (ATTR, ORGAN, LESION, SITE, CUE):
            spans = layers.get(layer)
            if not spans:
                continue
            if len(spans) > 1:
                spans.sort(key=_longest_first)
            taken = bytearray(n + 1)
            for s, e, key in spans:
                if taken.find(1, s, e) >= 0:
                    continue
                block = None
                if (layer == CUE or layer == SITE) and blocked:
                    for bs, be in blocked:
                        # a trigger inside a value ("no internal vascularity") belongs to it; one that
                        # reaches past it ("is absent" over the value "absent") is a trigger
                        if bs < e and s < be and (layer == SITE or (bs <= s and e <= be)):
                            block = (bs, be)
                            break
                    if block is not None and layer == SITE:
                        continue
                taken[s:e] = b"\x01" * (e - s)
                if layer == ATTR:
                    blocked.append((s, e))
                last = offsets[e - 1]
                if block is None:
                    out.append((layer, key, offsets[s][0] - base, last[0] + last[1] - base, -1, -1))
                else:
                    # a trigger inside a lexicon phrase: kept with the phrase's span, so that
                    # classify_context can still use it when that phrase is the target itself
                    end_tok = offsets[block[1] - 1]
                    out.append(
                        (
                            layer,
                            key,
                            offsets[s][0] - base,
                            last[0] + last[1] - base,
                            offsets[block[0]][0] - base,
                            end_tok[0] + end_tok[1] - base,
                        )
                    )
        out.sort(key=_third)
        return tuple(out)


def remember(memo: dict[Any, Any], key: Any, value: Any, max_entries: int) -> None:
    """Store ``value`` under ``key``, first dropping the older half of ``memo`` when it is full."""
    if len(memo) >= max_entries:
        # list(islice(...)) runs in C, without giving another thread the chance to change the dict
        for old in list(islice(memo, max(1, len(memo) // 2))):
            memo.pop(old, None)
    memo[key] = value


_OFFSET_ATTRS = [IDX, LENGTH]
DIGITS_BLIND = str.maketrans("123456789", "000000000")
_second = itemgetter(1)
_third = itemgetter(2)


def _longest_first(t: tuple[int, int, int]) -> tuple[int, int]:
    return (t[0] - t[1], t[0])


@lru_cache(maxsize=4096)
def _mm(value: str, unit: str | None) -> float:
    v = float(value)
    return round(v * 10.0, 3) if unit in ("cm", "厘米") else v


@lru_cache(maxsize=1024)
def clock_from(h1: str, m1: str | None, h2: str | None = None, m2: str | None = None) -> str:
    """Normalise a clock position to ``H:MM``; a range ("5-7点", "12-1 o'clock") gives its midpoint."""
    a = (int(h1) % 12) * 60 + int(m1 or 0)
    if h2:
        b = (int(h2) % 12) * 60 + int(m2 or 0)
        if b < a:
            b += 720
        a = ((a + b) // 2) % 720
    hour, minute = divmod(a, 60)
    return f"{hour or 12}:{minute:02d}"


def _word_start(low: str, i: int) -> bool:
    """Whether ``i`` starts a word (the patterns leave out a leading ``\\b`` so the regex engine can
    skip to their first character)."""
    if i == 0:
        return True
    c = low[i - 1]
    return not (c.isascii() and c.isalnum())  # "考虑BI-RADS3类": a CJK character is no word of ours


# Substrings without which a kind cannot match (one C-speed search each, before the scan).
_QUADRANT_GATE = re.compile("quadrant|uoq|uiq|loq|liq|areolar|central|象限|相限|乳晕|中央区|外上|内上|外下|内下")
_LATERALITY_GATE = re.compile("left|lt|right|rt|bilat|both|[左右双]|两侧")


def regex_items(text: str) -> tuple[tuple[str, int, int, Any], ...]:
    """Numbers, positions and categories of a sentence by regex over its lower-cased text.

    Returns ``(kind, start, end, value)`` sorted by start: ``size`` (list of mm), ``distance`` (cm),
    ``clock`` ("H:MM"), ``quadrant``, ``laterality``, ``birads`` (category), ``tirads`` ([system,
    category, points]), ``points`` (total), ``volume`` (ml).  Each regex runs only when a cheap substring test says it
    can match.
    """
    low = P.lowered(text)
    items: list[tuple[str, int, int, Any]] = []
    dist_spans: list[tuple[int, int]] = []
    if "fn" in low or "nipple" in low or "areola" in low or "乳头" in low:
        for m in P.DISTANCE_SCAN.finditer(low):
            g = m.groups()
            if g[0]:
                v, u = g[0], g[1]
            elif g[2]:
                if not _word_start(low, m.start()):
                    continue
                v, u = g[2], g[3]
            else:
                v, u = g[4], g[5]
            cm = float(v) / 10.0 if u in ("mm", "毫米") else float(v)
            items.append(("distance", m.start(), m.end(), round(cm, 3)))
            dist_spans.append((m.start(), m.end()))
    if "mm" in low or "cm" in low or "毫米" in low or "厘米" in low:
        for m in P.SIZE_SCAN.finditer(low):
            i = m.start()
            if i and (low[i - 1].isdigit() or low[i - 1] == "."):
                continue
            if dist_spans and any(a < m.end() and i < b for a, b in dist_spans):
                continue
            g = m.groups()
            if g[0] is not None:
                last = g[5]
                dims = [_mm(g[0], g[1] or last), _mm(g[2], g[3] or last)]
                if g[4] is not None:
                    dims.append(_mm(g[4], last))
            else:
                dims = [_mm(g[6], g[7])]
            items.append(("size", i, m.end(), dims))
    if "ml" in low or "cc" in low or "毫升" in low:
        for m in P.VOLUME.finditer(low):
            i = m.start()
            if i and (low[i - 1].isdigit() or low[i - 1] == "."):
                continue
            items.append(("volume", i, m.end(), float(m.group(1))))
    if "clock" in low or ":" in low or "点" in low:
        for m in P.CLOCK_SCAN.finditer(low):
            i = m.start()
            if i and low[i - 1] in "0123456789.:":
                continue
            g = m.groups()
            if g[0]:
                value = clock_from(g[0], g[1], g[2], g[3])
            elif g[4]:
                value = clock_from(g[4], g[5])
            else:
                value = clock_from(g[6], None, g[7], None)
            items.append(("clock", i, m.end(), value))
    if _QUADRANT_GATE.search(low) is not None:
        for m in P.QUADRANT_SCAN.finditer(low):
            if low[m.start()].isascii() and not _word_start(low, m.start()):
                continue
            items.append(("quadrant", m.start(), m.end(), P.quadrant_code(m)))
    if _LATERALITY_GATE.search(low) is not None:
        for m in P.LATERALITY_SCAN.finditer(low):
            if low[m.start()].isascii() and not _word_start(low, m.start()):
                continue
            items.append(("laterality", m.start(), m.end(), P.laterality_code(m)))
    if "rads" in low or _BR_GATE.search(low):
        for m in P.BIRADS_SCAN.finditer(low):
            if not _word_start(low, m.start()):
                continue
            cat, sub, cat2, sub2 = m.groups()
            if cat2:
                # "3-4a类": the report hedges between two categories; keep the higher (more suspicious) one
                cat, sub = cat2, sub2
            number = cat if cat.isdigit() else str(P.ROMAN_VALUES[cat.upper()])
            category = number + (sub.upper() if sub and number == "4" else "")
            items.append(("birads", m.start(), m.end(), category))
    if "rads" in low or _TR_GATE.search(low):
        for m in P.TIRADS_SCAN.finditer(low):
            level, sub, tr = m.groups()
            if tr and not _word_start(low, m.start()):
                continue
            if tr:
                value = ("ACR TI-RADS", f"TR{tr}")
            elif sub:
                value = ("Kwak TI-RADS", f"{level}{sub.upper()}")
            else:
                value = ("ACR TI-RADS", f"TR{level}")
            pm = P.POINTS_AFTER.match(low, m.end(), min(len(low), m.end() + 24))
            items.append(
                ("tirads", m.start(), m.end(), [value[0], value[1], int(pm.group(1)) if pm else None])
            )
    if "total" in low or "score" in low or "sum" in low or "rads" in low or "总" in low:  # noqa: PLR1714
        for m in P.POINTS_TOTAL_SCAN.finditer(low):
            items.append(("points", m.start(), m.end(), int(m.group(1) or m.group(2))))
    items.sort(key=_second)
    return tuple(items)


class TextKeepingTokenizer:
    """The language's tokenizer, also keeping the input string in ``doc.user_data["text"]``:
    ``Doc.text`` rebuilds the string token by token, which cost more than all our matching."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, text: str) -> Doc:
        doc = self.inner(text)
        doc.user_data["text"] = text
        return doc

    def pipe(self, texts: Any, batch_size: int = 1000) -> Any:
        for text in texts:
            yield self(text)


def doc_text(doc: Doc) -> str:
    """The doc's text, without rebuilding it from the tokens when the tokenizer kept it."""
    text = doc.user_data.get("text")
    return text if isinstance(text, str) else doc.text


_LOCK = threading.Lock()
_PIPELINES: dict[tuple[str, str | None], Language] = {}


def get_pipeline(lang: str, lexicon_dir: str | None = None) -> Language:
    """The pipeline for ``lang`` (``en`` or ``zh``), built once per process and lexicon directory."""
    key = (lang, lexicon_dir)
    nlp = _PIPELINES.get(key)
    if nlp is None:
        with _LOCK:
            nlp = _PIPELINES.get(key)
            if nlp is None:
                nlp = _build(lang, load_tables(lexicon_dir))
                _PIPELINES[key] = nlp
    return nlp


def match_payload(nlp: Language, key: int) -> tuple[str, Any]:
    """The (layer, payload) stored for a PhraseMatcher key of ``nlp``."""
    return nlp.get_pipe("sonoalign_matches").table.by_key[key]  # type: ignore[union-attr]


__all__ = [
    "ATTR",
    "CUE",
    "LESION",
    "ORGAN",
    "SITE",
    "ValueRef",
    "clock_from",
    "get_pipeline",
    "match_payload",
    "split_sentences",
]
