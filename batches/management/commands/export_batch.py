"""``manage.py export_batch --dataset NAME --format F --out PATH``: a door onto ``exporting.export_run``."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset
from batches.exporting import FORMATS, STATUSES, ExportError, ExportOptions, ExportProgress, export_run, split_parse


class Command(BaseCommand):
    help = ("Export a dataset (COCO, US-365K records, grounded JSONL, CSV or label masks) with a manifest.json. "
            "PATH ending in .zip gives an archive, else a folder; it appears only when complete.")

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--out", required=True, help="folder or .zip to write")
        parser.add_argument("--status", choices=STATUSES, default="adjudicated",
                            help="adjudicated: consensus regions of adjudicated images; submitted: readers' "
                                 "submitted regions plus imports; all: every live region")
        parser.add_argument("--split", help="train,val[,test] fractions by patient, e.g. 0.8,0.1,0.1")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--include-images", action="store_true", help="copy the image files in")
        parser.add_argument("--keep-names", action="store_true",
                            help="name image files after their source files instead of accession and position "
                                 "(source names can identify a patient)")

    def handle(self, *args, **options):
        dataset = Dataset.objects.select_related("lexicon").filter(name=options["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {options['dataset']!r}")
        try:
            split = split_parse(options["split"]) if options["split"] else None
            interactive = sys.stderr.isatty()

            def progress(state: ExportProgress) -> None:
                if interactive and state.total:
                    sys.stderr.write(f"\r{state.done}/{state.total} images")

            manifest = export_run(dataset=dataset, out=options["out"], progress=progress, options=ExportOptions(
                format=options["format"], status=options["status"], split=split, seed=options["seed"],
                include_images=options["include_images"], keep_names=options["keep_names"]))
        except ExportError as error:
            raise CommandError(str(error))
        if interactive:
            sys.stderr.write("\n")
        counts = ", ".join(f"{key} {value}" for key, value in manifest["counts"].items())
        self.stdout.write(self.style.SUCCESS(f"wrote {options['out']}: {counts or 'nothing matched'}"))
