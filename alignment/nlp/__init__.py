"""Ultrasound report parser: sentences, findings and their context, from rules and the lexicons.

Pure Python + spaCy (no Django).  The pipeline is built lazily, once per process and language, and
spaCy itself is imported on the first use of the parser: a process that only imports reports (the
import command) or reads parse results does not pay for it.
"""

from __future__ import annotations

from typing import Any

from .model import Assessment, Attribute, Finding, ParsedReport, Sentence
from .patterns import detect_language

# Bump whenever the parser's output for the same input can change: alignment results are keyed by it.
PIPELINE_VERSION = "1.0.8"

__all__ = [
    "PIPELINE_VERSION",
    "Assessment",
    "Attribute",
    "Finding",
    "ParsedReport",
    "Sentence",
    "classify_context",
    "detect_language",
    "parse_report",
    "parse_reports",
]


def __getattr__(name: str) -> Any:
    """The parser's entry points, imported (with spaCy) on first use."""
    if name in ("classify_context", "parse_report", "parse_reports"):
        from . import parser

        return getattr(parser, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
