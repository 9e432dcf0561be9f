"""The annotator's day in real Chromium: queue, drawing, tagging, autosave, conflicts, submit, blind
reading. Screenshots of the queue and the annotate page at 1440×900 go to artifacts/screenshots/."""

from __future__ import annotations

import re

import pytest

from annotation import services
from annotation.models import Assignment, Region
from tests.browser.conftest import screenshot_dir

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _open_workspace(page):
    page.wait_for_selector("#workspace[data-ready=true]")
    page.wait_for_function("() => { const c = document.querySelector('#viewer canvas'); return c && c.width > 0; }")
    page.wait_for_timeout(600)  # OpenSeadragon's opening animation


def _viewer_point(page, fx: float, fy: float) -> tuple[float, float]:
    """Page coordinates of the image point at fractions (fx, fy) of its width and height."""
    return page.evaluate(
        """([fx, fy]) => {
            const v = window.__sonoalignViewer;
            const item = v.world.getItemAt(0);
            const size = item.getContentSize();
            const p = v.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(size.x * fx, size.y * fy));
            const r = v.element.getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""",
        [fx, fy],
    )


def _click_polygon(page, points):
    for fx, fy in points:
        x, y = _viewer_point(page, fx, fy)
        page.mouse.move(x, y, steps=3)
        page.mouse.down()
        page.mouse.up()
        page.wait_for_timeout(120)


def _saved(page):
    page.wait_for_function("() => document.querySelector('#save-status').dataset.state === 'saved'")


def test_annotator_draws_tags_reloads_and_submits(reading_setup, login, live_server):
    page = login("annotator1")
    page.goto(f"{live_server.url}/queue/")
    assert page.locator("[data-count=assigned]").inner_text() == "3"
    page.screenshot(path=str(screenshot_dir() / "queue.png"))

    page.click("#start-next")
    page.wait_for_url(re.compile(r"/images/\d+/annotate/$"))
    first_image = reading_setup["images"][0]
    assert page.url.endswith(f"/images/{first_image.pk}/annotate/")
    _open_workspace(page)

    # A polygon with the keyboard shortcut and the mouse, finished with Enter.
    page.keyboard.press("p")
    _click_polygon(page, [(0.35, 0.40), (0.55, 0.38), (0.60, 0.58), (0.40, 0.62)])
    page.keyboard.press("Enter")
    page.wait_for_selector(".region-item[data-region-id]")
    _saved(page)
    region = Region.objects.get(image=first_image, is_deleted=False)
    assert region.shape == "polygon" and len(region.geometry["points"]) == 4
    assert region.long_axis_mm and region.area_mm2

    # Tag two attributes: one with the mouse, one with the number key of the focused attribute.
    page.click(f".region-item[data-region-id='{region.pk}']")
    page.wait_for_selector("#region-form:not([hidden])")
    page.click("fieldset[data-attribute=diagnosis] .chip:has(input[value=nodule])")
    _saved(page)
    page.click("fieldset[data-attribute=echogenicity] legend")
    page.keyboard.press("2")  # hypoechoic
    _saved(page)
    page.select_option("fieldset[data-attribute=organ_level] select", "breast")
    _saved(page)
    region.refresh_from_db()
    assert region.attributes["diagnosis"] == "nodule" and region.attributes["echogenicity"] == "hypoechoic"

    # Reload: both are still there.
    page.reload()
    _open_workspace(page)
    page.click(f".region-item[data-region-id='{region.pk}']")
    assert page.locator("fieldset[data-attribute=diagnosis] input[value=nodule]").is_checked()
    assert page.locator("fieldset[data-attribute=echogenicity] input[value=hypoechoic]").is_checked()
    page.screenshot(path=str(screenshot_dir() / "annotate.png"))

    # Submit with N and land on the next image.
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("n")
    page.wait_for_url(f"{live_server.url}/images/{reading_setup['images'][1].pk}/annotate/")
    assert Assignment.objects.get(image=first_image, annotator=reading_setup["reader1"]).status == "submitted"


def _region(setup, *, author_key="reader1", image_index=0, **overrides):
    image = setup["images"][image_index]
    assignment = Assignment.objects.get(image=image, annotator=setup[author_key])
    kwargs = {"image": image, "author": setup[author_key], "assignment": assignment, "shape": "polygon",
              "geometry": {"points": [[300, 250], [420, 240], [440, 340], [310, 360]]},
              "attributes": {"diagnosis": "nodule"}}
    kwargs.update(overrides)
    return services.region_create(**kwargs)


def test_edit_in_two_tabs_shows_the_conflict_instead_of_overwriting(reading_setup, login, live_server):
    region = _region(reading_setup)
    url = f"{live_server.url}/images/{region.image_id}/annotate/"
    first = login("annotator1")
    second = first.context.new_page()
    for page in (first, second):
        page.goto(url)
        _open_workspace(page)
        page.click(f".region-item[data-region-id='{region.pk}']")
        page.wait_for_selector("#region-form:not([hidden])")

    first.fill("input[name=label]", "mass A")
    first.press("input[name=label]", "Tab")
    _saved(first)
    second.click("fieldset[data-attribute=echogenicity] .chip:has(input[value=anechoic])")
    second.wait_for_selector("#banner:not([hidden])")
    banner = second.inner_text("#banner")
    assert "changed elsewhere" in banner and "label" in banner
    assert second.locator("#save-status").get_attribute("data-state") == "conflict"
    # The stale tab now shows the saved version, and nothing was overwritten.
    assert second.input_value("input[name=label]") == "mass A"
    assert not second.locator("fieldset[data-attribute=echogenicity] input[value=anechoic]").is_checked()
    region.refresh_from_db()
    assert region.label == "mass A" and "echogenicity" not in region.attributes
    second.screenshot(path=str(screenshot_dir() / "annotate-conflict.png"))


def test_caliper_length_and_undo(reading_setup, login, live_server):
    page = login("annotator1")
    image = reading_setup["images"][0]
    page.goto(f"{live_server.url}/images/{image.pk}/annotate/")
    _open_workspace(page)
    page.keyboard.press("l")
    start, end = _viewer_point(page, 0.30, 0.50), _viewer_point(page, 0.55, 0.50)
    for x, y in (start, end):  # a caliper is placed end by end
        page.mouse.move(x, y, steps=4)
        page.mouse.down()
        page.mouse.up()
        page.wait_for_timeout(120)
    page.wait_for_selector(".region-item[data-region-id]")
    _saved(page)
    line = Region.objects.get(image=image, is_deleted=False)
    assert line.shape == "line"
    assert line.long_axis_mm == pytest.approx(200 * 0.08, abs=0.5)  # 200 px at 0.08 mm/px
    assert "mm" in page.inner_text(".region-item .region-measures")
    page.keyboard.press("Control+z")
    page.wait_for_selector(".region-empty")
    _saved(page)
    line.refresh_from_db()
    assert line.is_deleted

    # An ellipse is dragged across the lesion.
    page.keyboard.press("e")
    page.mouse.move(*_viewer_point(page, 0.40, 0.40))
    page.mouse.down()
    page.mouse.move(*_viewer_point(page, 0.60, 0.60), steps=10)
    page.mouse.up()
    page.wait_for_selector(".region-item[data-region-id] .swatch.shape-ellipse")
    _saved(page)
    ellipse = Region.objects.get(image=image, is_deleted=False)
    assert ellipse.shape == "ellipse" and ellipse.geometry["radii"][0] == pytest.approx(80, abs=2)

    # Delete removes the selected region, and undo brings it back.
    page.click(f".region-item[data-region-id='{ellipse.pk}']")
    page.keyboard.press("Delete")
    page.wait_for_selector(".region-empty")
    _saved(page)
    page.keyboard.press("Control+z")
    page.wait_for_selector(".region-item[data-region-id] .swatch.shape-ellipse")
    _saved(page)
    assert Region.objects.filter(image=image, is_deleted=False, shape="ellipse").count() == 1
    # The same region came back (same id, history intact), not a copy.
    assert Region.objects.get(image=image, is_deleted=False).pk == ellipse.pk


def test_blind_reading_and_other_datasets_stay_hidden(reading_setup, login, live_server):
    mine = _region(reading_setup)
    other = login("annotator2")
    image = reading_setup["images"][0]
    other.goto(f"{live_server.url}/images/{image.pk}/annotate/")
    _open_workspace(other)
    assert other.locator(".region-item[data-region-id]").count() == 0
    listed = other.evaluate(f"fetch('/api/v1/regions/?image={image.pk}').then(r => r.json())")
    assert listed["results"] == []
    assert other.evaluate(f"fetch('/api/v1/regions/{mine.pk}/').then(r => r.status)") == 404

    response = other.goto(f"{live_server.url}/images/{reading_setup['foreign_image'].pk}/annotate/")
    assert response.status == 404
    response = other.goto(f"{live_server.url}/images/{reading_setup['foreign_image'].pk}/file")
    assert response.status == 404


def test_report_in_chinese_and_px_sizes_without_spacing(reading_setup, login, live_server):
    image = reading_setup["images"][2]
    _region(reading_setup, image_index=2)
    page = login("annotator1")
    page.goto(f"{live_server.url}/images/{image.pk}/annotate/")
    _open_workspace(page)
    assert "低回声结节" in page.inner_text(".sentences")
    assert "px" in page.inner_text(".region-item .region-measures")
    page.screenshot(path=str(screenshot_dir() / "annotate-zh.png"))


def _focused_attribute(page) -> str | None:
    return page.evaluate("() => { const f = document.querySelector('fieldset.attribute.focused'); return f && f.dataset.attribute; }")


def _canvas_has_focus(page) -> bool:
    return page.evaluate("() => document.activeElement === window.__sonoalignViewer.canvas")


def _drag(page, start, end):
    page.mouse.move(*_viewer_point(page, *start))
    page.mouse.down()
    page.mouse.move(*_viewer_point(page, *end), steps=10)
    page.mouse.up()


def _tag_breast_nodule_by_keyboard(page, diagnosis_key: str):
    """The three required attributes, keys only: the digit picks and moves on; the organ list is typed."""
    page.wait_for_function("() => document.querySelector('fieldset.attribute.focused')?.dataset.attribute === 'diagnosis'")
    page.keyboard.press(diagnosis_key)
    assert _focused_attribute(page) == "body_system_level"
    page.keyboard.press("Tab")  # Tab and Shift+Tab walk the attributes
    assert _focused_attribute(page) == "organ_level"
    page.keyboard.press("Shift+Tab")
    assert _focused_attribute(page) == "body_system_level"
    page.keyboard.press("5")  # breast and axilla
    assert _focused_attribute(page) == "organ_level"
    page.keyboard.type("breast")  # the list's own type-ahead
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.querySelector('fieldset.attribute.focused')")
    assert _canvas_has_focus(page)
    _saved(page)


def test_two_regions_tagged_with_the_keyboard_only_and_submitted_with_n(reading_setup, login, live_server):
    page = login("annotator1")
    image = reading_setup["images"][0]
    page.goto(f"{live_server.url}/images/{image.pk}/annotate/")
    _open_workspace(page)
    page.keyboard.press("?")
    page.wait_for_selector("#help[open]")
    page.screenshot(path=str(screenshot_dir() / "annotate-help.png"))
    page.keyboard.press("?")
    page.wait_for_function("() => !document.querySelector('#help').open")

    # An ellipse: once drawn it is selected and its first missing required attribute has the keyboard.
    page.keyboard.press("e")
    _drag(page, (0.30, 0.40), (0.45, 0.60))
    page.wait_for_selector("#region-form:not([hidden])")
    assert page.locator("fieldset.attribute.focused").is_visible()
    assert page.locator("#attribute-keys").is_visible()
    _tag_breast_nodule_by_keyboard(page, "1")  # nodule

    # A polygon, then one attribute only: N takes the reader to what is missing instead of submitting.
    page.keyboard.press("p")
    _click_polygon(page, [(0.55, 0.40), (0.70, 0.38), (0.72, 0.58), (0.56, 0.62)])
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('fieldset.attribute.focused')?.dataset.attribute === 'diagnosis'")
    page.keyboard.press("2")  # cyst
    page.keyboard.press("Escape")
    assert _canvas_has_focus(page)
    page.keyboard.press("n")
    page.wait_for_function("() => document.querySelector('fieldset.attribute.focused')?.dataset.attribute === 'body_system_level'")
    assert page.url.endswith(f"/images/{image.pk}/annotate/")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("5")
    page.keyboard.type("breast")
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.querySelector('fieldset.attribute.focused')")
    _saved(page)

    regions = list(Region.objects.filter(image=image, is_deleted=False).order_by("id"))
    assert [r.shape for r in regions] == ["ellipse", "polygon"]
    assert [r.attributes["diagnosis"] for r in regions] == ["nodule", "cyst"]
    assert all(r.attributes["body_system_level"] == "breast_and_axilla" and r.attributes["organ_level"] == "breast"
               for r in regions)

    page.keyboard.press("n")
    page.wait_for_url(f"{live_server.url}/images/{reading_setup['images'][1].pk}/annotate/")
    assert Assignment.objects.get(image=image, annotator=reading_setup["reader1"]).status == "submitted"


def test_slow_saves_never_undo_the_choice_the_reader_has_just_made(reading_setup, login, live_server, monkeypatch):
    """Each answer of a slow server arrives after the reader's next key: an older answer must not put
    back the values it saw (the organ typed while the body system's save was on its way)."""
    import time

    original = services.region_update

    def slow(**kwargs):
        time.sleep(0.3)
        return original(**kwargs)

    monkeypatch.setattr(services, "region_update", slow)
    page = login("annotator1")
    image = reading_setup["images"][0]
    page.goto(f"{live_server.url}/images/{image.pk}/annotate/")
    _open_workspace(page)
    page.keyboard.press("e")
    _drag(page, (0.30, 0.40), (0.45, 0.60))
    page.wait_for_selector("#region-form:not([hidden])")
    page.wait_for_function("() => document.querySelector('fieldset.attribute.focused')?.dataset.attribute === 'diagnosis'")
    page.keyboard.press("1")  # nodule
    page.keyboard.press("5")  # breast and axilla
    page.keyboard.type("breast", delay=120)  # the answers of the two saves arrive while this is typed
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.querySelector('fieldset.attribute.focused')")
    assert _canvas_has_focus(page)
    _saved(page)
    assert page.evaluate("() => document.querySelector('fieldset[data-attribute=organ_level] select').value") == "breast"
    region = Region.objects.get(image=image, is_deleted=False)
    assert {k: region.attributes[k] for k in ("diagnosis", "body_system_level", "organ_level")} == {
        "diagnosis": "nodule", "body_system_level": "breast_and_axilla", "organ_level": "breast"}


def _proposal_label(page) -> str:
    page.wait_for_selector("#viewer[data-proposal] .assist-label:not([hidden])")
    return page.inner_text(".assist-label")


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_assist_proposes_an_outline_enter_saves_it_esc_leaves_nothing(reading_setup, login, live_server, language):
    page = login("annotator1")
    page.context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    image = reading_setup["images"][0]  # its dark lesion is centred at (440, 300), 176 × 96 px
    page.goto(f"{live_server.url}/images/{image.pk}/annotate/")
    _open_workspace(page)
    assert page.locator("html").get_attribute("lang") == language

    # A click inside the lesion: a proposal, with its long axis in mm beside it; Esc leaves nothing.
    page.keyboard.press("a")
    x, y = _viewer_point(page, 0.55, 0.50)
    page.mouse.click(x, y)
    label = _proposal_label(page)
    assert "mm" in label
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer:not([data-proposal])")
    page.wait_for_timeout(300)
    assert not Region.objects.filter(image=image).exists()

    # A box around it; ] grows the proposal, Shift+click marks a point that is not lesion.
    _drag(page, (0.42, 0.38), (0.68, 0.62))
    before = _proposal_label(page)
    page.keyboard.press("]")
    page.keyboard.press("]")
    page.wait_for_function("(before) => document.querySelector('.assist-label').textContent !== before", arg=before)
    page.screenshot(path=str(screenshot_dir() / f"annotate-assist-{language}.png"))
    page.keyboard.down("Shift")
    page.mouse.click(*_viewer_point(page, 0.66, 0.40))
    page.keyboard.up("Shift")
    page.wait_for_selector(".assist-layer .assist-exclude")

    # Enter: saved through the regions API, with its first revision, and the keyboard on its attributes.
    page.keyboard.press("Enter")
    page.wait_for_selector(".region-item[data-region-id]")
    page.wait_for_function("() => document.querySelector('fieldset.attribute.focused')?.dataset.attribute === 'diagnosis'")
    _saved(page)
    region = Region.objects.get(image=image, is_deleted=False)
    assert region.shape == "polygon" and len(region.geometry["points"]) >= 8
    xs = [p[0] for p in region.geometry["points"]]
    assert min(xs) < 440 < max(xs)
    assert region.revisions.filter(version=1).exists()
    assert page.locator("#viewer[data-proposal]").count() == 0
    page.screenshot(path=str(screenshot_dir() / f"annotate-assist-accepted-{language}.png"))
