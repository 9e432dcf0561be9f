"""Import written in chunks: bulk inserts, one decode per image, bounded queries, and a chunk whose
bulk insert fails written again a row at a time."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import ImageFile

from alignment.models import StudyAlignmentState
from annotation.models import Image, Region, RegionRevision, Report, Study
from batches import importing
from batches.importing import batch_import, problem_text
from tests.batches.test_import_support import SQUARE, batch_write, jpeg_bytes
from tests.factories import dataset_make

pytestmark = pytest.mark.django_db(transaction=True)


def _rows(count: int) -> tuple[list[dict], dict[str, bytes]]:
    rows, files = [], {}
    for n in range(count):
        files[f"{n}.jpg"] = jpeg_bytes(seed=n)
        rows.append({"study": f"ACC-{n}", "patient": f"P-{n}", "report": f"Right lobe: nodule {n + 1} cm.",
                     "images": [{"file": f"{n}.jpg", "regions": [
                         {"shape": "polygon", "points": SQUARE, "id": f"r{n}", "label": "nodule"}]}]})
    return rows, files


def test_each_image_is_decoded_once_and_gets_its_thumbnail_in_the_same_pass(tmp_path, settings, monkeypatch):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    dataset = dataset_make(name="speed")
    loads = []
    real = ImageFile.ImageFile.load

    def load(self):
        if self.format == "JPEG" and self.tile:  # pixels not decoded yet: this call decodes them
            loads.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    rows, files = _rows(6)
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, files))
    assert [problem_text(p) for p in report.problems] == []
    assert len(loads) == 6
    thumbnails = list(Image.objects.values_list("thumbnail", flat=True))
    assert len(thumbnails) == 6 and all(default_storage.exists(name) for name in thumbnails)


def test_rows_cost_a_few_queries_each_and_every_new_report_is_aligned_after_commit(tmp_path, settings,
                                                                                    monkeypatch):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    dataset = dataset_make(name="speed")
    aligned = []
    monkeypatch.setattr(importing, "_studies_align", aligned.extend)
    rows, files = _rows(40)
    path = batch_write(tmp_path / "b", rows, files)
    with CaptureQueriesContext(connection) as queries:
        report = batch_import(dataset=dataset, path=path)
    assert report.counts["rows_imported"] == 40
    assert (Study.objects.count(), Report.objects.count(), Region.objects.count(),
            RegionRevision.objects.count()) == (40, 40, 40, 40)
    assert sorted(aligned) == sorted(Study.objects.values_list("pk", flat=True))
    # A study lookup and a same-file check per row; the inserts are a handful per chunk.
    assert len(queries.captured_queries) <= 40 * 2 + 20


def test_the_chunks_studies_are_aligned_in_process_on_the_embedded_default(tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    dataset = dataset_make(name="speed")
    rows, files = _rows(5)
    batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, files))
    assert StudyAlignmentState.objects.filter(status="done").count() == 5


def test_a_chunk_whose_insert_fails_is_written_again_row_by_row(tmp_path, settings, monkeypatch):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    dataset = dataset_make(name="speed")
    real = importing._Writes.insert

    def insert(self):
        if any(image.original_name == "2.jpg" for image in self.images):
            raise RuntimeError("disk on fire")
        return real(self)

    monkeypatch.setattr(importing._Writes, "insert", insert)
    rows, files = _rows(4)
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, files))
    assert [problem_text(p) for p in report.problems if p["level"] == "error"] == [
        "line 3 (ACC-2): the row could not be imported (RuntimeError: disk on fire)"]
    assert sorted(Study.objects.values_list("accession", flat=True)) == ["ACC-0", "ACC-1", "ACC-3"]
    assert report.counts["rows_imported"] == 3 and report.counts["rows_failed"] == 1
    stored = sorted(Image.objects.values_list("file", flat=True))
    assert sorted(n for n in _files(tmp_path / "media") if n.startswith("images/")) == stored


def _files(root) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
