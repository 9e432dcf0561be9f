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
