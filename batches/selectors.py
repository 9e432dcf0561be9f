"""Reads behind the import and export pages: what an export would hold before it starts, how fast a job
goes, an import's row report filtered, and the manifest lines that failed.

Which images and regions an export takes is decided once, by the exporter's own filters
(``exporting._image_filter`` / ``_region_filter``); the preview counts with them, so it cannot promise
what the export would not write.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.db.models import Count, IntegerField, Sum, TextField
from django.db.models.functions import Cast, Coalesce, Length
from django.utils import timezone

from annotation.models import Dataset, Image, Region

from .exporting import AREA_SHAPES, STATUSES, _image_filter, _region_filter, csv_cell, split_of
from .importing import MANIFEST_NAME, BatchSource, _local_path
from .models import ImportJob

# What a record costs in each format beyond the geometry and attributes it copies (measured on the demo
# dataset's exports, rounded up): the preview's size is an estimate, and says so.
RECORD_BYTES = {  # format: (per image, per region)
    "coco": (260, 220),
    "us365k": (420, 380),
    "jsonl": (900, 260),
    "csv": (0, 360),
    "masks": (6000, 40),
}
IMAGE_SIZE_SAMPLE = 20
# Formats whose writers (``_Coco``, ``_Masks``) leave out marks without an area (lines, points);
# ``test_preview_agrees_with_the_export_it_announces`` holds the preview to their counts.
AREA_ONLY_FORMATS = ("coco", "masks")
REPORT_COLUMNS = ("level", "line", "study", "file", "where", "reason")


@dataclass(frozen=True)
class SplitCount:
    name: str
    studies: int
    images: int
    regions: int


@dataclass(frozen=True)
class ExportPreview:
    """What an export of ``status`` (and ``split``) would write, counted before it starts."""

    status: str
    studies: int
    images: int
    regions: int
    estimated_bytes: int
    images_by_status: dict[str, int]
    regions_left_out: int = 0  # marks without an area, which the format cannot hold
    splits: list[SplitCount] = field(default_factory=list)

    @property
    def statuses_with_images(self) -> list[tuple[str, int]]:
        return [(status, self.images_by_status[status]) for status in STATUSES if self.images_by_status.get(status)]


def export_images_by_status(*, dataset: Dataset) -> dict[str, int]:
    """How many images each region status would export (``adjudicated``, ``submitted``, ``all``)."""
    return {status: Image.objects.filter(_image_filter(status), study__dataset=dataset).count()
            for status in STATUSES}


def export_status_default(*, images_by_status: dict[str, int]) -> str:
    """The first status (in ``STATUSES`` order: the most settled first) that has images to export."""
    return next((status for status in STATUSES if images_by_status.get(status)), STATUSES[-1])


def export_preview(*, dataset: Dataset, status: str, format: str = "coco", split: tuple[float, ...] | None = None,
                   seed: int = 42, include_images: bool = False,
                   images_by_status: dict[str, int] | None = None) -> ExportPreview:
    """Studies, images and regions an export would write, per split when ``split`` is given, and an
    estimate of its size before compression. Precondition: ``status`` is one of ``STATUSES``."""
    images = Image.objects.filter(_image_filter(status), study__dataset=dataset)
    regions = Region.objects.filter(_region_filter(status), is_deleted=False, image__in=images.values("pk"))
    left_out = 0
    if format in AREA_ONLY_FORMATS:
        left_out = regions.exclude(shape__in=AREA_SHAPES).count()
        regions = regions.filter(shape__in=AREA_SHAPES)
    per_patient: dict[str, list[int]] = {}
    for row in images.values("study__patient").annotate(studies=Count("study_id", distinct=True), images=Count("pk")):
        per_patient[row["study__patient"]] = [row["studies"], row["images"], 0]
    for row in regions.values("image__study__patient").annotate(regions=Count("pk")):
        per_patient.setdefault(row["image__study__patient"], [0, 0, 0])[2] = row["regions"]
    totals: dict[str, list[int]] = {}
    for patient, numbers in per_patient.items():
        name = split_of(patient, split=split, seed=seed) or "all"
        total = totals.setdefault(name, [0, 0, 0])
        for index, number in enumerate(numbers):
            total[index] += number
    studies, image_count, region_count = (sum(t[i] for t in totals.values()) for i in range(3))
    copied = regions.aggregate(
        text=Coalesce(Sum(Length(Cast("geometry", TextField())) + Length(Cast("attributes", TextField()))), 0,
                      output_field=IntegerField()))["text"]
    per_image, per_region = RECORD_BYTES.get(format, RECORD_BYTES["coco"])
    estimate = image_count * per_image + region_count * per_region + copied
    if include_images and image_count:
        estimate += image_count * _image_size_mean(images)
    splits = [SplitCount(name, *totals.get(name, (0, 0, 0))) for name in ("train", "val", "test")[:len(split)]] \
        if split else []
    return ExportPreview(status=status, studies=studies, images=image_count, regions=region_count,
                         estimated_bytes=estimate, splits=splits, regions_left_out=left_out,
                         images_by_status=images_by_status or export_images_by_status(dataset=dataset))


def _image_size_mean(images) -> int:
    """Mean stored size of a few of ``images`` (the files are not sized in the database)."""
    sizes = []
    for name in images.order_by("pk").values_list("file", flat=True)[:IMAGE_SIZE_SAMPLE]:
        try:
            sizes.append(default_storage.size(name))
        except (OSError, NotImplementedError):
            continue
    return round(sum(sizes) / len(sizes)) if sizes else 0


# ---------------------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobPace:
    percent: int
    rate: float | None  # items a second
    elapsed: timedelta | None
    finishes_at: datetime | None  # while running, when the rest should be done at this rate

    @property
    def seconds_left(self) -> float | None:
        return None if self.finishes_at is None else max(0.0, (self.finishes_at - timezone.now()).total_seconds())


def job_pace(*, job, now: datetime | None = None) -> JobPace:
    """Progress, rate and expected end of a job from its row (total, done, started_at, finished_at)."""
    now = now or timezone.now()
    percent = min(100, round(job.progress * 100))
    if job.started_at is None:
        return JobPace(percent=percent, rate=None, elapsed=None, finishes_at=None)
    elapsed = (job.finished_at or now) - job.started_at
    seconds = elapsed.total_seconds()
    rate = job.done / seconds if seconds > 0 and job.done else None
    finishes_at = None
    if job.status == job.Status.RUNNING and rate and job.total > job.done:
        finishes_at = now + timedelta(seconds=(job.total - job.done) / rate)
    return JobPace(percent=percent, rate=rate, elapsed=elapsed, finishes_at=finishes_at)


def import_problems(*, job: ImportJob, level: str = "", text: str = "") -> list[dict]:
    """The import's row report (errors and warnings with line, study, file, place and reason), only
    ``level`` when given, only problems whose study, file, place or reason holds ``text`` when given."""
    needle = text.strip().casefold()
    shown = []
    for problem in job.errors or []:
        row = {column: problem.get(column) or ("" if column != "line" else None) for column in REPORT_COLUMNS}
        row["level"] = row["level"] or "error"
        if level and row["level"] != level:
            continue
        if needle and needle not in " ".join(str(row[c]) for c in ("study", "file", "where", "reason")).casefold() \
                and needle != str(row["line"]):
            continue
        shown.append(row)
    return shown


def import_report_csv(*, problems: list[dict]) -> str:
    """The row report as CSV text; cells a spreadsheet would run as a formula are neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_COLUMNS)
    for problem in problems:
        writer.writerow([csv_cell("" if problem[column] is None else problem[column]) for column in REPORT_COLUMNS])
    return buffer.getvalue()


def import_failed_line_numbers(*, job: ImportJob) -> list[int]:
    """Manifest lines the import reported an error on (a row that failed, or one that lost a region):
    importing them again, fixed, adds what is missing and changes nothing else."""
    return sorted({p["line"] for p in job.errors or [] if p.get("level") == "error" and isinstance(p.get("line"), int)})


def import_failed_lines(*, job: ImportJob) -> Iterator[bytes]:
    """The source manifest's lines that failed, as they were uploaded (one per line, in order), read back
    from the job's stored batch. Yields nothing when the batch has no manifest or is gone."""
    wanted = set(import_failed_line_numbers(job=job))
    if not wanted or not job.source or not default_storage.exists(job.source.name):
        return
    with _local_path(job.source.name) as path, BatchSource(path) as source:
        if not source.has(MANIFEST_NAME):
            return
        with source.open_binary(MANIFEST_NAME) as handle:
            # Numbered as the importer numbers them: one per physical line, from 1.
            for number, raw in enumerate(handle, 1):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if number in wanted:
                    yield raw if raw.endswith(b"\n") else raw + b"\n"
                    wanted.discard(number)
                    if not wanted:
                        return
