"""Browser fixtures: one headless Chromium (the Debian build, never a downloaded one) for the session,
a logged-in page per user, and a dataset with ultrasound-like images assigned to two readers."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

# Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run beside one
# unless told the caller knows what it does (the test thread only sets up data).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "pw-test-12345"
ROOT = Path(__file__).resolve().parents[2]

REPORT_EN = (
    "Right breast: at 10 o'clock, 3 cm from the nipple, there is an oval hypoechoic nodule measuring "
    "1.2 x 0.8 cm with circumscribed margins, parallel orientation. No posterior acoustic features. "
    "No internal vascularity on colour Doppler. Left breast: no focal lesion. "
    "Impression: BI-RADS 3, probably benign; short-interval follow-up suggested."
)
REPORT_ZH = (
    "右乳10点钟方向距乳头3cm处见一低回声结节，大小约1.2×0.8cm，形态规则，边界清晰。"
    "CDFI：内未见明显血流信号。左乳未见明显占位。提示：BI-RADS 3类。"
)


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts")) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def ultrasound_png(width: int, height: int, seed: int) -> bytes:
    """A B-mode-like picture (speckle in a sector, a dark oval lesion) so screenshots look like the
    real work; deterministic per seed."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    apex_x, apex_y = width / 2, -height * 0.25
    radius = np.hypot(xs - apex_x, ys - apex_y)
    angle = np.degrees(np.arctan2(xs - apex_x, ys - apex_y))
    sector = (np.abs(angle) < 38) & (radius > height * 0.3) & (radius < height * 1.2)
    layers = 0.45 + 0.25 * np.sin(ys / height * 9 + np.sin(xs / width * 4))
    speckle = rng.rayleigh(0.45, size=(height, width)).astype(np.float32)
    tissue = layers * speckle * (1.1 - ys / height * 0.6)
    cx, cy = width * (0.45 + 0.1 * (seed % 3)), height * 0.5
    lesion = ((xs - cx) / (width * 0.11)) ** 2 + ((ys - cy) / (height * 0.08)) ** 2
    tissue = np.where(lesion < 1, tissue * 0.18, tissue)
    tissue = np.where((lesion >= 1) & (lesion < 1.25), tissue * 1.5, tissue)
    shadow_band = (np.abs(xs - cx) < width * 0.09) & (ys > cy + height * 0.08)
    tissue = np.where(shadow_band, tissue * 1.3, tissue)
    pixels = np.clip(tissue * 200, 0, 255) * sector
    buffer = io.BytesIO()
    PILImage.fromarray(pixels.astype(np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def login(browser, live_server):
    """``login(username)`` → a page of a fresh browser context, logged in through the real form."""
    contexts = []

    def _login(username: str, *, context=None):
        if context is None:
            context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
            contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        return page

    yield _login
    for context in contexts:
        context.close()


@pytest.fixture
def reading_setup(transactional_db):
    """Two readers, one dataset read twice per image, three images over two studies (EN and ZH
    reports), handed out by ``assign_work``; plus another dataset the readers are not members of."""
    from annotation import services
    from tests.factories import dataset_make, image_make, study_make, user_make

    reader1, reader2 = user_make("annotator1"), user_make("annotator2")
    reviewer = user_make("reviewer1")
    dataset = dataset_make(name="Breast US 2024", annotators_per_image=2,
                           members={"annotator": [reader1, reader2], "reviewer": [reviewer]})
    study_en = study_make(dataset, accession="US-2024-00117", report=REPORT_EN, patient="P-58213")
    study_zh = study_make(dataset, accession="US-2024-00118", report=REPORT_ZH, language="zh", patient="P-58214")
    images = [
        image_make(study_en, width=800, height=600, spacing=0.08, position=0, content=ultrasound_png(800, 600, 1)),
        image_make(study_en, width=800, height=600, spacing=0.08, position=1, content=ultrasound_png(800, 600, 2)),
        image_make(study_zh, width=800, height=600, spacing=None, position=0, content=ultrasound_png(800, 600, 3)),
    ]
    services.assign_work(dataset=dataset)
    elsewhere = dataset_make(name="Thyroid pilot", annotators_per_image=1)
    foreign = image_make(study_make(elsewhere, accession="TH-0001"), content=ultrasound_png(400, 300, 4),
                         width=400, height=300)
    return {"reader1": reader1, "reader2": reader2, "reviewer": reviewer, "dataset": dataset,
            "images": images, "foreign_image": foreign}
