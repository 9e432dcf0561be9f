"""ConText-style scoping of negation, uncertainty, history, hypotheticals and experiencer.

Triggers come from the phrase matcher (``vocabulary.CUES_EN``/``CUES_ZH``); each has a direction and its
scope runs to the end (or start) of its clause.  Pseudo-triggers ("no change", "无明显变化") are matched
as longer phrases so the trigger inside them never fires; terminators ("but", "但") and clause breaks
end a scope.  Everything is character offsets inside one sentence.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from . import patterns as P

CATEGORIES = ("negated", "uncertain", "historical", "hypothetical", "family")


class Cue(NamedTuple):
    """A trigger occurrence: category, direction, its span and the lexicon phrase it sits in (or -1).

    A named tuple rather than a frozen dataclass: a report has dozens of them and a frozen dataclass
    costs several ``object.__setattr__`` calls each to build."""

    category: str
    direction: str
    start: int
    end: int
    block_start: int = -1
    block_end: int = -1


class Scope(NamedTuple):
    """The characters ``[start, end)`` a trigger of ``category`` governs."""

    category: str
    start: int
    end: int


# Bits of ``context_bits``.
NEGATED, UNCERTAIN, HISTORICAL, HYPOTHETICAL, FAMILY = 1, 2, 4, 8, 16
_BIT = {"negated": NEGATED, "uncertain": UNCERTAIN, "historical": HISTORICAL, "hypothetical": HYPOTHETICAL,
        "family": FAMILY}


def clause_breaks(text: str, start: int, end: int, lang: str, cues: list[Cue]) -> list[int]:
    """Sorted positions in ``[start, end]`` where a scope stops: clause punctuation, coordinated new
    lesions ("and a ...") and terminator words."""
    regex = P.CLAUSE_EN if lang == "en" else P.CLAUSE_ZH
    breaks = [start, end]
    breaks.extend(m.start() for m in regex.finditer(text, start, end))
    for c in cues:
        if c.category == "terminate":
            breaks.append(c.start)
    breaks.sort()
    return breaks


# What may follow a negation trigger that is a field's whole value ("Allergies: none known.",
# "Medications: none reported", "Lymphadenopathy: not present"): then it denies the label.
_EMPTY_VALUE = re.compile(r"(?i)\s*(?:(?:known|reported|noted|seen|identified|found|today)\b\s*)*[.;,。；，]?\s*$")


def build_scopes(
    text: str, start: int, end: int, lang: str, cues: list[Cue], target: tuple[int, int] | None = None
) -> list[Scope]:
    """Scopes of the triggers in the sentence ``text[start:end]``.

    A trigger that sits inside a lexicon phrase ("no" in "no internal vascularity", "无" in "无回声")
    is ignored, unless that phrase overlaps ``target`` (``classify_context`` on the phrase itself) or is
    a field's whole value ("Vascularity: absent").  A field label made of a trigger ("Family history:",
    "家族史：") governs its value across the colon; a negation that is a field's whole value
    ("MEDICATIONS: none.") governs the label before the colon.  A history or family trigger inside a
    negation's scope is part of what is denied ("no history of trauma", "否认高血压病史"): it governs
    nothing.
    """
    if not cues:
        return []
    scopes: list[Scope] = []
    breaks: list[int] | None = None
    negations: list[Scope] = []
    owned: list[tuple[Cue, Scope]] = []  # history and family scopes with their triggers
    for cue in cues:
        if cue.category == "pseudo" or cue.category == "terminate":
            continue
        if breaks is None:
            breaks = clause_breaks(text, start, end, lang, cues)
        if cue.category == "negated":
            label = _denied_label(text, start, end, cue, breaks)
            if label is not None:
                scopes.append(label)
                negations.append(label)
                continue
        if cue.block_start >= 0:
            if target is None or not (cue.block_start < target[1] and target[0] < cue.block_end):
                continue
        made: list[Scope] = []
        if cue.direction == "forward" or cue.direction == "both":
            stop = end
            for b in breaks:
                if b >= cue.end:
                    if b < end and text[b] in ":：" and not text[cue.end : b].strip():
                        continue  # the trigger is the field's label: its scope is the value
                    stop = b
                    break
            # the scope includes the trigger itself: "no focal" + lesion "focal lesion" overlap
            made.append(Scope(cue.category, cue.start, stop))
        if cue.direction == "backward" or cue.direction == "both":
            begin = start
            for b in breaks:
                if b <= cue.start:
                    begin = b
                else:
                    break
            made.append(Scope(cue.category, begin, cue.start))
        scopes.extend(made)
        if cue.category == "negated":
            negations.extend(made)
        elif cue.category == "historical" or cue.category == "family":
            owned.extend((cue, m) for m in made)
    if owned and negations:
        denied = [s for c, s in owned if any(n.start <= c.start < n.end for n in negations)]
        if denied:
            scopes = [s for s in scopes if s not in denied]
    return scopes


def _denied_label(text: str, start: int, end: int, cue: Cue, breaks: list[int]) -> Scope | None:
    """The scope of a negation that is a field's whole value ("Edema: none.", "Smoking: denies"): the label
    before the colon; None when the negation is not such a value."""
    colon = cue.start - 1
    while colon >= start and text[colon].isspace():
        colon -= 1
    if colon < start or text[colon] not in ":：" or not _EMPTY_VALUE.match(text, cue.end, end):
        return None
    begin = start
    for b in breaks:
        if b < colon:
            begin = b
        else:
            break
    return Scope("negated", begin, colon)


def context_bits(scopes: list[Scope], pos: int) -> int:
    """The categories (``NEGATED`` | ``UNCERTAIN`` | ...) whose scopes hold the character ``pos``."""
    bits = 0
    for s in scopes:
        if s.start <= pos < s.end:
            bits |= _BIT[s.category]
    return bits


def flags(scopes: list[Scope], pos: int) -> dict[str, bool | str]:
    """The context record of a target starting at ``pos``: a target is governed when its first character
    is, since scopes stop at clause breaks and a target that starts inside one belongs to that clause."""
    bits = context_bits(scopes, pos) if scopes else 0
    return {
        "negated": bool(bits & NEGATED),
        "uncertain": bool(bits & UNCERTAIN),
        "historical": bool(bits & HISTORICAL),
        "hypothetical": bool(bits & HYPOTHETICAL),
        "experiencer": "family" if bits & FAMILY else "patient",
    }
