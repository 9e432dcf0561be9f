"""Turn the thyroid set (``images/<case>_<n>.jpg`` + ``xml/<case>.xml``, see its README) into a
manifest batch that ``manage.py import_batch`` reads: one study per case, one image per ``<mark>``,
one polygon region per traced outline, the points exactly as traced (the importer repairs what needs
it and says so).

    python scripts/thyroid_manifest.py ../shared/data/thyroid-us-dev /tmp/thyroid-batch

The source is read, never changed; the images are copied next to the manifest. An outline whose
``<svg>`` text is cut short keeps the points written before the cut (a note says so); an empty
``<svg>`` gives an image without regions. Prints what it wrote and every note.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

POINT = re.compile(r'\{\s*"x"\s*:\s*(-?[\d.]+)\s*,\s*"y"\s*:\s*(-?[\d.]+)\s*\}')
DESCRIPTORS = ("composition", "echogenicity", "margins", "calcifications")


def outlines_read(svg: str) -> tuple[list[list[list[float]]], bool]:
    """The outlines of one ``<svg>`` text, and whether the text was cut short (then the outlines
    started before the cut are recovered point by point)."""
    svg = svg.strip()
    if not svg:
        return [], False
    try:
        return [[[point["x"], point["y"]] for point in outline.get("points", [])] for outline in json.loads(svg)], False
    except json.JSONDecodeError:
        chunks = svg.split('"points"')[1:]
        return [[[float(x), float(y)] for x, y in POINT.findall(chunk)] for chunk in chunks], True


def report_text(case: ElementTree.Element) -> str:
    """The case's descriptors and free text as a short English report ('' when it has none)."""
    parts = [f"{name}: {case.findtext(name).strip()}" for name in DESCRIPTORS if (case.findtext(name) or "").strip()]
    sentences = [f"Thyroid nodule, {', '.join(parts)}."] if parts else []
    if (case.findtext("tirads") or "").strip():
        sentences.append(f"TI-RADS {case.findtext('tirads').strip()}.")
    if (case.findtext("reporteco") or "").strip():
        sentences.append(case.findtext("reporteco").strip())
    return " ".join(sentences)


def manifest_build(source: Path, out: Path) -> tuple[dict[str, int], list[str]]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    counts = {"cases": 0, "images": 0, "polygons": 0}
    notes: list[str] = []
    rows = []
    for xml in sorted((source / "xml").glob("*.xml"), key=lambda path: (len(path.stem), path.stem)):
        try:
            case = ElementTree.parse(xml).getroot()
        except ElementTree.ParseError as error:
            notes.append(f"{xml.name}: not readable XML ({error}); skipped")
            continue
        number = (case.findtext("number") or xml.stem).strip()
        images = []
        for mark in case.findall("mark"):
            index = (mark.findtext("image") or "").strip()
            name = f"images/{number}_{index}.jpg"
            if not (source / name).is_file():
                notes.append(f"case {number}: {name} is missing from the source; skipped")
                continue
            outlines, cut = outlines_read(mark.findtext("svg") or "")
            if cut:
                notes.append(f"case {number} image {index}: the outline text is cut short; kept the "
                             f"{sum(len(o) for o in outlines)} points written before the cut")
            shutil.copyfile(source / name, out / name)
            regions = [{"shape": "polygon", "points": points, "label": "nodule", "id": f"{number}-{index}-{k}"}
                       for k, points in enumerate(outlines) if points]
            images.append({"file": name, "regions": regions})
            counts["images"] += 1
            counts["polygons"] += len(regions)
        if not images:
            continue
        row = {"study": f"DDTI-{number}", "patient": f"DDTI-P{number}", "body_part": "thyroid", "images": images}
        text = report_text(case)
        if text:
            row["report"] = {"text": text, "language": "en"}
        rows.append(row)
        counts["cases"] += 1
    with (out / "manifest.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return counts, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the thyroid set's folder (with images/ and xml/)")
    parser.add_argument("out", type=Path, help="the batch folder to write")
    args = parser.parse_args(argv)
    counts, notes = manifest_build(args.source, args.out)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.out / 'manifest.jsonl'}: {counts['cases']} studies, {counts['images']} images, "
          f"{counts['polygons']} polygons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
