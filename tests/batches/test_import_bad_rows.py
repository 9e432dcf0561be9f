"""Every bad input costs only its own row (or region): named with its line and reason, the other rows
imported, no traceback, no file left behind. One test per kind of input seen in real batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import services
from annotation.models import Image, Region, Report, Study
from batches.importing import ImportOptions, batch_import, problem_text
from batches.models import ImportJob
from tests.batches.test_import_support import SQUARE, batch_write, dicom_bytes, jpeg_bytes, zip_write
from tests.factories import dataset_make, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset():
    return dataset_make(name="bad-rows")


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """A media folder of the test's own, so 'no file left behind' can be checked by listing it."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def _errors(report) -> list[str]:
    return [problem_text(p) for p in report.problems if p["level"] == "error"]


def _warnings(report) -> list[str]:
    return [problem_text(p) for p in report.problems if p["level"] == "warning"]


def _row(study: str, file: str, **image) -> dict:
    return {"study": study, "patient": f"P-{study}", "images": [{"file": file, **image}]}


def _files(media: Path) -> list[str]:
    return sorted(p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()) if media.exists() else []


def test_a_line_that_is_not_utf8_is_named_and_the_others_import(dataset, tmp_path):
    path = batch_write(tmp_path / "b", None, {"a.jpg": jpeg_bytes(seed=1), "c.jpg": jpeg_bytes(seed=3)})
    lines = [json.dumps(_row("ACC-1", "a.jpg")).encode(),
             '{"study": "ACC-2", "patient": "Müller"}'.encode("latin-1"),
             json.dumps(_row("ACC-3", "c.jpg")).encode()]
    (path / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    report = batch_import(dataset=dataset, path=path)
    assert _errors(report) == ["line 2: the line is not UTF-8 text (byte 0xfc at position 33)"]
    assert set(Study.objects.values_list("accession", flat=True)) == {"ACC-1", "ACC-3"}
    assert report.counts["rows_imported"] == 2 and report.counts["rows_failed"] == 1


def test_a_line_over_the_limit_is_refused_without_being_read_whole(dataset, tmp_path, settings):
    settings.IMPORT_LINE_MAX_BYTES = 1000
    rows = [_row("ACC-1", "a.jpg"), _row("ACC-2", "a.jpg", view="x" * 5000), _row("ACC-3", "c.jpg")]
    path = batch_write(tmp_path / "b", rows, {"a.jpg": jpeg_bytes(seed=1), "c.jpg": jpeg_bytes(seed=3)})
    report = batch_import(dataset=dataset, path=path)
    assert _errors(report) == ["line 2: the line is longer than the limit of 1,000 bytes (IMPORT_LINE_MAX_BYTES)"]
    assert set(Study.objects.values_list("accession", flat=True)) == {"ACC-1", "ACC-3"}


def test_a_report_over_the_limit_is_refused(dataset, tmp_path, settings):
    settings.IMPORT_REPORT_MAX_BYTES = 100
    rows = [_row("ACC-1", "a.jpg") | {"report": "Normal thyroid."},
            _row("ACC-2", "c.jpg") | {"report": "结节" * 20}]  # 40 characters, 120 bytes
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, {
        "a.jpg": jpeg_bytes(seed=1), "c.jpg": jpeg_bytes(seed=3)}))
    assert _errors(report) == ["line 2 (ACC-2) report: the report is 120 bytes; the limit is 100 "
                               "(IMPORT_REPORT_MAX_BYTES)"]
    assert list(Report.objects.values_list("study__accession", flat=True)) == ["ACC-1"]


@pytest.mark.parametrize("spacing", [1e308, 1e200, [0.001, 0.1], [0.1, 6]])
def test_implausible_pixel_spacing_is_dropped_and_the_image_imports_uncalibrated(dataset, tmp_path, spacing):
    rows = [_row("ACC-1", "a.jpg", pixel_spacing_mm=spacing, regions=[{"shape": "polygon", "points": SQUARE}]),
            _row("ACC-2", "c.jpg", pixel_spacing_mm=[0.1, 0.1])]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, {
        "a.jpg": jpeg_bytes(seed=1), "c.jpg": jpeg_bytes(seed=3)}))
    assert _errors(report) == []
    [warning] = _warnings(report)
    assert warning.startswith("line 1 (ACC-1) images[0]: pixel spacing (") and warning.endswith(
        "mm is outside 0.005–5 mm per pixel, not plausible for ultrasound; dropped: the image is imported "
        "without calibration")
    image = Image.objects.get(original_name="a.jpg")
    assert (image.pixel_spacing_x_mm, image.pixel_spacing_y_mm) == (None, None)
    # Regions drawn on it later are measured in pixels only, as on any uncalibrated image.
    region = services.region_create(image=image, author=user_make(), shape="polygon", geometry={"points": SQUARE})
    assert region.area_px == 5000 and region.area_mm2 is None
    assert Image.objects.get(original_name="c.jpg").pixel_spacing_x_mm == 0.1


def test_dicom_with_an_absurd_calibration_imports_without_it(dataset, tmp_path):
    files = {"scan.dcm": dicom_bytes(study_uid="1.2.3.4", spacing_cm=(1e200, 1e200))}
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", None, files))
    assert _errors(report) == [] and len(_warnings(report)) == 1 and "not plausible" in _warnings(report)[0]
    image = Image.objects.get()
    assert image.pixel_spacing_x_mm is None
    region = services.region_create(image=image, author=user_make(), shape="polygon", geometry={"points": SQUARE})
    assert region.area_mm2 is None


def test_an_image_smaller_than_32_px_is_refused(dataset, tmp_path, media):
    rows = [_row("ACC-1", "tiny.jpg"), _row("ACC-2", "c.jpg")]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, {
        "tiny.jpg": jpeg_bytes(width=1, height=1), "c.jpg": jpeg_bytes(seed=3)}))
    assert _errors(report) == ["line 1 (ACC-1) images[0]: the image is 1×1 px; an image needs at least 32 px on "
                               "each side (IMPORT_IMAGE_MIN_SIDE)"]
    assert list(Study.objects.values_list("accession", flat=True)) == ["ACC-2"]
    assert len([f for f in _files(media) if f.startswith("images/")]) == 1


def test_coco_frame_that_is_not_a_whole_number_is_that_images_error(dataset, tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "frame": "abc"},
                       {"id": 2, "file_name": "b.jpg", "frame": -5},
                       {"id": 3, "file_name": "c.jpg", "frame": 2, "pixel_spacing_mm": [1e200, 1e200]}],
            "annotations": [{"id": 9, "image_id": 3, "segmentation": [[10, 10, 110, 10, 110, 60, 10, 60]]}],
            "categories": [{"id": 1, "name": "nodule"}]}
    path = batch_write(tmp_path / "b", None, {"instances.json": json.dumps(coco).encode(),
                                                "a.jpg": jpeg_bytes(seed=1), "b.jpg": jpeg_bytes(seed=2),
                                                "c.jpg": jpeg_bytes(seed=3)})
    report = batch_import(dataset=dataset, path=path, options=ImportOptions(format="coco"))
    assert _errors(report) == ["a.jpg images[0]: 'frame' must be a whole number ≥ 0, got 'abc'",
                               "b.jpg images[1]: 'frame' must be a whole number ≥ 0, got '-5'"]
    assert "not plausible for ultrasound" in _warnings(report)[0]
    image = Image.objects.get()
    assert (image.original_name, image.frame_index, image.pixel_spacing_x_mm) == ("c.jpg", 2, None)
    assert image.regions.count() == 1


def test_an_unexpected_failure_inside_a_row_is_that_rows_error(dataset, tmp_path, media, monkeypatch):
    real = services.report_validate

    def report_validate(*, text, language):
        if text == "Report of ACC-2.":
            raise RuntimeError("disk on fire")
        return real(text=text, language=language)

    monkeypatch.setattr(services, "report_validate", report_validate)
    rows = [_row(f"ACC-{n}", f"{n}.jpg") | {"report": f"Report of ACC-{n}."} for n in (1, 2, 3)]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, {
        f"{n}.jpg": jpeg_bytes(seed=n) for n in (1, 2, 3)}))
    assert _errors(report) == ["line 2 (ACC-2): the row could not be imported (RuntimeError: disk on fire)"]
    assert set(Study.objects.values_list("accession", flat=True)) == {"ACC-1", "ACC-3"}
    # The row's image file went back with it: only the two committed images are in storage.
    stored = [f for f in _files(media) if f.startswith("images/")]
    assert sorted(stored) == sorted(Image.objects.values_list("file", flat=True))


def test_rolled_back_rows_leave_no_file_in_storage(dataset, tmp_path, media):
    rows = [{"study": "ACC-1", "patient": "P-1", "images": [{"file": "a.jpg"}, {"file": "missing.jpg"}]},
            _row("ACC-2", "c.jpg")]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", rows, {
        "a.jpg": jpeg_bytes(seed=1), "c.jpg": jpeg_bytes(seed=3)}))
    assert _errors(report) == ["line 1 (ACC-1) images[1]: file not found in the batch"]
    stored = [f for f in _files(media) if f.startswith("images/")]
    assert stored == list(Image.objects.values_list("file", flat=True)) and len(stored) == 1


def test_a_region_that_cannot_be_one_is_named_and_its_image_imports(dataset, tmp_path):
    regions = [{"shape": "polygon", "points": SQUARE, "id": "good"},
               {"shape": "polygon", "points": [[5, 5], [5, 5], [6, 6]], "id": "two-points"},
               {"shape": "polygon", "points": [[0, 0], [10, 10], [20, 20]], "id": "flat"},
               {"shape": "polygon", "points": [[-90, -90], [-50, -90], [-50, -50]], "id": "far-outside"}]
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "b", [_row("ACC-1", "a.jpg", regions=regions)],
                                                            {"a.jpg": jpeg_bytes(seed=1)}))
    assert _errors(report) == [
        "line 1 (ACC-1) images[0].regions[1]: geometry: an outline needs at least 3 distinct points, got 2",
        "line 1 (ACC-1) images[0].regions[2]: geometry: polygon has no area (its points lie on one line)",
        "line 1 (ACC-1) images[0].regions[3]: geometry: all of the outline lies outside the image (320×240 px)"]
    assert list(Region.objects.values_list("source_id", flat=True)) == ["good"]
    assert report.counts["rows_imported"] == 1 and report.counts["regions_refused"] == 3


def test_the_admin_page_shows_the_jobs_counts_and_errors(client, tmp_path, django_capture_on_commit_callbacks):
    admin = user_make()
    dataset = dataset_make(members={"admin": [admin]})
    manifest = (json.dumps(_row("ACC-1", "a.jpg")).encode() + b"\n" + b'{"study": "\xff"}\n'
                + json.dumps(_row("ACC-3", "c.jpg", pixel_spacing_mm=1e308)).encode() + b"\n")
    archive = zip_write(tmp_path / "batch.zip", {"manifest.jsonl": manifest, "a.jpg": jpeg_bytes(seed=1),
                                                 "c.jpg": jpeg_bytes(seed=3)})
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("batches:import", args=[dataset.pk]), {
            "batch": SimpleUploadedFile("batch.zip", archive.read_bytes()), "format": "manifest"})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.status == "done" and job.counts["rows_imported"] == 2 and job.counts["rows_failed"] == 1
    page = client.get(reverse("batches:import-job", args=[job.pk])).content.decode()
    row = page.split('<td class="num">2</td>', 1)[1].split("</tr>", 1)[0]  # the report's row of line 2
    assert "the line is not UTF-8 text (byte 0xff at position 12)" in row
    assert "not plausible for ultrasound" in page
