"""The dataset admin's pages in real Chromium, in Chinese and in English: create a dataset, invite a
member (the one-time link), hand out work. Screenshots go to artifacts/screenshots/ to be looked at."""

from __future__ import annotations

import re

import pytest

from annotation.models import Assignment, Membership
from tests.browser.conftest import screenshot_dir

pytestmark = pytest.mark.browser


@pytest.fixture
def admin_setup(reading_setup):
    from tests.factories import user_make

    admin = user_make("admin1")
    Membership.objects.create(dataset=reading_setup["dataset"], user=admin, role="admin")
    return {**reading_setup, "admin": admin}


def _switch(page, language: str) -> None:
    page.click(f".lang-switch button[value='{language}']")
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("language, words", [
    ("zh-hans", {"members": "添加或邀请成员", "work": "分配图像", "new": "新建数据集", "queue": "我的阅片队列"}),
    ("en", {"members": "Add or invite a member", "work": "Hand out images", "new": "New dataset",
            "queue": "My reading queue"}),
])
def test_admin_pages_in_both_languages(login, live_server, admin_setup, language, words):
    shots = screenshot_dir()
    page = login("admin1")
    _switch(page, language)
    assert page.locator("html").get_attribute("lang") == language
    page.screenshot(path=str(shots / f"manage-home-{language}.png"), full_page=True)

    page.click("a.button.primary[href$='/datasets/new/']")
    assert words["new"] in page.locator("h1").inner_text()
    page.fill("input[name=name]", f"Thyroid pilot {language}")
    page.select_option("select[name=lexicon]", "tirads")
    page.select_option("select[name=annotators_per_image]", "1")
    page.screenshot(path=str(shots / f"manage-new-{language}.png"), full_page=True)
    page.click("form.form-grid button[type=submit]")
    page.wait_for_url(re.compile(r"/members/$"))

    dataset_id = int(re.search(r"/datasets/(\d+)/members/", page.url).group(1))
    page.fill("input[name=identifier]", f"chen.{language}@hospital.cn")
    page.click("aside form button[type=submit]")
    page.wait_for_selector("#invite-link")
    assert words["members"] in page.inner_text("#members")
    link = page.input_value("#invite-link")
    assert "/accounts/set-password/" in link
    page.screenshot(path=str(shots / f"manage-members-{language}.png"), full_page=True)

    # the existing annotator joins too, then work is handed out
    page.fill("input[name=identifier]", "annotator1")
    page.click("aside form button[type=submit]")
    page.wait_for_selector(f"#member-{admin_setup['reader1'].pk}")
    page.goto(f"{live_server.url}/datasets/{admin_setup['dataset'].pk}/work/")
    assert words["work"] in page.inner_text("#work")
    page.screenshot(path=str(shots / f"manage-work-{language}.png"), full_page=True)
    page.goto(f"{live_server.url}/datasets/{dataset_id}/work/")
    page.click("#work form:not(:has(input[name=action])) button[type=submit]")
    page.wait_for_selector("#work .notice.ok")
    assert Assignment.objects.filter(image__study__dataset_id=dataset_id).count() == 0  # no images yet
    page.screenshot(path=str(shots / f"manage-work-empty-{language}.png"), full_page=True)

    reader = login("annotator1")
    _switch(reader, language)
    reader.goto(f"{live_server.url}/queue/")
    assert words["queue"] in reader.locator("h1").inner_text()
    reader.screenshot(path=str(shots / f"queue-{language}.png"), full_page=True)

    newcomer = page.context.browser.new_context(viewport={"width": 1440, "height": 900})
    welcome = newcomer.new_page()
    welcome.goto(link)
    welcome.screenshot(path=str(shots / f"set-password-{language}.png"), full_page=True)
    newcomer.close()
