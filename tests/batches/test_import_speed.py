"""Import written in chunks: bulk inserts, one decode per image (on threads ahead of the rows, with the
same outcome as inline), queries per chunk rather than per row, and a chunk whose bulk insert fails
written again a row at a time."""

from __future__ import annotations

import json
import threading
from datetime import date

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import ImageFile

from alignment.models import StudyAlignmentState
from annotation import media
from annotation.models import Image, Region, RegionRevision, Report, Study
from batches import importing
from batches.importing import ImportOptions, batch_import, problem_text
from tests.batches.test_import_support import SQUARE, batch_write, dicom_bytes, jpeg_bytes, zip_write
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
    # Rows of new studies ask nothing: the chunk's studies are looked up in one query, the same-file
    # check remembers what the import wrote, and the inserts are one per kind.
    assert len(queries.captured_queries) <= 12


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



def _messy_batch(root) -> tuple[list, dict[str, bytes]]:
    """Rows that fail before, at and after reading their files, files shared between rows and studies,
    a DICOM file named by the manifest, a study given twice: every path a row can take past a file."""
    good = jpeg_bytes(seed=30)
    rows = [
        {"study": "ACC-M1", "patient": "P-1", "images": [{"file": "a.jpg"}, {"file": "b.jpg"}]},
        {"study": "ACC-M2", "patient": "P-2", "images": [{"file": "missing.jpg"}, {"file": "c.jpg"}]},
        "not json",
        {"study": "ACC-M3", "images": [{"file": "d.jpg"}]},  # a new study without a patient: fails first
        {"study": "ACC-M4", "patient": "P-4", "images": [{"file": "e.jpg", "laterality": "sideways"},
                                                         {"file": "f.jpg"}]},
        {"study": "ACC-M5", "patient": "P-5", "images": [{"file": "broken.jpg"}]},
        {"study": "ACC-M6", "patient": "P-6", "images": [{"file": "same.jpg"}, {"file": "same-again.jpg"}]},
        {"study": "ACC-M7", "patient": "P-7", "images": [{"file": "same.jpg"}, {"file": "scan.dcm"}]},
        {"study": "ACC-M1", "patient": "P-1", "exam_date": "2024-05-01", "images": [{"file": "g.jpg"}]},
        {"study": "ACC-M1", "patient": "P-9", "images": [{"file": "h.jpg"}]},
        {"study": "ACC-M8", "patient": "P-8", "images": [{"file": "a.jpg", "regions": [
            {"shape": "polygon", "points": SQUARE, "id": "r1"}, {"shape": "blob"}]}]},
    ]
    files = {name: jpeg_bytes(seed=seed) for seed, name in enumerate(
        ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg", "h.jpg"])}
    files |= {"same.jpg": good, "same-again.jpg": good, "broken.jpg": good[:200],
              "scan.dcm": dicom_bytes(study_uid="1.2.3.4", seed=3)}
    root.mkdir(parents=True)
    (root / "manifest.jsonl").write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n"
                                                 for row in rows))
    return rows, files


def _outcome(report, media_root) -> tuple:
    stored = sorted(Image.objects.values_list("study__accession", "original_name", "sha256", "file", "thumbnail"))
    return ([problem_text(p) for p in report.problems], dict(report.counts), stored,
            sorted(Study.objects.values_list("accession", "patient", "exam_date")), Region.objects.count(),
            sorted(_files(media_root)))


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.parametrize("source", ["folder", "zip"])
def test_files_verified_on_threads_ahead_of_their_rows_import_exactly_as_inline(tmp_path, settings, monkeypatch,
                                                                                 source, processes):
    """Threads, or forked processes as the command uses (a zip batch keeps threads: its open file would
    be shared with the children)."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.IMPORT_CHUNK_ROWS = 4
    monkeypatch.setattr(importing, "AHEAD_FILES", 2)  # rows that skip their files drop what was ahead
    monkeypatch.setattr(importing, "_studies_align", lambda ids: None)
    rows, files = _messy_batch(tmp_path / "b")
    for name, content in files.items():
        (tmp_path / "b" / name).write_bytes(content)
    path = tmp_path / "b"
    if source == "zip":
        path = zip_write(tmp_path / "b.zip", {"manifest.jsonl": (tmp_path / "b" / "manifest.jsonl").read_text()}
                         | files)
    threads = []
    real = media.image_verify

    def verify(content, **kwargs):
        threads.append(threading.current_thread().name)
        return real(content, **kwargs)

    monkeypatch.setattr(importing, "image_verify", verify)
    outcomes = []
    for count in (0, 2):
        settings.IMPORT_DECODE_THREADS = count
        settings.MEDIA_ROOT = str(tmp_path / f"media-{count}")
        Study.objects.all().delete()
        report = batch_import(dataset=dataset_make(name=f"threads-{count}"), path=path,
                              options=ImportOptions(processes=processes))
        outcomes.append(_outcome(report, tmp_path / f"media-{count}"))
    inline, threaded = outcomes
    assert threaded == inline
    # Storage holds the stored rows' files and nothing else: no temporary file of a row that failed or
    # of a file verified ahead and never taken.
    assert inline[-1] == sorted({name for image in inline[2] for name in image[3:]})
    assert "line 2 (ACC-M2) images[0]: file not found in the batch" in inline[0]
    assert any("the same file is also in study ACC-M6" in text for text in inline[0])
    assert inline[1]["rows_imported"] == 5
    if processes and source == "folder":  # verified in the children: this process saw the inline run only
        assert threads and all(name == "MainThread" for name in threads)
    else:
        assert all(name.startswith("import-decode") for name in threads[len(threads) // 2:])


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_a_decompression_bomb_is_refused_on_the_decode_threads(tmp_path, settings, processes):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.IMPORT_DECODE_THREADS = 3
    # 320×240 = 76,800 px: over the limit but under twice it, where Pillow only warns.
    settings.IMAGE_MAX_PIXELS = 50_000
    rows = [{"study": f"ACC-B{n}", "patient": f"P-{n}", "images": [{"file": f"{n}.jpg"}]} for n in range(12)]
    files = {f"{n}.jpg": jpeg_bytes(seed=n) for n in range(12)}
    report = batch_import(dataset=dataset_make(name="bombs"), path=batch_write(tmp_path / "b", rows, files),
                          options=ImportOptions(processes=processes))
    assert [problem_text(p) for p in report.problems] == [
        f"line {n + 1} (ACC-B{n}) images[0]: the image has too many pixels (limit 50,000)" for n in range(12)]
    assert not Image.objects.exists()


def test_the_same_file_in_another_study_is_named_across_chunks_and_from_earlier_imports(tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.IMPORT_CHUNK_ROWS = 1
    dataset = dataset_make(name="same-file")
    content = jpeg_bytes(seed=40)
    first = [{"study": "ACC-F1", "patient": "P-1", "images": [{"file": "a.jpg"}]},
             {"study": "ACC-F2", "patient": "P-2", "images": [{"file": "b.jpg"}]}]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b1", first, {"a.jpg": content,
                                                                                     "b.jpg": content}))
    assert [problem_text(p) for p in report.problems] == [
        "line 2 (ACC-F2) images[0]: the same file is also in study ACC-F1 (stored once, imported for both ACC-F2 "
        "and ACC-F1); this is usually a data error"]
    later = [{"study": "ACC-F3", "patient": "P-3", "images": [{"file": "c.jpg"}]}]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b2", later, {"c.jpg": content}))
    assert [problem_text(p) for p in report.problems] == [
        "line 1 (ACC-F3) images[0]: the same file is also in study ACC-F1, ACC-F2 (stored once, imported for both "
        "ACC-F3 and ACC-F1, ACC-F2); this is usually a data error"]


def test_a_study_changed_by_one_row_is_read_again_by_the_next_row_of_its_chunk(tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    dataset = dataset_make(name="changed")
    rows = [{"study": "ACC-C1", "patient": "P-1", "exam_date": "2024-01-01", "images": [{"file": "a.jpg"}]}]
    batch_import(dataset=dataset, path=batch_write(tmp_path / "b1", rows, {"a.jpg": jpeg_bytes(seed=50)}))
    rows = [{"study": "ACC-C1", "patient": "P-1", "exam_date": "2024-02-02"},
            {"study": "ACC-C1", "patient": "P-1", "exam_date": "2024-02-02", "body_part": "thyroid"},
            {"study": "ACC-C1", "patient": "P-1", "exam_date": "2024-02-02", "body_part": "thyroid"}]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b2", rows, {}))
    assert (report.counts["studies_updated"], report.counts["studies_existing"]) == (2, 1)
    assert Study.objects.values_list("exam_date", "body_part").get() == (date(2024, 2, 2), "thyroid")


def test_a_decode_process_that_dies_mid_import_costs_nothing(tmp_path, settings, monkeypatch, caplog):
    """A decode process killed on one file (out of memory, a signal): its files and the rest are
    prepared by the rows themselves, and every row goes in as without processes."""
    import os

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.IMPORT_CHUNK_ROWS = 3
    settings.IMPORT_DECODE_THREADS = 2
    monkeypatch.setattr(importing, "_studies_align", lambda ids: None)
    rows = [{"study": f"ACC-K{n}", "patient": f"P-{n}", "images": [{"file": f"{n}.jpg"}]} for n in range(9)]
    files = {f"{n}.jpg": jpeg_bytes(seed=n) for n in range(9)}
    path = batch_write(tmp_path / "b", rows, files)
    real = importing._Importer._prepare

    def dies_on_the_fourth(self, name):
        if name == "4.jpg" and os.getpid() != parent:
            os._exit(9)
        return real(self, name)

    parent = os.getpid()
    monkeypatch.setattr(importing._Importer, "_prepare", dies_on_the_fourth)
    report = batch_import(dataset=dataset_make(name="killed"), path=path, options=ImportOptions(processes=True))
    assert report.counts["rows_imported"] == 9 and not report.problems
    assert "a decode process died" in caplog.text
    assert Image.objects.count() == 9
    assert all(default_storage.exists(image.file.name) and default_storage.exists(image.thumbnail.name)
               for image in Image.objects.all())


def test_temporary_files_left_by_a_dead_import_are_swept_by_the_next(tmp_path, settings):
    """What a killed decode process wrote under a temporary name is removed by a later import once it is
    a day old; a file of an import still running (younger) stays."""
    import os
    import time

    settings.MEDIA_ROOT = str(tmp_path / "media")
    pending = tmp_path / "media" / "images" / "pending"
    pending.mkdir(parents=True)
    (pending / "old.jpg").write_bytes(b"left behind")
    (pending / "new.jpg").write_bytes(b"still being imported")
    two_days_ago = time.time() - 2 * 86400
    os.utime(pending / "old.jpg", (two_days_ago, two_days_ago))
    rows = [{"study": "ACC-S", "patient": "P-S", "images": [{"file": "s.jpg"}]}]
    report = batch_import(dataset=dataset_make(name="swept"),
                          path=batch_write(tmp_path / "b", rows, {"s.jpg": jpeg_bytes(seed=5)}))
    assert report.counts["rows_imported"] == 1
    assert sorted(p.name for p in pending.iterdir()) == ["new.jpg"]


def test_the_next_chunks_files_are_verified_while_a_chunk_is_written(tmp_path, settings, monkeypatch):
    """The decoders do not wait for a chunk's insert and alignment: the first chunk's insert is held
    until every file of the batch (the second chunk's too) has been verified on the decode threads."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.IMPORT_CHUNK_ROWS = 3
    settings.IMPORT_DECODE_THREADS = 2
    rows, files = _rows(6)
    verified, waited = [], []
    real_verify, real_insert = media.image_verify, importing._Writes.insert

    def verify(content, **kwargs):
        result = real_verify(content, **kwargs)
        verified.append(threading.current_thread().name)
        return result

    def insert(self):
        if not waited:
            for _ in range(400):  # up to 20 s
                if len(verified) == 6:
                    break
                threading.Event().wait(0.05)
            waited.append(len(verified))
        return real_insert(self)

    monkeypatch.setattr(importing, "image_verify", verify)
    monkeypatch.setattr(importing._Writes, "insert", insert)
    report = batch_import(dataset=dataset_make(name="ahead"), path=batch_write(tmp_path / "b", rows, files))
    assert report.counts["rows_imported"] == 6
    assert waited == [6]
    assert all(name.startswith("import-decode") for name in verified)


def test_with_debug_on_the_query_log_holds_one_chunk_not_the_whole_import(tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DEBUG = True
    settings.IMPORT_CHUNK_ROWS = 2
    rows, files = _rows(8)
    logged = []
    report = batch_import(dataset=dataset_make(name="debug"), path=batch_write(tmp_path / "b", rows, files),
                          progress=lambda report: logged.append(len(connection.queries_log)))
    assert report.counts["rows_imported"] == 8
    chunks = logged[-4:]
    assert chunks[0] > 0 and max(chunks) <= chunks[0] + 5, logged
