"""Alignment quality and speed on seeded synthetic studies (whose ground truth seed_demo records).

    DATABASE_URL=postgres://... .venv/bin/python benchmarks/alignment.py --studies 300
    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://... .venv/bin/python benchmarks/alignment.py \
        --studies 10000 --workers 2

Prints, in one run:
- precision and recall of sentence→region links against the recorded truth (a link counts at the level
  of (study, truth sentence, lesion));
- per disagreement kind, precision (the share of the disagreements found that are about a planted
  one, or about a reading the seeder changed) next to recall (the share of planted ones found):
  report/image kinds from the generator, reader-vs-reader ones from the seeder;
- the same per kind for the studies planted as a whole (an empty reading, a location veto);
- with --language en|zh|each, the same for the studies whose report is in that language;
- the share of in-process alignment time spent parsing, matching and in the database;
- with --workers N (needs PostgreSQL and a broker): studies/s of dataset_align on N worker processes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sonoalign.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from alignment import matching, services  # noqa: E402
from alignment import nlp as nlp_package  # noqa: E402
from alignment.models import Alignment, Disagreement, StudyAlignmentState  # noqa: E402
from annotation.models import Study  # noqa: E402
from demo.services import SeedResult, seed_demo  # noqa: E402


class Timer:
    def __init__(self):
        self.total = defaultdict(float)

    def wrap(self, module, name, bucket):
        original = getattr(module, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.total[bucket] += time.perf_counter() - started

        setattr(module, name, timed)


def overlap(a0, a1, b0, b1) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def quality(dataset, reader_disagreements=(), language: str = "all") -> dict:
    """Links and disagreements against the recorded truth. A planted disagreement is recalled when one
    of its kind is about its lesion (one of the lesion's regions, or a sentence describing it); a
    disagreement found is true when it is about a planted one of its kind, or about a lesion whose
    second reading the seeder changed (reader vs reader, and the report or the assessment against
    that changed reading). ``language`` ("en", "zh") scores only the studies whose report is in it.
    Studies planted as a whole (``truth["scenario"]``) are also counted apart, per kind."""
    truth_links, predicted_links = set(), set()
    planted, recalled = defaultdict(int), defaultdict(int)
    found_by_kind, true_by_kind = defaultdict(int), defaultdict(int)
    false_examples: dict[str, list] = defaultdict(list)
    link_text: dict[tuple, tuple] = {}  # (study, truth sentence, lesion) -> what --show-missed prints
    changed_readings = defaultdict(list)  # (accession, lesion key) -> what the seeder changed in a reading
    for item in reader_disagreements:
        changed_readings[item["study"], item["lesion"]].append(item)
    studies = Study.objects.filter(dataset=dataset).order_by("id")
    scenario_planted: dict[tuple, int] = defaultdict(int)
    scenario_recalled: dict[tuple, int] = defaultdict(int)
    accessions = set()
    for study in studies.iterator(chunk_size=200):
        truth = study.metadata["truth"]
        if language != "all" and truth["language"] != language:
            continue
        accessions.add(study.accession)
        scenario = truth.get("scenario", "")
        drawn = {lesion["key"] for image in truth["images"] for lesion in image["lesions"]}
        for index, sentence in enumerate(truth["sentences"]):
            for key in sentence["lesion_keys"]:
                if key in drawn:
                    truth_links.add((study.pk, index, key))
                    markers = [image["body_marker"] for image in truth["images"]
                               if any(lesion["key"] == key for lesion in image["lesions"])]
                    link_text[study.pk, index, key] = (study.accession, sentence["text"], f"{key} {markers}", "")
        for link in (Alignment.objects.filter(image__study=study, linked=True, region__isnull=False)
                     .select_related("sentence", "region")):
            best = max(range(len(truth["sentences"])), default=None, key=lambda i: overlap(
                truth["sentences"][i]["start"], truth["sentences"][i]["end"], link.sentence.start, link.sentence.end))
            if best is not None:
                predicted_links.add((study.pk, best, link.region.lesion_key))
                link_text.setdefault((study.pk, best, link.region.lesion_key), (
                    study.accession, truth["sentences"][best]["text"], link.region.lesion_key, link.sentence.text))
        found = list(Disagreement.objects.filter(study=study).prefetch_related("regions").select_related("sentence"))

        def about(d, key, truth=truth) -> bool:
            described = [s for s in truth["sentences"] if key in s["lesion_keys"]]
            return any(r.lesion_key == key for r in d.regions.all()) or bool(
                d.sentence and any(overlap(s["start"], s["end"], d.sentence.start, d.sentence.end) for s in described))

        for item in truth["disagreements"]:
            planted[item["kind"]] += 1
            hit = any(d.kind == item["kind"] and about(d, item["lesion_key"]) for d in found)
            recalled[item["kind"]] += hit
            if scenario:
                scenario_planted[scenario, item["kind"]] += 1
                scenario_recalled[scenario, item["kind"]] += hit
        for d in found:
            found_by_kind[d.kind] += 1
            if d.kind == "reader_vs_reader":
                keys = {r.lesion_key for r in d.regions.all()}
                true = any(c["kind"] == ("missed_lesion" if d.attribute == "region" else "attribute")
                           and c.get("attribute", "region") == d.attribute
                           for key in keys for c in changed_readings.get((study.accession, key), ()))
            else:
                true = any(item["kind"] == d.kind and about(d, item["lesion_key"]) for item in truth["disagreements"])
                if not true and d.kind in ("report_vs_annotation", "assessment_inconsistent"):
                    true = any(c["kind"] == "attribute" and (d.kind != "report_vs_annotation"
                                                             or c["attribute"] == d.attribute)
                               and about(d, key)
                               for (accession, key), changes in changed_readings.items() if accession == study.accession
                               for c in changes)
            true_by_kind[d.kind] += true
            if not true and len(false_examples[d.kind]) < 5:
                false_examples[d.kind].append((study.accession, d.attribute, d.values))
    return {"truth_links": truth_links, "predicted_links": predicted_links, "planted": planted,
            "recalled": recalled, "found": found_by_kind, "true": true_by_kind, "false_examples": false_examples,
            "link_text": link_text, "scenario_planted": scenario_planted, "scenario_recalled": scenario_recalled,
            "accessions": accessions}


def reader_changes(dataset) -> list[dict]:
    """What the seeder changed in the second readings, read back from the regions (for ``--reuse``):
    a lesion the second reader left out of an image, or drew with another echogenicity."""
    from annotation.models import Region

    by_image: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for accession, image_id, position, author, key, attributes in (
            Region.objects.filter(image__study__dataset=dataset, source="reader")
            .values_list("image__study__accession", "image_id", "image__position", "author__username", "lesion_key",
                         "attributes").order_by("author__username")):
        by_image[accession, image_id, position].setdefault(key, {})[author] = attributes
    readers = sorted(set(Region.objects.filter(image__study__dataset=dataset, source="reader")
                         .values_list("author__username", flat=True)))
    changes = []
    for (accession, _, position), lesions in by_image.items():
        for key, drawn in lesions.items():
            if len(readers) > 1 and len(drawn) < len(readers):
                changes.append({"kind": "missed_lesion", "study": accession, "image": position, "lesion": key})
            elif len({str(a.get("echogenicity")) for a in drawn.values()}) > 1:
                changes.append({"kind": "attribute", "study": accession, "image": position, "lesion": key,
                                "attribute": "echogenicity"})
    return changes


def reader_recall(dataset, reader_disagreements, accessions=None) -> tuple[int, int]:
    hits = 0
    if accessions is not None:
        reader_disagreements = [item for item in reader_disagreements if item["study"] in accessions]
    for item in reader_disagreements:
        found = Disagreement.objects.filter(dataset=dataset, kind="reader_vs_reader", study__accession=item["study"],
                                            regions__lesion_key=item["lesion"])
        if item["kind"] == "attribute":
            found = found.filter(attribute=item["attribute"])
        hits += found.exists()
    return hits, len(reader_disagreements)


def quality_print(dataset, changed: list[dict], language: str, args) -> None:
    """Print links and per-kind precision and recall for the studies in ``language``."""
    q = quality(dataset, changed, language)
    print(f"-- reports: {language} ({len(q['accessions'])} studies)")
    tp = len(q["truth_links"] & q["predicted_links"])
    precision = tp / len(q["predicted_links"]) if q["predicted_links"] else 0.0
    recall = tp / len(q["truth_links"]) if q["truth_links"] else 0.0
    print(f"sentence→region links: precision {precision:.3f}  recall {recall:.3f}  "
          f"(truth {len(q['truth_links'])}, predicted {len(q['predicted_links'])})")
    if args.show_missed:
        for label, links in (("missed", q["truth_links"] - q["predicted_links"]),
                             ("extra", q["predicted_links"] - q["truth_links"])):
            for link in sorted(links):
                accession, text, key, linked = q["link_text"][link]
                print(f"    {label} link {accession} {key}: {text!r}" + (f" (linked {linked!r})" if linked else ""))
    hits, reader_planted = reader_recall(dataset, changed, q["accessions"])
    q["planted"]["reader_vs_reader"], q["recalled"]["reader_vs_reader"] = reader_planted, hits

    def ratio(part: int, whole: int) -> str:
        return f"{part / whole:.3f} ({part}/{whole})" if whole else "  —  (0/0)"

    print(f"  {'disagreements':<26} {'precision':<18} recall")
    for kind in sorted(set(q["planted"]) | set(q["found"])):
        print(f"  {kind:<26} {ratio(q['true'][kind], q['found'][kind]):<18} "
              f"{ratio(q['recalled'][kind], q['planted'][kind])}")
    for (scenario, kind), count in sorted(q["scenario_planted"].items()):
        print(f"  recall in {scenario} studies, {kind}: {ratio(q['scenario_recalled'][scenario, kind], count)}")
    if args.show_false:
        for kind, examples in sorted(q["false_examples"].items()):
            for example in examples:
                print(f"    false {kind}: {example}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--workers", type=int, default=0, help="also time dataset_align on N worker processes")
    parser.add_argument("--reuse", action="store_true", help="reuse the seeded dataset of an earlier run")
    parser.add_argument("--show-false", action="store_true", help="print a few disagreements no truth explains")
    parser.add_argument("--language", choices=("all", "en", "zh", "each"), default="all",
                        help="score the studies whose report is in one language ('each': all, English, Chinese)")
    parser.add_argument("--show-missed", action="store_true",
                        help="print the links missed and the links no truth holds, with their sentences")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    name = f"bench-align-{args.seed}-{args.studies}"
    from annotation.models import Dataset

    existing = Dataset.objects.filter(name=name).first()
    if args.reuse and existing is not None:
        result = SeedResult(dataset=existing)
        # Align every study afresh (the stored input hashes would otherwise skip them all).
        StudyAlignmentState.objects.filter(study__dataset=existing).update(input_hash="")
        print(f"reusing {existing.studies.count()} seeded studies of '{name}'")
    else:
        Dataset.objects.filter(name=name).delete()
        started = time.perf_counter()
        result = seed_demo(studies=args.studies, seed=args.seed, dataset_name=name, readings=1.0,
                           image_pool=200 if args.studies > 1000 else None)
        print(f"seeded {result.studies} studies, {result.images} images, {result.regions} regions "
              f"in {time.perf_counter() - started:.1f} s")

    timer = Timer()
    timer.wrap(services, "parse_report", "parse")
    for name_ in ("match_source", "attribute_conflicts", "size_conflict", "assessment_conflict", "reader_conflicts",
                  "pair_score"):
        timer.wrap(matching, name_, "match")
    ids = list(Study.objects.filter(dataset=result.dataset).values_list("id", flat=True))
    sample = ids if args.workers == 0 else ids[: min(len(ids), 500)]
    started = time.perf_counter()
    for study_id in sample:
        services.study_align(study_id=study_id)
    total = time.perf_counter() - started
    parse, match = timer.total["parse"], timer.total["match"]
    print(f"in-process: {len(sample)} studies in {total:.2f} s ({len(sample) / total:.1f} studies/s); "
          f"parsing {parse / total:.0%}, matching {match / total:.0%}, database and the rest "
          f"{(total - parse - match) / total:.0%}  (pipeline {nlp_package.PIPELINE_VERSION})")

    if args.workers == 0:
        changed = result.reader_disagreements or reader_changes(result.dataset)
        for language in (("all", "en", "zh") if args.language == "each" else (args.language,)):
            quality_print(result.dataset, changed, language, args)
        return

    StudyAlignmentState.objects.filter(study__dataset=result.dataset).delete()
    Disagreement.objects.filter(dataset=result.dataset).delete()
    env = {**os.environ, "CELERY_QUEUE": "bench-align"}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "sonoalign", "worker", "-Q", "bench-align",
                               "-c", str(args.workers), "-l", "WARNING", "--without-gossip", "--without-mingle"],
                              cwd=ROOT, env=env)
    try:
        from sonoalign.celery import app

        app.conf.task_default_queue = "bench-align"
        time.sleep(5)
        from alignment import tasks

        run = services.dataset_align_start(dataset=result.dataset)
        started = time.perf_counter()
        tasks.dataset_align.delay(result.dataset.pk, run.pk, 50)
        while services.alignment_run_refresh(run_id=run.pk).status == "running":
            time.sleep(1)
        elapsed = time.perf_counter() - started
        print(f"dataset_align on {args.workers} worker processes: {run.total} studies in {elapsed:.1f} s "
              f"= {run.total / elapsed:.1f} studies/s")
    finally:
        worker.terminate()
        worker.wait(30)


if __name__ == "__main__":
    main()
