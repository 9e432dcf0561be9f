"""Alignment quality and speed on seeded synthetic studies (whose ground truth seed_demo records).

    DATABASE_URL=postgres://... .venv/bin/python benchmarks/alignment.py --studies 300
    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://... .venv/bin/python benchmarks/alignment.py \
        --studies 10000 --workers 2

Prints, in one run:
- precision and recall of sentence→region links against the recorded truth (a link counts at the level
  of (study, truth sentence, lesion));
- recall of every planted disagreement kind (report/image ones from the generator, reader-vs-reader
  ones from the seeder);
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


def quality(dataset) -> dict:
    truth_links, predicted_links = set(), set()
    planted, recalled = defaultdict(int), defaultdict(int)
    studies = Study.objects.filter(dataset=dataset).order_by("id")
    for study in studies.iterator(chunk_size=200):
        truth = study.metadata["truth"]
        drawn = {lesion["key"] for image in truth["images"] for lesion in image["lesions"]}
        for index, sentence in enumerate(truth["sentences"]):
            for key in sentence["lesion_keys"]:
                if key in drawn:
                    truth_links.add((study.pk, index, key))
        for link in (Alignment.objects.filter(image__study=study, linked=True, region__isnull=False)
                     .select_related("sentence", "region")):
            best = max(range(len(truth["sentences"])), default=None, key=lambda i: overlap(
                truth["sentences"][i]["start"], truth["sentences"][i]["end"], link.sentence.start, link.sentence.end))
            if best is not None:
                predicted_links.add((study.pk, best, link.region.lesion_key))
        found = list(Disagreement.objects.filter(study=study).prefetch_related("regions").select_related("sentence"))
        for item in truth["disagreements"]:
            planted[item["kind"]] += 1
            key = item["lesion_key"]
            sentences_of_key = [s for s in truth["sentences"] if key in s["lesion_keys"]]
            for d in found:
                if d.kind != item["kind"]:
                    continue
                if any(r.lesion_key == key for r in d.regions.all()) or (
                        d.sentence and any(overlap(s["start"], s["end"], d.sentence.start, d.sentence.end)
                                           for s in sentences_of_key)):
                    recalled[item["kind"]] += 1
                    break
    return {"truth_links": truth_links, "predicted_links": predicted_links, "planted": planted,
            "recalled": recalled}


def reader_recall(dataset, reader_disagreements) -> tuple[int, int]:
    hits = 0
    for item in reader_disagreements:
        found = Disagreement.objects.filter(dataset=dataset, kind="reader_vs_reader", study__accession=item["study"],
                                            regions__lesion_key=item["lesion"])
        if item["kind"] == "attribute":
            found = found.filter(attribute=item["attribute"])
        hits += found.exists()
    return hits, len(reader_disagreements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--workers", type=int, default=0, help="also time dataset_align on N worker processes")
    parser.add_argument("--reuse", action="store_true", help="reuse the seeded dataset of an earlier run")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    name = f"bench-align-{args.seed}-{args.studies}"
    from annotation.models import Dataset

    existing = Dataset.objects.filter(name=name).first()
    if args.reuse and existing is not None:
        result = SeedResult(dataset=existing)
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
        q = quality(result.dataset)
        tp = len(q["truth_links"] & q["predicted_links"])
        precision = tp / len(q["predicted_links"]) if q["predicted_links"] else 0.0
        recall = tp / len(q["truth_links"]) if q["truth_links"] else 0.0
        print(f"sentence→region links: precision {precision:.3f}  recall {recall:.3f}  "
              f"(truth {len(q['truth_links'])}, predicted {len(q['predicted_links'])})")
        for kind in sorted(q["planted"]):
            print(f"  recall {kind:<26} {q['recalled'][kind] / q['planted'][kind]:.3f}  "
                  f"({q['recalled'][kind]}/{q['planted'][kind]})")
        hits, planted = reader_recall(result.dataset, result.reader_disagreements)
        if planted:
            print(f"  recall {'reader_vs_reader':<26} {hits / planted:.3f}  ({hits}/{planted})")
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
