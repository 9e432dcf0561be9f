"""The reviewer's day in real Chromium: the queue filtered to attribute conflicts, a decision with the
keyboard, counts that change, the consensus region on the image; annotators get 403. Screenshots of
the queue, the adjudication page and the dashboard at 1440×900 go to artifacts/screenshots/."""

from __future__ import annotations

import math
import re

import pytest

from alignment.models import Disagreement
from annotation import services
from annotation.models import Region
from review import adjudication
from tests.browser.conftest import REPORT_EN, screenshot_dir, ultrasound_png

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BASE = {"diagnosis": "nodule", "body_system_level": "breast_and_axilla", "organ_level": "breast",
        "shape": "oval", "margins": "well_defined"}


def _outline(cx: float, cy: float, rx: float, ry: float, wobble: float) -> dict:
    """A hand-drawn-looking outline of the dark lesion the synthetic image carries."""
    points = []
    for k in range(14):
        angle = 2 * math.pi * k / 14
        scale = 1.08 + wobble * math.sin(3 * angle + wobble * 7)
        points.append([round(cx + rx * scale * math.cos(angle), 1), round(cy + ry * scale * math.sin(angle), 1)])
    return {"points": points}


@pytest.fixture
def review_setup(transactional_db):
    from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

    reader1, reader2, reviewer = user_make("annotator1"), user_make("annotator2"), user_make("reviewer1")
    dataset = dataset_make(name="Breast US 2024", members={"annotator": [reader1, reader2], "reviewer": [reviewer]})
    study = study_make(dataset, accession="US-2024-00117", report=REPORT_EN, patient="P-58213")
    image = image_make(study, width=800, height=600, spacing=0.08, content=ultrasound_png(800, 600, 1))
    cx, cy, rx, ry = 800 * 0.55, 300, 800 * 0.11, 600 * 0.08
    for reader, echo, geometry in ((reader1, "hypoechoic", _outline(cx, cy, rx, ry, 0.03)),
                                   (reader2, "isoechoic", _outline(cx + 9, cy + 5, rx * 0.93, ry * 1.05, 0.06))):
        assignment = assignment_make(image, reader)
        services.region_create(image=image, author=reader, assignment=assignment, shape="polygon", geometry=geometry,
                               attributes={**BASE, "echogenicity": echo}, lesion_key="L1")
        services.assignment_submit(assignment=assignment)  # on commit: alignment runs (eager tasks)
    return {"dataset": dataset, "image": image, "reviewer": reviewer, "reader1": reader1}


def test_reviewer_resolves_an_attribute_conflict_with_the_keyboard(review_setup, login, live_server):
    image = review_setup["image"]
    open_echo = Disagreement.objects.filter(image=image, attribute="echogenicity", status="open")
    assert open_echo.count() == 2  # report vs annotator2, annotator1 vs annotator2

    # Annotators may not open the review pages.
    annotator = login("annotator1")
    assert annotator.goto(f"{live_server.url}/review/").status == 403
    assert annotator.goto(f"{live_server.url}/review/disagreements/{open_echo.first().pk}/").status == 403
    assert annotator.goto(f"{live_server.url}/datasets/{review_setup['dataset'].pk}/dashboard/").status == 403

    page = login("reviewer1")
    page.goto(f"{live_server.url}/review/")
    total_before = int(page.locator("[data-count=total]").inner_text())
    assert total_before >= 2
    page.select_option("select[name=attribute]", "echogenicity")
    page.wait_for_url(re.compile(r"attribute=echogenicity"))
    page.wait_for_function("() => document.querySelector('[data-count=total]').textContent.trim() === '2'")
    assert page.locator(".review-row").count() == 2
    page.screenshot(path=str(screenshot_dir() / "review-queue.png"))

    # J selects the first (highest impact) row, Enter opens it.
    page.keyboard.press("j")
    assert page.locator(".review-row.selected").count() == 1
    first_id = int(page.locator(".review-row.selected").get_attribute("data-id"))
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/review/disagreements/{first_id}/"))
    page.wait_for_function("() => { const i = document.querySelector('#adj-svg image'); return i && i.getBBox().width > 0; }")
    assert page.locator("#adj-svg .region[data-layer=annotator1]").count() == 1
    assert page.locator("#adj-svg .region[data-layer=annotator2]").count() == 1
    assert page.locator("#adj-svg .region.consensus").count() == 0
    assert page.locator(".sentences li.in-conflict").count() <= 1
    # Layers toggle.
    page.uncheck(".layer-toggle input[data-layer=annotator2]")
    assert page.locator("#adj-svg .region[data-layer=annotator2]").is_hidden()
    page.check(".layer-toggle input[data-layer=annotator2]")
    page.fill("#comment", "Hypoechoic on the cine loop")
    page.locator("#comment").press("Escape")
    page.screenshot(path=str(screenshot_dir() / "review-adjudicate.png"))

    # A: accept the left side (the report, or the first reader). The answer settles the other
    # echogenicity conflict of the same lesion, so the filtered queue empties.
    page.keyboard.press("a")
    page.wait_for_url(re.compile(r"/review/(\?|$)"))
    page.wait_for_function("() => document.querySelector('[data-count=total]').textContent.trim() === '0'")
    assert open_echo.count() == 0
    page.goto(f"{live_server.url}/review/")
    assert int(page.locator("[data-count=total]").inner_text()) == total_before - 2

    consensus = Region.objects.get(image=image, source="consensus", is_deleted=False)
    assert consensus.attributes["echogenicity"] == "hypoechoic" and consensus.author == review_setup["reviewer"]
    page.goto(f"{live_server.url}/review/disagreements/{first_id}/")
    assert page.locator(f"#adj-svg .region.consensus[data-region-id='{consensus.pk}']").count() == 1
    assert "Hypoechoic on the cine loop" in page.locator(".audit").inner_text()
    page.screenshot(path=str(screenshot_dir() / "review-adjudicated.png"))

    adjudication.dataset_metrics_refresh(dataset_id=review_setup["dataset"].pk)
    page.goto(f"{live_server.url}/datasets/{review_setup['dataset'].pk}/dashboard/")
    assert page.locator("#agreement-table").count() == 1
    page.screenshot(path=str(screenshot_dir() / "dashboard.png"), full_page=True)


# What may stay in Latin letters on a Chinese page: people's and the data's own names, the language
# switch, units and the names of the statistics.
LATIN_ALLOWED = {"Sonoalign", "English", "annotator1", "annotator2", "reviewer1", "Breast", "US", "CSV", "IoU",
                 "Dice", "Cohen", "Krippendorff", "udaf", "mm", "cm", "Enter", "p10", "p90", "P-58213",
                 "US-2024-00117", "v1", "v2", "v3", "scikit-learn"}
# Text that is the data, not the interface: the report's own sentences and the lexicon's version.
DATA_SELECTORS = [".sentences", ".lang-switch", ".user-name", ".ws-crumbs strong", ".mono", "kbd", ".lexicon-name"]


def _latin_words(page) -> set[str]:
    """The words in Latin letters a reader sees on the page, outside the data shown as it is."""
    text = page.evaluate("""(selectors) => {
        const skip = selectors.concat(['script', 'style', 'noscript', 'dialog:not([open])']).join(',');
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        const seen = [];
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const parent = node.parentElement;
            if (!parent || parent.closest(skip) || !parent.checkVisibility()) continue;
            seen.push(node.textContent);
        }
        document.querySelectorAll('[placeholder]').forEach(n => seen.push(n.placeholder));
        return seen.join(' ');
    }""", DATA_SELECTORS)
    return {w for w in re.findall(r"[A-Za-z][A-Za-z0-9'’-]*[A-Za-z0-9]", text) if w not in LATIN_ALLOWED}


def _switch(page, language: str) -> None:
    page.click(f".lang-switch button[value='{language}']")
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("language, words", [
    ("zh-hans", {"queue": "审核队列", "accept": "采纳", "decided": "已记录决定", "dashboard": "各属性的阅片者间一致性",
                 "value": "低回声", "hint": "沿病灶周围点击"}),
    ("en", {"queue": "Review queue", "accept": "Accept", "decided": "Decision recorded",
            "dashboard": "Reader agreement per attribute", "value": "Hypoechoic",
            "hint": "Click around the lesion"}),
])
def test_reviewer_works_in_either_language(review_setup, login, live_server, language, words):
    """A reviewer opens the queue, a disagreement, decides, and reads the dashboard in the chosen
    language; on the Chinese pages no interface word is left in English."""
    shots = screenshot_dir()
    page = login("reviewer1")
    _switch(page, language)
    page.goto(f"{live_server.url}/review/")
    assert page.locator("html").get_attribute("lang") == language
    assert words["queue"] in page.locator("h1").inner_text()
    assert page.locator(".review-row").count() >= 2
    page.screenshot(path=str(shots / f"review-queue-{language}.png"), full_page=True)
    if language == "zh-hans":
        assert _latin_words(page) == set(), "English left on the Chinese review queue"
    page.keyboard.press("?")
    assert page.locator("#review-help").is_visible()
    page.screenshot(path=str(shots / f"review-help-{language}.png"))
    if language == "zh-hans":
        assert _latin_words(page) == set(), "English left in the Chinese shortcut help"
    page.keyboard.press("Escape")

    echo = Disagreement.objects.filter(image=review_setup["image"], attribute="echogenicity",
                                       kind="reader_vs_reader", status="open").get()
    page.goto(f"{live_server.url}/review/disagreements/{echo.pk}/")
    page.wait_for_function("() => { const i = document.querySelector('#adj-svg image'); return i && i.getBBox().width > 0; }")
    assert words["accept"] in page.locator("#accept-left").inner_text()
    assert words["value"] in page.locator(".sides").inner_text()  # the lexicon's label, not the code
    page.screenshot(path=str(shots / f"review-adjudicate-{language}.png"), full_page=True)
    if language == "zh-hans":
        assert _latin_words(page) == set(), "English left on the Chinese adjudication page"
    # The outline editor's hints come from the JavaScript catalogue.
    page.click("#edit-outline")
    assert words["hint"] in page.locator("#tool-hint").inner_text()
    page.click("#edit-outline")

    page.fill("#comment", "动态图像上为低回声" if language == "zh-hans" else "Hypoechoic on the cine loop")
    page.locator("#comment").press("Escape")
    with page.expect_navigation():
        page.keyboard.press("a")
    assert words["decided"] in page.locator(".messages").inner_text()
    echo.refresh_from_db()
    assert echo.status == "resolved"
    page.goto(f"{live_server.url}/review/disagreements/{echo.pk}/")
    page.screenshot(path=str(shots / f"review-decided-{language}.png"), full_page=True)
    if language == "zh-hans":
        assert _latin_words(page) == set(), "English left on the Chinese page of a decided disagreement"

    adjudication.dataset_metrics_refresh(dataset_id=review_setup["dataset"].pk)
    page.goto(f"{live_server.url}/datasets/{review_setup['dataset'].pk}/dashboard/")
    assert words["dashboard"] in page.locator("#agreement-table").locator("xpath=..").inner_text()
    page.screenshot(path=str(shots / f"review-dashboard-{language}.png"), full_page=True)
    if language == "zh-hans":
        assert _latin_words(page) == set(), "English left on the Chinese dashboard"
