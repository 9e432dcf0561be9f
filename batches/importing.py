"""Batch import: a folder or .zip of images + reports (``manifest.jsonl``), DICOM files, or COCO
pre-annotations, into one dataset.

The management command ``import_batch`` and the import job (``tasks.import_job_run``) both call
``batch_import``; nothing else writes batches.

Promises:

- A *row* is one manifest line, one DICOM study (files grouped by Study Instance UID) or one COCO image.
  A row goes in whole or not at all. A bad row is reported with its line (or file) and every reason
  found, and the other rows still import.
- Rows are written in chunks (``IMPORT_CHUNK_ROWS``), one transaction each: a row is checked in Python
  and its new studies, reports, images and regions wait for one bulk insert per kind at the end of the
  chunk. A row that changes what exists already writes through the services in a savepoint of its own.
  A chunk whose insert fails is written again with a savepoint per row, so the failure is its row's.
  The chunk's existing studies are looked up in one query; a row of a new study asks the database
  nothing.
- Every image is decoded once, by ``media.image_verify`` (Pillow, decompression-bomb and size limits),
  which makes its thumbnail from the same pixels; it is stored once under its sha256. The decode runs
  on a few threads (``IMPORT_DECODE_THREADS``) a little ahead of the row that uses it, the row's
  database work meanwhile on this one; what a row reports does not depend on it. The same file
  twice in one study is imported once; the same file in two studies is imported for both (stored
  once) with a warning naming both studies.
- Re-importing the same batch changes nothing: studies are found by accession, images by
  (study, sha256), regions by their source id (else by identical content), reports through
  ``services.report_set`` (the version moves only when the text changes).
- New reports are parsed and aligned once their chunk has committed: in this process, the chunk's
  studies in one transaction, on the embedded default; as one task per chunk on the workers otherwise.
- Regions are checked by the region service (``services.region_build``, which ``region_create`` uses):
  the importer cannot accept what the editor refuses.
  They are pre-annotations of a named import author (``source=import``), or with ``as_reader`` the
  submitted reading of that user (migration from another tool).
- Zip entries and manifest paths that would leave the batch folder are refused (path traversal).
- DICOM de-identification: see ``batches.dicom``.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import logging
import math
import multiprocessing
import os
import posixpath
import re
import shutil
import tempfile
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import connection, reset_queries, transaction
from django.utils import translation
from django.utils.translation import gettext

from alignment import services as alignment_services
from alignment import tasks as alignment_tasks
from alignment.nlp import detect_language
from annotation import services
from annotation.geometry import GeometryError, geometry_validate, polygon_repair
from annotation.lexicons import AttributeValidationError, attributes_validate
from annotation.media import (
    ImageFileError,
    VerifiedImage,
    image_store_commit,
    image_store_discard,
    image_store_pending,
    image_verify,
    pending_sweep,
    reference_path_check,
    thumbnail_store_pending,
)
from annotation.models import Assignment, Dataset, Image, Membership, Region, Report, Study

from .dicom import DicomFileError, DicomHeader, dicom_frames, dicom_header, is_dicom, pseudonym
from .jobs import job_claim, job_finish, job_progress_recorder
from .models import ImportJob

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
PROBLEMS_KEPT = 5000
LATERALITY_WORDS = {"left": "left", "l": "left", "right": "right", "r": "right", "bilateral": "bilateral",
                    "b": "bilateral", "both": "bilateral", "": "", "unknown": "", "u": ""}
SKIPPED_PREFIXES = ("__MACOSX/",)


def _limit(name: str, default):
    """An import limit from settings (``IMPORT_*``), read when used so tests and deployments can set it."""
    return getattr(settings, name, default)


def report_max_bytes() -> int:
    return int(_limit("IMPORT_REPORT_MAX_BYTES", 200_000))


def line_max_bytes() -> int:
    return int(_limit("IMPORT_LINE_MAX_BYTES", 5_000_000))


def spacing_range_mm() -> tuple[float, float]:
    return float(_limit("IMPORT_SPACING_MIN_MM", 0.005)), float(_limit("IMPORT_SPACING_MAX_MM", 5.0))


def image_min_side() -> int:
    return int(_limit("IMPORT_IMAGE_MIN_SIDE", 32))


def chunk_rows() -> int:
    return max(1, int(_limit("IMPORT_CHUNK_ROWS", 200)))


def decode_threads() -> int:
    """Threads that read and verify a chunk's image files ahead of its rows; 0: each row does its own."""
    return max(0, int(_limit("IMPORT_DECODE_THREADS", min(4, os.cpu_count() or 1))))


# Files verified ahead of their rows are held until taken: at most this many, and this many bytes of
# file content (a single larger file is still read ahead alone). The window spans into the next chunk,
# so the decoders keep working while a chunk is inserted and its studies aligned.
AHEAD_FILES = 512
AHEAD_BYTES = 96 << 20
# Images this import wrote that the same-file check remembers, instead of asking the database.
REMEMBERED_IMAGES = 200_000


class BatchError(ValueError):
    """The batch as a whole cannot be read (no manifest, not a zip, ...): nothing was imported."""


class RowFailed(Exception):
    """Raised inside a row's transaction to roll it back; carries every problem found in the row."""

    def __init__(self, problems: list[dict]):
        self.problems = problems
        super().__init__("; ".join(p["reason"] for p in problems))


class _Isolate(Exception):
    """A chunk written without per-row savepoints met an error it cannot pin on one row (a failed bulk
    insert, a database error inside a row): it is rolled back and written again a row at a time."""


@dataclass
class _Writes:
    """New rows waiting for their bulk insert, and what follows their commit: files to move into place
    and studies to align. Lookups find a row's or an earlier row's new objects before they are saved."""

    studies: list[Study] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)  # (temporary, final) storage names
    aligned: list[Study] = field(default_factory=list)  # studies whose new report asks for alignment
    study_of: dict[str, Study] = field(default_factory=dict)  # accession -> new study
    image_of: dict[tuple[str, str], Image] = field(default_factory=dict)  # (accession, sha256) -> new image
    studies_of_file: dict[str, list[str]] = field(default_factory=dict)  # sha256 -> accessions of new images
    regions_of: dict[int, list[Region]] = field(default_factory=dict)  # id(new image) -> its new regions

    def extend(self, other: _Writes) -> None:
        for name in ("studies", "reports", "images", "regions", "files", "aligned"):
            getattr(self, name).extend(getattr(other, name))
        self.study_of.update(other.study_of)
        self.image_of.update(other.image_of)
        self.regions_of.update(other.regions_of)
        for sha256, accessions in other.studies_of_file.items():
            self.studies_of_file.setdefault(sha256, []).extend(accessions)

    def insert(self) -> None:
        """Insert the waiting rows, parents first (bulk inserts set primary keys on both databases)."""
        Study.objects.bulk_create(self.studies)
        Report.objects.bulk_create(self.reports)
        Image.objects.bulk_create(self.images, batch_size=500)
        services.regions_insert(regions=self.regions)
        self.studies, self.reports, self.images, self.regions = [], [], [], []


@dataclass(frozen=True)
class _PlannedRow:
    """A row to run, with what it will read: its batch files, verified ahead on the decode threads, and
    the accessions of its studies, looked up once for the chunk."""

    run: Callable[[], None]
    files: tuple[str, ...] = ()
    accessions: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Prepared:
    """A batch file read, and unless it is DICOM verified; ``failure`` is why the image was refused.
    ``pending`` holds the file and thumbnail written under temporary names for the image, should it be
    new (``"image"``/``"thumbnail"`` -> (final, temporary) storage names): the row that takes them
    either adopts them into its writes or discards them."""

    content: bytes
    verified: VerifiedImage | None = None
    failure: ValueError | None = None
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)

    def discard(self) -> None:
        while self.pending:
            image_store_discard(self.pending.popitem()[1][1])


class _Ahead:
    """A chunk's files prepared on the import's threads (or decode processes) ahead of the rows that take
    them, in the order the rows ask for them, so decoding overlaps the rows' Python and database work.
    At most ``AHEAD_FILES`` files and ``AHEAD_BYTES`` are held; a file that its row never takes (the
    row failed first) is dropped when a later one is taken."""

    def __init__(self, *, pool: Executor, prepare: Callable[[str], _Prepared], size: Callable[[str], int]):
        self._pool, self._prepare, self._size = pool, prepare, size
        self._waiting: deque[str] = deque()
        self._submitted: deque[tuple[str, int, Future]] = deque()
        self._held = 0
        self._dead = False

    def extend(self, names: Iterable[str]) -> None:
        """Queue the files of rows to come, after those queued already."""
        self._waiting.extend(names)
        self._top_up()

    def _top_up(self) -> None:
        while self._waiting and len(self._submitted) < AHEAD_FILES:
            size = self._size(self._waiting[0])
            if self._submitted and self._held + size > AHEAD_BYTES:
                return
            try:
                future = self._pool.submit(self._prepare, self._waiting[0])
            except BrokenExecutor:  # a decode process died: the rows prepare their files themselves
                self._broken()
                return
            self._submitted.append((self._waiting.popleft(), size, future))
            self._held += size

    def _drop(self) -> None:
        _, size, future = self._submitted.popleft()
        if not future.cancel():  # started: its temporary files go once it is done
            future.add_done_callback(_prepared_discard)
        self._held -= size

    def take(self, name: str) -> _Prepared | None:
        """``name`` prepared (what preparing it raised is raised here), or None when it was not prepared
        ahead: the caller prepares it itself."""
        position = next((i for i, (ahead, _, _) in enumerate(self._submitted) if ahead == name), None)
        if position is None:
            if name not in self._waiting:
                return None
            # Rows skipped the files ahead of it: start again from this one.
            while self._submitted:
                self._drop()
            while self._waiting[0] != name:
                self._waiting.popleft()
            self._top_up()
            if not self._submitted or self._submitted[0][0] != name:  # the decode pool is broken
                return None
            position = 0
        for _ in range(position):
            self._drop()
        _, size, future = self._submitted.popleft()
        self._held -= size
        self._top_up()
        try:
            return future.result()
        except BrokenExecutor:  # a decode process died (killed, out of memory): the row does it itself
            self._broken()
            return None

    def _broken(self) -> None:
        """The decode pool is broken: say so once; nothing more is sent to it."""
        if not self._dead:
            self._dead = True
            logger.warning("a decode process died; files are prepared by the rows from here on")
        self._waiting.clear()

    def close(self) -> None:
        """Cancel what has not started; what runs finishes on its thread and is dropped."""
        self._waiting.clear()
        while self._submitted:
            self._drop()


# In a forked decode process: the importer's ``_prepare``, inherited from the parent at the fork (nothing
# is pickled but the file names going out and what was prepared coming back).
_child_prepare: Callable[[str], _Prepared] | None = None


def _decode_child_start(prepare: Callable[[str], _Prepared]) -> None:
    global _child_prepare
    _child_prepare = prepare


def _decode_child_prepare(name: str) -> _Prepared:
    return _child_prepare(name)


def _prepared_discard(future: Future) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().discard()


@dataclass
class ImportOptions:
    format: str = "manifest"  # "manifest" (manifest.jsonl and/or DICOM files) or "coco"
    author: str = "import"  # named author of pre-annotations that do not name one
    as_reader: Any = None  # a user: regions become that reader's submitted work
    frame_step: int = 1  # keep every n-th frame of a cine
    banner: tuple[int, int, int, int] | None = None  # x, y, width, height blacked out on DICOM frames
    thumbnails: bool = True  # make each new image's thumbnail from the decode that verifies it
    strict: bool = False  # a refused region refuses its whole row, and outlines are not repaired
    # Leave image files where they are (the batch folder lies under IMPORT_ROOT) and reference them by
    # path and sha256 instead of copying them into storage. DICOM frames are still stored: the served
    # image is the decoded frame, not the DICOM file.
    reference: bool = False
    # Decode in forked worker processes rather than threads, so decoding has a core of its own instead
    # of sharing the interpreter lock with the rows: for a process that runs the import alone (the
    # ``import_batch`` command). A job inside a web or Celery worker process keeps threads.
    processes: bool = False


@dataclass
class ImportReport:
    """What happened: counts by kind, and the problems (errors and warnings) with where they were."""

    counts: Counter = field(default_factory=Counter)
    problems: list[dict] = field(default_factory=list)
    total: int = 0
    done: int = 0

    def add(self, *, level: str, reason: str, line: int | None = None, file: str = "", study: str = "",
            where: str = "") -> None:
        self.counts[f"{level}s"] += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append({"level": level, "line": line, "file": file, "study": study, "where": where,
                                  "reason": reason})
        else:
            self.counts["problems_not_kept"] += 1

    @property
    def errors(self) -> list[dict]:
        return [p for p in self.problems if p["level"] == "error"]

    @property
    def warnings(self) -> list[dict]:
        return [p for p in self.problems if p["level"] == "warning"]


def problem_text(problem: dict) -> str:
    """One line a person can act on: ``line 3 (ACC-0003) images[0].regions[1]: reason``."""
    place = f"line {problem['line']}" if problem.get("line") else (problem.get("file") or "batch")
    if problem.get("study"):
        place += f" ({problem['study']})"
    if problem.get("where"):
        place += f" {problem['where']}"
    return f"{place}: {problem['reason']}"


# ---------------------------------------------------------------------------------------------- sources


def safe_name(name: str) -> str | None:
    """The batch-relative posix form of ``name``, or None when it would leave the batch folder."""
    name = name.replace("\\", "/")
    if not name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = name.split("/")
    if ".." in parts:
        return None
    normal = posixpath.normpath(name)
    return None if normal.startswith("../") or normal in ("..", ".") else normal


class BatchSource:
    """Read-only view of a batch folder or .zip. Names are posix paths relative to the batch root (the
    folder holding ``manifest.jsonl``; a zip of a folder, with everything one level down, works too).
    ``refused`` lists entries that were not accepted, with the reason."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.refused: list[tuple[str, str]] = []
        self._zip: zipfile.ZipFile | None = None
        names: list[str] = []
        if self.path.is_dir():
            root = self.path.resolve()
            for file in sorted(root.rglob("*")):
                if not file.is_file():
                    continue
                relative = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
                if not file.resolve().is_relative_to(root):  # a symlink pointing out of the batch
                    self.refused.append((relative, "refused: the link points outside the batch folder"))
                    continue
                names.append(relative)
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            self._members: dict[str, zipfile.ZipInfo] = {}
            for info in self._zip.infolist():
                if info.is_dir() or info.filename.startswith(SKIPPED_PREFIXES):
                    continue
                name = safe_name(info.filename)
                if name is None:
                    self.refused.append((info.filename[:255], "refused: the name leaves the batch folder "
                                                              "(path traversal)"))
                    continue
                self._members[name] = info
                names.append(name)
        elif self.path.is_file() and self.path.suffix.lower() == ".json":
            names = [self.path.name]
            self.path = self.path.parent
            self._single = names[0]
        else:
            raise BatchError(f"{self.path} is neither a folder, a .zip file nor a COCO .json file")
        self.prefix = ""
        if MANIFEST_NAME not in names:
            nested = [n for n in names if n.count("/") == 1 and n.endswith("/" + MANIFEST_NAME)]
            if len(nested) == 1:
                self.prefix = nested[0][: -len(MANIFEST_NAME)]
        self.names = [n[len(self.prefix):] for n in names if n.startswith(self.prefix)]
        self._known = set(self.names)

    def __enter__(self) -> BatchSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def has(self, name: str) -> bool:
        return name in self._known

    def open_text(self, name: str) -> io.TextIOBase:
        if self._zip is not None:
            return io.TextIOWrapper(self._zip.open(self._members[self.prefix + name]), encoding="utf-8-sig")
        return (self.path / (self.prefix + name)).open(encoding="utf-8-sig")

    def open_binary(self, name: str) -> io.BufferedIOBase:
        if self._zip is not None:
            return self._zip.open(self._members[self.prefix + name])
        return (self.path / (self.prefix + name)).open("rb")

    def size(self, name: str) -> int:
        """The size in bytes ``name`` says it has (0 when it cannot be read; ``read`` then says why)."""
        if self._zip is not None:
            info = self._members.get(self.prefix + name)
            return info.file_size if info is not None else 0
        try:
            return (self.path / (self.prefix + name)).stat().st_size
        except OSError:
            return 0

    def local_path(self, name: str) -> Path | None:
        """The file of ``name`` on disk, or None for a zip member."""
        return None if self._zip is not None else self.path / (self.prefix + name)

    def read(self, name: str, *, limit: int | None = None) -> bytes:
        """The bytes of ``name``. Raises ``FileNotFoundError`` or ``ImageFileError`` (over ``limit``);
        reads at most ``limit + 1`` bytes, so a zip entry that lies about its size cannot flood memory."""
        limit = settings.IMAGE_MAX_BYTES if limit is None else limit
        if name not in self._known:
            raise FileNotFoundError(name)
        if self._zip is not None:
            info = self._members[self.prefix + name]
            if info.file_size > limit:
                raise ImageFileError(f"the file is {info.file_size:,} bytes; the limit is {limit:,}")
            with self._zip.open(info) as handle:
                content = handle.read(limit + 1)
        else:
            with (self.path / (self.prefix + name)).open("rb") as handle:
                content = handle.read(limit + 1)
        if len(content) > limit:
            raise ImageFileError(f"the file is larger than the limit of {limit:,} bytes")
        return content


# ---------------------------------------------------------------------------------------------- import


ProgressCallback = Callable[[ImportReport], None]


def batch_import(*, dataset: Dataset, path: str | Path, options: ImportOptions | None = None,
                 progress: ProgressCallback | None = None) -> ImportReport:
    """Import the batch at ``path`` (folder, .zip, or for COCO also a bare .json) into ``dataset``.

    Preconditions: ``dataset`` exists; with ``options.as_reader`` the user exists and is active.
    Returns the report; raises ``BatchError`` only when the batch as a whole is unreadable.
    """
    options = options or ImportOptions()
    report = ImportReport()
    if options.reference:
        if not Path(path).is_dir() and not str(path).lower().endswith(".json"):
            raise BatchError("--reference needs a folder under IMPORT_ROOT: files inside a .zip cannot be "
                             "referenced in place")
        try:
            reference_path_check(path)
        except ValueError as error:
            raise BatchError(f"--reference: {error}") from None
    with BatchSource(path) as source:
        importer = _Importer(dataset=dataset, source=source, options=options, report=report, progress=progress)
        importer.run()
    return report


class _Importer:
    def __init__(self, *, dataset: Dataset, source: BatchSource, options: ImportOptions, report: ImportReport,
                 progress: ProgressCallback | None):
        self.dataset, self.source, self.options, self.report = dataset, source, options, report
        self.progress = progress or (lambda report: None)
        self.dicom_used: set[str] = set()
        self._pool: Executor | None = None
        self._ahead: _Ahead | None = None
        self._language = translation.get_language()  # what the import's problems are written in
        # The same-file check (``_image``) asks the database only about images this import did not
        # write; while the dataset holds no others, the ones it wrote are remembered here instead:
        # sha256 -> (study id, accession) of each committed image; None once that no longer holds.
        self._written: dict[str, list[tuple[int, str]]] | None = {}
        self._written_count = 0

    # -- the batch

    def run(self) -> None:
        swept = pending_sweep()
        if swept:
            logger.info("removed %d temporary files left by earlier imports", swept)
        workers = decode_threads()
        pool = self._decode_pool(workers) if workers else nullcontext()
        with pool:
            self._pool = pool if workers else None
            if settings.CELERY_TASK_ALWAYS_EAGER:
                # This process aligns each chunk once it commits: the parser gets ready while the rows
                # wait on the decoders (after the fork: a child must not inherit a half-done import).
                alignment_services.parser_warm()
            try:
                self._run()
            finally:
                self._pool = None

    def _decode_pool(self, workers: int) -> Executor:
        """Threads, or with ``options.processes`` forked processes when the batch is a folder (a zip's
        open file would be shared with the children) and this process may have children (a Celery
        worker's may not)."""
        if self.options.processes and self.source.local_path(MANIFEST_NAME) is not None \
                and not multiprocessing.current_process().daemon:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                       initializer=_decode_child_start, initargs=(self._prepare,))
            try:
                pool.submit(int).result()  # forks the processes now, while this one runs nothing else
            except BrokenExecutor:
                logger.warning("the decode processes could not start; the rows prepare their files")
            return pool
        return ThreadPoolExecutor(workers, thread_name_prefix="import-decode")

    def _run(self) -> None:
        for name, reason in self.source.refused:
            self.report.add(level="error", file=name, reason=reason)
        if self.options.format == "coco":
            self._run_coco()
            return
        has_manifest = self.source.has(MANIFEST_NAME)
        candidates = [n for n in self.source.names if n != MANIFEST_NAME and self._looks_dicom(n)]
        if not has_manifest and not candidates:
            raise BatchError(f"the batch has neither a {MANIFEST_NAME} nor DICOM files")
        lines = self._manifest_line_count() if has_manifest else 0
        self.report.total = lines + len(candidates)  # refined once DICOM files are grouped into studies
        self.progress(self.report)
        if has_manifest:
            self._in_chunks(self._manifest_plan(number, text, failure)
                            for number, text, failure in self._manifest_lines())
        remaining = [n for n in candidates if n not in self.dicom_used]
        groups = self._dicom_groups(remaining)
        self.report.total = self.report.done + len(groups)
        self._in_chunks(_PlannedRow(run=lambda headers=headers: self._dicom_row(headers),
                                    accessions=(headers[0][1].accession,)) for headers in groups.values())

    def _in_chunks(self, rows: Iterable[_PlannedRow | Callable[[], None]]) -> None:
        """Run the rows ``chunk_rows()`` at a time, one transaction per chunk: rows are checked in Python
        and their new studies, reports, images and regions inserted in bulk at the end of the chunk.
        A chunk that fails there is written again with a savepoint per row, which pins the failure on
        its row. Files are moved into place, and alignment of the new reports queued, once the chunk has
        committed; progress is recorded between chunks."""
        iterator = (row if isinstance(row, _PlannedRow) else _PlannedRow(run=row) for row in rows)
        if self._pool is not None:
            prepare = _decode_child_prepare if isinstance(self._pool, ProcessPoolExecutor) else self._prepare
            self._ahead = _Ahead(pool=self._pool, prepare=prepare, size=self.source.size)
        try:
            chunk = list(itertools.islice(iterator, chunk_rows()))
            self._files_ahead(chunk)
            while chunk:
                # The next chunk is planned first, so its files are prepared while this one is written.
                following = list(itertools.islice(iterator, chunk_rows()))
                self._files_ahead(following)
                counts, problems = Counter(self.report.counts), len(self.report.problems)
                try:
                    self._chunk(chunk, isolating=False)
                except _Isolate:
                    self.report.counts, self.report.problems[problems:] = counts, []
                    if self._ahead is not None:  # the rows take their files again
                        self._ahead.close()
                        self._files_ahead(chunk + following)
                    self._chunk(chunk, isolating=True)
                self.report.done += len(chunk)
                self.progress(self.report)
                if settings.DEBUG and not connection.force_debug_cursor:
                    # With DEBUG every query is logged (up to 9,000, whole bulk inserts among them: some
                    # 200 MB for an import); nobody reads this one's, unless a test is capturing them.
                    reset_queries()
                chunk = following
        finally:
            if self._ahead is not None:
                self._ahead.close()
                self._ahead = None

    def _files_ahead(self, chunk: list[_PlannedRow]) -> None:
        if self._ahead is not None:
            self._ahead.extend(name for row in chunk for name in row.files)

    def _chunk(self, chunk: list[_PlannedRow], *, isolating: bool) -> None:
        self._isolating = isolating
        self._chunk_writes = writes = _Writes()
        self._positions: dict[str, int] = {}
        before = Counter(self.report.counts)
        try:
            with transaction.atomic():
                self._studies_find([accession for row in chunk for accession in row.accessions])
                self._written_check()
                for row in chunk:
                    row.run()
                writes.insert()
        except Exception as failure:
            for temporary, _ in writes.files:
                image_store_discard(temporary)
            if not isolating:
                raise _Isolate() from failure
            # The commit itself failed: none of the chunk is stored.
            logger.exception("import chunk failed")
            self.report.counts = before
            self.report.counts["rows_failed"] += len(chunk)
            self.report.add(level="error", reason=(gettext("%(rows)s rows from here on could not be saved (%(error)s)")
                                                  % {"rows": len(chunk), "error": f"{type(failure).__name__}: {failure}"})[:500])
            return
        for temporary, final in writes.files:
            image_store_commit(temporary, final)
        self._written_add(writes)
        study_ids = [study.pk for study in writes.aligned]
        if study_ids:
            # Outside any transaction on_commit runs at once; in an outer one, at its commit.
            transaction.on_commit(lambda: _studies_align(study_ids))

    def _studies_find(self, accessions: list[str]) -> None:
        """Look up (and lock) the existing studies of the chunk's rows in one query, so a row of a study
        new to the dataset asks nothing. A study a row changes is looked up again by the next row."""
        self._studies_known: dict[str, Study | None] = dict.fromkeys(accessions)
        unique = list(self._studies_known)
        for start in range(0, len(unique), 500):
            for study in Study.objects.select_for_update().filter(dataset=self.dataset,
                                                                  accession__in=unique[start:start + 500]):
                self._studies_known[study.accession] = study

    def _written_check(self) -> None:
        """Keep remembering this import's images for the same-file check only while the dataset holds
        no others (another import may have added some since the last chunk)."""
        if self._written is not None and (
                self._written_count > REMEMBERED_IMAGES
                or Image.objects.filter(study__dataset=self.dataset).count() != self._written_count):
            self._written = None

    def _written_add(self, writes: _Writes) -> None:
        if self._written is None:
            return
        for (accession, sha256), image in writes.image_of.items():
            self._written.setdefault(sha256, []).append((image.study.pk, accession))
            self._written_count += 1

    def _manifest_line_count(self) -> int:
        count, last = 0, b"\n"
        with self.source.open_binary(MANIFEST_NAME) as handle:
            while chunk := handle.read(1 << 20):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        return count + (last != b"\n")

    def _manifest_lines(self) -> Iterator[tuple[int, str | None, str]]:
        """``(number, text, failure)`` for each manifest line, decoded one line at a time so one bad line
        costs only itself: a line that is not UTF-8 or longer than the limit comes with text None and
        the reason, and is never held in memory whole."""
        limit = line_max_bytes()
        with self.source.open_binary(MANIFEST_NAME) as handle:
            number = 0
            while True:
                raw = handle.readline(limit + 1)
                if not raw:
                    return
                number += 1
                if len(raw) > limit and not raw.endswith(b"\n"):
                    while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass
                    yield number, None, (f"the line is longer than the limit of {limit:,} bytes "
                                         "(IMPORT_LINE_MAX_BYTES)")
                    continue
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    yield number, None, (f"the line is not UTF-8 text (byte 0x{raw[error.start]:02x} at "
                                         f"position {error.start + 1})")
                else:
                    yield number, text, ""

    def _line_failed(self, number: int, reason: str) -> None:
        self.report.add(level="error", line=number, reason=reason)
        self.report.counts["rows_failed"] += 1

    def _looks_dicom(self, name: str) -> bool:
        if name.lower().endswith(".dcm"):
            return True
        if name.lower().rsplit(".", 1)[-1] in ("jpg", "jpeg", "png", "json", "jsonl", "txt", "csv", "bmp", "tif",
                                               "tiff", "webp", "gif", "md"):
            return False
        try:
            return is_dicom(self.source.read(name, limit=settings.IMAGE_MAX_BYTES)[:132])
        except (OSError, ImageFileError):
            return False

    # -- one row = one savepoint in its chunk's transaction

    def _row(self, *, line: int | None, file: str, study_label: str, work: Callable[[list[dict]], None]) -> bool:
        """Run ``work``, which appends problems to the list it is given; any error problem discards the
        whole row. New rows wait in the row's ``_Writes`` and join the chunk's when the row succeeds;
        a write through a service (``_direct``) runs in a savepoint of the row. Warnings are reported
        either way."""
        problems: list[dict] = []
        # Image files of the row, written under temporary names: moved into place once the row is
        # committed, removed when it is not, so storage never holds a file no row points to.
        self._row_writes = writes = _Writes()
        self._savepoint = transaction.savepoint() if self._isolating else None
        before = Counter(self.report.counts)
        try:
            work(problems)
            if any(self._fails_row(p) for p in problems):
                raise RowFailed(problems)
            if self._isolating:
                self._direct()
        except Exception as failure:
            if self._savepoint is not None:
                transaction.savepoint_rollback(self._savepoint)
            for temporary, _ in writes.files:
                image_store_discard(temporary)
            if not isinstance(failure, RowFailed):
                if not self._isolating:
                    # The database may have refused something mid-row: only a savepoint per row can
                    # tell what to keep, so the chunk is written again that way.
                    raise _Isolate() from failure
                # Whatever a row holds, it costs only that row: an unexpected error is its error, with
                # the exception named, and the batch goes on. The row's counts were provisional.
                logger.exception("import row failed (line %s, %s)", line, file)
                problems.append({"level": "error", "reason": (gettext("the row could not be imported (%(error)s)")
                                                              % {"error": f"{type(failure).__name__}: {failure}"})[:500]})
            self.report.counts = before
            self.report.counts["rows_failed"] += 1
        else:
            if self._savepoint is not None:
                transaction.savepoint_commit(self._savepoint)
            self._chunk_writes.extend(writes)
            self.report.counts["rows_imported"] += 1
        for problem in problems:
            self.report.add(level=problem["level"], reason=problem["reason"], where=problem.get("where", ""),
                            line=line, file=problem.get("file", file), study=study_label)
        return not any(self._fails_row(p) for p in problems)

    def _direct(self) -> None:
        """Before a write through a service (a study, report or region that exists already, a reader's
        work): the row gets its savepoint, so a later failure rolls the write back, and the row's new
        rows so far are inserted, so the service sees saved parents."""
        if self._savepoint is None:
            self._savepoint = transaction.savepoint()
        self._row_writes.insert()

    def _new_study(self, accession: str) -> Study | None:
        return self._row_writes.study_of.get(accession) or self._chunk_writes.study_of.get(accession)

    def _new_image(self, accession: str, sha256: str) -> Image | None:
        key = (accession, sha256)
        return self._row_writes.image_of.get(key) or self._chunk_writes.image_of.get(key)

    def _fails_row(self, problem: dict) -> bool:
        """An error fails its row, except a refused region: its image and the other regions go in
        (unless ``strict``)."""
        return problem["level"] == "error" and (self.options.strict or not problem.get("region"))

    # -- manifest rows

    def _manifest_plan(self, number: int, text: str | None, failure: str) -> _PlannedRow:
        """The row of manifest line ``number``, parsed now (when its chunk is gathered) so that its image
        files can be prepared ahead; its problems are reported when it runs, in line order."""
        if text is None:
            return _PlannedRow(run=lambda: self._line_failed(number, failure))
        if not text.strip():
            return _PlannedRow(run=lambda: None)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            failure = gettext("not valid JSON (%(error)s at column %(column)s)") % {"error": error.msg, "column": error.colno}
        except (ValueError, RecursionError) as error:  # nesting too deep, integers too long to parse
            failure = gettext("not valid JSON (%(error)s)") % {"error": f"{type(error).__name__}: {str(error)[:200]}"}
        if failure:
            return _PlannedRow(run=lambda: self._line_failed(number, failure))
        if not isinstance(data, dict):
            return _PlannedRow(run=lambda: self._manifest_row(number, data))
        accession = data.get("study")
        files = []
        for entry in data.get("images") if isinstance(data.get("images"), list) else ():
            name = safe_name(entry["file"]) if isinstance(entry, dict) and isinstance(entry.get("file"), str) else None
            if name is not None and self.source.has(name):
                files.append(name)
        return _PlannedRow(run=lambda: self._manifest_row(number, data), files=tuple(files),
                           accessions=(accession.strip(),) if isinstance(accession, str) else ())

    def _manifest_row(self, number: int, data: Any) -> None:
        if not isinstance(data, dict):
            self.report.add(level="error", line=number, reason=gettext("a line must be a JSON object"))
            self.report.counts["rows_failed"] += 1
            return
        accession = data.get("study")
        label = accession if isinstance(accession, str) else ""
        self._row(line=number, file="", study_label=label, work=lambda problems: self._manifest_work(data, problems))

    def _manifest_work(self, data: dict, problems: list[dict]) -> None:
        def error(reason: str, where: str = "", file: str = "") -> None:
            problems.append({"level": "error", "reason": reason, "where": where, "file": file})

        accession, patient = data.get("study"), data.get("patient")
        if not isinstance(accession, str) or not accession.strip() or len(accession) > 64:
            error(gettext("'study' (the accession) must be text of 1 to 64 characters"))
            return
        if patient is not None and (not isinstance(patient, str) or not patient.strip() or len(patient) > 64):
            error(gettext("'patient' must be text of 1 to 64 characters"))
            return
        exam_date = None
        if data.get("exam_date"):
            try:
                exam_date = date.fromisoformat(str(data["exam_date"]))
            except ValueError:
                error(gettext("'exam_date' must be YYYY-MM-DD, got %(value)s") % {"value": repr(str(data["exam_date"])[:32])})
                return
        body_part = data.get("body_part") or ""
        if not isinstance(body_part, str) or len(body_part) > 64:
            error(gettext("'body_part' must be text of at most 64 characters"))
            return
        study = self._study(accession=accession.strip(), patient=patient, exam_date=exam_date, body_part=body_part,
                            metadata={"source": "manifest"}, problems=problems)
        if study is None:
            return
        self._report(study, data.get("report"), problems)
        images = data.get("images") or []
        if not isinstance(images, list):
            error(gettext("'images' must be a list"))
            return
        seen: dict[str, str] = {}
        for index, entry in enumerate(images):
            self._manifest_image(study, entry, f"images[{index}]", seen, problems)

    def _study(self, *, accession: str, patient: str | None, exam_date: date | None, body_part: str,
               metadata: dict, problems: list[dict]) -> Study | None:
        study = self._new_study(accession)
        if study is None and accession in self._studies_known:
            known = self._studies_known[accession]
            study = None if known is None else copy.copy(known)
        elif study is None:
            study = Study.objects.select_for_update().filter(dataset=self.dataset, accession=accession).first()
        if study is None:
            if not patient:
                problems.append({"level": "error", "reason": gettext("a new study needs 'patient' (the pseudonymised id)")})
                return None
            self.report.counts["studies_created"] += 1
            study = Study(dataset=self.dataset, accession=accession, patient=patient.strip(), exam_date=exam_date,
                          body_part=body_part.strip(), metadata=metadata)
            self._row_writes.studies.append(study)
            self._row_writes.study_of[accession] = study
            return study
        if patient and patient.strip() != study.patient:
            reason = gettext("study %(study)s is already in the dataset for patient %(patient)s; this row says "
                             "%(row)s") % {"study": accession, "patient": study.patient, "row": patient.strip()}
            problems.append({"level": "error", "reason": reason})
            return None
        changed = []
        if exam_date and exam_date != study.exam_date:
            study.exam_date = exam_date
            changed.append("exam_date")
        if body_part.strip() and body_part.strip() != study.body_part:
            study.body_part = body_part.strip()
            changed.append("body_part")
        if changed:
            self._direct()
            self._studies_known.pop(accession, None)  # the next row reads what this one leaves
            study.save(update_fields=changed)
            self.report.counts["studies_updated"] += 1
        else:
            self.report.counts["studies_existing"] += 1
        return study

    def _report(self, study: Study, value: Any, problems: list[dict]) -> None:
        if value is None:
            return  # report pending: it may come in a later batch
        if isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            problems.append({"level": "error", "where": "report",
                             "reason": gettext("'report' must be {\"text\", \"language\"}")})
            return
        text = value["text"]
        limit = report_max_bytes()
        if len(text) > limit // 4 and len(text.encode("utf-8")) > limit:
            problems.append({"level": "error", "where": "report",
                             "reason": gettext("the report is %(size)s bytes; the limit is %(limit)s (IMPORT_REPORT_MAX_BYTES)")
                                       % {"size": f"{len(text.encode('utf-8')):,}", "limit": f"{limit:,}"}})
            return
        language = value.get("language") or detect_language(text or "")
        if study.pk is None:
            self._report_new(study, text, language, problems)
            return
        self._direct()
        version = Report.objects.filter(study=study).values_list("version", flat=True).first()
        try:
            report = services.report_set(study=study, text=text, language=language)
        except ValidationError as error:
            problems.append({"level": "error", "where": "report", "reason": _validation_text(error)})
            return
        if version is None:
            self.report.counts["reports_created"] += 1
        elif report.version != version:
            self.report.counts["reports_updated"] += 1
        else:
            self.report.counts["reports_unchanged"] += 1

    def _report_new(self, study: Study, text: str, language: str, problems: list[dict]) -> None:
        """The report of a study new in this row: checked as ``report_set`` checks it, inserted with the
        chunk, and aligned once the chunk commits."""
        try:
            services.report_validate(text=text, language=language)
        except ValidationError as error:
            problems.append({"level": "error", "where": "report", "reason": _validation_text(error)})
            return
        waiting = next((report for report in self._row_writes.reports + self._chunk_writes.reports
                        if report.study is study), None)
        if waiting is None:
            self._row_writes.reports.append(Report(study=study, text=text, language=language))
            self._row_writes.aligned.append(study)
            self.report.counts["reports_created"] += 1
        elif (waiting.text, waiting.language) != (text, language):
            waiting.text, waiting.language = text, language
            self.report.counts["reports_updated"] += 1
        else:
            self.report.counts["reports_unchanged"] += 1

    def _manifest_image(self, study: Study, entry: Any, where: str, seen: dict[str, str],
                        problems: list[dict]) -> None:
        def error(reason: str, file: str = "", at: str = where) -> None:
            problems.append({"level": "error", "reason": reason, "where": at, "file": file})

        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            error(gettext("an image must be an object with 'file'"))
            return
        raw_name = entry["file"]
        name = safe_name(raw_name)
        if name is None:
            error(gettext("refused: the path leaves the batch folder (path traversal)"), raw_name[:255])
            return
        facts = _image_facts(entry)
        if isinstance(facts, str):
            error(facts, name)
            return
        laterality, frame = facts["laterality"], entry.get("frame")
        regions = entry.get("regions") or []
        if not isinstance(regions, list):
            error(gettext("'regions' must be a list"), name)
            return
        try:
            prepared = self._ahead.take(name) if self._ahead is not None else None
            if prepared is None:
                prepared = self._prepare(name)
        except FileNotFoundError:
            error(gettext("file not found in the batch"), name)
            return
        except ImageFileError as failure:
            error(str(failure), name)
            return
        content = prepared.content
        if is_dicom(content[:132], name):
            self.dicom_used.add(name)
            self._dicom_file(study, name, content, problems, where=where, regions=regions, frame=frame,
                             overrides={k: v for k, v in facts.items() if v not in ("", None)} | (
                                 {"laterality": laterality} if entry.get("laterality") else {}), seen=seen)
            return
        try:
            try:
                if prepared.failure is not None:
                    raise prepared.failure
                verified = prepared.verified
                reference = self._reference(name)
            except (ImageFileError, ValueError) as failure:
                error(str(failure), name)
                return
            image = self._image(study, verified, name=name, facts=facts, where=where, seen=seen, problems=problems,
                                reference=reference, pending=prepared.pending)
        finally:
            prepared.discard()  # what the image did not adopt
        if image is not None:
            self._regions(image, regions, where, name, problems)

    def _prepare(self, name: str) -> _Prepared:
        """Read batch file ``name`` and, unless it is DICOM, verify it (its one decode, hash and
        thumbnail): the part of an image's import that needs no database, run on the decode threads
        ahead of its row. Raises what ``BatchSource.read`` raises; a refused image is its ``failure``,
        worded in the import's language (a thread does not share the language the import runs in)."""
        with translation.override(self._language):
            return self._prepare_here(name)

    def _prepare_here(self, name: str) -> _Prepared:
        content = self.source.read(name)
        if is_dicom(content[:132], name):
            return _Prepared(content=content)
        try:
            verified = image_verify(content, thumbnail=self.options.thumbnails)
        except ValueError as failure:  # ImageFileError among them
            return _Prepared(content=content, failure=failure)
        prepared = _Prepared(content=content, verified=verified)
        # Written under temporary names in case the image is new; nothing where the final file is stored
        # already. A failed write is left to the row, which meets it where it writes the file itself.
        writes = [("image", image_store_pending)] if not self.options.reference else []
        if verified.thumbnail is not None:
            writes.append(("thumbnail", thumbnail_store_pending))
        try:
            for kind, store_pending in writes:
                final, temporary = store_pending(verified)
                if temporary:
                    prepared.pending[kind] = (final, temporary)
        except Exception:
            prepared.discard()
        return prepared

    def _reference(self, name: str) -> str:
        """With ``--reference``, the path of batch file ``name`` below IMPORT_ROOT (``ValueError`` when a
        link leads out of it); else ""."""
        if not self.options.reference:
            return ""
        return reference_path_check(self.source.local_path(name))

    def _image(self, study: Study, verified: VerifiedImage, *, name: str, facts: dict, where: str,
               seen: dict[str, str], problems: list[dict], reference: str = "",
               pending: dict[str, tuple[str, str]] | None = None) -> Image | None:
        """The image of ``verified`` in ``study``, new or existing. With ``reference`` (its path below
        IMPORT_ROOT) a new image is not copied into storage; its thumbnail still is. A new image adopts
        (pops) the temporary files of ``pending`` (``_Prepared.pending``), else writes its own."""
        pending = {} if pending is None else pending
        smallest = image_min_side()
        if verified.width < smallest or verified.height < smallest:
            problems.append({"level": "error", "where": where, "file": name,
                             "reason": gettext("the image is %(width)s×%(height)s px; an image needs at least %(smallest)s px on "
                                               "each side (IMPORT_IMAGE_MIN_SIDE)")
                                       % {"width": verified.width, "height": verified.height, "smallest": smallest}})
            return None
        spacing = facts.get("pixel_spacing_x_mm"), facts.get("pixel_spacing_y_mm")
        if any(value is not None for value in spacing):
            low, high = spacing_range_mm()
            if not all(isinstance(v, float) and math.isfinite(v) and low <= v <= high for v in spacing):
                shown = ", ".join("?" if v is None else f"{v:g}" for v in spacing)
                problems.append({"level": "warning", "where": where, "file": name,
                                 "reason": gettext("pixel spacing (%(spacing)s) mm is outside %(low)s–%(high)s mm per pixel, not "
                                                   "plausible for ultrasound; dropped: the image is imported without "
                                                   "calibration") % {"spacing": shown, "low": f"{low:g}", "high": f"{high:g}"}})
                facts = {k: v for k, v in facts.items() if k not in ("pixel_spacing_x_mm", "pixel_spacing_y_mm")}
        duplicate = verified.sha256 in seen
        if duplicate:
            problems.append({"level": "warning", "where": where, "file": name,
                             "reason": gettext("the same file as %(other)s in this study; imported once")
                             % {"other": seen[verified.sha256]}})
        else:
            seen[verified.sha256] = f"{where} '{name}'".replace(" ''", "")
        writes = self._row_writes
        image = self._new_image(study.accession, verified.sha256)
        if image is None and study.pk is not None:
            image = Image.objects.filter(study=study, sha256=verified.sha256).first()
        if image is None:
            stored = ""
            if not reference:
                stored, temporary = pending.pop("image", None) or image_store_pending(verified)
                if temporary:
                    writes.files.append((temporary, stored))
            thumbnail = ""
            if verified.thumbnail is not None:
                thumbnail, temporary = pending.pop("thumbnail", None) or thumbnail_store_pending(verified)
                if temporary:
                    writes.files.append((temporary, thumbnail))
            position = self._positions.get(study.accession)
            if position is None and study.pk is not None:
                last = (Image.objects.filter(study=study).order_by("-position")
                        .values_list("position", flat=True).first())
                position = -1 if last is None else last
            self._positions[study.accession] = position = (-1 if position is None else position) + 1
            image = Image(study=study, file=stored, source_path=reference, thumbnail=thumbnail, original_name=name[:255],
                          width=verified.width, height=verified.height, sha256=verified.sha256, position=position,
                          **facts)
            writes.images.append(image)
            writes.image_of[(study.accession, verified.sha256)] = image
            writes.studies_of_file.setdefault(verified.sha256, []).append(study.accession)
            self.report.counts["images_created"] += 1
        elif not duplicate:
            self.report.counts["images_existing"] += 1
        if duplicate:
            return image
        waiting = [accession for source in (self._chunk_writes, writes)
                   for accession in source.studies_of_file.get(verified.sha256, ()) if accession != study.accession]
        others = list(dict.fromkeys(waiting + self._stored_others(study, verified.sha256)))[:5]
        if others:
            problems.append({
                "level": "warning", "where": where, "file": name,
                "reason": gettext("the same file is also in study %(others)s (stored once, imported for both %(study)s "
                                  "and %(others)s); this is usually a data error")
                          % {"others": ", ".join(others), "study": study.accession},
            })
        return image

    def _stored_others(self, study: Study, sha256: str) -> list[str]:
        """Accessions of up to 5 stored images of the dataset with this file, in other studies."""
        if self._written is not None:
            return [accession for _, accession in sorted(self._written.get(sha256, ()), key=lambda w: w[0])
                    if accession != study.accession][:5]
        stored_others = Image.objects.filter(study__dataset=self.dataset, sha256=sha256)
        if study.pk is not None:
            stored_others = stored_others.exclude(study=study)
        return list(stored_others.values_list("study__accession", flat=True)[:5])

    # -- regions

    def _regions(self, image: Image, regions: list, where: str, name: str, problems: list[dict]) -> None:
        reader = self.options.as_reader
        assignment = None
        if reader is not None and regions:
            self._direct()
            if not Membership.objects.filter(dataset=self.dataset, user=reader, role="annotator").exists():
                services.membership_add(dataset=self.dataset, user=reader, role=Membership.Role.ANNOTATOR)
            assignment, _ = Assignment.objects.get_or_create(image=image, annotator=reader)
        for index, data in enumerate(regions):
            self._region(image, data, where=f"{where}.regions[{index}]", name=name, assignment=assignment,
                         problems=problems)
        if assignment is not None and assignment.status != Assignment.Status.SUBMITTED:
            services.assignment_submit_imported(assignment=assignment)

    def _region(self, image: Image, data: Any, *, where: str, name: str, assignment: Assignment | None,
                problems: list[dict]) -> None:
        def error(reason: str) -> None:
            self.report.counts["regions_refused"] += 1
            problems.append({"level": "error", "where": where, "file": name, "reason": reason, "region": True})

        if not isinstance(data, dict):
            error(gettext("a region must be an object"))
            return
        shape = data.get("shape")
        if isinstance(data.get("geometry"), dict):  # COCO from our exports carries it whole
            geometry = data["geometry"]
        elif shape == "ellipse":
            geometry = {key: data[key] for key in ("center", "radii", "rotation") if key in data}
        else:
            geometry = {"points": data.get("points")}
        source_points = None
        if shape == "polygon" and not self.options.strict:
            try:
                repaired, repairs = polygon_repair(geometry.get("points"), width=image.width, height=image.height)
            except GeometryError as failure:
                error(gettext("geometry: %(error)s") % {"error": services.message_text(failure.message)})
                return
            if repairs:
                source_points, geometry = geometry.get("points"), {"points": repaired}
                problems.append({"level": "warning", "where": where, "file": name,
                                 "reason": gettext("outline repaired: %(repairs)s") % {
                                     "repairs": "; ".join(services.message_text(r) for r in repairs)}})
                self.report.counts["regions_repaired"] += 1
        source_id = data.get("id", "")
        if not isinstance(source_id, (str, int)) or isinstance(source_id, bool):
            error(gettext("'id' must be text or a number"))
            return
        source_id = str(source_id)[:128]
        author_name = data.get("author") or self.options.author
        if not isinstance(author_name, str) or len(author_name) > 64:
            error(gettext("'author' must be text of at most 64 characters"))
            return
        label, lesion = data.get("label", "lesion"), data.get("lesion", "")
        attributes = data.get("attributes") or {}
        reader = self.options.as_reader
        if image.pk is None and reader is None:
            try:
                region = services.region_build(
                    image=image, lexicon=self.dataset.lexicon, author=None, shape=shape, geometry=geometry,
                    attributes=attributes, label=label, lesion_key=lesion, source=Region.Source.IMPORT,
                    source_author=author_name, source_id=source_id)
            except ValidationError as failure:
                error(_validation_text(failure))
                return
            region.source_points = source_points
            self._region_new(image, region)
            return
        self._direct()
        if reader is not None:
            mine = Region.objects.filter(image=image, author=reader, source=Region.Source.READER, is_deleted=False)
        else:
            mine = Region.objects.filter(image=image, source=Region.Source.IMPORT, source_author=author_name,
                                         is_deleted=False)
        try:
            normal = geometry_validate(shape, geometry, width=image.width, height=image.height)
        except GeometryError:
            normal = None  # region_create reports the reason in its own words
        existing = None
        if source_id:
            existing = mine.filter(source_id=source_id).first()
        elif normal is not None:
            existing = next((r for r in mine.filter(source_id="", shape=shape) if r.geometry == normal
                             and r.label == str(label).strip() and r.lesion_key == str(lesion).strip()), None)
        try:
            if existing is None:
                existing = services.region_create(
                    image=image, author=reader, shape=shape, geometry=geometry, attributes=attributes,
                    label=label, lesion_key=lesion, assignment=assignment,
                    source=Region.Source.READER if reader is not None else Region.Source.IMPORT,
                    source_author="" if reader is not None else author_name, source_id=source_id,
                    allow_closed=True,  # a reading submitted in its source tool is imported as it was
                )
                self.report.counts["regions_created"] += 1
            elif _region_same(existing, shape=shape, geometry=normal, attributes=attributes, label=label,
                              lesion=lesion, lexicon=self.dataset.lexicon):
                # Compared first: region_update would record a revision even for identical values.
                self.report.counts["regions_existing"] += 1
            else:
                existing = services.region_update(
                    region=existing, actor=reader, expected_version=existing.version, changes={
                        "shape": shape, "geometry": geometry, "attributes": attributes, "label": label,
                        "lesion_key": lesion}, allow_closed=True)
                self.report.counts["regions_updated"] += 1
            if existing.source_points != source_points:
                Region.objects.filter(pk=existing.pk).update(source_points=source_points)
        except ValidationError as failure:
            error(_validation_text(failure))
        except services.RegionConflict:
            error(gettext("the region changed while importing; try again"))

    def _region_new(self, image: Image, region: Region) -> None:
        """A region of an image new in this row: the same region twice in the row (by source id, else by
        identical content) is written once, the later one winning, as a re-import would leave it."""
        mine = self._row_writes.regions_of.setdefault(id(image), [])
        same = next((other for other in mine if (other.source_id and other.source_id == region.source_id) or (
            not region.source_id and not other.source_id and other.shape == region.shape
            and other.geometry == region.geometry and other.label == region.label
            and other.lesion_key == region.lesion_key and other.source_author == region.source_author)), None)
        if same is None:
            mine.append(region)
            self._row_writes.regions.append(region)
            self.report.counts["regions_created"] += 1
        elif (same.shape, same.geometry, same.label, same.lesion_key, same.attributes) == (
                region.shape, region.geometry, region.label, region.lesion_key, region.attributes):
            self.report.counts["regions_existing"] += 1
        else:
            for name in ("shape", "geometry", "label", "lesion_key", "attributes", "source_points", "bbox",
                         "area_px", "area_mm2", "long_axis_mm", "short_axis_mm"):
                setattr(same, name, getattr(region, name))
            self.report.counts["regions_updated"] += 1

    # -- DICOM

    def _dicom_groups(self, names: list[str]) -> dict[str, list[tuple[str, DicomHeader]]]:
        groups: dict[str, list[tuple[str, DicomHeader]]] = {}
        for name in names:
            try:
                header = dicom_header(self.source.read(name))
            except (DicomFileError, ImageFileError) as failure:
                self.report.add(level="error", file=name, reason=str(failure))
                self.report.counts["rows_failed"] += 1
                continue
            groups.setdefault(header.study_uid, []).append((name, header))
        return groups

    def _dicom_row(self, files: list[tuple[str, DicomHeader]]) -> None:
        first = files[0][1]

        def work(problems: list[dict]) -> None:
            study = self._study(accession=first.accession, patient=first.patient, exam_date=first.exam_date,
                                body_part=first.body_part, metadata=first.metadata, problems=problems)
            if study is None:
                return
            seen: dict[str, str] = {}
            for name, _ in files:
                self._dicom_file(study, name, self.source.read(name), problems, where="", regions=[], frame=None,
                                 overrides={}, seen=seen)

        self._row(line=None, file=files[0][0], study_label=first.accession, work=work)

    def _dicom_file(self, study: Study, name: str, content: bytes, problems: list[dict], *, where: str,
                    regions: list, frame: int | None, overrides: dict, seen: dict[str, str]) -> None:
        def error(reason: str) -> None:
            problems.append({"level": "error", "where": where, "file": name, "reason": reason})

        try:
            header = dicom_header(content)
        except DicomFileError as failure:
            error(str(failure))
            return
        if regions and frame is None and header.frames > 1:
            error(gettext("regions on a multi-frame file (%(frames)s frames) need 'frame'") % {"frames": header.frames})
            return
        if header.burned_in and self.options.banner is None:
            problems.append({"level": "warning", "where": where, "file": name,
                             "reason": gettext("the file declares burned-in annotation (text on the pixels) and no banner "
                                               "region is configured to black it out")})
        facts = {"laterality": header.laterality, "frame_index": 0, "study_instance_uid": header.study_uid,
                 "series_instance_uid": header.series_uid, "sop_instance_uid": header.sop_uid}
        if header.spacing_mm:
            facts["pixel_spacing_x_mm"], facts["pixel_spacing_y_mm"] = header.spacing_mm
        facts.update(overrides)
        try:
            frames = dicom_frames(content, frames=None if frame is None else [frame],
                                  frame_step=self.options.frame_step, banner=self.options.banner)
            for decoded in frames:
                # Named from the pseudonymised identifiers, never the source path (which often holds the
                # patient's name or record number).
                label = f"dicom/{header.accession}/{header.sop_uid or pseudonym('file', name)[:16]}"
                if header.frames > 1:
                    label += f"#frame={decoded.index}"
                # The PNG was made here from decoded pixels: its facts are known, no second decode.
                verified = VerifiedImage(content=decoded.png, sha256=hashlib.sha256(decoded.png).hexdigest(),
                                         width=decoded.width, height=decoded.height, format="PNG",
                                         thumbnail=decoded.thumbnail if self.options.thumbnails else None)
                image = self._image(study, verified, name=label, facts=facts | {"frame_index": decoded.index},
                                    where=where or label, seen=seen, problems=problems)
                if image is not None and regions:
                    self._regions(image, regions, where, name, problems)
        except DicomFileError as failure:
            error(str(failure))

    # -- COCO

    def _run_coco(self) -> None:
        jsons = [n for n in self.source.names if n.lower().endswith(".json") and n != "manifest.json"]
        preferred = [n for n in jsons if posixpath.basename(n).startswith(("instances", "annotations"))]
        chosen = preferred or jsons
        if len(chosen) != 1:
            raise BatchError(f"a COCO batch needs exactly one annotations .json file; found {len(chosen)}"
                             + (f" ({', '.join(chosen[:5])})" if chosen else ""))
        name = chosen[0]
        try:
            with self.source.open_text(name) as handle:
                coco = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BatchError(f"{name} is not valid JSON ({error})")
        if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
            raise BatchError(f"{name} is not a COCO instances file (no 'images' list)")
        base = posixpath.dirname(name)
        categories = {c.get("id"): c.get("name", "lesion") for c in coco.get("categories") or [] if isinstance(c, dict)}
        by_image: dict[Any, list[dict]] = {}
        for annotation in coco.get("annotations") or []:
            if isinstance(annotation, dict):
                by_image.setdefault(annotation.get("image_id"), []).append(annotation)
        self.report.total = len(coco["images"])
        self.progress(self.report)
        self._in_chunks(
            (lambda index=index, entry=entry: self._coco_row(
                index, entry, by_image.get(entry.get("id") if isinstance(entry, dict) else None, []), categories, base))
            for index, entry in enumerate(coco["images"]))

    def _coco_row(self, index: int, entry: Any, annotations: list[dict], categories: dict, base: str) -> None:
        where = f"images[{index}]"
        file_name = entry.get("file_name", "") if isinstance(entry, dict) else ""

        def work(problems: list[dict]) -> None:
            def error(reason: str) -> None:
                problems.append({"level": "error", "where": where, "file": file_name, "reason": reason})

            if not isinstance(entry, dict) or not isinstance(file_name, str) or not file_name:
                error(gettext("an image needs 'file_name'"))
                return
            image = self._coco_image(entry, file_name, base, where, problems)
            if image is None:
                return
            regions = []
            for position, annotation in enumerate(annotations):
                region = _coco_region(annotation, categories)
                if isinstance(region, str):
                    error(gettext("annotation %(id)s: %(error)s") % {"id": annotation.get("id", position), "error": region})
                    continue
                regions.append(region)
            self._regions(image, regions, where, file_name, problems)

        self._row(line=None, file=file_name, study_label=str(entry.get("study", "")) if isinstance(entry, dict) else "",
                  work=work)

    def _coco_image(self, entry: dict, file_name: str, base: str, where: str, problems: list[dict]) -> Image | None:
        images = Image.objects.filter(study__dataset=self.dataset)
        if entry.get("study"):
            images = images.filter(study__accession=entry["study"])
        if isinstance(entry.get("sha256"), str):
            found = images.filter(sha256=entry["sha256"]).first()
            if found is not None:
                self.report.counts["images_existing"] += 1
                return found
        # file_name is relative to the JSON's folder in plain COCO, to the batch root in our exports.
        candidates = [safe_name(posixpath.join(base, file_name)) if base else None, safe_name(file_name)]
        name = next((n for n in candidates if n is not None and self.source.has(n)), None)
        if name is not None:
            facts = _image_facts(entry)  # checked before the file is read: a bad entry costs no decode
            if isinstance(facts, str):
                problems.append({"level": "error", "where": where, "file": file_name, "reason": facts})
                return None
            try:
                verified = image_verify(self.source.read(name), thumbnail=self.options.thumbnails)
                reference = self._reference(name)
            except (ImageFileError, FileNotFoundError, ValueError) as failure:
                problems.append({"level": "error", "where": where, "file": file_name, "reason": str(failure)})
                return None
            found = images.filter(sha256=verified.sha256).first()
            if found is not None:
                self.report.counts["images_existing"] += 1
                return found
            accession = str(entry.get("study") or posixpath.splitext(posixpath.basename(file_name))[0])[:64]
            study = self._study(accession=accession, patient=str(entry.get("patient") or accession)[:64],
                                exam_date=None, body_part="", metadata={"source": "coco"}, problems=problems)
            if study is None:
                return None
            return self._image(study, verified, name=str(entry.get("original_name") or file_name), facts=facts,
                               where=where, seen={}, problems=problems, reference=reference)
        matches = list(images.filter(original_name=file_name)[:2])
        if len(matches) == 1:
            self.report.counts["images_existing"] += 1
            return matches[0]
        reason = ("several images of the dataset are named like this; add 'sha256' or 'study'" if matches
                  else "the image is neither in the batch nor in the dataset")
        problems.append({"level": "error", "where": where, "file": file_name, "reason": reason})
        return None


def _studies_align(study_ids: list[int]) -> None:
    """Align a committed chunk's studies with new reports: in this process, in one transaction, on the
    embedded default; else one task for the chunk on the alignment workers. A failure there is the
    alignment's, never the import's: the rows are committed and the studies can be aligned again."""
    try:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            alignment_services.studies_align(study_ids=study_ids, worker="import")
        else:
            # No alignment run to report to: the studies' own state rows show their progress.
            alignment_tasks.alignment_chunk.delay(None, study_ids)
    except Exception:
        logger.warning("alignment of %d imported studies not started", len(study_ids), exc_info=True)


def _image_facts(entry: dict) -> dict | str:
    """The image fields of a manifest or COCO image entry, checked and normalised, or the reason they
    cannot be (one rule for both formats). Spacing is checked for plausibility later, where it is
    dropped with a warning rather than refused."""
    laterality = LATERALITY_WORDS.get(str(entry.get("laterality") or "").strip().lower())
    if laterality is None:
        return gettext("unknown laterality %(value)s (use left, right or bilateral)") % {
            "value": repr(str(entry.get("laterality"))[:32])}
    frame = entry.get("frame")
    if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool) or frame < 0):
        return gettext("'frame' must be a whole number ≥ 0, got %(value)s") % {"value": repr(str(frame)[:32])}
    if frame is not None and frame > 2**31 - 1:
        return gettext("'frame' is out of range (%(frame)s)") % {"frame": frame}
    for key in ("view", "body_marker"):
        if not isinstance(entry.get(key) or "", str):
            return gettext("'%(key)s' must be text") % {"key": key}
    facts: dict[str, Any] = {"laterality": laterality, "view": (entry.get("view") or "")[:32],
                             "body_marker": (entry.get("body_marker") or "")[:128], "frame_index": frame or 0}
    spacing = entry.get("pixel_spacing_mm")
    if spacing is not None:
        if isinstance(spacing, (int, float)) and not isinstance(spacing, bool):
            spacing = [spacing, spacing]
        if not (isinstance(spacing, list) and len(spacing) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in spacing)):
            return gettext("'pixel_spacing_mm' must be [x, y] in mm, both greater than 0")
        try:
            facts["pixel_spacing_x_mm"], facts["pixel_spacing_y_mm"] = float(spacing[0]), float(spacing[1])
        except OverflowError:  # an integer too large for a float: implausible, dropped later
            facts["pixel_spacing_x_mm"] = facts["pixel_spacing_y_mm"] = math.inf
    return facts


def _coco_region(annotation: dict, categories: dict) -> dict | str:
    """A manifest-style region from a COCO annotation, or the reason it cannot be one. Our own exports
    carry the exact shape and geometry beside the polygon; plain COCO gives a polygon (or a bbox)."""
    region: dict[str, Any] = {
        "label": annotation.get("label") or categories.get(annotation.get("category_id"), "lesion"),
        "lesion": annotation.get("lesion", ""),
        "attributes": annotation.get("attributes") or {},
        "id": annotation.get("source_id") or annotation.get("id", ""),
    }
    if annotation.get("author"):
        region["author"] = annotation["author"]
    if annotation.get("shape") and isinstance(annotation.get("geometry"), dict):
        return region | {"shape": annotation["shape"], "geometry": annotation["geometry"]}
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, dict) or annotation.get("iscrowd"):
        return gettext("RLE (iscrowd) segmentation is not supported; give polygons")
    if isinstance(segmentation, list) and segmentation:
        if len(segmentation) > 1:
            return gettext("a region must be one polygon; this annotation has several parts")
        flat = segmentation[0]
        if not isinstance(flat, list) or len(flat) < 6 or len(flat) % 2:
            return gettext("the segmentation polygon needs at least three x, y pairs")
        return region | {"shape": "polygon", "points": [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)]}
    bbox = annotation.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
        x, y, w, h = bbox
        return region | {"shape": "rectangle", "points": [[x, y], [x + w, y + h]]}
    return gettext("the annotation has neither a segmentation nor a bbox")


def _region_same(region: Region, *, shape: Any, geometry: dict | None, attributes: Any, label: Any, lesion: Any,
                 lexicon) -> bool:
    if geometry is None or region.shape != shape or region.geometry != geometry:
        return False
    if not isinstance(label, str) or not isinstance(lesion, str):
        return False
    try:
        clean = attributes_validate(lexicon, attributes)
    except AttributeValidationError:
        return False
    return region.label == label.strip() and region.lesion_key == lesion.strip() and region.attributes == clean


def _validation_text(error: ValidationError) -> str:
    if hasattr(error, "message_dict"):
        parts = []
        for name, messages in error.message_dict.items():
            parts.extend(f"{name}: {message}" for message in messages)
        return "; ".join(parts)
    return "; ".join(error.messages)


# ---------------------------------------------------------------------------------------------- jobs


def import_job_create(*, dataset: Dataset, user, upload, params: dict | None = None) -> ImportJob:
    """Record an import job for an uploaded .zip and queue it once the upload is committed."""
    from .tasks import import_job_run as task

    with transaction.atomic():
        # The per-row report is written in the language of the admin who started the import.
        params = {"language": translation.get_language() or settings.LANGUAGE_CODE} | dict(params or {})
        job = ImportJob.objects.create(dataset=dataset, created_by=user, params=params)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(getattr(upload, "name", "") or "batch.zip").name)[-100:]
        job.source.save(f"imports/{job.pk}/{name or 'batch.zip'}", upload, save=True)
        transaction.on_commit(lambda: task.delay(job.pk))
    return job


@contextmanager
def _local_path(storage_name: str) -> Iterator[Path]:
    """A local path of a stored file: the file itself on local storage, else a temporary copy."""
    try:
        yield Path(default_storage.path(storage_name))
        return
    except NotImplementedError:
        pass
    with tempfile.NamedTemporaryFile(suffix=Path(storage_name).suffix) as copy:
        with default_storage.open(storage_name, "rb") as source:
            shutil.copyfileobj(source, copy, 1 << 20)
        copy.flush()
        yield Path(copy.name)


def import_job_run(*, job_id: int, worker: str = "inline") -> ImportJob | None:
    """Run a queued import job. Claimed by one worker at a time (``jobs.job_claim``): a second
    delivery of the same message while the job runs or after it finished does nothing; after a
    worker crash the job is taken over once its claim is stale, which is safe because importing the
    same batch again changes nothing. Progress is written at most once a second, outside the rows'
    transactions, so the page polling the row sees it move."""
    if not job_claim(model=ImportJob, job_id=job_id, worker=worker):
        return None
    job = ImportJob.objects.select_related("dataset__lexicon").get(pk=job_id)
    params = job.params or {}
    reader = None
    if params.get("as_reader"):
        reader = get_user_model().objects.filter(pk=params["as_reader"], is_active=True).first()
    options = ImportOptions(format=params.get("format", "manifest"), author=params.get("author") or "import",
                            as_reader=reader, frame_step=int(params.get("frame_step") or 1),
                            banner=tuple(params["banner"]) if params.get("banner") else None)
    record = job_progress_recorder(model=ImportJob, job_id=job_id, worker=worker)

    def progress(report: ImportReport) -> None:
        record(report.total, report.done, report.counts)

    try:
        if params.get("as_reader") and reader is None:
            raise BatchError("the reader to import as does not exist or is inactive")
        with _local_path(job.source.name) as path, translation.override(params.get("language")
                                                                          or settings.LANGUAGE_CODE):
            report = batch_import(dataset=job.dataset, path=path, options=options, progress=progress)
    except BatchError as error:
        job_finish(model=ImportJob, job_id=job_id, worker=worker, status=ImportJob.Status.FAILED,
                   errors=[{"level": "error", "line": None, "file": "", "study": "", "where": "", "reason": str(error)}])
    except Exception as error:
        job_finish(model=ImportJob, job_id=job_id, worker=worker, status=ImportJob.Status.FAILED,
                   errors=[{"level": "error", "line": None, "file": "", "study": "", "where": "",
                            "reason": (gettext("the import stopped: %(error)s")
                                       % {"error": f"{type(error).__name__}: {error}"})[:1000]}])
        # Recorded on the job, which the admin's page shows; not raised, so an in-process run (the
        # embedded default) cannot turn the upload page into a server error.
        logger.exception("import job %s stopped", job_id)
    else:
        job_finish(model=ImportJob, job_id=job_id, worker=worker, status=ImportJob.Status.DONE, total=report.total,
                   done=report.done, counts=dict(report.counts), errors=report.problems)
    return ImportJob.objects.get(pk=job_id)
