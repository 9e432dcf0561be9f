"""``manage.py import_batch PATH --dataset NAME``: a thin door onto ``importing.batch_import``."""

from __future__ import annotations

import logging
import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import services
from annotation.models import Dataset
from batches.importing import BatchError, ImportOptions, ImportReport, batch_import, problem_text


def _banner(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, width, height = (int(part) for part in text.split(","))
    except ValueError:
        raise CommandError(f"--banner must be X,Y,WIDTH,HEIGHT in pixels (got {text!r})")
    if width <= 0 or height <= 0 or x < 0 or y < 0:
        raise CommandError("--banner needs x, y ≥ 0 and a positive width and height")
    return x, y, width, height


class Command(BaseCommand):
    help = ("Import a batch (folder or .zip with manifest.jsonl and/or DICOM files, or COCO pre-annotations "
            "with --format coco) into a dataset. Bad rows are reported; the rest is imported.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="folder, .zip, or (COCO) a .json file")
        parser.add_argument("--dataset", required=True, help="dataset name")
        parser.add_argument("--create", action="store_true", help="create the dataset if it does not exist")
        parser.add_argument("--lexicon", default="udaf", help="lexicon of a dataset made with --create "
                                                              "(udaf, birads-us, tirads)")
        parser.add_argument("--format", choices=["manifest", "coco"], default="manifest",
                            help="manifest (manifest.jsonl and/or DICOM files, the default) or coco")
        parser.add_argument("--author", default="import", help="named author of pre-annotations that name none")
        parser.add_argument("--as-reader", dest="as_reader", help="username: import regions as this reader's "
                                                                  "submitted work (migration) instead")
        parser.add_argument("--frame-step", type=int, default=1, help="keep every n-th frame of a DICOM cine")
        parser.add_argument("--banner", type=_banner, help="X,Y,WIDTH,HEIGHT of a burned-in banner to black "
                                                           "out on DICOM frames")
        parser.add_argument("--no-thumbnails", action="store_true", help="do not queue thumbnail tasks")
        parser.add_argument("--strict", action="store_true", help="refuse a whole row when one of its regions is "
                                                                  "refused, and repair no outline")
        parser.add_argument("--reference", action="store_true",
                            help="leave the image files in place and reference them (PATH must be a folder under "
                                 "IMPORT_ROOT); each is checked against its sha256 when served")

    def handle(self, *args, **options):
        dataset = Dataset.objects.select_related("lexicon").filter(name=options["dataset"]).first()
        if dataset is None:
            if not options["create"]:
                raise CommandError(f"no dataset named {options['dataset']!r} (add --create to make it)")
            try:
                dataset = services.dataset_create(name=options["dataset"], lexicon_system=options["lexicon"])
            except (ValidationError, ValueError) as error:
                raise CommandError(str(error))
        reader = None
        if options["as_reader"]:
            reader = get_user_model().objects.filter(username=options["as_reader"], is_active=True).first()
            if reader is None:
                raise CommandError(f"no active user {options['as_reader']!r}")
        if options["frame_step"] < 1:
            raise CommandError("--frame-step must be 1 or more")
        import_options = ImportOptions(format=options["format"], author=options["author"], as_reader=reader,
                                       frame_step=options["frame_step"], banner=options["banner"],
                                       thumbnails=not options["no_thumbnails"], strict=options["strict"],
                                       reference=options["reference"], processes=True)
        from tqdm import tqdm

        # One progress bar (rows, images/s, ETA; shown on a terminal only) and one summary: the tasks run
        # in-process on the embedded default must not print a line each.
        bar = tqdm(unit="row", dynamic_ncols=True, disable=None)
        started = time.monotonic()

        def images(report: ImportReport) -> int:
            return report.counts["images_created"] + report.counts["images_existing"]

        def progress(report: ImportReport) -> None:
            bar.total = report.total
            bar.update(report.done - bar.n)
            bar.set_postfix_str(f"{images(report) / max(time.monotonic() - started, 1e-9):.1f} images/s", refresh=False)

        trace = logging.getLogger("celery.app.trace")
        level = trace.level
        trace.setLevel(logging.WARNING)
        try:
            report = batch_import(dataset=dataset, path=options["path"], options=import_options, progress=progress)
        except BatchError as error:
            raise CommandError(str(error))
        finally:
            trace.setLevel(level)
            bar.close()
        for problem in report.problems:
            style = self.style.ERROR if problem["level"] == "error" else self.style.WARNING
            self.stdout.write(style(f"{problem['level']}: {problem_text(problem)}"))
        elapsed = time.monotonic() - started
        summary = ", ".join(f"{key} {value}" for key, value in sorted(report.counts.items()))
        self.stdout.write(self.style.SUCCESS(
            f"dataset {dataset.name}: {summary or 'nothing to import'} "
            f"({elapsed:.1f} s, {images(report) / max(elapsed, 1e-9):.1f} images/s)"))
