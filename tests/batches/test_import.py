"""Batch import: the manifest, DICOM and COCO routes, and every rule about bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image as PILImage

from annotation.models import Assignment, Image, Region, RegionRevision, Report, Study
from batches.importing import ImportOptions, batch_import, problem_text
from batches.models import ImportJob
from tests.batches.test_import_support import (
    PHI_ACCESSION,
    PHI_BIRTH,
    PHI_ID,
    SQUARE,
    batch_files,
    batch_write,
    dicom_bytes,
    jpeg_bytes,
    manifest_rows,
    standard_batch,
    zip_write,
)
from tests.factories import dataset_make, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset():
    return dataset_make(name="thyroid-import")


def _errors(report) -> list[str]:
    return [problem_text(p) for p in report.problems if p["level"] == "error"]


def _warnings(report) -> list[str]:
    return [problem_text(p) for p in report.problems if p["level"] == "warning"]


def test_standard_batch_imports_manifest_studies_and_dicom_frames(dataset, tmp_path):
    report = batch_import(dataset=dataset, path=standard_batch(tmp_path / "batch"))
    assert _errors(report) == []
    assert report.counts["studies_created"] == 4
    assert report.counts["images_created"] == 4 + 1 + 4  # JPEGs, single-frame DICOM, 4-frame cine
    study = Study.objects.get(dataset=dataset, accession="ACC-0001")
    assert study.report.text.startswith("Right lobe") and study.report.language == "en"
    first = study.images.get(original_name="images/0001_1.jpg")
    assert (first.laterality, first.view, first.body_marker, first.pixel_spacing_x_mm) == (
        "right", "transverse", "RT THY TRV", 0.08)
    polygon = first.regions.get(source_id="src-1")
    assert (polygon.source, polygon.source_author, polygon.author, polygon.label, polygon.lesion_key) == (
        "import", "hospital-a", None, "nodule", "L1")
    assert first.regions.get(shape="ellipse").source_author == "import"  # the default import author
    assert Study.objects.get(accession="ACC-0002").report.language == "zh"  # detected: no language given
    assert not Report.objects.filter(study__accession="ACC-0003").exists()  # report pending


def test_dicom_spacing_laterality_frames_and_phi_removed(dataset, tmp_path):
    batch_import(dataset=dataset, path=standard_batch(tmp_path / "batch"))
    study = Study.objects.get(dataset=dataset, metadata__source="dicom")
    frames = study.images.filter(original_name__contains="#frame=").order_by("frame_index")
    assert [i.frame_index for i in frames] == [0, 1, 2, 3]
    single = study.images.exclude(original_name__contains="#frame=").get()
    # Named from the pseudonymised accession and SOP Instance UID, never from the source path.
    assert single.original_name == f"dicom/{study.accession}/{single.sop_instance_uid}"
    assert frames[2].original_name == f"dicom/{study.accession}/{frames[2].sop_instance_uid}#frame=2"
    # PhysicalDeltaX/Y are in cm in the Sequence of Ultrasound Regions.
    assert single.pixel_spacing_x_mm == pytest.approx(0.08) and single.pixel_spacing_y_mm == pytest.approx(0.09)
    assert single.laterality == "right" and frames[0].laterality == "left"
    assert study.exam_date.isoformat() == "2024-03-01"
    stored = json.dumps([
        next(iter(Study.objects.filter(pk=study.pk).values())),
        *Image.objects.filter(study=study).values(),
    ], default=str)
    for phi in (PHI_ID, PHI_ACCESSION, PHI_BIRTH, "Doe", "Jane", "St Example Hospital", "1.2.826.0.1.9"):
        assert phi not in stored, f"{phi} reached the database"
    assert study.patient.startswith("P-") and study.accession.startswith("US-")
    assert single.study_instance_uid.startswith("2.25.")


def test_a_dicom_path_naming_the_patient_never_reaches_the_database(dataset, tmp_path):
    files = {"DOE^JANE_MRN4455123/US_DOE_JANE_19700101.dcm": dicom_bytes(study_uid="1.2.3.9", seed=4)}
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", None, files))
    assert _errors(report) == []
    stored = json.dumps(list(Image.objects.values()), default=str)
    for phi in ("DOE", "JANE", "4455123", "19700101"):
        assert phi not in stored


def test_frame_step_keeps_every_nth_frame(dataset, tmp_path):
    files = {"cine.dcm": dicom_bytes(study_uid="1.2.3.4", frames=6, seed=5)}
    batch_import(dataset=dataset, path=batch_write(tmp_path / "b", None, files), options=ImportOptions(frame_step=2))
    assert sorted(Image.objects.values_list("frame_index", flat=True)) == [0, 2, 4]


def test_banner_region_is_blacked_out(dataset, tmp_path):
    files = {"one.dcm": dicom_bytes(study_uid="1.2.3.5", seed=6, banner_value=255)}
    batch_import(dataset=dataset, path=batch_write(tmp_path / "b", None, files),
                 options=ImportOptions(banner=(0, 0, 320, 20)))
    image = Image.objects.get()
    with default_storage.open(image.file.name) as handle, PILImage.open(handle) as picture:
        top = picture.crop((0, 0, 320, 20))
        assert top.getextrema() == (0, 0)
        assert picture.crop((0, 20, 320, 240)).getextrema()[1] > 0


def test_burned_in_annotation_without_banner_is_warned(dataset, tmp_path):
    files = {"one.dcm": dicom_bytes(study_uid="1.2.3.6", seed=7, burned_in=True)}
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", None, files))
    assert any("burned-in annotation" in warning for warning in _warnings(report))


def test_reimporting_the_same_batch_changes_nothing(dataset, tmp_path):
    path = standard_batch(tmp_path / "batch")
    batch_import(dataset=dataset, path=path)
    before = (Study.objects.count(), Image.objects.count(), list(Region.objects.values_list("id", "version")),
              RegionRevision.objects.count(), list(Report.objects.values_list("id", "version")))
    again = batch_import(dataset=dataset, path=path)
    after = (Study.objects.count(), Image.objects.count(), list(Region.objects.values_list("id", "version")),
             RegionRevision.objects.count(), list(Report.objects.values_list("id", "version")))
    assert after == before
    assert again.counts["images_created"] == again.counts["regions_created"] == 0
    assert again.counts["images_existing"] == 9 and again.counts["regions_existing"] == 5


def test_report_arrives_in_a_later_batch(dataset, tmp_path):
    rows = manifest_rows()
    batch_import(dataset=dataset, path=batch_write(tmp_path / "a", rows, batch_files()))
    later = [{"study": "ACC-0003", "report": {"text": "Normal thyroid.", "language": "en"}}]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", later, {}))
    assert _errors(report) == []
    assert Report.objects.get(study__accession="ACC-0003").text == "Normal thyroid."
    changed = [{"study": "ACC-0003", "report": {"text": "Normal thyroid, revised."}}]
    batch_import(dataset=dataset, path=batch_write(tmp_path / "c", changed, {}))
    assert Report.objects.get(study__accession="ACC-0003").version == 2


def test_bad_rows_are_reported_with_line_and_reason_and_good_rows_import(dataset, tmp_path, settings):
    good = {"file": "images/good.jpg", "regions": [{"shape": "polygon", "points": SQUARE}]}
    rows = [
        {"study": "ACC-B1", "patient": "P-1", "images": [good]},
        {"study": "ACC-B2", "patient": "P-2", "images": [{"file": "images/missing.jpg"}]},
        {"study": "ACC-B3", "patient": "P-3", "images": [{"file": "images/broken.jpg"}]},
        {"study": "ACC-B4", "patient": "P-4", "images": [
            {"file": "images/other.jpg"},
            {"file": "images/third.jpg", "regions": [{"shape": "polygon", "points": SQUARE,
                                                      "attributes": {"echogenicity": "sparkly"}}]}]},
        {"study": "ACC-B5", "patient": "P-5", "images": [
            {"file": "images/fifth.jpg",
             "regions": [{"shape": "polygon", "points": [[10, 10], [500, 10], [10, 50]]}]}]},
        {"study": "ACC-B6", "patient": "P-6", "images": [{"file": "images/sixth.jpg"}]},
    ]
    files = {"images/good.jpg": jpeg_bytes(seed=1), "images/broken.jpg": b"this is a text file, not a picture",
             "images/other.jpg": jpeg_bytes(seed=2), "images/third.jpg": jpeg_bytes(seed=3),
             "images/fifth.jpg": jpeg_bytes(seed=4), "images/sixth.jpg": jpeg_bytes(seed=5)}
    path = batch_write(tmp_path / "b", rows, files)
    with (path / "manifest.jsonl").open("a") as handle:
        handle.write("{not json\n")
    report = batch_import(dataset=dataset, path=path)
    errors = _errors(report)
    assert errors[0] == "line 2 (ACC-B2) images[0]: file not found in the batch"
    assert errors[1] == "line 3 (ACC-B3) images[0]: the file is not an image Pillow can read"
    assert errors[2].startswith("line 4 (ACC-B4) images[1].regions[0]: attributes: echogenicity: 'sparkly' is not "
                                "a value of echogenicity (allowed: anechoic, hypoechoic")
    assert errors[3].startswith("line 7: not valid JSON")
    assert len(errors) == 4
    # A bad region costs only itself; an outline past the edge is clipped to the image, with a warning.
    assert _warnings(report) == [
        "line 5 (ACC-B5) images[0].regions[0]: outline repaired: 1 point outside the image (320×240 px, up to "
        "180 px past the edge) clipped to it; area 9,800.0 px² as drawn, 8,477.6 px² kept"]
    assert set(Study.objects.values_list("accession", flat=True)) == {"ACC-B1", "ACC-B4", "ACC-B5", "ACC-B6"}
    assert Image.objects.filter(original_name="images/third.jpg", regions__isnull=True).exists()
    clipped = Region.objects.get(image__original_name="images/fifth.jpg")
    assert clipped.source_points == [[10, 10], [500, 10], [10, 50]] and clipped.area_px == pytest.approx(310 * (40 + 40 * 180 / 490) / 2)
    assert report.counts["rows_imported"] == 4 and report.counts["rows_failed"] == 3
    assert report.counts["regions_created"] == 2 and report.counts["regions_refused"] == 1
    assert report.counts["images_created"] == 5


def test_strict_refuses_the_whole_row_of_a_bad_region_and_repairs_nothing(tmp_path):
    dataset = dataset_make(name="strict")
    rows = [
        {"study": "ACC-S1", "patient": "P-1", "images": [
            {"file": "images/other.jpg"},
            {"file": "images/third.jpg", "regions": [{"shape": "polygon", "points": SQUARE,
                                                      "attributes": {"echogenicity": "sparkly"}}]}]},
        {"study": "ACC-S2", "patient": "P-2", "images": [
            {"file": "images/fifth.jpg", "regions": [{"shape": "polygon", "points": [[10, 10], [500, 10], [10, 50]]}]}]},
    ]
    files = {"images/other.jpg": jpeg_bytes(seed=2), "images/third.jpg": jpeg_bytes(seed=3),
             "images/fifth.jpg": jpeg_bytes(seed=4)}
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, files),
                          options=ImportOptions(strict=True))
    assert _errors(report)[1] == ("line 2 (ACC-S2) images[0].regions[0]: geometry: point 1 (500, 10) lies outside "
                                  "the image (320×240 px)")
    assert not Study.objects.filter(dataset=dataset).exists()
    # Nothing half-imported: the good first image of ACC-S1 went back with its row.
    assert not Image.objects.filter(original_name="images/other.jpg").exists()
    assert report.counts["rows_failed"] == 2


def test_image_limits_decompression_bomb_and_size(dataset, tmp_path, settings):
    rows = [{"study": "ACC-L1", "patient": "P-1", "images": [{"file": "big.jpg"}]}]
    path = batch_write(tmp_path / "b", rows, {"big.jpg": jpeg_bytes(seed=9)})
    settings.IMAGE_MAX_PIXELS = 1000
    assert _errors(batch_import(dataset=dataset, path=path)) == [
        "line 1 (ACC-L1) images[0]: the image has too many pixels (limit 1,000)"]
    settings.IMAGE_MAX_PIXELS = 64 * 1024 * 1024
    settings.IMAGE_MAX_BYTES = 100
    assert _errors(batch_import(dataset=dataset, path=path)) == [
        "line 1 (ACC-L1) images[0]: the file is larger than the limit of 100 bytes"]
    assert not Study.objects.exists()


def test_same_file_twice_in_one_study_is_imported_once(dataset, tmp_path):
    content = jpeg_bytes(seed=11)
    rows = [{"study": "ACC-D1", "patient": "P-1", "images": [{"file": "a.jpg"}, {"file": "copy-of-a.jpg"}]}]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, {"a.jpg": content,
                                                                                    "copy-of-a.jpg": content}))
    assert Image.objects.count() == 1
    assert _warnings(report) == ["line 1 (ACC-D1) images[1]: the same file as images[0] 'a.jpg' in this study; "
                                 "imported once"]


def test_same_file_in_two_studies_is_imported_for_both_stored_once_with_a_warning(dataset, tmp_path):
    content = jpeg_bytes(seed=12)
    rows = [{"study": "ACC-S1", "patient": "P-1", "images": [{"file": "a.jpg"}]},
            {"study": "ACC-S2", "patient": "P-2", "images": [{"file": "b.jpg"}]}]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, {"a.jpg": content,
                                                                                    "b.jpg": content}))
    images = list(Image.objects.order_by("study__accession"))
    assert [i.study.accession for i in images] == ["ACC-S1", "ACC-S2"]
    assert images[0].file.name == images[1].file.name  # stored once
    assert _warnings(report) == ["line 2 (ACC-S2) images[0]: the same file is also in study ACC-S1 (stored once, "
                                 "imported for both ACC-S2 and ACC-S1); this is usually a data error"]


def test_path_traversal_in_zip_names_and_manifest_paths_is_refused(dataset, tmp_path):
    rows = [{"study": "ACC-Z1", "patient": "P-1", "images": [{"file": "images/ok.jpg"}]},
            {"study": "ACC-Z2", "patient": "P-2", "images": [{"file": "../evil.jpg"}]}]
    archive = zip_write(tmp_path / "batch.zip", {
        "manifest.jsonl": "".join(json.dumps(row) + "\n" for row in rows),
        "images/ok.jpg": jpeg_bytes(seed=13), "../evil.jpg": jpeg_bytes(seed=14), "/etc/evil.jpg": b"x",
    })
    report = batch_import(dataset=dataset, path=archive)
    errors = _errors(report)
    assert "../evil.jpg: refused: the name leaves the batch folder (path traversal)" in errors
    assert "/etc/evil.jpg: refused: the name leaves the batch folder (path traversal)" in errors
    assert "line 2 (ACC-Z2) images[0]: refused: the path leaves the batch folder (path traversal)" in errors
    assert list(Study.objects.values_list("accession", flat=True)) == ["ACC-Z1"]
    assert not (tmp_path / "evil.jpg").exists()


def test_zip_of_a_folder_is_read_from_its_top_folder(dataset, tmp_path):
    rows = [{"study": "ACC-F1", "patient": "P-1", "images": [{"file": "images/ok.jpg"}]}]
    archive = zip_write(tmp_path / "batch.zip", {"export-2024/manifest.jsonl": json.dumps(rows[0]) + "\n",
                                                 "export-2024/images/ok.jpg": jpeg_bytes(seed=15)})
    report = batch_import(dataset=dataset, path=archive)
    assert _errors(report) == [] and Image.objects.count() == 1


def test_a_new_study_without_patient_and_a_patient_conflict_are_errors(dataset, tmp_path):
    rows = [{"study": "ACC-P1", "images": []},
            {"study": "ACC-P2", "patient": "P-2"},
            {"study": "ACC-P2", "patient": "P-9"}]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, {}))
    assert _errors(report) == [
        "line 1 (ACC-P1): a new study needs 'patient' (the pseudonymised id)",
        "line 3 (ACC-P2): study ACC-P2 is already in the dataset for patient P-2; this row says P-9",
    ]


def test_as_reader_imports_the_regions_as_that_readers_submitted_work(dataset, tmp_path):
    reader = user_make("migrated-reader")
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", manifest_rows(), batch_files()),
                          options=ImportOptions(as_reader=reader))
    assert _errors(report) == []
    regions = Region.objects.all()
    assert regions.count() == 5
    assert set(regions.values_list("source", "author_id")) == {("reader", reader.pk)}
    assignments = Assignment.objects.filter(annotator=reader)
    assert assignments.count() == 3 and set(assignments.values_list("status", flat=True)) == {"submitted"}
    again = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", manifest_rows(), batch_files()),
                         options=ImportOptions(as_reader=reader))
    assert again.counts["regions_created"] == 0 and Region.objects.count() == 5


def test_coco_pre_annotations_land_on_images_already_in_the_dataset(dataset, tmp_path):
    batch_import(dataset=dataset, path=batch_write(tmp_path / "a", [
        {"study": "ACC-C1", "patient": "P-1", "images": [{"file": "scan.jpg"}]}], {"scan.jpg": jpeg_bytes(seed=16)}))
    coco = {"images": [{"id": 7, "file_name": "scan.jpg", "width": 320, "height": 240}],
            "categories": [{"id": 1, "name": "nodule"}],
            "annotations": [{"id": 70, "image_id": 7, "category_id": 1, "segmentation": [[10, 10, 100, 10, 50, 80]],
                             "bbox": [10, 10, 90, 70], "area": 3150, "iscrowd": 0},
                            {"id": 71, "image_id": 7, "category_id": 1, "bbox": [5, 5, 20, 20], "iscrowd": 0}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    report = batch_import(dataset=dataset, path=path, options=ImportOptions(format="coco", author="model-v1"))
    assert _errors(report) == []
    regions = Region.objects.order_by("source_id")
    assert [(r.shape, r.label, r.source_id, r.source_author) for r in regions] == [
        ("polygon", "nodule", "70", "model-v1"), ("rectangle", "nodule", "71", "model-v1")]
    assert regions[0].area_px == pytest.approx(3150)


def test_command_creates_the_dataset_and_prints_the_report(tmp_path):
    out = io.StringIO()
    bad = {"study": "ACC-X", "patient": "P-X", "images": [{"file": "nope.jpg"}]}
    path = batch_write(tmp_path / "b", [*manifest_rows(), bad], batch_files())
    call_command("import_batch", str(path), "--dataset", "cli-set", "--create", "--lexicon", "udaf", stdout=out)
    text = out.getvalue()
    assert "error: line 4 (ACC-X) images[0]: file not found in the batch" in text
    assert "images_created 4" in text and "rows_failed 1" in text


def test_import_job_from_an_uploaded_zip_records_progress_counts_and_row_problems(
        dataset, tmp_path, django_capture_on_commit_callbacks):
    from batches.importing import import_job_create

    rows = [*manifest_rows(), {"study": "ACC-X", "patient": "P-X", "images": [{"file": "nope.jpg"}]}]
    entries = {"manifest.jsonl": "".join(json.dumps(r) + "\n" for r in rows)} | batch_files()
    archive = zip_write(tmp_path / "upload.zip", entries)
    upload = SimpleUploadedFile("upload.zip", Path(archive).read_bytes(), content_type="application/zip")
    with django_capture_on_commit_callbacks(execute=True):
        job = import_job_create(dataset=dataset, user=user_make(staff=True), upload=upload)
    job = ImportJob.objects.get(pk=job.pk)
    assert job.status == "done" and job.total == job.done == 4
    assert job.counts["images_created"] == 4 and job.counts["rows_failed"] == 1
    assert [p["line"] for p in job.errors if p["level"] == "error"] == [4]
    assert all(image.thumbnail for image in Image.objects.filter(study__dataset=dataset))


def test_an_import_job_started_in_chinese_reports_its_rows_in_chinese_on_every_thread(
        dataset, tmp_path, settings, django_capture_on_commit_callbacks):
    """The per-row report is written in the language of the admin who started the import, including the
    reasons made on the decode threads (a broken image) and the command's default stays English."""
    from django.utils import translation

    from batches.importing import import_job_create

    settings.IMPORT_DECODE_THREADS = 2
    rows = [*manifest_rows(),
            {"study": "ACC-X", "patient": "P-X", "images": [{"file": "nope.jpg"}]},
            {"study": "ACC-Y", "patient": "P-Y", "images": [{"file": "broken.jpg"}]},
            "{not json"]
    entries = {"manifest.jsonl": "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)}
    entries |= batch_files() | {"broken.jpg": b"\xff\xd8 not really a jpeg"}
    archive = zip_write(tmp_path / "upload.zip", entries)
    upload = SimpleUploadedFile("upload.zip", Path(archive).read_bytes(), content_type="application/zip")
    with translation.override("zh-hans"), django_capture_on_commit_callbacks(execute=True):
        job = import_job_create(dataset=dataset, user=user_make(staff=True), upload=upload)
    job = ImportJob.objects.get(pk=job.pk)
    assert job.params["language"] == "zh-hans"
    reasons = {p["line"]: p["reason"] for p in job.errors}
    assert reasons[4] == "批次中找不到该文件"
    assert reasons[5] == "该文件不是可读取的图像"
    assert reasons[6].startswith("不是有效的 JSON（第 ")
    assert translation.get_language() == "en"  # the job's language did not leak into this thread


def test_outline_repairs_are_reported_in_the_language_of_the_import(dataset, tmp_path):
    from django.utils import translation

    bowtie = {"shape": "polygon", "points": [[10, 10], [60, 60], [60, 10], [10, 40]], "id": "bow"}
    rows = [{"study": "ACC-R", "patient": "P-R", "images": [{"file": "r.jpg", "regions": [bowtie]}]}]
    path = batch_write(tmp_path / "b", rows, {"r.jpg": jpeg_bytes(seed=4)})
    with translation.override("zh-hans"):
        report = batch_import(dataset=dataset, path=path)
    (warning,) = [p["reason"] for p in report.problems]
    assert warning.startswith("轮廓已修复：轮廓自相交（Self-intersection[")
    assert "保留了 2 个部分中最大的一个" in warning and "平方像素" in warning
