"""Public entry points: ``parse_report``, ``parse_reports`` and ``classify_context``."""

from __future__ import annotations

import gc
from collections.abc import Iterable

from .assemble import assemble
from .context import Cue, Scope, build_scopes, flags
from .lexicons import LEXICON_SYSTEMS, load_tables
from .model import ParsedReport
from .patterns import detect_language
from .pipeline import CUE, get_pipeline, match_payload

LANGUAGES = ("auto", "en", "zh")


def _check(language: str, lexicon: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
    if lexicon not in LEXICON_SYSTEMS:
        raise ValueError(f"lexicon must be one of {LEXICON_SYSTEMS}, not {lexicon!r}")


def parse_reports(
    texts: Iterable[str],
    *,
    language: str = "auto",
    lexicon: str = "udaf",
    batch_size: int = 256,
    lexicon_dir: str | None = None,
) -> list[ParsedReport]:
    """Parse many reports through ``nlp.pipe``; results are in input order.

    ``language`` is ``auto`` (per report), ``en`` or ``zh``; ``lexicon`` (``udaf``, ``birads-us``,
    ``tirads``) decides which lexicon's codes a phrase is reported with when several lexicons know it;
    a phrase only another lexicon knows is still reported, with that lexicon's name.
    Raises ``ValueError`` for an unknown language or lexicon and ``TypeError`` for a non-string text.
    """
    _check(language, lexicon)
    items = list(texts)
    for t in items:
        if not isinstance(t, str):
            raise TypeError(f"report text must be str, not {type(t).__name__}")
    langs = [detect_language(t) if language == "auto" else language for t in items]
    tables = load_tables(lexicon_dir)
    out: list[ParsedReport | None] = [None] * len(items)
    # The parse allocates many small objects that all stay alive (the results) and forms no reference
    # cycles, so the cyclic collector only rescans them over and over (5-10% of a batch's time).
    paused = gc.isenabled() and len(items) > 1
    if paused:
        gc.disable()
    try:
        for lang in ("en", "zh"):
            idx = [i for i, lg in enumerate(langs) if lg == lang]
            if not idx:
                continue
            nlp = get_pipeline(lang, lexicon_dir)
            for i, doc in zip(idx, nlp.pipe((items[i] for i in idx), batch_size=batch_size), strict=True):
                out[i] = assemble(doc, nlp, lang, lexicon, tables)
    finally:
        if paused:
            gc.enable()
    return [r for r in out if r is not None]


def parse_report(
    text: str, *, language: str = "auto", lexicon: str = "udaf", lexicon_dir: str | None = None
) -> ParsedReport:
    """Parse one report into sentences and findings (see ``parse_reports``)."""
    return parse_reports([text], language=language, lexicon=lexicon, lexicon_dir=lexicon_dir)[0]


def classify_context(
    sentence: str, target: str, *, language: str = "auto", lexicon_dir: str | None = None
) -> dict[str, bool | str]:
    """Context of ``target`` (first case-insensitive occurrence) in ``sentence``.

    Returns ``{"negated", "uncertain", "historical", "hypothetical": bool, "experiencer": "patient" |
    "family"}``.  Raises ``ValueError`` when the target does not occur in the sentence.
    """
    _check(language, "udaf")
    pos = sentence.lower().find(target.lower())
    if not target or pos < 0:
        raise ValueError(f"target {target!r} does not occur in the sentence")
    lang = detect_language(sentence) if language == "auto" else language
    nlp = get_pipeline(lang, lexicon_dir)
    doc = nlp(sentence)
    span = (pos, pos + len(target))
    start, end = 0, len(sentence)
    parts = list(zip(doc.user_data["sono_sents"], doc.user_data["sono_matches"], strict=True))
    chosen: list[tuple[int, tuple]] = []
    for k, ((s, e, _, header), (sentence_phrases, _)) in enumerate(parts):
        if s <= pos < e:
            start, end = s, e
            chosen.append((s, sentence_phrases))
            if header is not None and k + 1 < len(parts):
                # a header's value is its next sentence ("COMPARISON: None.", "ALLERGIES: none")
                (s2, e2, _, _), (next_phrases, _) = parts[k + 1]
                end = e2
                chosen.append((s2, next_phrases))
            break
    cues = []
    own: list[Scope] = []
    for base, phrases in chosen:
        for layer, key, s, e, bs, be in phrases:
            if layer != CUE:
                continue
            s, e = s + base, e + base
            if bs >= 0:
                bs, be = bs + base, be + base
            category, direction = match_payload(nlp, key)[1]
            if s < span[1] and span[0] < e:
                if span[0] <= s and e <= span[1]:
                    continue  # the target itself is not its own trigger ("not parallel")
                if category not in ("pseudo", "terminate"):
                    # a trigger that shares words with the target governs it ("no focal" of "focal
                    # lesion", "切除术后" of "切除")
                    own.append(Scope(category, span[0], span[1]))
                continue
            cues.append(Cue(category, direction, s, e, bs, be))
    scopes = build_scopes(sentence, start, end, lang, cues, target=span) + own
    return flags(scopes, pos)
