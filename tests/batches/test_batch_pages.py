"""The import and export pages beyond starting a job: the export's preview before it starts, the job's pace,
the import's row report as a filtered table and as CSV, the failed manifest lines to fix and import again,
and who may open each of them."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from annotation import services
from annotation.models import Image
from batches import selectors
from batches.models import ExportJob, ImportJob
from tests.batches.test_import_support import batch_files, manifest_rows, zip_write
from tests.factories import SQUARE, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db

BAD_LINES = [
    {"study": "ACC-BAD1", "patient": "P-9", "images": [{"file": "missing.jpg"}]},
    {"study": "=HYPERLINK(\"http://x\")", "patient": "P-9", "images": [{"file": "gone.jpg"}]},
]


@pytest.fixture
def people():
    admin, annotator, reviewer, outsider = user_make(), user_make(), user_make(), user_make()
    staff = user_make(staff=True)
    dataset = dataset_make(members={"admin": [admin], "annotator": [annotator], "reviewer": [reviewer]})
    dataset_make(members={"admin": [outsider]})
    return {"dataset": dataset, "admin": admin, "annotator": annotator, "reviewer": reviewer, "outsider": outsider,
            "staff": staff}


def _import(client, tmp_path, dataset, capture) -> ImportJob:
    """A batch of three good studies with the bad lines at 2 and 5 (numbered as in the manifest)."""
    good = manifest_rows()
    rows = [good[0], BAD_LINES[0], good[1], good[2], BAD_LINES[1]]
    archive = zip_write(tmp_path / "batch.zip", {"manifest.jsonl": "".join(json.dumps(r) + "\n" for r in rows)}
                        | batch_files())
    with capture(execute=True):
        client.post(reverse("batches:import", args=[dataset.pk]),
                    {"batch": SimpleUploadedFile("batch.zip", archive.read_bytes()), "format": "manifest"})
    return ImportJob.objects.get()


# ---------------------------------------------------------------------------------------------- export preview


@pytest.fixture
def exportable(people):
    """Two patients, three images; regions imported on two of them, nothing adjudicated."""
    dataset = people["dataset"]
    first = study_make(dataset, patient="P-1")
    second = study_make(dataset, patient="P-2")
    images = [image_make(first), image_make(first, position=1), image_make(second)]
    for image in images[:2]:
        services.region_create(image=image, author=None, shape="polygon", geometry=SQUARE, source="import")
    services.region_create(image=images[0], author=None, shape="polygon", geometry=SQUARE, source="import")
    return people


def test_preview_counts_what_the_exporter_would_write(exportable):
    dataset = exportable["dataset"]
    submitted = selectors.export_preview(dataset=dataset, status="submitted")
    assert (submitted.studies, submitted.images, submitted.regions) == (1, 2, 3)
    everything = selectors.export_preview(dataset=dataset, status="all")
    assert (everything.studies, everything.images, everything.regions) == (2, 3, 3)
    assert selectors.export_preview(dataset=dataset, status="adjudicated").images == 0
    assert submitted.images_by_status == {"adjudicated": 0, "submitted": 2, "all": 3}
    assert 0 < submitted.estimated_bytes < selectors.export_preview(dataset=dataset, status="submitted",
                                                                    include_images=True).estimated_bytes


@pytest.mark.parametrize("format", ["coco", "jsonl", "csv"])
def test_preview_agrees_with_the_export_it_announces(client, exportable, django_capture_on_commit_callbacks, format):
    dataset = exportable["dataset"]
    image = Image.objects.filter(study__dataset=dataset).first()
    services.region_create(image=image, author=None, shape="line", geometry={"points": [[5, 5], [50, 50]]},
                           source="import")
    preview = selectors.export_preview(dataset=dataset, status="submitted", format=format)
    assert preview.regions_left_out == (1 if format == "coco" else 0)
    client.force_login(exportable["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("batches:export", args=[dataset.pk]), {"format": format, "status": "submitted"})
    counts = ExportJob.objects.get().manifest["counts"]
    assert (counts["studies"], counts["images"], counts["regions"]) == (preview.studies, preview.images,
                                                                         preview.regions)
    assert counts.get("regions_skipped_not_area", 0) == preview.regions_left_out


def test_preview_splits_by_patient_as_the_export_does(exportable):
    from batches.exporting import split_of

    dataset = exportable["dataset"]
    preview = selectors.export_preview(dataset=dataset, status="all", split=(0.5, 0.5), seed=7)
    parts = {part.name: part for part in preview.splits}
    assert set(parts) == {"train", "val"}
    assert parts[split_of("P-1", split=(0.5, 0.5), seed=7)].images >= 2
    assert sum(p.images for p in parts.values()) == 3 and sum(p.studies for p in parts.values()) == 2


def test_export_form_starts_with_the_status_that_has_data_and_says_why(client, exportable):
    client.force_login(exportable["admin"])
    page = client.get(reverse("batches:export", args=[exportable["dataset"].pk])).content.decode()
    assert 'value="submitted" id="id_status_1" checked' in page or (
        'name="status" value="submitted"' in page and "checked" in page.split('value="submitted"')[1][:80])
    assert "No image is adjudicated yet" in page
    assert "(0 images)" in page and "(2 images)" in page


def test_preview_answers_the_form_on_change(client, exportable):
    client.force_login(exportable["admin"])
    url = reverse("batches:export-preview", args=[exportable["dataset"].pk])
    partial = client.get(url, {"format": "coco", "status": "adjudicated", "split": "", "seed": "42"},
                         HTTP_HX_REQUEST="true").content.decode()
    assert 'id="export-preview"' in partial and "<html" not in partial
    assert "this export would hold no image" in partial and "submitted (2)" in partial
    partial = client.get(url, {"format": "coco", "status": "all", "split": "0.8,0.1,0.1"},
                         HTTP_HX_REQUEST="true").content.decode()
    assert '<span class="stat-value">3</span>' in partial and "validation" in partial
    refused = client.get(url, {"format": "coco", "status": "all", "split": "0.9,0.9"}).content.decode()
    assert "sum to 1" in refused


def test_preview_in_chinese(client, exportable):
    client.force_login(exportable["admin"])
    partial = client.get(reverse("batches:export-preview", args=[exportable["dataset"].pk]),
                         {"format": "coco", "status": "adjudicated"}, HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "将导出的内容" in partial


# ---------------------------------------------------------------------------------------------- job pages


def test_job_pace_gives_rate_and_expected_end():
    now = timezone.now()
    job = ImportJob(status="running", total=100, done=25, started_at=now - timedelta(seconds=50))
    pace = selectors.job_pace(job=job, now=now)
    assert pace.percent == 25 and pace.rate == pytest.approx(0.5)
    assert pace.finishes_at == now + timedelta(seconds=150)
    finished = ImportJob(status="done", total=100, done=100, started_at=now - timedelta(seconds=50),
                         finished_at=now - timedelta(seconds=10))
    assert selectors.job_pace(job=finished, now=now).finishes_at is None
    assert selectors.job_pace(job=finished, now=now).rate == pytest.approx(2.5)
    assert selectors.job_pace(job=ImportJob(status="pending"), now=now).rate is None


def test_running_job_page_shows_rate_and_time_left(client, people):
    job = ImportJob.objects.create(dataset=people["dataset"], status="running", total=10, done=4,
                                   started_at=timezone.now() - timedelta(seconds=8))
    client.force_login(people["admin"])
    partial = client.get(reverse("batches:import-job", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "0.5 rows/s" in partial and "about" in partial and 'value="40"' in partial


def test_import_report_is_a_table_filtered_by_level_and_text(client, tmp_path, people,
                                                            django_capture_on_commit_callbacks):
    client.force_login(people["admin"])
    job = _import(client, tmp_path, people["dataset"], django_capture_on_commit_callbacks)
    assert job.status == "done" and Image.objects.filter(study__dataset=people["dataset"]).count() == 4
    url = reverse("batches:import-job", args=[job.pk])
    rows = client.get(url).content.decode().split('id="report-rows"')[1]
    assert '<td class="num">2</td><td>ACC-BAD1</td>' in rows and "missing.jpg" not in rows.split("<tbody>")[0]
    only = client.get(url, {"q": "ACC-BAD1"}, HTTP_HX_REQUEST="true").content.decode().split('id="report-rows"')[1]
    assert "ACC-BAD1" in only and "HYPERLINK" not in only
    assert "No problem matches" in client.get(url, {"level": "warning", "q": "ACC-BAD1"}).content.decode()


def test_report_csv_neutralises_formulas_and_follows_the_filter(client, tmp_path, people,
                                                               django_capture_on_commit_callbacks):
    client.force_login(people["admin"])
    job = _import(client, tmp_path, people["dataset"], django_capture_on_commit_callbacks)
    response = client.get(reverse("batches:import-report-csv", args=[job.pk]))
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")  # spreadsheets then read the Chinese in it as UTF-8
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert {row["line"] for row in rows if row["level"] == "error"} == {"2", "5"}
    formula = [row for row in rows if row["line"] == "5"][0]
    assert formula["study"].startswith("'=HYPERLINK")
    filtered = client.get(reverse("batches:import-report-csv", args=[job.pk]), {"q": "ACC-BAD1"}).content.decode()
    assert "ACC-BAD1" in filtered and "HYPERLINK" not in filtered


def test_failed_lines_come_back_as_a_manifest_that_imports_once_fixed(client, tmp_path, people,
                                                                      django_capture_on_commit_callbacks):
    client.force_login(people["admin"])
    job = _import(client, tmp_path, people["dataset"], django_capture_on_commit_callbacks)
    page = client.get(reverse("batches:import-job", args=[job.pk])).content.decode()
    assert reverse("batches:import-failed-lines", args=[job.pk]) in page
    response = client.get(reverse("batches:import-failed-lines", args=[job.pk]))
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line) for line in lines] == BAD_LINES  # lines 2 and 5, as uploaded

    fixed = [dict(row, images=[{"file": "images/0003_1.jpg"}]) for row in BAD_LINES]
    fixed[1]["study"] = "ACC-BAD2"
    archive = zip_write(tmp_path / "fixed.zip", {"manifest.jsonl": "".join(json.dumps(r) + "\n" for r in fixed),
                                                 "images/0003_1.jpg": batch_files()["images/0003_1.jpg"]})
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("batches:import", args=[people["dataset"].pk]),
                    {"batch": SimpleUploadedFile("fixed.zip", archive.read_bytes()), "format": "manifest"})
    again = ImportJob.objects.exclude(pk=job.pk).get()
    assert again.counts.get("rows_imported") == 2 and not selectors.import_failed_line_numbers(job=again)
    assert client.get(reverse("batches:import-failed-lines", args=[again.pk])).status_code == 404


def test_finished_export_shows_the_archive_size_and_sha256(client, exportable, django_capture_on_commit_callbacks):
    client.force_login(exportable["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("batches:export", args=[exportable["dataset"].pk]), {"format": "jsonl", "status": "all"})
    job = ExportJob.objects.get()
    content = b"".join(client.get(reverse("batches:export-download", args=[job.pk])).streaming_content)
    assert job.output_bytes == len(content) and job.output_sha256 == hashlib.sha256(content).hexdigest()
    page = client.get(reverse("batches:export-job", args=[job.pk])).content.decode()
    assert job.output_sha256 in page and reverse("batches:export-download", args=[job.pk]) in page


# ---------------------------------------------------------------------------------------------- permissions


def _new_routes(people, tmp_path) -> list[str]:
    dataset = people["dataset"]
    source = zip_write(tmp_path / "p.zip", {"manifest.jsonl": json.dumps(BAD_LINES[0]) + "\n"})
    job = ImportJob.objects.create(dataset=dataset, status="done",
                                   errors=[{"level": "error", "line": 1, "reason": "file not found"}])
    job.source.save("imports/perm/p.zip", SimpleUploadedFile("p.zip", source.read_bytes()), save=True)
    return [reverse("batches:export-preview", args=[dataset.pk]), reverse("batches:import-report-csv", args=[job.pk]),
            reverse("batches:import-failed-lines", args=[job.pk])]


@pytest.mark.parametrize("who, status", [("outsider", 404), ("annotator", 403), ("reviewer", 403), ("admin", 200),
                                         ("staff", 200)])
def test_new_pages_are_for_dataset_admins_and_staff(client, tmp_path, people, who, status):
    routes = _new_routes(people, tmp_path)
    client.force_login(people[who])
    assert [client.get(route).status_code for route in routes] == [status] * len(routes)
