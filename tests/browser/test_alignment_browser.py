"""Report ↔ regions on the annotate page in real Chromium: hovering an aligned sentence lights up its
region, a reviewer unlinks it, and a reader applies the report's findings to a region as suggested
values, confirms them and finds them saved after a reload. Screenshots at 1440×900."""

from __future__ import annotations

import pytest

from alignment.models import Alignment
from annotation import services
from annotation.models import Region
from tests.browser.conftest import REPORT_EN, screenshot_dir, ultrasound_png
from tests.browser.test_workspace_browser import _open_workspace, _saved

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MARKER = "RT BREAST 10:00 3CMFN TRV"


@pytest.fixture
def aligned_setup(transactional_db):
    """One reader, one reviewer; a study with the English report and two right-breast images at 10
    o'clock. The first is read and submitted (so the matcher links its nodule to the report); the
    second is being read, with an undescribed region on the same lesion."""
    from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

    reader, reviewer = user_make("annotator1"), user_make("reviewer1")
    dataset = dataset_make(name="Breast US 2024", annotators_per_image=1, members={"reviewer": [reviewer]})
    study = study_make(dataset, accession="US-2024-00117", report=REPORT_EN, patient="P-58213")
    images = []
    for position in (0, 1):
        image = image_make(study, width=800, height=600, spacing=0.08, position=position,
                           content=ultrasound_png(800, 600, 3 + position * 3))
        image.body_marker = MARKER
        image.save()
        images.append(image)
    read, reading = (assignment_make(image, reader) for image in images)
    nodule = {"center": [360, 300], "radii": [75, 48], "rotation": 0}  # 12 × 7.7 mm at 0.08 mm/px
    aligned = services.region_create(
        image=images[0], author=reader, assignment=read, shape="ellipse", geometry=nodule, lesion_key="L1",
        attributes={"diagnosis": "nodule", "organ_level": "breast", "body_system_level": "breast_and_axilla"})
    services.assignment_submit(assignment=read)  # commits: the study is parsed and aligned (eager tasks)
    fresh = services.region_create(image=images[1], author=reader, assignment=reading, shape="ellipse",
                                   geometry=nodule, attributes={})
    return {"reader": reader, "reviewer": reviewer, "images": images, "aligned": aligned, "fresh": fresh}


def _nodule_sentence(page):
    return page.locator(".sentence.has-finding", has_text="hypoechoic nodule")


def test_hover_a_sentence_lights_up_its_region_and_a_reviewer_unlinks_it(aligned_setup, login, live_server):
    region = aligned_setup["aligned"]
    page = login("reviewer1")
    page.goto(f"{live_server.url}/images/{region.image_id}/annotate/")
    _open_workspace(page)
    page.wait_for_selector(f".sentence[data-regions='{region.pk}']")

    # Sentence → region: the region is outlined on the image and in the list.
    _nodule_sentence(page).hover()
    page.wait_for_selector(f".region-item.linked[data-region-id='{region.pk}']")
    assert page.get_attribute("#viewer", "data-highlighted") == str(region.pk)
    page.screenshot(path=str(screenshot_dir() / "annotate-alignment-hover.png"))
    page.mouse.move(720, 880)
    page.wait_for_selector(".region-item.linked", state="detached")

    # Region → sentences: hovering the region in the list marks its sentence.
    page.hover(f".region-item[data-region-id='{region.pk}']")
    page.wait_for_selector(".sentence.hover-linked", state="attached")
    assert "hypoechoic nodule" in page.inner_text(".sentence.hover-linked")

    # Selecting the region gives the reviewer link / unlink buttons on each sentence.
    page.click(f".region-item[data-region-id='{region.pk}']")
    page.wait_for_selector(".sentence.linked-selected .pair-button.unlink")
    page.screenshot(path=str(screenshot_dir() / "annotate-alignment-review.png"))
    sentence_id = int(_nodule_sentence(page).get_attribute("data-sentence-id"))
    _nodule_sentence(page).locator(".pair-button.unlink").click()
    page.wait_for_selector(".sentence.has-finding .pair-button.auto")
    assert _nodule_sentence(page).get_attribute("data-regions") == ""
    pair = Alignment.objects.filter(region=region, sentence_id=sentence_id)
    assert list(pair.values_list("source", "linked")) == [("manual", False)]  # re-aligned: the auto link is gone


def test_apply_report_findings_suggests_then_confirm_saves(aligned_setup, login, live_server):
    region = aligned_setup["fresh"]
    page = login("annotator1")
    page.goto(f"{live_server.url}/images/{region.image_id}/annotate/")
    _open_workspace(page)
    page.click(f".region-item[data-region-id='{region.pk}']")
    page.wait_for_selector("#region-form:not([hidden])")

    page.click("#apply-findings")
    page.wait_for_selector("fieldset[data-attribute=echogenicity].suggested")
    assert page.locator("fieldset[data-attribute=echogenicity] input[value=hypoechoic]").is_checked()
    assert page.locator("fieldset[data-attribute=shape] input[value=oval]").is_checked()
    assert page.locator("fieldset[data-attribute=diagnosis].suggested input[value=nodule]").is_checked()
    assert "suggested" in page.inner_text("#suggest-note")
    assert _nodule_sentence(page).get_attribute("class").count("suggest-source") == 1
    page.screenshot(path=str(screenshot_dir() / "annotate-alignment-suggested.png"))
    region.refresh_from_db()
    assert region.attributes == {} and region.version == 1  # nothing saved by suggesting

    # Editing one suggested attribute saves that one only; the others stay suggested.
    page.click("fieldset[data-attribute=margins] .chip:has(input[value=ill_defined_indistinct])")
    _saved(page)
    region.refresh_from_db()
    assert region.attributes == {"margins": "ill_defined_indistinct"}
    assert page.locator("fieldset[data-attribute=echogenicity].suggested").count() == 1
    assert page.locator("fieldset[data-attribute=margins].suggested").count() == 0

    page.click("#suggest-confirm")
    _saved(page)
    page.wait_for_selector("fieldset.attribute.suggested", state="detached")
    region.refresh_from_db()
    assert region.attributes["echogenicity"] == "hypoechoic" and region.attributes["shape"] == "oval"
    assert region.attributes["margins"] == "ill_defined_indistinct"  # the reader's edit wins over the report
    assert region.attributes["diagnosis"] == "nodule" and region.attributes["organ_level"] == "breast"

    page.reload()
    _open_workspace(page)
    page.click(f".region-item[data-region-id='{region.pk}']")
    page.wait_for_selector("#region-form:not([hidden])")
    assert page.locator("fieldset[data-attribute=echogenicity] input[value=hypoechoic]").is_checked()
    assert page.locator("fieldset.attribute.suggested").count() == 0
    assert Region.objects.get(pk=region.pk).version == 3
