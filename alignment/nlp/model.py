"""Result dataclasses of the report parser.

They are plain, JSON-serialisable records: ``to_dict()`` gives exactly the shape written by the CLI
(``python -m alignment.nlp parse``) and stored by the alignment jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Attribute:
    """One lexicon value found in the text, with its context.

    ``name``/``value`` are lexicon codes (attribute code, value code) of ``lexicon`` (a file stem:
    ``udaf``, ``birads-us`` or ``tirads``); ``start``/``end`` are character offsets into the report.
    """

    name: str
    value: str
    lexicon: str
    negated: bool
    uncertain: bool
    start: int
    end: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "lexicon": self.lexicon,
            "negated": self.negated,
            "uncertain": self.uncertain,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


@dataclass(slots=True)
class Assessment:
    """An assessment category as written: BI-RADS ``0``..``6``/``4A``..``4C``, ACR ``TR1``..``TR5``,
    Kwak TI-RADS ``2``..``5``/``4A``..``4C``; ``points`` is the TI-RADS total when the report states one."""

    system: str
    category: str | None
    points: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"system": self.system, "category": self.category, "points": self.points}


@dataclass(slots=True)
class Finding:
    """One lesion (or organ-level observation) described in a sentence.

    ``lesion`` is the kind; ``organ_measurement`` is an organ measured rather than a lesion ("Right lobe:
    4.9 x 1.6 x 1.8 cm", "内膜厚约0.8cm"), with ``measurement`` saying what was measured (``size``,
    ``length``, ``diameter``, ``thickness``, ``volume``) and ``volume_ml`` where a volume is given.
    """

    organ: str | None = None
    laterality: str | None = None
    site: list[str] = field(default_factory=list)
    clock: str | None = None
    quadrant: str | None = None
    distance_from_nipple_cm: float | None = None
    size_mm: list[float] | None = None
    lesion: str | None = None
    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    hypothetical: bool = False
    experiencer: str = "patient"
    attributes: list[Attribute] = field(default_factory=list)
    assessment: Assessment | None = None
    start: int = 0
    end: int = 0
    measurement: str | None = None
    volume_ml: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "organ": self.organ,
            "laterality": self.laterality,
            "site": list(self.site),
            "clock": self.clock,
            "quadrant": self.quadrant,
            "distance_from_nipple_cm": self.distance_from_nipple_cm,
            "size_mm": list(self.size_mm) if self.size_mm is not None else None,
            "lesion": self.lesion,
            "negated": self.negated,
            "uncertain": self.uncertain,
            "historical": self.historical,
            "hypothetical": self.hypothetical,
            "experiencer": self.experiencer,
            "attributes": [a.to_dict() for a in self.attributes],
            "assessment": self.assessment.to_dict() if self.assessment is not None else None,
            "start": self.start,
            "end": self.end,
            "measurement": self.measurement,
            "volume_ml": self.volume_ml,
        }


@dataclass(slots=True)
class Sentence:
    """A sentence (or list item / header field) with character offsets into the report."""

    index: int
    start: int
    end: int
    text: str
    section: str | None
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "section": self.section,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(slots=True)
class ParsedReport:
    """A parsed report: its language (``en``/``zh``) and its sentences in text order."""

    language: str
    sentences: list[Sentence] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        """All findings of the report in text order."""
        return [f for s in self.sentences for f in s.findings]

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "sentences": [s.to_dict() for s in self.sentences]}
