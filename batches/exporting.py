"""Batch export of a dataset for training pipelines: COCO, US-365K records, grounded JSONL, CSV, masks.

The management command ``export_batch`` and the export job (``tasks.export_job_run``) both call
``export_run``.

Promises:

- Streaming: studies are read in keyset-paginated chunks (with their images, regions and, for JSONL,
  sentences), and every output is written as it goes. COCO JSON is written by hand: its images and
  annotations go to two part files that are joined at the end, so memory stays flat however large the
  dataset is. Only the category list (lesion labels) is held in memory.
- One definition of each record: every COCO and JSONL record is one list of fields (see "records"),
  from which both the Python writers (orjson; JSON already stored, such as geometry, bbox and
  attributes, copied in as text with ``orjson.Fragment``) and, on PostgreSQL, the SQL that builds the
  same records for COPY are made. Report sentences and their links are read through
  ``alignment.selectors.sentences_for_export`` on both paths.
- No source paths: image files are named ``images/<accession>/<position>.<ext>`` unless ``keep_names``
  (source file names often carry a patient's name).
- CSV cells that a spreadsheet would run as a formula are neutralised (``csv_cell``), and lexicon
  attributes are ``attr_<code>`` columns, so every column name is unique.
- One snapshot: on PostgreSQL the whole export reads in one REPEATABLE READ transaction, so the files
  agree with each other and with ``manifest.json`` even while people keep annotating.
- Atomic: everything is written under a temporary name beside ``out`` and renamed only when complete; a
  failed export leaves nothing at ``out``. ``out`` ending in ``.zip`` gives a zip archive, else a folder.
- Every export carries ``manifest.json``: dataset, filters, counts, lexicon and pipeline versions, the
  snapshot time, how files and columns are named (``layout``), and the sha256 and size of every other
  file.

Which regions (``status``):

- ``adjudicated``: consensus regions (``source=consensus``) of images whose status is adjudicated.
- ``submitted``: readers' regions whose assignment is submitted, plus imported pre-annotations, on images
  that have at least one of those. Each reader's region is its own record (double reading gives two).
- ``all``: every live region of every image.

Splits are by patient and reproducible: a patient's split is drawn from sha256(seed, patient), so no
patient is in two splits, the same seed gives the same split, and patients added later never move the
existing ones between splits (the proportions are therefore approximate on small datasets).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageDraw

from alignment.selectors import sentences_for_export
from annotation.geometry import geometry_polygon_points
from annotation.lexicons import lexicon_load
from annotation.media import image_open
from annotation.models import Assignment, Dataset, Image, Region, Study
from annotation.services import audit_record

from .jobs import job_claim, job_finish, job_progress_recorder
from .models import ExportJob

FORMATS = ("coco", "us365k", "jsonl", "csv", "masks")
STATUSES = ("adjudicated", "submitted", "all")
SPLIT_NAMES = ("train", "val", "test")
US365K_KEYS = ("Diagnosis", "Body_system_level", "Organ_level", "Shape", "Margins", "Echogenicity",
               "InternalCharacteristics", "PosteriorAcoustics", "Vascularity")
# Lexicons that describe one organ: their records name it (UDAF codes, tags looked up in udaf.json).
LEXICON_ORGAN = {"birads-us": "breast", "tirads": "thyroid_gland"}
LEXICON_DIAGNOSIS = {"birads-us": "mass", "tirads": "nodule"}
AREA_SHAPES = ("polygon", "rectangle", "ellipse")
STUDY_CHUNK = 500
WRITE_BUFFER = 1 << 20


class ExportError(ValueError):
    """The export cannot be made as asked; nothing was written at the output path."""


@dataclass
class ExportOptions:
    format: str
    status: str = "adjudicated"
    split: tuple[float, ...] | None = None  # (train, val, test) fractions summing to 1
    seed: int = 42
    include_images: bool = False
    keep_names: bool = False  # name image files after their source files (which may identify a patient)
    study_chunk: int = STUDY_CHUNK
    # On PostgreSQL, COCO and JSONL records are built by the database (same records, several times faster).
    database_records: bool = True


@dataclass
class ExportProgress:
    total: int = 0
    done: int = 0
    counts: Counter = field(default_factory=Counter)


def split_parse(text: str) -> tuple[float, ...]:
    """``"0.8,0.1,0.1"`` → (0.8, 0.1, 0.1); two or three finite, non-negative fractions summing to 1.
    ``float`` reads "nan" and "inf" too, and NaN fails every comparison, so finiteness is checked first."""
    try:
        parts = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ExportError(f"--split must be fractions like 0.8,0.1,0.1 (got {text!r})")
    return _split_check(parts, shown=text)


def _split_check(parts: tuple, *, shown: str) -> tuple[float, ...]:
    if (not 2 <= len(parts) <= 3 or not all(isinstance(p, int | float) and math.isfinite(p) and p >= 0 for p in parts)
            or abs(sum(parts) - 1.0) > 1e-6):
        raise ExportError(f"--split needs 2 or 3 non-negative fractions that sum to 1 (got {shown!r})")
    return tuple(float(p) for p in parts)


def split_of(patient: str, *, split: tuple[float, ...] | None, seed: int) -> str:
    """The split of ``patient``: a uniform draw from sha256(seed, patient) against the cumulative
    fractions. Depends on nothing else, so it is the same in every export with this seed."""
    if not split:
        return ""
    draw = int.from_bytes(hashlib.sha256(f"{seed}\x00{patient}".encode()).digest()[:8], "big") / 2**64
    total = 0.0
    for name, fraction in zip(SPLIT_NAMES, split, strict=False):
        total += fraction
        if draw < total:
            return name
    return SPLIT_NAMES[len(split) - 1]


# ---------------------------------------------------------------------------------------------- output


class _HashingWriter:
    """A binary file that counts and hashes what goes through it, buffered. Once a file outgrows one
    buffer, hashing and writing move to a helper thread, one block behind the caller (hashlib and file
    writes release the GIL, so they overlap with reading the database); at most two blocks are held."""

    def __init__(self, path: Path, on_close: Callable[[str, int], None]):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("wb")
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._on_close = on_close
        self._worker: ThreadPoolExecutor | None = None
        self._stored: Future | None = None

    def write(self, data: str | bytes) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= WRITE_BUFFER:
            self._flush(closing=False)

    def _flush(self, *, closing: bool) -> None:
        block = b"".join(self._buffer)
        self._buffer, self._buffered = [], 0
        if self._stored is not None:
            self._stored.result()
        if closing and self._worker is None:
            self._store(block)
            return
        self._worker = self._worker or ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-writer")
        self._stored = self._worker.submit(self._store, block)

    def _store(self, block: bytes) -> None:
        self._hash.update(block)
        self._handle.write(block)
        self._size += len(block)

    def close(self) -> None:
        self._flush(closing=True)
        if self._worker is not None:
            self._stored.result()
            self._worker.shutdown()
        self._handle.close()
        self._on_close(self._hash.hexdigest(), self._size)


class _Output:
    """A temporary folder beside ``out``; ``commit`` writes manifest.json and renames it (or its zip)
    into place. The list of file checksums is kept on disk, not in memory."""

    def __init__(self, out: Path):
        self.out = out
        self.zip = out.suffix.lower() == ".zip"
        out.parent.mkdir(parents=True, exist_ok=True)
        self.root = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
        self.root.mkdir()
        self._sums_path = out.parent / f".{out.name}.sums-{uuid.uuid4().hex[:8]}"
        self._sums = self._sums_path.open("w", encoding="utf-8")
        self.files = 0
        self.bytes = 0

    def _record(self, name: str, digest: str, size: int) -> None:
        self._sums.write(json.dumps([name, digest, size]) + "\n")
        self.files += 1
        self.bytes += size

    def open(self, name: str) -> _HashingWriter:
        return _HashingWriter(self.root / name, lambda digest, size: self._record(name, digest, size))

    def scratch(self, name: str) -> Path:
        """A path for intermediate data that is not part of the export."""
        return self.root / ".scratch" / name

    def copy_image(self, name: str, image: dict) -> None:
        """Copy an image's file (stored, or referenced: then checked against its sha256, and a changed or
        vanished file stops the export with ``ReferenceProblem``)."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        row = SimpleNamespace(pk=image["id"], file=image["file"], source_path=image["source_path"],
                              sha256=image["sha256"])
        with image_open(image=row) as source, target.open("wb") as handle:
            shutil.copyfileobj(source, handle, WRITE_BUFFER)
        # Stored files are content-addressed: the digest is known and was checked when imported.
        self._record(name, image["sha256"], target.stat().st_size)

    def commit(self, manifest: dict) -> None:
        shutil.rmtree(self.root / ".scratch", ignore_errors=True)
        self._sums.close()
        # The manifest lists every other file; it cannot hold its own checksum.
        writer = _HashingWriter(self.root / "manifest.json", lambda digest, size: None)
        head = json.dumps(manifest, ensure_ascii=False, indent=2, default=str)
        writer.write(head[:-2] + ',\n  "files": {')
        with self._sums_path.open(encoding="utf-8") as sums:
            for position, line in enumerate(sums):
                name, digest, size = json.loads(line)
                writer.write(("," if position else "") + f"\n    {json.dumps(name)}: "
                             f'{{"sha256": "{digest}", "bytes": {size}}}')
        writer.write("\n  }\n}\n")
        writer.close()
        self._sums_path.unlink()
        if self.zip:
            partial = self.out.parent / f".{self.out.name}.partial-{uuid.uuid4().hex[:8]}.zip"
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                for path in sorted(self.root.rglob("*")):
                    if path.is_file():
                        name = path.relative_to(self.root).as_posix()
                        stored = name.startswith("images/")  # already compressed; deflate gains nothing
                        archive.write(path, name, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
            os.replace(partial, self.out)
            shutil.rmtree(self.root)
            return
        previous = None
        if self.out.exists():
            previous = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out, previous)
        os.replace(self.root, self.out)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True) if previous.is_dir() else previous.unlink()

    def abort(self) -> None:
        self._sums.close()
        self._sums_path.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- reading


def _image_filter(status: str) -> Q:
    if status == "adjudicated":
        return Q(status=Image.Status.ADJUDICATED)
    if status == "submitted":
        submitted = Assignment.objects.filter(image=OuterRef("pk"), status=Assignment.Status.SUBMITTED)
        imported = Region.objects.filter(image=OuterRef("pk"), source=Region.Source.IMPORT, is_deleted=False)
        return Q(Exists(submitted)) | Q(Exists(imported))
    return Q()


def _region_filter(status: str) -> Q:
    if status == "adjudicated":
        return Q(source=Region.Source.CONSENSUS)
    if status == "submitted":
        return Q(source=Region.Source.IMPORT) | Q(source=Region.Source.READER,
                                                   assignment__status=Assignment.Status.SUBMITTED)
    return Q()


STUDY_FIELDS = ("id", "accession", "patient", "exam_date", "body_part", "report__id", "report__text",
                "report__language", "report__version")
IMAGE_FIELDS = ("id", "study_id", "position", "file", "source_path", "original_name", "width", "height", "sha256",
                "pixel_spacing_x_mm", "pixel_spacing_y_mm", "laterality", "view", "body_marker", "frame_index",
                "status")
REGION_FIELDS = ("id", "image_id", "shape", "geometry", "label", "lesion_key", "attributes", "bbox", "area_px",
                 "area_mm2", "long_axis_mm", "short_axis_mm", "source", "source_author", "source_id",
                 "author__username")


RAW_JSON = {name: Cast(name, TextField()) for name in ("geometry", "attributes", "bbox")}


def _study_chunks(*, dataset: Dataset, options: ExportOptions, sentences: bool,
                  raw_json: bool = False) -> Iterator[list[dict]]:
    """Yield lists of studies, each with ``images`` (each with ``regions``) and, when asked, the
    ``sentences`` of its current report. Keyset pagination on the study id: every query is an index
    range scan, so the thousandth chunk costs what the first did. Regions come as named tuples of
    ``REGION_FIELDS``, cheaper to make than a dict a row. With ``raw_json`` their
    geometry, attributes and bbox come as JSON text (``geometry_text``...) instead, for formats that copy
    them into their output: decoding and re-encoding them was most of an export's time."""
    image_filter, region_filter = _image_filter(options.status), _region_filter(options.status)
    region_fields = [f for f in REGION_FIELDS if not (raw_json and f in RAW_JSON)]
    raw = {f"{name}_text": expression for name, expression in RAW_JSON.items()} if raw_json else {}
    regions = (Region.objects.filter(region_filter, image__study__dataset=dataset, is_deleted=False)
               .annotate(**raw).order_by("image_id", "id").values_list(*region_fields, *raw, named=True))
    last = 0
    while True:
        studies = list(Study.objects.filter(dataset=dataset, id__gt=last).order_by("id")
                       .values(*STUDY_FIELDS)[: options.study_chunk])
        if not studies:
            return
        last = studies[-1]["id"]
        by_study = {study["id"]: study for study in studies}
        for study in studies:
            study["images"] = []
        # Images and regions by the chunk's range of studies: an index range, not hundreds of ids to send.
        images = list(Image.objects.filter(image_filter, study__dataset=dataset, study_id__gte=studies[0]["id"],
                                           study_id__lte=last).order_by("study_id", "position", "id")
                      .values(*IMAGE_FIELDS))
        by_image = {}
        for image in images:
            image["regions"] = []
            by_image[image["id"]] = image
            by_study[image["study_id"]]["images"].append(image)
        if by_image:
            # Regions of images the status filter left out are skipped here.
            for region in regions.filter(image__study_id__gte=studies[0]["id"], image__study_id__lte=last):
                image = by_image.get(region.image_id)
                if image is not None:
                    image["regions"].append(region)
        if sentences:
            chunk = Study.objects.filter(dataset=dataset, id__gte=studies[0]["id"], id__lte=last)
            _attach_sentences(studies, by_image, chunk)
        yield [study for study in studies if study["images"]]


def _attach_sentences(studies: list[dict], by_image: dict[int, dict], chunk) -> None:
    """Give each study (of the queryset ``chunk``) its current report's ``sentences`` and each image
    ``links`` (sentence id → linked region ids), read through ``alignment.selectors.sentences_for_export``."""
    by_report, links = sentences_for_export(studies=chunk, image_ids=list(by_image))
    for study in studies:
        study["sentences"] = by_report.get(study["report__id"], [])
    for image in by_image.values():
        image["links"] = {}
    for (sentence_id, image_id), region_ids in links.items():
        by_image[image_id]["links"][sentence_id] = region_ids


# ---------------------------------------------------------------------------------------------- shared bits


def region_export_id(region) -> str:
    """The id a region is known by outside: its source's id when it came from one, else ours."""
    return region.source_id or str(region.id)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _image_names(study: dict, *, keep_names: bool) -> dict[int, str]:
    """Export path of each image of a study: ``images/<accession>/<position>.<ext>`` (position as four
    digits, the image's place in its study; a second image at the same position gets its content hash
    added). Source file names can carry a patient's name (DICOM folders often do), so they are used only
    with ``keep_names``: ``images/<accession>/<original file name>``, DICOM frames as ``<file>_f0003``,
    a name an earlier image of the study already has prefixed with the image id."""
    used: set[str] = set()
    names = {}
    folder = _SAFE.sub("_", study["accession"]).strip("._") or str(study["id"])
    for image in study["images"]:
        file = image["file"] or image["source_path"]  # a referenced image keeps its source's extension
        extension = file.rsplit(".", 1)[-1] if "." in file else "png"
        if keep_names:
            original = (image["original_name"] or image["sha256"]).rsplit("/", 1)[-1]
            stem, _, frame = original.partition("#frame=")
            stem = stem.rsplit(".", 1)[0] if "." in stem else stem
            stem = _SAFE.sub("_", stem).strip("._") or image["sha256"][:16]
            if frame:
                stem += f"_f{int(frame):04d}" if frame.isascii() and frame.isdigit() else f"_f{_SAFE.sub('_', frame)}"
            name = f"{stem}.{extension}"
            taken = f"{image['id']}_{name}"
        else:
            name = f"{image['position']:04d}.{extension}"
            taken = f"{image['position']:04d}_{image['sha256'][:16]}.{extension}"
        names[image["id"]] = f"images/{folder}/{taken}" if name in used else f"images/{folder}/{name}"
        used.add(name)
    return names


def _json(value: Any) -> bytes:
    """Compact JSON, UTF-8; ``orjson.Fragment`` values (JSON text as stored) are copied in as they are."""
    return orjson.dumps(value)


def _stored(text: str | None) -> orjson.Fragment | None:
    """JSON text read from the database (``RAW_JSON``), to be copied into a record without decoding."""
    return None if text is None else orjson.Fragment(text)


def _spacing(image: dict) -> list[float] | None:
    if image["pixel_spacing_x_mm"] and image["pixel_spacing_y_mm"]:
        return [image["pixel_spacing_x_mm"], image["pixel_spacing_y_mm"]]
    return None


def _segmentation_text(region) -> str:
    """COCO polygon of an area region as JSON text: a polygon's own points flattened straight from the
    stored text; rectangles and ellipses outlined through the geometry module."""
    text = region.geometry_text
    if region.shape == "polygon":
        points = text[text.index("[[") + 2: text.rindex("]]")]
        return "[[" + points.replace("[", "").replace("]", "") + "]]"
    geometry = orjson.loads(text)
    if region.shape == "rectangle":
        # What geometry_polygon_points gives (shapely keeps the corners as given), fifty times faster.
        (x1, y1), (x2, y2) = ((round(float(x), 2), round(float(y), 2)) for x, y in geometry["points"])
        return _json([[x1, y1, x2, y1, x2, y2, x1, y2]]).decode()
    outline = geometry_polygon_points(region.shape, geometry)
    return _json([[v for point in outline for v in point]]).decode()


# ---------------------------------------------------------------------------------------------- records
#
# Each JSON record — a COCO image, a COCO annotation, a JSONL line and its regions — is defined once, as
# a list of fields: the key, how Python reads the value from a row, and the SQL giving the same value's
# JSON text over the aliases of ``_Sql.select`` (study ``s``, image ``i``, report ``r``, region ``g``,
# names ``n``, split ``sp``). The Python writers build records from the list (orjson writes them); on
# PostgreSQL the database builds them from the same list and COPY streams them out, because turning rows
# into Python objects and back into text was most of an export's time (``benchmarks/export.py``). A test
# checks on PostgreSQL that both give the same records.


@dataclass(frozen=True)
class _Field:
    """One member of an exported JSON record. ``key`` None: ``python`` gives an object whose members are
    spread into the record, ``sql`` their JSON text without braces. ``sql`` None: the member is added by
    Python after the database's part (it must come last)."""

    key: str | None
    python: Callable[[Any], Any]
    sql: str | None


@dataclass(slots=True)
class _ImageRow:
    """What an image's records are made from on the Python path."""

    image: dict
    study: dict
    name: str
    split: str


@dataclass(slots=True)
class _AnnotationRow:
    region: Any  # a row of REGION_FIELDS
    category: int


def _record(fields: tuple[_Field, ...], row: Any) -> dict:
    record: dict[str, Any] = {}
    for item in fields:
        if item.key is None:
            record.update(item.python(row))
        else:
            record[item.key] = item.python(row)
    return record


def _sql_record(fields: tuple[_Field, ...]) -> str:
    """The SQL giving the record's compact JSON text; open at the end when Python adds members."""
    database = [(item.key, item.sql) for item in fields if item.sql is not None]
    return _sql_object(*database, close=len(database) == len(fields))


def _sql_text(expression: str) -> str:
    """JSON string of a text column: PostgreSQL escapes exactly what JSON writers do."""
    return f"to_json({expression})::text"


def _sql_word(expression: str) -> str:
    """JSON string of a column that holds one of a few plain words (a check constraint says which)."""
    return f"""concat('"', {expression}, '"')"""


def _sql_float(expression: str) -> str:
    """JSON number of a float column as Python writes it (``12.0``, not ``12``)."""
    return (f"CASE WHEN {expression} IS NULL THEN 'null' WHEN {expression} = trunc({expression}) AND "
            f"abs({expression}) < 1e15 THEN {expression}::text || '.0' ELSE {expression}::text END")


def _sql_object(*fields: tuple[str | None, str], close: bool = True) -> str:
    """A JSON object's compact text from (key, SQL giving the value's JSON text) pairs; a None key inserts
    the text as it is (members spread from another object). One concat(): a chain of || copies the
    growing string at every step, and was most of the database's time."""
    parts = []
    for position, (key, value) in enumerate(fields):
        lead = ("{" if position == 0 else ",") + (json.dumps(key) + ":" if key is not None else "")
        parts += ["'" + lead.replace("'", "''") + "'", value]
    return "concat(" + ", ".join(parts) + (", '}')" if close else ")")


_SQL_SAFE = "'[^A-Za-z0-9._-]+'"
_SQL_AREA = ", ".join(f"'{shape}'" for shape in AREA_SHAPES)
_SQL_EXPORT_ID = _sql_text("CASE WHEN g.source_id <> '' THEN g.source_id ELSE g.id::text END")
_SQL_SPACING = ("CASE WHEN i.pixel_spacing_x_mm <> 0 AND i.pixel_spacing_y_mm <> 0 THEN concat('[', "
                f"{_sql_float('i.pixel_spacing_x_mm')}, ',', {_sql_float('i.pixel_spacing_y_mm')}, ']') "
                "ELSE 'null' END")
_SQL_FILE = "COALESCE(NULLIF(i.file, ''), i.source_path)"
_SQL_EXTENSION = f"CASE WHEN strpos({_SQL_FILE}, '.') > 0 THEN split_part({_SQL_FILE}, '.', -1) ELSE 'png' END"

# _image_names over image ``i`` and study ``s``: ``n.name`` is the name in the study's folder, ``n.taken``
# the name when an earlier image of the study has it. (OFFSET 0 keeps each subquery whole, so a name is
# computed once however often it is used.)
_SQL_POSITION_NAME_JOINS = f"""
    CROSS JOIN LATERAL (SELECT lpad(i.position::text, greatest(4, length(i.position::text)), '0') AS stem,
                               {_SQL_EXTENSION} AS extension OFFSET 0) p
    CROSS JOIN LATERAL (SELECT concat(p.stem, '.', p.extension) AS name,
                               concat(p.stem, '_', left(i.sha256, 16), '.', p.extension) AS taken OFFSET 0) n"""
_SQL_SOURCE_NAME_JOINS = f"""
    CROSS JOIN LATERAL (SELECT
        COALESCE(NULLIF(btrim(regexp_replace(fn.stem, {_SQL_SAFE}, '_', 'g'), '._'), ''), left(i.sha256, 16))
        || CASE WHEN f.frame = '' THEN ''
                WHEN f.frame ~ '^[0-9]+$' THEN '_f' || CASE WHEN length(fn.number) >= 4 THEN fn.number
                                                            ELSE lpad(fn.number, 4, '0') END
                ELSE '_f' || regexp_replace(f.frame, {_SQL_SAFE}, '_', 'g') END
        || '.' || {_SQL_EXTENSION} AS name
      FROM (SELECT split_part(COALESCE(NULLIF(i.original_name, ''), i.sha256), '/', -1) AS original) o
      CROSS JOIN LATERAL (SELECT split_part(o.original, '#frame=', 1) AS stem,
                                 CASE WHEN strpos(o.original, '#frame=') > 0
                                      THEN substr(o.original, strpos(o.original, '#frame=') + 7) ELSE '' END AS frame) f
      CROSS JOIN LATERAL (SELECT ltrim(f.frame, '0') AS number,
                                 CASE WHEN strpos(f.stem, '.') > 0 THEN left(f.stem, -length(split_part(f.stem, '.', -1)) - 1)
                                      ELSE f.stem END AS stem) fn
      OFFSET 0) n0
    CROSS JOIN LATERAL (SELECT n0.name, concat(i.id, '_', n0.name) AS taken OFFSET 0) n"""


def _sql_image_names(*, keep_names: bool) -> str:
    return _SQL_SOURCE_NAME_JOINS if keep_names else _SQL_POSITION_NAME_JOINS


_SQL_IMAGE_PATH = (f"concat('images/', COALESCE(NULLIF(btrim(regexp_replace(s.accession, {_SQL_SAFE}, '_', 'g'), "
                   "'._'), ''), s.id::text), '/', CASE WHEN n.name = ANY(array_agg(n.name) OVER earlier) "
                   "THEN n.taken ELSE n.name END)")


def _coco_image_fields(*, keep_names: bool) -> tuple[_Field, ...]:
    """A COCO image (row: ``_ImageRow``). Its source file name only when asked for: it can name a patient."""
    fields = (
        _Field("id", lambda r: r.image["id"], "i.id"),
        _Field("file_name", lambda r: r.name, _sql_text(_SQL_IMAGE_PATH)),
        _Field("width", lambda r: r.image["width"], "i.width"),
        _Field("height", lambda r: r.image["height"], "i.height"),
        _Field("study", lambda r: r.study["accession"], _sql_text("s.accession")),
        _Field("patient", lambda r: r.study["patient"], _sql_text("s.patient")),
        _Field("sha256", lambda r: r.image["sha256"], _sql_text("i.sha256")),
        _Field("laterality", lambda r: r.image["laterality"], _sql_text("i.laterality")),
        _Field("view", lambda r: r.image["view"], _sql_text("i.view")),
        _Field("body_marker", lambda r: r.image["body_marker"], _sql_text("i.body_marker")),
        _Field("frame", lambda r: r.image["frame_index"], "i.frame_index"),
        _Field("pixel_spacing_mm", lambda r: _spacing(r.image), _SQL_SPACING),
    )
    if keep_names:
        fields += (_Field("original_name", lambda r: r.image["original_name"], _sql_text("i.original_name")),)
    return fields


# A COCO annotation (row: ``_AnnotationRow``; ``gx.text`` is the geometry's text). Only a polygon's
# outline can be cut from its text; a rectangle's or an ellipse's is computed by Python (shapely), so the
# database marks it ``\x01<shape>:<geometry>\x01`` and ``_outlines`` puts the outline there.
_OUTLINE_MARK = b"\x01"
_COCO_ANNOTATION = (
    _Field("id", lambda a: a.region.id, "g.id"),
    _Field("image_id", lambda a: a.region.image_id, "g.image_id"),
    _Field("category_id", lambda a: a.category,
           "array_position(%s::text[], COALESCE(NULLIF(g.label, ''), 'lesion'))"),
    _Field("segmentation", lambda a: orjson.Fragment(_segmentation_text(a.region)),
           "CASE WHEN g.shape = 'polygon' THEN concat('[[', replace(replace(left(substr(gx.text, 12), -1), '[', ''), "
           "']', ''), ']]') ELSE concat(chr(1), g.shape, ':', gx.text, chr(1)) END"),
    _Field("bbox", lambda a: _stored(a.region.bbox_text), "COALESCE(g.bbox::text, 'null')"),
    _Field("area", lambda a: a.region.area_px, _sql_float("g.area_px")),
    _Field("iscrowd", lambda a: 0, "0"),
    _Field("attributes", lambda a: _stored(a.region.attributes_text), "COALESCE(g.attributes::text, 'null')"),
    _Field("lesion", lambda a: a.region.lesion_key, _sql_text("g.lesion_key")),
    _Field("shape", lambda a: a.region.shape, _sql_word("g.shape")),
    _Field("geometry", lambda a: _stored(a.region.geometry_text), "gx.text"),
    _Field("source_id", lambda a: region_export_id(a.region), _SQL_EXPORT_ID),
    _Field("source", lambda a: a.region.source, _sql_word("g.source")),
    _Field("author", lambda a: a.region.source_author or a.region.author__username or "",
           _sql_text("COALESCE(NULLIF(g.source_author, ''), (SELECT NULLIF(u.username, '') FROM auth_user u "
                     "WHERE u.id = g.author_id), '')")),
)

# A region of a JSONL line (row: a row of REGION_FIELDS): its geometry's members (``points``, or an
# ellipse's centre and axes) spread into it.
_JSONL_REGION = (
    _Field("id", region_export_id, _SQL_EXPORT_ID),
    _Field("shape", lambda g: g.shape, _sql_word("g.shape")),
    _Field(None, lambda g: orjson.loads(g.geometry_text), "left(substr(g.geometry::text, 2), -1)"),
    _Field("bbox", lambda g: _stored(g.bbox_text), "COALESCE(g.bbox::text, 'null')"),
    _Field("label", lambda g: g.label, _sql_text("g.label")),
    _Field("lesion", lambda g: g.lesion_key, _sql_text("g.lesion_key")),
    _Field("attributes", lambda g: _stored(g.attributes_text), "COALESCE(g.attributes::text, 'null')"),
    _Field("source", lambda g: g.source, _sql_word("g.source")),
)


def _jsonl_sentences(sentences: list, links: dict[int, list[int]], exported: dict[int, str]) -> list[dict]:
    """The report's current sentences (``alignment.selectors.sentences_for_export``), each with its
    findings and the export ids of this image's exported regions it is linked to."""
    return [{"index": sentence.index, "start": sentence.start, "end": sentence.end, "text": sentence.text,
             "findings": [{"lesion": f.lesion, "organ": f.organ, "laterality": f.laterality, "clock": f.clock,
                           "quadrant": f.quadrant, "distance_from_nipple_cm": f.distance_from_nipple_cm,
                           "size_mm": f.size_mm, "negated": f.negated, "uncertain": f.uncertain,
                           "attributes": f.attributes, "assessment": f.assessment, "site": f.site or [],
                           "measurement": f.measurement, "volume_ml": f.volume_ml} for f in sentence.findings.all()],
             "regions": [exported[r] for r in links.get(sentence.pk, []) if r in exported]}
            for sentence in sentences]


def _jsonl_fields() -> tuple[_Field, ...]:
    """One line of ``pairs.jsonl`` (row: ``_ImageRow``): an image, its report, its regions, and the
    report's sentences with their findings and the regions of this image each is aligned to (read
    through the alignment selectors, so added by Python on every database)."""
    regions = (f"concat('[', (SELECT string_agg({_sql_record(_JSONL_REGION)}, ',' ORDER BY g.id) "
               "FROM annotation_region g WHERE g.image_id = i.id AND NOT g.is_deleted{region_filter}), ']')")
    return (
        _Field("image", lambda r: r.name, _sql_text(_SQL_IMAGE_PATH)),
        _Field("study", lambda r: r.study["accession"], _sql_text("s.accession")),
        _Field("patient", lambda r: r.study["patient"], _sql_text("s.patient")),
        _Field("split", lambda r: r.split, _sql_text("sp.split")),
        _Field("report", lambda r: r.study["report__text"] or "", _sql_text("COALESCE(r.text, '')")),
        _Field("language", lambda r: r.study["report__language"] or "", _sql_text("COALESCE(r.language, '')")),
        _Field("width", lambda r: r.image["width"], "i.width"),
        _Field("height", lambda r: r.image["height"], "i.height"),
        _Field("pixel_spacing_mm", lambda r: _spacing(r.image), _SQL_SPACING),
        _Field("laterality", lambda r: r.image["laterality"], _sql_text("i.laterality")),
        _Field("regions", lambda r: [_record(_JSONL_REGION, g) for g in r.image["regions"]], regions),
        _Field("sentences", lambda r: _jsonl_sentences(r.study.get("sentences", []), r.image.get("links", {}),
                                                       {g.id: region_export_id(g) for g in r.image["regions"]}),
               None),
    )


_JSONL = _jsonl_fields()


# ---------------------------------------------------------------------------------------------- formats


class _Format:
    """One export format: ``begin``, ``study`` for each study (with images and regions), ``end``."""

    sentences = False
    raw_json = False  # regions' geometry, attributes and bbox as JSON text (see _study_chunks)

    def __init__(self, *, output: _Output, options: ExportOptions, dataset: Dataset, counts: Counter):
        self.output, self.options, self.dataset, self.counts = output, options, dataset, counts

    def begin(self) -> None: ...

    def study(self, study: dict, names: dict[int, str], split: str) -> None: ...

    def end(self) -> None: ...


class _Coco(_Format):
    """COCO instances, one file per split (``annotations/instances_<split>.json``, else
    ``annotations/instances.json``). Area shapes only: COCO has no lines or points."""

    raw_json = True

    def begin(self) -> None:
        self.categories: dict[str, int] = {}
        self.parts: dict[str, tuple[Any, Any, list[int]]] = {}
        self.image_fields = _coco_image_fields(keep_names=self.options.keep_names)

    def _part(self, split: str):
        if split not in self.parts:
            images = self.output.scratch(f"coco-{split or 'all'}-images")
            images.parent.mkdir(parents=True, exist_ok=True)
            annotations = self.output.scratch(f"coco-{split or 'all'}-annotations")
            self.parts[split] = (images.open("wb"), annotations.open("wb"), [0, 0])
        return self.parts[split]

    def study(self, study: dict, names: dict[int, str], split: str) -> None:
        images_file, annotations_file, written = self._part(split)
        images, annotations = [], []
        for image in study["images"]:
            images.append(_json(_record(self.image_fields, _ImageRow(image, study, names[image["id"]], split))))
            for region in image["regions"]:
                if region.shape not in AREA_SHAPES:
                    self.counts["regions_skipped_not_area"] += 1
                    continue
                category = self.categories.setdefault(region.label or "lesion", len(self.categories) + 1)
                annotations.append(_json(_record(_COCO_ANNOTATION, _AnnotationRow(region, category))))
        # Items of a JSON list, each on its own line: a comma before every one but the file's first.
        for handle, items, position in ((images_file, images, 0), (annotations_file, annotations, 1)):
            if items:
                handle.write((b",\n" if written[position] else b"\n") + b",\n".join(items))
                written[position] += len(items)
        self.counts["regions"] += len(annotations)

    def end(self) -> None:
        categories = [{"id": cid, "name": name, "supercategory": "lesion"} for name, cid in self.categories.items()]
        splits = list(self.parts) or [""]
        for split in splits:
            images_file, annotations_file, _ = self._part(split)
            images_file.close()
            annotations_file.close()
            writer = self.output.open(f"annotations/instances{'_' + split if split else ''}.json")
            info = {"description": f"Sonoalign export of {self.dataset.name}", "version": "1",
                    "date_created": timezone.now().isoformat(), "split": split or "all"}
            writer.write(b'{"info":' + _json(info) + b',"licenses":[],"images":[')
            for part, end in ((f"coco-{split or 'all'}-images", b'\n],"annotations":['),
                              (f"coco-{split or 'all'}-annotations", b"\n],")):
                with self.output.scratch(part).open("rb") as handle:
                    while block := handle.read(WRITE_BUFFER):
                        writer.write(block)
                writer.write(end)
            writer.write(b'"categories":' + _json(categories) + b"}\n")
            writer.close()


class _Jsonl(_Format):
    """Grounded image–text pairs, one image a line (``pairs.jsonl``)."""

    sentences = True
    raw_json = True

    def begin(self) -> None:
        self.writer = self.output.open("pairs.jsonl")

    def study(self, study: dict, names: dict[int, str], split: str) -> None:
        for image in study["images"]:
            self.counts["regions"] += len(image["regions"])
            self.writer.write(_json(_record(_JSONL, _ImageRow(image, study, names[image["id"]], split))) + b"\n")

    def end(self) -> None:
        self.writer.close()


class _Us365k(_Format):
    """US-365K records (``us365k.json``): ``media_name`` and the nine tag keys, each a published tag
    string, a list of them, or null; ``text`` is the paired report."""

    def begin(self) -> None:
        lexicon = self.dataset.lexicon.content
        self.system = lexicon["system"]
        self.values: dict[tuple[str, str], dict] = {}
        for attribute in lexicon["attributes"]:
            for value in attribute["values"]:
                self.values[(attribute["code"], value["code"])] = value
        udaf = {a["code"]: {v["code"]: v for v in a["values"]} for a in lexicon_load("udaf")["attributes"]}
        self.diagnoses = {v["us365k"]["tag"]: v["us365k"]["tag"] for v in udaf["diagnosis"].values()}
        self.diagnoses |= {code: v["us365k"]["tag"] for code, v in udaf["diagnosis"].items()}
        self.default: dict[str, str] = {}
        organ = udaf["organ_level"].get(LEXICON_ORGAN.get(self.system, ""))
        if organ:
            self.default["Organ_level"] = organ["us365k"]["tag"]
            self.default["Body_system_level"] = udaf["body_system_level"][organ["body_system"]]["us365k"]["tag"]
        if self.system in LEXICON_DIAGNOSIS:
            self.default["Diagnosis"] = udaf["diagnosis"][LEXICON_DIAGNOSIS[self.system]]["us365k"]["tag"]
        self.writer = self.output.open("us365k.json")
        self.written = 0
        self.writer.write("[")

    def tags(self, regions: list[dict]) -> dict[str, Any]:
        found: dict[str, list[str]] = {key: [] for key in US365K_KEYS}
        for region in regions:
            for code, value in region.attributes.items():
                for item in [value] if isinstance(value, str) else value:
                    mapped = (self.values.get((code, item)) or {}).get("us365k")
                    if mapped and mapped["tag"] not in found[mapped["key"]]:
                        found[mapped["key"]].append(mapped["tag"])
            diagnosis = self.diagnoses.get((region.label or "").strip().lower())
            if diagnosis and diagnosis not in found["Diagnosis"]:
                found["Diagnosis"].append(diagnosis)
        record: dict[str, Any] = {}
        for key in US365K_KEYS:
            tags = found[key] or ([self.default[key]] if key in self.default and regions else [])
            record[key] = None if not tags else tags[0] if len(tags) == 1 else tags
        return record

    def study(self, study: dict, names: dict[int, str], split: str) -> None:
        for image in study["images"]:
            record = {"media_name": names[image["id"]], **self.tags(image["regions"]),
                      "text": study["report__text"] or "", "study": study["accession"]}
            if split:
                record["split"] = split
            self.counts["regions"] += len(image["regions"])
            self.writer.write((b"," if self.written else b"") + b"\n" + _json(record))
            self.written += 1

    def end(self) -> None:
        self.writer.write("\n]\n")
        self.writer.close()


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
CSV_FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")
CSV_ATTRIBUTE_PREFIX = "attr_"


def csv_cell(value: Any) -> Any:
    """``value`` safe to open in a spreadsheet: text that would start a formula gets a leading ``'``
    (shown, never run). Numbers stay numbers: a negative coordinate is no formula."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_LEAD):
        return "'" + value
    return value


class _Csv(_Format):
    """One region a row (``regions.csv``), one column per lexicon attribute named ``attr_<code>``, so no
    attribute (``shape``, ``margin``...) takes the name of a region column; several values are joined by
    ``;``. Text cells are neutralised by ``csv_cell``."""

    COLUMNS = ("image", "study", "patient", "split", "region_id", "shape", "label", "lesion", "source", "author",
               "bbox_x", "bbox_y", "bbox_w", "bbox_h", "area_px", "area_mm2", "long_axis_mm", "short_axis_mm",
               "geometry")

    def begin(self) -> None:
        self.attributes = [a["code"] for a in self.dataset.lexicon.content["attributes"]]
        self.writer = self.output.open("regions.csv")
        self.buffer = io.StringIO()
        self.csv = csv.writer(self.buffer)
        self.csv.writerow([*self.COLUMNS, *(CSV_ATTRIBUTE_PREFIX + code for code in self.attributes)])

    def study(self, study: dict, names: dict[int, str], split: str) -> None:
        for image in study["images"]:
            for region in image["regions"]:
                values = [region.attributes.get(code, "") for code in self.attributes]
                self.csv.writerow([csv_cell(value) for value in (
                    names[image["id"]], study["accession"], study["patient"], split, region_export_id(region),
                    region.shape, region.label, region.lesion_key, region.source,
                    region.source_author or region.author__username or "", *(region.bbox or ["", "", "", ""]),
                    region.area_px, region.area_mm2, region.long_axis_mm, region.short_axis_mm,
                    _json(region.geometry).decode(), *(";".join(v) if isinstance(v, list) else v for v in values),
                )])
                self.counts["regions"] += 1
        self.writer.write(self.buffer.getvalue())
        self.buffer.seek(0)
        self.buffer.truncate()

    def end(self) -> None:
        self.writer.close()


class _Masks(_Format):
    """One 8-bit PNG label mask per image (``masks/<image path>.png``): 0 is background, each lesion
    label has its value in ``legend.json``; where regions overlap the later one wins. Lines and points
    have no area and are left out."""

    def begin(self) -> None:
        self.legend: dict[str, int] = {}

    def study(self, study: dict, names: dict[int, str], split: str) -> None:
        for image in study["images"]:
            mask = PILImage.new("L", (image["width"], image["height"]), 0)
            draw = ImageDraw.Draw(mask)
            for region in image["regions"]:
                if region.shape not in AREA_SHAPES:
                    self.counts["regions_skipped_not_area"] += 1
                    continue
                label = region.label or "lesion"
                if label not in self.legend:
                    if len(self.legend) >= 255:
                        raise ExportError("more than 255 lesion labels do not fit an 8-bit mask")
                    self.legend[label] = len(self.legend) + 1
                points = [tuple(point) for point in geometry_polygon_points(region.shape, region.geometry)]
                draw.polygon(points, fill=self.legend[label])
                self.counts["regions"] += 1
            buffer = io.BytesIO()
            mask.save(buffer, "PNG")
            writer = self.output.open("masks/" + names[image["id"]].removeprefix("images/").rsplit(".", 1)[0] + ".png")
            writer.write(buffer.getvalue())
            writer.close()

    def end(self) -> None:
        legend = [{"value": 0, "label": "background"}] + [
            {"value": value, "label": label} for label, value in self.legend.items()]
        writer = self.output.open("legend.json")
        writer.write(json.dumps({"classes": legend, "mode": "8-bit grey PNG, pixel value = class"}, indent=2) + "\n")
        writer.close()


FORMAT_CLASSES: dict[str, type[_Format]] = {"coco": _Coco, "jsonl": _Jsonl, "us365k": _Us365k, "csv": _Csv,
                                            "masks": _Masks}


# ---------------------------------------------------------------------------------------------- PostgreSQL
#
# COCO and JSONL records built by the database from the field lists above, streamed out with COPY.

# Never in JSON text, which escapes every control character: with these as quote and delimiter, COPY's
# CSV output is each row's columns verbatim, separated by \x03 and followed by a newline.
_COPY = "COPY ({}) TO STDOUT (FORMAT csv, QUOTE E'\\x02', DELIMITER E'\\x03')"

# Each COCO annotation of image ``i`` as ``a.text`` (category ids from %s), ``a.region`` its id. OFFSET 0
# keeps the regions a lookup for each image, already in export order: flattened into a join, the whole
# output had to be sorted, on disk.
_SQL_COCO_ANNOTATIONS = f"""CROSS JOIN LATERAL (
    SELECT g.id AS region, concat({_sql_record(_COCO_ANNOTATION)}, ',') AS text
    FROM annotation_region g CROSS JOIN LATERAL (SELECT g.geometry::text AS text OFFSET 0) gx
    WHERE g.image_id = i.id AND NOT g.is_deleted AND g.shape IN ({_SQL_AREA}){{region_filter}} OFFSET 0) a"""


class _Sql:
    """What every query of one export shares: the dataset's exported images in export order, with their
    study, split and status filters, as SQL and parameters."""

    def __init__(self, *, dataset: Dataset, options: ExportOptions):
        self.dataset, self.options = dataset, options
        self.image_filter, self.image_params = "", []
        self.region_filter, self.region_params = "", []
        if options.status != "all":
            sql, params = Image.objects.filter(_image_filter(options.status)).values("id").query.sql_with_params()
            self.image_filter, self.image_params = f" AND i.id IN ({sql})", list(params)
            sql, params = Region.objects.filter(_region_filter(options.status)).values("id").query.sql_with_params()
            self.region_filter, self.region_params = f" AND g.id IN ({sql})", list(params)

    def split(self) -> str:
        """split_of(s.patient): the same sha256 draw, its first 8 bytes compared (as hex) with the smallest
        integers whose draw reaches each cumulative fraction, so that no float is rounded differently."""
        split = self.options.split
        if not split:
            return "''"
        draw = (f"left(encode(sha256(convert_to('{int(self.options.seed)}', 'UTF8') || '\\x00'::bytea || "
                "convert_to(s.patient, 'UTF8')), 'hex'), 16) COLLATE \"C\"")
        cases, total = [], 0.0
        for name, fraction in zip(SPLIT_NAMES, split, strict=False):
            total += fraction
            low, high = 0, 2**64
            while low < high:  # the smallest n with n / 2**64 >= total, divided as split_of divides
                middle = (low + high) // 2
                low, high = (low, middle) if middle / 2**64 >= total else (middle + 1, high)
            cases.append(f"WHEN {draw} < '{'g' if low >= 2**64 else format(low, '016x')}' THEN '{name}'")
        return f"CASE {' '.join(cases)} ELSE '{SPLIT_NAMES[len(split) - 1]}' END"

    def select(self, columns: str, *, joins: str = "", where: str = "", split: str | None = None,
               params: tuple = (), ordered: bool = True, then_by: str = "") -> tuple[str, list]:
        """SELECT ``columns`` over the exported images ``i`` of studies ``s`` (``sp.split``; the window
        ``earlier`` holds the study's images before this one), in export order: study, position, id.
        ``joins`` and ``where`` extend FROM and WHERE, ``then_by`` the ORDER BY. The status filter of
        regions ``g`` goes where ``columns`` or ``joins`` say ``{region_filter}``; ``params`` are their
        own placeholders, which come before any region filter in the text."""
        sql_params = []
        for _ in range((columns + joins).count("{region_filter}")):
            sql_params += self.region_params
        columns = columns.replace("{region_filter}", self.region_filter)
        joins = joins.replace("{region_filter}", self.region_filter)
        # Placeholders in text order: the columns' and joins' own, their region filters', the image filter's.
        all_params = [*params, *sql_params, *self.image_params]
        where = f"s.dataset_id = {int(self.dataset.pk)}{self.image_filter}{where}"
        if split is not None:
            where += " AND sp.split = %s"
            all_params.append(split)
        window = (" WINDOW earlier AS (PARTITION BY s.id ORDER BY i.position, i.id ROWS BETWEEN UNBOUNDED "
                  "PRECEDING AND 1 PRECEDING)") if "OVER earlier" in columns else ""
        order = f" ORDER BY s.id, i.position, i.id{then_by}" if ordered else ""
        return (f"SELECT {columns} FROM annotation_study s CROSS JOIN LATERAL (SELECT {self.split()} AS split) sp "
                f"JOIN annotation_image i ON i.study_id = s.id {joins} WHERE {where}{window}{order}", all_params)

    def summary(self) -> list[tuple[str, int, int]]:
        """(split, studies, images) of each split that has images, in order of first appearance."""
        inner, params = self.select("s.id AS study, sp.split", ordered=False)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT x.split, count(DISTINCT x.study), count(*) FROM ({inner}) x "
                           "GROUP BY x.split ORDER BY min(x.study)", params)
            return cursor.fetchall()

    def region_counts(self) -> tuple[dict[str | None, int], list[str]]:
        """Exported regions by label (area shapes) or under ``None`` (lines and points), and the area labels
        in order of first appearance: the COCO category ids."""
        label = f"CASE WHEN g.shape IN ({_SQL_AREA}) THEN COALESCE(NULLIF(g.label, ''), 'lesion') END"
        regions = "JOIN annotation_region g ON g.image_id = i.id AND NOT g.is_deleted{region_filter}"
        with connection.cursor() as cursor:
            inner, params = self.select(f"{label} AS label, s.id AS study", joins=regions, ordered=False)
            cursor.execute(f"SELECT x.label, count(*), min(x.study) FROM ({inner}) x GROUP BY 1", params)
            rows = cursor.fetchall()
            # A label first appears in its first study: walking those studies in order gives the order.
            firsts = sorted({study for label, _, study in rows if label is not None})
            order: list[str] = []
            if firsts:
                inner, params = self.select(f"{label} AS label", joins=regions, ordered=False,
                                            where=f" AND s.id IN ({', '.join(map(str, firsts))}) "
                                                  f"AND g.shape IN ({_SQL_AREA})")
                cursor.execute(inner + " ORDER BY s.id, i.position, i.id, g.id", params)
                for (label,) in cursor.fetchall():
                    if label not in order:
                        order.append(label)
        return {label: count for label, count, _ in rows}, order




def _copy_rows(sql: str, params: list) -> Iterator[bytes]:
    """COPY ``sql`` out, row by row (each ending in a newline). Close it when leaving early (``closing``):
    a COPY left open blocks the connection, and with it the rollback that should follow a failure."""
    with connection.cursor() as cursor, cursor.cursor.copy(_COPY.format(sql), params or None) as copy:
        for row in copy:
            yield bytes(row)


def _copy_blocks(sql: str, params: list) -> Iterator[bytes]:
    """COPY ``sql`` out in blocks of whole rows, about WRITE_BUFFER each."""
    rows: list = []
    size = 0
    with closing(_copy_rows(sql, params)) as copied:
        for row in copied:
            rows.append(row)
            size += len(row)
            if size >= WRITE_BUFFER:
                yield b"".join(rows)
                rows, size = [], 0
    if rows:
        yield b"".join(rows)


def _outlines(block: bytes) -> bytes:
    """Replace each marked ``<shape>:<geometry>`` with its COCO outline, computed as the Python path does."""
    if _OUTLINE_MARK not in block:
        return block
    parts = block.split(_OUTLINE_MARK)
    for position in range(1, len(parts), 2):
        shape, _, geometry = parts[position].decode().partition(":")
        parts[position] = _segmentation_text(SimpleNamespace(shape=shape, geometry_text=geometry)).encode()
    return b"".join(parts)


def _copy_json_items(writer: _HashingWriter, sql: str, params: list,
                     on_block: Callable[[bytes], None] | None = None) -> None:
    """Write COPY records, each ending in a comma, as the items of a JSON list laid out as the Python
    path does: each after a newline, separated by commas (the last one's comma dropped)."""
    pending = None
    with closing(_copy_blocks(sql, params)) as blocks:
        for block in blocks:
            if on_block:
                on_block(block)
            writer.write(b"\n" if pending is None else pending)
            pending = _outlines(block)
    if pending:
        writer.write(pending[:-2])


def _export_sql(*, output: _Output, options: ExportOptions, dataset: Dataset, state: ExportProgress,
                report: Callable[[ExportProgress], None]) -> None:
    """COCO or JSONL, records built by PostgreSQL (see _Coco and _Jsonl for what they hold)."""
    settings = {"jit": "off",  # compiling these queries costs seconds and gains nothing: their time is text
                "extra_float_digits": "1"}  # floats as their shortest exact text, as Python's repr
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f"current_setting('{name}')" for name in settings))
        previous = dict(zip(settings, cursor.fetchone(), strict=True))
        for name, value in settings.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
    _export_sql_records(output=output, options=options, dataset=dataset, state=state, report=report)
    with connection.cursor() as cursor:  # (after a failure, the rollback restores them)
        for name, value in previous.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])




def _study_ranges(dataset: Dataset, size: int) -> Iterator[tuple[int, int]]:
    """(first, last) study ids of consecutive chunks of ``size`` studies, by keyset."""
    last = 0
    while ids := list(Study.objects.filter(dataset=dataset, id__gt=last).order_by("id")
                      .values_list("id", flat=True)[:size]):
        yield ids[0], ids[-1]
        last = ids[-1]


def _jsonl_sentences_of(*, studies, status: str) -> Callable[[int, bytes], bytes]:
    """For the chunk ``studies`` (a queryset): the JSON text of the sentences member of an image's line,
    from its id and its report's id (as COPY gives them), read through the alignment selectors."""
    by_report, links = sentences_for_export(studies=studies, image_ids=None)
    per_image: dict[int, dict[int, list[int]]] = {}
    for (sentence_id, image_id), region_ids in links.items():
        per_image.setdefault(image_id, {})[sentence_id] = region_ids
    exported: dict[int, dict[int, str]] = {}
    linked = {region_id for region_ids in links.values() for region_id in region_ids}
    for region in (Region.objects.filter(_region_filter(status), id__in=linked, is_deleted=False)
                   .values_list("id", "image_id", "source_id", named=True)):
        exported.setdefault(region.image_id, {})[region.id] = region_export_id(region)

    def sentences_of(image_id: int, report: bytes) -> bytes:
        sentences = by_report.get(int(report), []) if report else []
        if not sentences:
            return b"[]"
        return _json(_jsonl_sentences(sentences, per_image.get(image_id, {}), exported.get(image_id, {})))

    return sentences_of


def _export_sql_records(*, output: _Output, options: ExportOptions, dataset: Dataset, state: ExportProgress,
                        report: Callable[[ExportProgress], None]) -> None:
    sql = _Sql(dataset=dataset, options=options)
    summary = sql.summary()
    state.total = sum(images for _, _, images in summary)
    report(state)
    counts = state.counts

    def progress(block: bytes) -> None:
        state.done += block.count(b"\n")
        report(state)

    region_counts, categories = sql.region_counts()
    for split, studies, images in summary:
        counts["studies"] += studies
        counts["images"] += images
        counts[f"images_{split or 'all'}"] += images
        counts[f"studies_{split or 'all'}"] += studies
    names = _sql_image_names(keep_names=options.keep_names)
    if options.format == "jsonl":
        if summary:
            counts["regions"] += sum(region_counts.values())
        # Each COPY row: image id, report id, the line up to the members Python adds (the sentences).
        columns = f"i.id, r.id, {_sql_record(_JSONL)}"
        (tail,) = [item for item in _JSONL if item.sql is None]
        lead = b"," + _json(tail.key) + b":"
        writer = output.open("pairs.jsonl")
        for first, last in _study_ranges(dataset, options.study_chunk):
            query, params = sql.select(columns, joins=names + " LEFT JOIN annotation_report r ON r.study_id = s.id",
                                       where=f" AND s.id BETWEEN {int(first)} AND {int(last)}")
            sentences_of = _jsonl_sentences_of(studies=Study.objects.filter(dataset=dataset, id__gte=first,
                                                                            id__lte=last), status=options.status)
            with closing(_copy_rows(query, params)) as copied:
                for row in copied:
                    image_id, report_id, head = row.split(b"\x03", 2)
                    writer.write(head[:-1] + lead + sentences_of(int(image_id), report_id) + b"}\n")
                    state.done += 1
            report(state)
        writer.close()
        return
    skipped = region_counts.pop(None, 0)
    if sum(region_counts.values()):
        counts["regions"] += sum(region_counts.values())
    if skipped:
        counts["regions_skipped_not_area"] += skipped
    image_record = _sql_record(_coco_image_fields(keep_names=options.keep_names))
    splits = [split for split, _, _ in summary] or [""]
    for split in splits:
        chosen = split if options.split else None
        writer = output.open(f"annotations/instances{'_' + split if split else ''}.json")
        info = {"description": f"Sonoalign export of {dataset.name}", "version": "1",
                "date_created": timezone.now().isoformat(), "split": split or "all"}
        writer.write(b'{"info":' + _json(info) + b',"licenses":[],"images":[')
        _copy_json_items(writer, *sql.select(f"concat({image_record}, ',')", joins=names, split=chosen), progress)
        writer.write(b'\n],"annotations":[')
        _copy_json_items(writer, *sql.select("a.text", joins=_SQL_COCO_ANNOTATIONS, then_by=", a.region",
                                             split=chosen, params=(categories,)))
        writer.write(b'\n],"categories":' + _json([{"id": number, "name": name, "supercategory": "lesion"}
                                                   for number, name in enumerate(categories, 1)]) + b"}\n")
        writer.close()


# ---------------------------------------------------------------------------------------------- run


def pipeline_version() -> str | None:
    """The report parser's version, read from its source: importing it would load spaCy (seconds) into
    a process that only writes files. None when the parser is not installed."""
    loaded = sys.modules.get("alignment.nlp")
    if loaded is not None:
        return getattr(loaded, "PIPELINE_VERSION", None)
    spec = importlib.util.find_spec("alignment.nlp")
    if spec is None or not spec.origin:
        return None
    match = re.search(r'^PIPELINE_VERSION\s*=\s*["\']([^"\']+)["\']', Path(spec.origin).read_text(), re.MULTILINE)
    return match.group(1) if match else None


def _export_records(*, output: _Output, options: ExportOptions, dataset: Dataset, state: ExportProgress,
                   report: Callable[[ExportProgress], None]) -> None:
    state.total = Image.objects.filter(_image_filter(options.status), study__dataset=dataset).count()
    report(state)
    writer = FORMAT_CLASSES[options.format](output=output, options=options, dataset=dataset, counts=state.counts)
    writer.begin()
    chunks = _study_chunks(dataset=dataset, options=options, sentences=writer.sentences, raw_json=writer.raw_json)
    for chunk in chunks:
        for study in chunk:
            split = split_of(study["patient"], split=options.split, seed=options.seed)
            names = _image_names(study, keep_names=options.keep_names)
            writer.study(study, names, split)
            if options.include_images:
                for image in study["images"]:
                    output.copy_image(names[image["id"]], image)
            state.counts["studies"] += 1
            state.counts["images"] += len(study["images"])
            state.counts[f"images_{split or 'all'}"] += len(study["images"])
            state.counts[f"studies_{split or 'all'}"] += 1
            state.done += len(study["images"])
        report(state)
    writer.end()


def export_run(*, dataset: Dataset, out: str | Path, options: ExportOptions,
               progress: Callable[[ExportProgress], None] | None = None) -> dict:
    """Export ``dataset`` to ``out`` and return the manifest. Raises ``ExportError`` for bad options;
    on any failure nothing is left at ``out`` (a previous export there stays as it was)."""
    _options_check(options)
    out = Path(out)
    state = ExportProgress()
    report = progress or (lambda state: None)
    output = _Output(out)
    try:
        fresh = not connection.in_atomic_block
        with transaction.atomic():
            if fresh and connection.vendor == "postgresql":
                # One snapshot for the whole export; only possible as the transaction's first statement
                # (inside an outer transaction, as in tests, that transaction's snapshot applies).
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            snapshot_at = timezone.now()
            if (options.database_records and connection.vendor == "postgresql" and not options.include_images
                    and options.format in ("coco", "jsonl")):
                _export_sql(output=output, options=options, dataset=dataset, state=state, report=report)
            else:
                _export_records(output=output, options=options, dataset=dataset, state=state, report=report)
        lexicon = dataset.lexicon
        manifest = {
            "dataset": {"id": dataset.pk, "name": dataset.name},
            "format": options.format,
            "filters": {"status": options.status, "split": list(options.split) if options.split else None,
                        "seed": options.seed if options.split else None, "include_images": options.include_images,
                        "keep_names": options.keep_names},
            "region_rule": REGION_RULES[options.status],
            "layout": _layout(options),
            "counts": dict(sorted(state.counts.items())),
            "lexicon": {"system": lexicon.system, "version": lexicon.version, "sha256": lexicon.sha256},
            "pipeline_version": pipeline_version(),
            "snapshot_at": snapshot_at.isoformat(),
            "created_at": timezone.now().isoformat(),
        }
        output.commit(manifest)
    except BaseException:
        output.abort()
        raise
    return manifest


REGION_RULES = {
    "adjudicated": "consensus regions of adjudicated images",
    "submitted": "readers' regions of submitted assignments plus imported pre-annotations",
    "all": "every live region",
}


def _layout(options: ExportOptions) -> dict[str, str]:
    """How the export names its files and columns, for whoever reads it later (in ``manifest.json``)."""
    layout = {"image_names": "images/<accession>/<original file name> (kept on request)" if options.keep_names
              else "images/<accession>/<position in study, 4 digits>.<ext>; a second image at the same position "
                   "gets _<first 16 hex digits of its sha256>"}
    if options.format == "csv":
        layout["csv_attribute_columns"] = f"{CSV_ATTRIBUTE_PREFIX}<lexicon attribute code>; several values joined by ;"
        layout["csv_text_cells"] = ("text starting with = + - @ tab or carriage return is prefixed with ' so that "
                                    "a spreadsheet shows it instead of running it; numbers are written as they are")
    return layout


# ---------------------------------------------------------------------------------------------- jobs


def export_job_create(*, dataset: Dataset, user, params: dict) -> ExportJob:
    """Record an export job and queue it once committed. ``params``: format, status, split, seed,
    include_images, keep_names (checked here, so a bad request fails before anything is queued)."""
    from .tasks import export_job_run as task

    _options(params)
    with transaction.atomic():
        job = ExportJob.objects.create(dataset=dataset, created_by=user, params=dict(params))
        audit_record(actor=user, dataset=dataset, action="export.start", detail={
            "job": job.pk, "format": params.get("format", ""), "status": params.get("status") or "",
            "include_images": bool(params.get("include_images"))})
        transaction.on_commit(lambda: task.delay(job.pk))
    return job


def _options(params: dict) -> ExportOptions:
    """Export options from a job's parameters (as a form or the API gives them), checked."""
    split = params.get("split")
    try:
        seed = int(params.get("seed") or 42)
    except (TypeError, ValueError):
        raise ExportError(f"the seed must be a whole number (got {params.get('seed')!r})")
    return _options_check(ExportOptions(
        format=params.get("format", ""), status=params.get("status") or "adjudicated",
        split=split_parse(split) if isinstance(split, str) and split else (tuple(split) if split else None),
        seed=seed, include_images=bool(params.get("include_images")), keep_names=bool(params.get("keep_names")),
    ))


def _options_check(options: ExportOptions) -> ExportOptions:
    if options.format not in FORMATS:
        raise ExportError(f"unknown format {options.format!r} (use {', '.join(FORMATS)})")
    if options.status not in STATUSES:
        raise ExportError(f"unknown status {options.status!r} (use {', '.join(STATUSES)})")
    if options.split is not None:
        _split_check(tuple(options.split), shown=",".join(map(str, options.split)))
    return options


def stored_file_digest(name: str) -> tuple[int, str]:
    """(size in bytes, sha256) of a file in the default storage, read once in blocks."""
    digest, size = hashlib.sha256(), 0
    with default_storage.open(name, "rb") as handle:
        while block := handle.read(WRITE_BUFFER):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def export_job_run(*, job_id: int, worker: str = "inline") -> ExportJob | None:
    """Run a queued export job into ``exports/<job id>/`` of the default storage. Claimed by one worker
    at a time (``jobs.job_claim``); a takeover after a crash writes a fresh archive (the temporary one
    is gone)."""
    if not job_claim(model=ExportJob, job_id=job_id, worker=worker):
        return None
    job = ExportJob.objects.select_related("dataset__lexicon").get(pk=job_id)
    record = job_progress_recorder(model=ExportJob, job_id=job_id, worker=worker)

    def progress(state: ExportProgress) -> None:
        record(state.total, state.done, state.counts)

    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", job.dataset.name).strip("-")[:60] or "dataset"
    name = f"exports/{job.pk}/{slug}-{job.params.get('format')}-{timezone.now():%Y%m%d-%H%M%S}.zip"
    try:
        options = _options(job.params or {})
        try:
            target = Path(default_storage.path(name))
            local = True
        except NotImplementedError:
            target = Path(tempfile.mkdtemp()) / Path(name).name
            local = False
        manifest = export_run(dataset=job.dataset, out=target, options=options, progress=progress)
        if not local:
            with target.open("rb") as handle:
                name = default_storage.save(name, handle)
            shutil.rmtree(target.parent, ignore_errors=True)
        # Inside the try: should even this last write fail, the job is still finished, as failed, and
        # never left running.
        archive_bytes, archive_sha256 = stored_file_digest(name)
        job_finish(model=ExportJob, job_id=job_id, worker=worker, status=ExportJob.Status.DONE, output=name,
                   manifest=manifest, total=manifest["counts"].get("images", 0),
                   done=manifest["counts"].get("images", 0), counts=manifest["counts"],
                   output_bytes=archive_bytes, output_sha256=archive_sha256)
    except Exception as error:
        job_finish(model=ExportJob, job_id=job_id, worker=worker, status=ExportJob.Status.FAILED,
                   errors=[{"level": "error", "reason": f"{type(error).__name__}: {error}"[:1000]}])
        if isinstance(error, ExportError):
            return ExportJob.objects.get(pk=job_id)
        raise
    return ExportJob.objects.get(pk=job_id)
