"""Benchmark of the report parser against spaCy's tokenizer alone, measured in the same run.

    python benchmarks/nlp.py [--sentences 20000] [--language en|zh|both] [--repeat 3]

The generated English reports include flattened, field-style ones ("FINDINGS: Right lobe: 4.6 x 1.9 x 1.5
cm Left lobe: ..."), and both languages organ measurements.  Prints sentences/s and reports/s of
``alignment.nlp.parse_reports`` (negation and the returned dataclasses included), the tokenizer-only time
on the same texts (the floor no spaCy pipeline can beat), their ratio (target: at most 8x), pipeline
construction time and peak memory (max RSS).
Each timed parse starts with an empty sentence memo, so every distinct sentence is analysed within the
time; the same parse with the memo switched off is printed too.  The real Chinese conclusions of
``shared/data`` are timed as well when present.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EN_SENTENCES = [
    "There is a {a}.{b} x {c}.{d} x {e}.{b} cm {echo} {shape} mass in the {side} breast at {h} o'clock, "
    "{h2} cm from the nipple.",
    "A {a}.{b} cm cyst at {h}:{m} and a {c}.{d} cm solid nodule at {h2} o'clock in the {side} breast.",
    "No suspicious masses or axillary lymphadenopathy in the {side} breast.",
    "{Side} thyroid lobe {pole} pole nodule measuring {a}.{b} x {c}.{d} x {e}.{b} cm, solid, {echo}, "
    "with {margin} margins, TR{tr}.",
    "The nodule demonstrates {vasc} and {foci}.",
    "Hypoechoic mass with {margin} margins without posterior shadowing, suspicious for malignancy, "
    "BI-RADS {br}.",
    "Composition: Solid (2 points). Echogenicity: Hypoechoic (2 points). ACR TI-RADS total points: {pts}.",
    "The previously seen cyst in the {side} kidney is no longer visualized.",
    "Simple cyst in the {pole} pole of the {side} kidney measuring {a}.{b} cm.",
    "If the nodule enlarges on follow-up, fine-needle aspiration should be considered.",
    "IMPRESSION: {Side} breast mass at {h} o'clock, BI-RADS {br}.",
    "The liver is normal in size with a {a}.{b} cm hyperechoic lesion in the right lobe, "
    "likely a hemangioma.",
    # flattened, field-style reports as real systems export them: one line, run-on "Label: value" fields
    "EXAM: US THYROID CLINICAL HISTORY: Nodule. COMPARISON: None. FINDINGS: Right lobe: {a}.{b} x 1.{d} x "
    "1.{b} cm Left lobe: {c}.{d} x 1.{b} x 1.{d} cm Isthmus: 0.{b} cm AP",
    "Nodule {n}: Location: {side} lobe, {pole} pole Size: {a}.{b} x {c}.{d} x {e}.{b} cm Composition: Solid "
    "(2 points) Echogenicity: Hypoechoic (2 points) Shape: Wider-than-tall (0 points) Margin: Smooth "
    "(0 points) Echogenic foci: None (0 points) ACR TI-RADS: TR{tr}",
    "IMPRESSION: {Side} breast mass at {h} o'clock. Recommend short interval follow-up in 6 months "
    "(BI-RADS {br}).",
    "The {side} kidney measures {h}.{b} cm. Liver span 1{d}.{b} cm. The common bile duct measures {h2} mm.",
]
ZH_SENTENCES = [
    "{n}、{zside}乳{quad}象限{h}点钟方向见{zecho}结节，大小约{a}.{b}×{c}.{d}cm，距乳头{h2}cm，{zmargin}。",
    "{n}、双侧腋下未见明显肿大淋巴结。",
    "{n}、{zside}乳低回声结节，BI-RADS {br}类。",
    "{n}、甲状腺{zside}叶{zpole}{zecho}结节，纵横比>1，内见微钙化，TI-RADS {tr}类。",
    "{n}、双侧乳腺组织增生。",
    "CDFI：结节内未见明显血流信号。",
    "甲状腺：右叶大小约{a}.{b}×1.{d}×1.{b}cm，左叶大小约{c}.{d}×1.{b}×1.{d}cm，峡部厚约0.{b}cm。",
    "{n}、{zside}肾大小约1{d}.{b}×{h2}.{b}cm，内膜厚约0.{d}cm。",
]
CHOICES = {
    "echo": ["hypoechoic", "isoechoic", "hyperechoic", "anechoic", "heterogeneous"],
    "shape": ["oval", "round", "irregular"],
    "side": ["left", "right"],
    "Side": ["Left", "Right"],
    "pole": ["upper", "mid", "lower"],
    "margin": ["smooth", "irregular", "spiculated", "indistinct"],
    "vasc": ["increased internal vascularity", "no internal vascularity", "peripheral vascularity"],
    "foci": ["punctate echogenic foci", "no calcifications", "macrocalcifications"],
    "zside": ["左", "右"],
    "quad": ["外上", "内上", "外下", "内下"],
    "zecho": ["低回声", "极低回声", "无回声", "等回声"],
    "zmargin": ["边界清", "边界不清", "形态不规则", "边界尚清"],
    "zpole": ["上极", "中部", "下极"],
}


def generate(n_sentences: int, language: str, per_report: int = 5, seed: int = 7) -> list[str]:
    """``n_sentences`` generated report sentences grouped into reports of ``per_report`` sentences."""
    rnd = random.Random(seed)
    templates = EN_SENTENCES if language == "en" else ZH_SENTENCES
    sentences = []
    for i in range(n_sentences):
        values = {k: rnd.choice(v) for k, v in CHOICES.items()}
        values.update(
            a=rnd.randint(0, 4),
            b=rnd.randint(0, 9),
            c=rnd.randint(0, 3),
            d=rnd.randint(0, 9),
            e=rnd.randint(0, 3),
            h=rnd.randint(1, 12),
            h2=rnd.randint(1, 9),
            m=rnd.choice([0, 30]),
            tr=rnd.randint(1, 5),
            br=rnd.choice(["2", "3", "4A", "4B", "5"]),
            pts=rnd.randint(0, 12),
            n=i % per_report + 1,
        )
        sentences.append(rnd.choice(templates).format(**values).replace(":0 ", ":00 "))
    sep = " " if language == "en" else ""
    return [sep.join(sentences[i : i + per_report]) for i in range(0, len(sentences), per_report)]


def _best(fns: list, repeat: int) -> list[tuple[float, float]]:
    """Best wall-clock and best CPU (process) time of ``repeat`` calls of each function, the functions
    taking turns (a, b, c, a, b, c, ...) so that a slower spell of a shared machine weighs on all of
    them alike; CPU time is steadier when other jobs share the machine."""
    times: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return [(min(t), min(c)) for t, c in zip(times, cpu, strict=True)]


def _memo(nlp):  # noqa: ANN001, ANN202
    return nlp.get_pipe("sonoalign_matches")


def run(language: str, n_sentences: int, repeat: int, texts: list[str] | None = None) -> dict[str, float]:
    from alignment.nlp import parse_reports
    from alignment.nlp.pipeline import get_pipeline, split_sentences

    t = time.perf_counter()
    nlp = get_pipeline(language)
    construction = time.perf_counter() - t
    if texts is None:
        texts = generate(n_sentences, language)
    sentences = [text[a:b] for text in texts for a, b, _, _ in split_sentences(text)]
    parse_reports(texts[:50], language=language)  # warm caches (lexicon tables, vocab strings)
    memo = _memo(nlp)
    max_entries = memo.max_entries

    def tokenize() -> None:
        for _ in nlp.tokenizer.pipe(texts, batch_size=256):
            pass

    def parse() -> None:
        # every timed run starts with an empty sentence memo: each distinct sentence is analysed in it
        memo.clear()
        parse_reports(texts, language=language, lexicon="udaf")

    def parse_unmemoised() -> None:
        memo.clear()
        memo.max_entries = 0
        try:
            parse_reports(texts, language=language, lexicon="udaf")
        finally:
            memo.max_entries = max_entries

    (tok, tok_cpu), (full, full_cpu), (bare, _) = _best([tokenize, parse, parse_unmemoised], repeat)
    return {
        "tokenizer_cpu_s": tok_cpu,
        "parse_cpu_s": full_cpu,
        "cpu_ratio": full_cpu / tok_cpu,
        "construction_s": construction,
        "tokenizer_s": tok,
        "parse_s": full,
        "ratio": full / tok,
        "unmemoised_s": bare,
        "unmemoised_ratio": bare / tok,
        "sentences": len(sentences),
        "distinct": len(set(sentences)),
        "sentences_per_s": len(sentences) / full,
        "reports_per_s": len(texts) / full,
        "reports": len(texts),
    }


def _print(label: str, r: dict[str, float], repeat: int) -> None:
    print(
        f"[{label}] {r['sentences']:.0f} sentences ({r['distinct']:.0f} distinct) in {r['reports']:.0f} reports"
        f" (best of {repeat})"
    )
    print(f"  pipeline construction   {r['construction_s']:.3f} s   (target <= 2 s, after the spaCy import)")
    print(f"  tokenizer only          {r['tokenizer_s']:.3f} s   (CPU {r['tokenizer_cpu_s']:.3f} s)")
    print(f"  parse_reports (full)    {r['parse_s']:.3f} s   ratio {r['ratio']:.1f}x tokenizer (target <= 8x)")
    print(f"  CPU time                {r['parse_cpu_s']:.3f} s   CPU ratio {r['cpu_ratio']:.1f}x")
    print(
        f"  throughput              {r['sentences_per_s']:,.0f} sentences/s, {r['reports_per_s']:,.0f} reports/s"
    )
    print(
        f"  without the sentence memo {r['unmemoised_s']:.3f} s   ratio {r['unmemoised_ratio']:.1f}x"
        "   (every sentence analysed, also repeats)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=20000)
    ap.add_argument("--language", choices=("en", "zh", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--shared",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "zh-breast-conclusions-train.jsonl",
        help="real Chinese conclusions (JSON Lines with 'text'), timed too when the file exists",
    )
    args = ap.parse_args()
    t = time.perf_counter()
    import spacy  # noqa: F401  (import cost reported apart from construction)

    print(f"spaCy import: {time.perf_counter() - t:.2f} s")
    langs = ["en", "zh"] if args.language == "both" else [args.language]
    for lang in langs:
        _print(lang, run(lang, args.sentences, args.repeat), args.repeat)
    if args.shared.exists():
        texts = [json.loads(line)["text"] for line in args.shared.read_text(encoding="utf-8").splitlines() if line]
        _print(f"zh, {args.shared.name}", run("zh", 0, args.repeat, texts), args.repeat)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak memory (max RSS of this process): {peak_kib / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
