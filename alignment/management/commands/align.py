"""``python manage.py align --dataset NAME [--wait] [--json]``: align a dataset and report its conflicts."""

import json
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from alignment import services, tasks
from alignment.models import AlignmentRun, Disagreement
from annotation.models import Dataset


class Command(BaseCommand):
    help = "Parse and align every study of a dataset; print open disagreements per kind."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--wait", action="store_true", help="wait for the workers to finish, with a progress bar")
        parser.add_argument("--json", action="store_true", help="then print one JSON line per open disagreement")
        parser.add_argument("--chunk-size", type=int, default=50)
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most")

    def handle(self, *args, dataset, wait, json: bool, chunk_size, timeout, **options):
        target = Dataset.objects.filter(name=dataset).first()
        if target is None:
            raise CommandError(f"no dataset named '{dataset}'")
        run = services.dataset_align_start(dataset=target)
        tasks.dataset_align.delay(target.pk, run.pk, chunk_size)
        if wait or json:
            run = self._wait(run, timeout, show=options["verbosity"] >= 1)
        counts = services.disagreement_counts(dataset=target)
        self.stderr.write(f"run {run.pk}: {run.status}, {run.done}/{run.total} studies, {run.failed} failed")
        for kind, n in counts.items():
            self.stderr.write(f"  {kind:<26} {n}")
        if json:
            self._json_lines(target)

    def _wait(self, run, timeout, *, show):
        deadline = time.monotonic() + timeout
        with tqdm(total=run.total, unit="study", disable=not show, file=self.stderr) as bar:
            while True:
                run = services.alignment_run_refresh(run_id=run.pk)
                bar.n = run.done + run.failed
                bar.refresh()
                if run.status != AlignmentRun.Status.RUNNING:
                    return run
                if time.monotonic() > deadline:
                    raise CommandError(f"run {run.pk} not finished after {timeout:.0f} s ({run.done}/{run.total})")
                time.sleep(0.5)

    def _json_lines(self, dataset):
        open_items = (Disagreement.objects.filter(dataset=dataset, status=Disagreement.Status.OPEN)
                      .select_related("study", "image", "sentence").prefetch_related("regions").order_by("id"))
        for item in open_items.iterator(chunk_size=500):
            sentence = item.sentence
            self.stdout.write(json.dumps({
                "kind": item.kind, "study": item.study.accession,
                "image": item.image.original_name or item.image_id if item.image else None,
                "regions": [r.source_id or r.pk for r in item.regions.all()],
                "sentence": {"start": sentence.start, "end": sentence.end, "text": sentence.text} if sentence else None,
                "attribute": item.attribute or None, "values": item.values,
            }, ensure_ascii=False))
