"""Precision, recall and F1 per class of the parser's context classifier on general clinical text.

    python benchmarks/context.py [--data tests/alignment/nlp/data/context_clinical.jsonl] [--errors]

Each line of the data file is ``{"id", "group", "sentence", "target"}`` plus the labels that hold
(``negated``, ``uncertain``, ``historical``, ``hypothetical``: true; ``experiencer``: "family"); a
target without labels is affirmed.  The labels were written before the rules were run on the sentences.
For each class a target is a positive when the label holds, and ``alignment.nlp.classify_context``'s
answer is scored against it; ``--errors`` lists every disagreement.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "alignment" / "nlp" / "data" / "context_clinical.jsonl"
CLASSES = ("negated", "uncertain", "historical", "hypothetical", "family")


def load(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _truth(case: dict, cls: str) -> bool:
    return case.get("experiencer") == "family" if cls == "family" else bool(case.get(cls, False))


def _answer(result: dict, cls: str) -> bool:
    return result["experiencer"] == "family" if cls == "family" else bool(result[cls])


def score(cases: list[dict]) -> tuple[dict[str, dict[str, float]], list[tuple[dict, dict]]]:
    """``({class: {"p", "r", "f1", "tp", "fp", "fn", "support"}}, [(case, answer) that disagree])``."""
    from alignment.nlp import classify_context

    counts = {cls: [0, 0, 0] for cls in CLASSES}
    errors = []
    for case in cases:
        result = classify_context(case["sentence"], case["target"])
        wrong = False
        for cls in CLASSES:
            truth, got = _truth(case, cls), _answer(result, cls)
            if truth and got:
                counts[cls][0] += 1
            elif got:
                counts[cls][1] += 1
                wrong = True
            elif truth:
                counts[cls][2] += 1
                wrong = True
        if wrong:
            errors.append((case, result))
    table = {}
    for cls, (tp, fp, fn) in counts.items():
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        table[cls] = {"p": p, "r": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "support": tp + fn}
    return table, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--errors", action="store_true", help="list the targets classified wrongly")
    args = ap.parse_args()
    cases = load(args.data)
    table, errors = score(cases)
    sentences = len({c["sentence"] for c in cases})
    print(f"{len(cases)} targets in {sentences} sentences ({args.data.name})")
    print(f"{'class':<14}{'P':>7}{'R':>7}{'F1':>7}{'support':>9}{'TP':>5}{'FP':>5}{'FN':>5}")
    for cls, row in table.items():
        print(
            f"{cls:<14}{row['p']:>7.3f}{row['r']:>7.3f}{row['f1']:>7.3f}{row['support']:>9}"
            f"{row['tp']:>5}{row['fp']:>5}{row['fn']:>5}"
        )
    affirmed = sum(1 for c in cases if not any(_truth(c, cls) for cls in CLASSES))
    print(f"affirmed targets (no label): {affirmed}")
    if args.errors:
        for case, result in errors:
            got = [cls for cls in CLASSES if _answer(result, cls)] or ["affirmed"]
            want = [cls for cls in CLASSES if _truth(case, cls)] or ["affirmed"]
            print(f"  {case['id']} want {'+'.join(want):<12} got {'+'.join(got):<12} "
                  f"[{case['target']}] {case['sentence']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
