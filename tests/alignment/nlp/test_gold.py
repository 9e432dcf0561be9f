"""Precision/recall/F1 per field on the hand-written gold sets and on the labelled Chinese conclusions.

The table is printed (``pytest -s``) and written to ``artifacts/nlp-report.txt``.  The floors are set a
little under the measured figures so that a regression fails while the figures stay the real ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scoring  # noqa: E402

from alignment.nlp import classify_context  # noqa: E402

FLOOR_GOLD = 0.97
FLOOR_SHARED = 0.92


@pytest.fixture(scope="module")
def report() -> dict[str, scoring.Counts]:
    text, results = scoring.full_report(show_errors=True)
    out = scoring.ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    (out / "nlp-report.txt").write_text(text + "\n", encoding="utf-8")
    print("\n" + text.split("\n\n== ZH shared")[0][:4000])
    return results


@pytest.mark.parametrize("name", ["EN gold", "ZH gold"])
def test_gold_set_f1_per_field_at_least_floor(report: dict[str, scoring.Counts], name: str) -> None:
    counts = report[name]
    low = {
        f: round(counts.prf(f)[2], 3) for f in counts.c if counts.prf(f)[3] and counts.prf(f)[2] < FLOOR_GOLD
    }
    assert not low, f"{name}: fields under {FLOOR_GOLD}: {low}"


def test_gold_sets_are_large_enough() -> None:
    for name in ("gold_en.jsonl", "gold_zh.jsonl"):
        rows = (scoring.HERE / name).read_text(encoding="utf-8").splitlines()
        assert len(rows) >= 150, name


@pytest.mark.skipif(not scoring.SHARED.exists(), reason="shared Chinese conclusions not present")
def test_shared_chinese_conclusions_f1_per_field_at_least_floor(report: dict[str, scoring.Counts]) -> None:
    counts = report["ZH shared"]
    print("\n" + counts.table("== ZH shared conclusions"))
    low = {f: round(counts.prf(f)[2], 3) for f in scoring.SHARED_FIELDS if counts.prf(f)[2] < FLOOR_SHARED}
    assert not low, f"shared data: fields under {FLOOR_SHARED}: {low}"


def _context_cases() -> list[dict[str, object]]:
    path = scoring.HERE / "context_gold.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("case", _context_cases(), ids=lambda c: str(c["id"]))
def test_classify_context_matches_gold(case: dict[str, object]) -> None:
    expected = {
        "negated": case.get("negated", False),
        "uncertain": case.get("uncertain", False),
        "historical": case.get("historical", False),
        "hypothetical": case.get("hypothetical", False),
        "experiencer": case.get("experiencer", "patient"),
    }
    assert classify_context(str(case["sentence"]), str(case["target"])) == expected
