"""Check that the report parser's output has not changed: digests of ``to_dict()`` per input set and lexicon.

    python benchmarks/nlp_equivalence.py            # compare with benchmarks/nlp_equivalence.json
    python benchmarks/nlp_equivalence.py --write    # record the current output as the reference
    python benchmarks/nlp_equivalence.py --dump DIR # also write every output as JSON Lines, for diffing

Inputs: both gold sets, the shared Chinese conclusions (when ``/work/shared/data`` has them; reported as
skipped otherwise), 3,000 generated English and 3,000 generated Chinese reports from ``benchmarks/nlp.py``
and a mixed-language batch through ``language="auto"``; each under all three lexicons.  Performance work
on the parser must leave every digest unchanged (or bump ``PIPELINE_VERSION``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFERENCE = ROOT / "benchmarks" / "nlp_equivalence.json"
SHARED = Path("/work/shared/data/zh-breast-conclusions-train.jsonl")
LEXICONS = ("udaf", "birads-us", "tirads")


def _jsonl_texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def input_sets(generated: bool = True) -> dict[str, tuple[str, list[str]]]:
    """The inputs by name, as ``(language argument, texts)``; ``generated=False`` leaves out the generated
    reports (the quick subset the test suite checks)."""
    import importlib.util

    # benchmarks/ is no package and holds an alignment.py of its own: load nlp.py by path
    spec = importlib.util.spec_from_file_location("nlp_benchmark", ROOT / "benchmarks" / "nlp.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    generate = bench.generate

    gold = ROOT / "tests" / "alignment" / "nlp"
    sets: dict[str, tuple[str, list[str]]] = {
        "gold_en": ("auto", _jsonl_texts(gold / "gold_en.jsonl")),
        "gold_zh": ("auto", _jsonl_texts(gold / "gold_zh.jsonl")),
    }
    if generated:
        sets["generated_en"] = ("en", generate(15000, "en", seed=11))
        sets["generated_zh"] = ("zh", generate(15000, "zh", seed=12))
        en, zh = generate(500, "en", seed=13), generate(500, "zh", seed=14)
        sets["generated_mixed_auto"] = ("auto", [t for pair in zip(en, zh, strict=True) for t in pair])
    if SHARED.exists():
        sets["shared_zh_conclusions"] = ("auto", _jsonl_texts(SHARED))
    return sets


def outputs(generated: bool = True) -> dict[str, tuple[list[str], list[str]]]:
    """``{"<input set>/<lexicon>": (texts, to_dict() JSON of each)}``."""
    from alignment.nlp import parse_reports

    out: dict[str, tuple[list[str], list[str]]] = {}
    for name, (language, texts) in input_sets(generated).items():
        for lexicon in LEXICONS:
            reports = parse_reports(texts, language=language, lexicon=lexicon)
            out[f"{name}/{lexicon}"] = (texts, [json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=True)
                                                for r in reports])
    return out


def report_digests(lines: list[str]) -> str:
    """One short digest per report, space-separated: enough to name the reports whose output changed."""
    return " ".join(hashlib.sha256(line.encode("utf-8")).hexdigest()[:8] for line in lines)


def digests(dump: Path | None = None, generated: bool = True,
            found: dict[str, tuple[list[str], list[str]]] | None = None) -> dict[str, str]:
    """``{"<input set>/<lexicon>": "<number of texts>:<sha256 of the to_dict() JSON Lines>"}``."""
    out: dict[str, str] = {}
    for key, (texts, lines) in (found if found is not None else outputs(generated)).items():
        blob = "\n".join(lines).encode("utf-8")
        out[key] = f"{len(texts)}:{hashlib.sha256(blob).hexdigest()}"
        if dump is not None:
            dump.mkdir(parents=True, exist_ok=True)
            (dump / f"{key.replace('/', '.')}.jsonl").write_bytes(blob + b"\n")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the current output as the reference")
    ap.add_argument("--dump", type=Path, help="also write every output to this folder")
    args = ap.parse_args()
    from alignment.nlp import PIPELINE_VERSION

    found = outputs()
    current = digests(args.dump, found=found)
    if args.write:
        # per report only for the quick sets the test suite checks, so that it can name what changed
        quick = [key for key in found if not key.startswith("generated")]
        record = {"pipeline_version": PIPELINE_VERSION, "digests": current,
                  "reports": {key: report_digests(found[key][1]) for key in sorted(quick)}}
        REFERENCE.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {len(current)} digests to {REFERENCE.relative_to(ROOT)}")
        return 0
    record = json.loads(REFERENCE.read_text(encoding="utf-8"))
    if record["pipeline_version"] != PIPELINE_VERSION:
        print(f"reference recorded for PIPELINE_VERSION {record['pipeline_version']}, now {PIPELINE_VERSION}")
    bad = 0
    for key, want in sorted(record["digests"].items()):
        got = current.get(key)
        if got is None:
            print(f"skipped  {key} (input not available here)")
        elif got != want:
            print(f"CHANGED  {key}")
            bad += 1
        else:
            print(f"same     {key}")
    print("identical output" if not bad else f"{bad} digest(s) changed")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
