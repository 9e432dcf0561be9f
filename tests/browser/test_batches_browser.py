"""A dataset's whole life in the Chinese interface, in real Chromium and never through /admin/: the admin
opens a dataset, invites two annotators and a reviewer, imports a batch (one line of it bad), hands out
the work, previews and starts an export and downloads it; the annotators and the reviewer then open their
pages in Chinese. Every import and export page is photographed in both languages
(artifacts/screenshots/batches-*), to be looked at."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from annotation.models import Assignment, Image, Membership
from batches.models import ExportJob, ImportJob
from tests.batches.test_import_support import batch_files, manifest_rows, zip_write
from tests.browser.conftest import screenshot_dir

pytestmark = pytest.mark.browser

# Words of the batches pages that must not be left in English on a Chinese page.
ENGLISH_WORDS = ("Import a batch", "Start import", "What a batch holds", "Recent imports", "Row report",
                 "Download as CSV", "What will go out", "Start export", "Recent exports", "Archive", "Time taken",
                 "rows/s", "Include the image files", "Regions created", "Studies", "Progress")


def _switch(page, language: str) -> None:
    page.click(f".lang-switch button[value='{language}']")
    page.wait_for_load_state("networkidle")


def _no_english_left(page) -> None:
    text = page.inner_text("main")
    assert [word for word in ENGLISH_WORDS if word in text] == []


@pytest.fixture
def people(transactional_db):
    from tests.factories import dataset_make, user_make

    admin = user_make("admin1")
    # Whoever administers a dataset may open another one.
    dataset_make(name="Earlier pilot", members={"admin": [admin]})
    return {"admin": admin, "readers": [user_make("annotator1"), user_make("annotator2")],
            "reviewer": user_make("reviewer1")}


def _batch(tmp_path):
    rows = [*manifest_rows(), {"study": "ACC-0404", "patient": "P-0404", "images": [{"file": "images/lost.jpg"}]}]
    return zip_write(tmp_path / "batch-2024-03.zip",
                     {"manifest.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)}
                     | batch_files())


def test_admin_runs_a_dataset_from_import_to_export_in_chinese(login, live_server, people, tmp_path):
    shots = screenshot_dir()
    page = login("admin1")
    _switch(page, "zh-hans")

    # A new dataset, its members
    page.click("a.button.primary[href$='/datasets/new/']")
    page.fill("input[name=name]", "甲状腺超声 2024")
    page.select_option("select[name=lexicon]", "udaf")
    page.click("form.form-grid button[type=submit]")
    page.wait_for_url(re.compile(r"/members/$"))
    dataset_id = int(re.search(r"/datasets/(\d+)/members/", page.url).group(1))
    for username, role in (("annotator1", "annotator"), ("annotator2", "annotator"), ("reviewer1", "reviewer")):
        page.fill("input[name=identifier]", username)
        page.select_option("aside select[name=role]", role)
        page.click("aside form button[type=submit]")
        page.wait_for_selector(f"#members :text('{username}')")
    assert Membership.objects.filter(dataset_id=dataset_id).count() == 4

    # Import: the form, then the job page with its row report
    page.click(".manage-head .tabs a[href$='/import/']")
    assert "导入批次" in page.inner_text("main")
    page.set_input_files("input[name=batch]", str(_batch(tmp_path)))
    page.screenshot(path=str(shots / "batches-import-zh-hans.png"), full_page=True)
    _no_english_left(page)
    page.click("form.form-grid button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/import/\d+/$"))
    page.wait_for_selector("#job-report")
    job = ImportJob.objects.get(dataset_id=dataset_id)
    assert job.status == "done" and Image.objects.filter(study__dataset_id=dataset_id).count() == 4
    report = page.inner_text("#job-report")
    assert "逐行报告" in report and "ACC-0404" in report
    assert page.locator("a[href$='failed-manifest.jsonl']").count() == 1
    page.screenshot(path=str(shots / "batches-import-job-zh-hans.png"), full_page=True)
    _no_english_left(page)
    page.fill("#job-report input[name=q]", "ACC-0001")
    page.wait_for_function("!document.querySelector('#report-rows').innerText.includes('ACC-0404')")
    page.wait_for_load_state("networkidle")  # one request at a time: the test database is SQLite
    with page.expect_download() as failed:
        page.click("a[href$='failed-manifest.jsonl']")
    assert json.loads(open(failed.value.path(), encoding="utf-8").read())["study"] == "ACC-0404"

    # Work handed out to both annotators
    page.goto(f"{live_server.url}/datasets/{dataset_id}/work/")
    page.click("#work form:not(:has(input[name=action])) button[type=submit]")
    page.wait_for_selector("#work .notice.ok")
    assert Assignment.objects.filter(image__study__dataset_id=dataset_id).count() == 8

    # Export: nothing is adjudicated yet, so the form starts with "submitted" and says so
    page.click(".manage-head .tabs a[href$='/export/']")
    preview = page.inner_text("#export-preview")
    assert "尚无已裁定的图像" in preview
    assert page.is_checked("input[name=status][value=submitted]")
    page.check("input[name=status][value=adjudicated]")
    page.wait_for_function("document.querySelector('#export-preview').innerText.includes('不含任何图像')")
    page.check("input[name=status][value=all]")
    page.fill("input[name=split]", "0.8,0.1,0.1")
    page.wait_for_selector("#export-preview table")
    page.wait_for_load_state("networkidle")
    assert "验证" in page.inner_text("#export-preview")
    page.screenshot(path=str(shots / "batches-export-zh-hans.png"), full_page=True)
    _no_english_left(page)
    page.click("#export-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/export/\d+/$"))
    page.wait_for_selector(".archive a[href$='/download/']")
    job = ExportJob.objects.get(dataset_id=dataset_id)
    assert job.status == "done" and job.output_sha256 in page.inner_text(".archive")
    page.screenshot(path=str(shots / "batches-export-job-zh-hans.png"), full_page=True)
    _no_english_left(page)
    with page.expect_download() as archive:
        page.click(".archive a[href$='/download/']")
    assert hashlib.sha256(open(archive.value.path(), "rb").read()).hexdigest() == job.output_sha256
    assert "/admin/" not in page.url

    # The same pages in English
    _switch(page, "en")
    for name, path in (("import", f"/datasets/{dataset_id}/import/"),
                       ("import-job", f"/jobs/import/{ImportJob.objects.get().pk}/"),
                       ("export", f"/datasets/{dataset_id}/export/"), ("export-job", f"/jobs/export/{job.pk}/")):
        page.goto(live_server.url + path)
        assert page.locator("html").get_attribute("lang") == "en"
        page.screenshot(path=str(shots / f"batches-{name}-en.png"), full_page=True)

    # The annotators and the reviewer work in Chinese
    for username in ("annotator1", "annotator2"):
        reader = login(username)
        _switch(reader, "zh-hans")
        reader.goto(f"{live_server.url}/queue/")
        assert "我的阅片队列" in reader.locator("h1").inner_text()
        assert "ACC-0001" in reader.inner_text("main")
    reviewer = login("reviewer1")
    _switch(reviewer, "zh-hans")
    reviewer.goto(f"{live_server.url}/datasets/{dataset_id}/")
    assert "甲状腺超声 2024" in reviewer.inner_text("main")
    reviewer.goto(f"{live_server.url}/review/")
    assert reviewer.locator("html").get_attribute("lang") == "zh-hans"
    reviewer.screenshot(path=str(shots / "batches-reviewer-queue-zh-hans.png"), full_page=True)
