"""Ultrasound report parser: sentences, findings and their context, from rules and the lexicons.

Pure Python + spaCy (no Django).  The pipeline is built lazily, once per process and language.
"""

from __future__ import annotations

from .model import Assessment, Attribute, Finding, ParsedReport, Sentence
from .parser import classify_context, detect_language, parse_report, parse_reports

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
