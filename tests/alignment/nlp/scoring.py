"""Per-field precision/recall/F1 of the report parser against hand-written gold findings and against the
labelled Chinese breast conclusions (shared data).  Used by ``test_gold.py`` and runnable alone:
``python tests/alignment/nlp/scoring.py`` prints the tables."""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alignment.nlp import parse_reports  # noqa: E402
from alignment.nlp import patterns as P  # noqa: E402
from alignment.nlp.lexicons import load_tables  # noqa: E402
from alignment.nlp.pipeline import clock_from  # noqa: E402
from alignment.nlp.vocabulary import NON_LESION_KINDS  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "zh-breast-conclusions-train.jsonl"
STRUCTURAL = {"diagnosis", "organ_level", "body_system_level"}
SCALARS = {
    "organ": "organ",
    "laterality": "lat",
    "clock": "clock",
    "quadrant": "quad",
    "distance_from_nipple_cm": "dist",
    "size_mm": "size",
    "lesion": "lesion",
    "category": "cat",
    "points": "pts",
}
FIELDS = [*SCALARS, "site", "negated", "uncertain", "attributes"]


class Counts:
    """True/false positives and false negatives per field."""

    def __init__(self) -> None:
        self.c: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])

    def add(self, field: str, tp: int = 0, fp: int = 0, fn: int = 0) -> None:
        row = self.c[field]
        row[0] += tp
        row[1] += fp
        row[2] += fn

    def prf(self, field: str) -> tuple[float, float, float, int]:
        tp, fp, fn = self.c[field]
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return p, r, f, tp + fn

    def table(self, title: str) -> str:
        lines = [title, f"{'field':<26}{'P':>7}{'R':>7}{'F1':>7}{'gold':>7}{'TP':>6}{'FP':>6}{'FN':>6}"]
        for field in self.c:
            p, r, f, n = self.prf(field)
            tp, fp, fn = self.c[field]
            lines.append(f"{field:<26}{p:7.3f}{r:7.3f}{f:7.3f}{n:7d}{tp:6d}{fp:6d}{fn:6d}")
        return "\n".join(lines)


def _pred_view(f: Any) -> dict[str, Any]:
    d = f.to_dict()
    view: dict[str, Any] = {
        k: d[k] for k in ("organ", "laterality", "clock", "quadrant", "distance_from_nipple_cm", "lesion")
    }
    view["size_mm"] = [round(x, 2) for x in d["size_mm"]] if d["size_mm"] else None
    view["category"] = d["assessment"]["category"] if d["assessment"] else None
    view["points"] = d["assessment"]["points"] if d["assessment"] else None
    view["site"] = set(d["site"])
    view["negated"] = d["negated"]
    view["uncertain"] = d["uncertain"]
    view["attributes"] = {
        (a["name"], a["value"], a["negated"]) for a in d["attributes"] if a["name"] not in STRUCTURAL
    }
    return view


def _gold_view(g: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {name: g.get(key) for name, key in SCALARS.items()}
    if view["size_mm"] is not None:
        view["size_mm"] = [round(float(x), 2) for x in view["size_mm"]]
    if view["distance_from_nipple_cm"] is not None:
        view["distance_from_nipple_cm"] = float(view["distance_from_nipple_cm"])
    view["site"] = set(g.get("site", []))
    view["negated"] = bool(g.get("neg", False))
    view["uncertain"] = bool(g.get("unc", False))
    view["attributes"] = {(a[0], a[1], len(a) > 2 and a[2] == "neg") for a in g.get("attrs", [])}
    return view


def _agree(g: dict[str, Any], p: dict[str, Any]) -> int:
    return sum(1 for k in SCALARS if g[k] is not None and g[k] == p[k]) + 2 * (g["lesion"] == p["lesion"])


def _score_pair(counts: Counts, g: dict[str, Any] | None, p: dict[str, Any] | None) -> None:
    for k in SCALARS:
        gv = g[k] if g else None
        pv = p[k] if p else None
        counts.add(
            k,
            tp=int(gv is not None and gv == pv),
            fp=int(pv is not None and pv != gv),
            fn=int(gv is not None and gv != pv),
        )
    for k in ("negated", "uncertain"):
        gv = bool(g and g[k])
        pv = bool(p and p[k])
        counts.add(k, tp=int(gv and pv), fp=int(pv and not gv), fn=int(gv and not pv))
    for k in ("site", "attributes"):
        gs = g[k] if g else set()
        ps = p[k] if p else set()
        counts.add(k, tp=len(gs & ps), fp=len(ps - gs), fn=len(gs - ps))


def score_gold(path: Path, errors: list[str] | None = None) -> Counts:
    """Score ``parse_reports`` on a gold JSONL file (see ``gold_en.jsonl`` for the format)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    counts = Counts()
    by_lexicon: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_lexicon[row.get("lexicon", "udaf")].append(row)
    for lexicon, group in by_lexicon.items():
        reports = parse_reports([r["text"] for r in group], lexicon=lexicon)
        for row, report in zip(group, reports, strict=True):
            preds = [_pred_view(f) for f in report.findings]
            golds = [_gold_view(g) for g in row["findings"]]
            used: set[int] = set()
            for g in golds:
                best, best_score = None, -1
                for i, p in enumerate(preds):
                    if i in used:
                        continue
                    s = _agree(g, p)
                    if s > best_score:
                        best, best_score = i, s
                if best is not None:
                    used.add(best)
                    _score_pair(counts, g, preds[best])
                    if errors is not None and _differs(g, preds[best]):
                        errors.append(
                            f"{row['id']}: {row['text']}\n   gold {_show(g)}\n   pred {_show(preds[best])}"
                        )
                else:
                    _score_pair(counts, g, None)
                    if errors is not None:
                        errors.append(f"{row['id']}: {row['text']}\n   missed {_show(g)}")
            for i, p in enumerate(preds):
                if i not in used:
                    _score_pair(counts, None, p)
                    if errors is not None:
                        errors.append(f"{row['id']}: {row['text']}\n   extra {_show(p)}")
    return counts


def _differs(g: dict[str, Any], p: dict[str, Any]) -> bool:
    return any(g[k] != p[k] for k in FIELDS)


def _show(v: dict[str, Any]) -> str:
    return str({k: x for k, x in v.items() if x not in (None, False, set())})


# ---------------------------------------------------------------- shared Chinese conclusions
_LAT = {"左": "left", "右": "right", "双": "bilateral", "双乳": "bilateral"}
_CLOCK_ZH = re.compile(r"(\d{1,2})(?:\s*[-~]\s*(\d{1,2}))?点")


def _echo_code(value: str, table: dict[str, Any]) -> str | None:
    best = None
    for phrase, refs in table.items():
        if phrase in value and (best is None or len(phrase) > len(best[0])):
            ref = next((r for r in refs if r.lexicon == "birads-us" and r.attribute == "echo_pattern"), None)
            if ref is not None:
                best = (phrase, ref.value)
    return best[1] if best else None


def shared_gold(record: dict[str, Any]) -> dict[str, set[Any]]:
    """Per-document sets of the labelled values, normalised to the parser's codes."""
    tables = load_tables()
    out: dict[str, set[Any]] = defaultdict(set)
    for spo in record["spo_list"]:
        pred, value = spo["predicate"], spo["object"]["@value"]
        if pred == "病灶_侧别" and value in _LAT:
            out["laterality"].add(_LAT[value])
        elif pred == "病灶_钟面":
            m = _CLOCK_ZH.search(value)
            if m:
                out["clock"].add(clock_from(m.group(1), None, m.group(2), None))
        elif pred == "病灶_象限":
            m = P.QUADRANT.search(P.lowered(value))
            if m:
                out["quadrant"].add(P.quadrant_code(m))
        elif pred == "病灶_回声强度":
            code = _echo_code(value, tables.attributes["zh"])
            if code:
                out["echogenicity"].add(code)
        elif pred.endswith("评估分类"):
            m = P.BIRADS.search(P.lowered(value if "RADS" in value.upper() else "BI-RADS" + value))
            if m:
                cat, sub, cat2, sub2 = m.groups()
                if cat2:
                    cat, sub = cat2, sub2
                number = cat if cat.isdigit() else str(P.ROMAN_VALUES[cat.upper()])
                out["birads"].add(number + (sub.upper() if sub and number == "4" else ""))
        elif pred.endswith("淋巴结表现"):
            out["lymph_node_negated"].add(value.startswith(("未见", "无", "未探及")))
    return out


def shared_pred(report: Any, report_text: str = "") -> dict[str, set[Any]]:
    """The same sets from a parsed report."""
    out: dict[str, set[Any]] = defaultdict(set)
    text = report_text
    for f in report.findings:
        if f.assessment is not None and f.assessment.system == "BI-RADS" and f.assessment.category:
            out["birads"].add(f.assessment.category)
        if f.lesion == "lymph_node":
            # the schema labels axillary, supra-/infraclavicular and internal mammary nodes only
            where = text[max(0, f.start - 12) : f.end]
            if f.organ == "Axilla" or any(w in where for w in ("锁骨", "内乳")):
                out["lymph_node_negated"].add(f.negated)
            continue
        # the schema labels breast lesions (病灶) only, and not the ones already removed (术后)
        if f.negated or f.historical or f.lesion in NON_LESION_KINDS or f.organ not in ("Breast", None):
            continue
        if f.laterality:
            out["laterality"].add(f.laterality)
        if f.clock:
            out["clock"].add(f.clock)
        if f.quadrant:
            out["quadrant"].add(f.quadrant)
        for a in f.attributes:
            if a.name == "echo_pattern" and not a.negated:
                out["echogenicity"].add(a.value)
    return out


SHARED_FIELDS = ("laterality", "clock", "quadrant", "echogenicity", "birads", "lymph_node_negated")


def score_shared(path: Path = SHARED, errors: list[str] | None = None) -> Counts:
    """Score the Chinese conclusions (set per document and field, micro-averaged)."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    reports = parse_reports([r["text"] for r in records], language="zh", lexicon="birads-us")
    counts = Counts()
    for record, report in zip(records, reports, strict=True):
        gold, pred = shared_gold(record), shared_pred(report, record["text"])
        for field in SHARED_FIELDS:
            g, p = gold.get(field, set()), pred.get(field, set())
            counts.add(field, tp=len(g & p), fp=len(p - g), fn=len(g - p))
            if errors is not None and g != p:
                errors.append(
                    f"{field}: gold {sorted(map(str, g))} pred {sorted(map(str, p))} | {record['text']}"
                )
    return counts


def full_report(show_errors: bool = False) -> tuple[str, dict[str, Counts]]:
    """Score everything; return the printable report and the counts per data set."""
    results: dict[str, Counts] = {}
    parts = []
    for name, path in (("EN gold", HERE / "gold_en.jsonl"), ("ZH gold", HERE / "gold_zh.jsonl")):
        errs: list[str] = []
        results[name] = score_gold(path, errs)
        parts.append(results[name].table(f"== {name} ({path.name})"))
        if show_errors:
            parts.append("\n".join(errs))
    if SHARED.exists():
        errs = []
        results["ZH shared"] = score_shared(SHARED, errs)
        parts.append(results["ZH shared"].table(f"== ZH shared conclusions ({SHARED.name})"))
        if show_errors:
            parts.append("\n".join(errs))
    return "\n\n".join(parts), results


if __name__ == "__main__":
    text, _ = full_report(show_errors="-v" in sys.argv)
    print(text)
