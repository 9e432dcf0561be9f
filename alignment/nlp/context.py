"""ConText-style scoping of negation, uncertainty, history, hypotheticals and experiencer.

Triggers come from the phrase matcher (``vocabulary.CUES_EN``/``CUES_ZH``); each has a direction and its
scope runs to the end (or start) of its clause.  Pseudo-triggers ("no change", "无明显变化") are matched
as longer phrases so the trigger inside them never fires; terminators ("but", "但") and clause breaks
end a scope.  Everything is character offsets inside one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import patterns as P

CATEGORIES = ("negated", "uncertain", "historical", "hypothetical", "family")


@dataclass(frozen=True, slots=True)
class Cue:
    """A trigger occurrence: category, direction, its span and the lexicon phrase it sits in (or -1)."""

    category: str
    direction: str
    start: int
    end: int
    block_start: int = -1
    block_end: int = -1


@dataclass(frozen=True, slots=True)
class Scope:
    """The characters ``[start, end)`` a trigger of ``category`` governs."""

    category: str
    start: int
    end: int


def clause_breaks(text: str, start: int, end: int, lang: str, cues: list[Cue]) -> list[int]:
    """Sorted positions in ``[start, end]`` where a scope stops: clause punctuation, coordinated new
    lesions ("and a ...") and terminator words."""
    regex = P.CLAUSE_EN if lang == "en" else P.CLAUSE_ZH
    breaks = [start, end]
    breaks.extend(m.start() for m in regex.finditer(text, start, end))
    breaks.extend(c.start for c in cues if c.category == "terminate")
    breaks.sort()
    return breaks


def build_scopes(
    text: str, start: int, end: int, lang: str, cues: list[Cue], target: tuple[int, int] | None = None
) -> list[Scope]:
    """Scopes of the triggers in the sentence ``text[start:end]``.

    A trigger that sits inside a lexicon phrase ("no" in "no internal vascularity", "无" in "无回声")
    is ignored, unless that phrase overlaps ``target`` (``classify_context`` on the phrase itself).
    """
    if not cues:
        return []
    breaks = clause_breaks(text, start, end, lang, cues)
    scopes: list[Scope] = []
    for cue in cues:
        if cue.category in ("pseudo", "terminate"):
            continue
        if cue.block_start >= 0:
            if target is None or not (cue.block_start < target[1] and target[0] < cue.block_end):
                continue
        if cue.direction in ("forward", "both"):
            stop = next((b for b in breaks if b >= cue.end), end)
            # the scope includes the trigger itself: "no focal" + lesion "focal lesion" overlap
            scopes.append(Scope(cue.category, cue.start, stop))
        if cue.direction in ("backward", "both"):
            begin = start
            for b in breaks:
                if b <= cue.start:
                    begin = b
                else:
                    break
            scopes.append(Scope(cue.category, begin, cue.start))
    return scopes


def covered(scopes: list[Scope], category: str, pos: int, end: int | None = None) -> bool:
    """Whether ``[pos, end)`` (or the character ``pos``) lies in a scope of ``category``."""
    if end is None:
        end = pos + 1
    # a target is governed when its first character is: scopes stop at clause breaks, so a target
    # that starts inside one belongs to that clause
    return any(s.category == category and s.start <= pos < s.end for s in scopes)


def flags(scopes: list[Scope], pos: int, end: int | None = None) -> dict[str, bool | str]:
    """The context record of a target at ``[pos, end)``."""
    if not scopes:
        return {
            "negated": False,
            "uncertain": False,
            "historical": False,
            "hypothetical": False,
            "experiencer": "patient",
        }
    return {
        "negated": covered(scopes, "negated", pos, end),
        "uncertain": covered(scopes, "uncertain", pos, end),
        "historical": covered(scopes, "historical", pos, end),
        "hypothetical": covered(scopes, "hypothetical", pos, end),
        "experiencer": "family" if covered(scopes, "family", pos, end) else "patient",
    }
