"""The real app in headless Chromium: every page loads, the key text shows, screenshots are saved.

The server runs as it does on Community Cloud: no data directory beside the clone (``DEMO_DATA_DIR``
points nowhere), so the examples come from the shipped pack and NLTK from the repository's ``nltk_data/``.
Starts `streamlit run` on a free localhost port and drives Debian's Chromium
through Playwright (no browser download).  Screenshots go to tests/artifacts/ (git-ignored), or to
$SCREENSHOT_DIR: `make screenshots` refreshes docs/screenshots/, which the README shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / os.environ.get("SCREENSHOT_DIR", "tests/artifacts")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app():
    """A fresh `streamlit run` of the app; yields its URL once it answers."""
    port = free_port()
    hosted = {**os.environ, "DEMO_DATA_DIR": str(ROOT / "no-data-directory-as-on-cloud")}
    hosted.pop("NLTK_DATA", None)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=hosted, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def app_url():
    with running_app() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(180_000)
    page.goto(url)
    page.wait_for_selector("[data-testid='stApp']")
    return page


def wait_idle(page):
    # Streamlit shows a "running" status widget while the script runs.
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=180_000)


def shot(page, name: str):
    # Plotly draws after the script finishes: wait for every chart's SVG before the picture.
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
                           ".every(e => e.querySelector('.main-svg'))", timeout=60_000)
    page.wait_for_timeout(2500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def test_every_page_shows_its_key_text(app_url, browser):
    expectations = {"": "Three student ML projects", "xray": "Not for clinical use", "poem": "Poem analyzer",
                    "car": "Estimated price", "models": "held-out", "about": "Not a medical device"}
    for path, text in expectations.items():
        page = open_page(browser, f"{app_url}/{path}")
        page.get_by_text(text).first.wait_for()
        wait_idle(page)
        assert page.locator("[data-testid='stException']").count() == 0
        shot(page, path or "home")
        page.close()


def test_one_click_examples_show_results_with_no_data_directory(app_url, browser):
    for button, result, name in (("Try an example X-ray", "Most likely", "xray_result"),
                                 ("Try an example poem", "Written around", "poem_result"),
                                 ("Try an example car photo", "Estimated price", "car_photo_result")):
        page = open_page(browser, app_url)
        page.get_by_role("button", name=button).click()
        page.get_by_text(result).first.wait_for()
        wait_idle(page)
        assert page.locator("[data-testid='stException']").count() == 0
        if name == "poem_result":  # the real NLTK pipeline, from the repository's nltk_data/
            assert page.get_by_text("is missing").count() == 0
            assert page.get_by_text("fallback").count() == 0
        shot(page, name)
        page.close()


def test_every_demo_page_offers_examples_with_no_data_directory(app_url, browser):
    for path, offer in (("xray", "try an example film"), ("poem", "Fill in a public-domain example"),
                        ("car", "example photo"), ("car", "Fill in an example car")):
        page = open_page(browser, f"{app_url}/{path}")
        page.get_by_text(offer).first.wait_for()
        page.close()


def test_uploading_a_file_in_the_browser(app_url, browser, chest_film):
    page = open_page(browser, f"{app_url}/xray")
    page.locator("input[type='file']").set_input_files(str(chest_film))
    page.get_by_text("Most likely").first.wait_for()
    wait_idle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def test_a_shared_link_opens_its_page_even_as_the_first_request_after_a_restart(browser):
    # Community Cloud restarts sleeping apps, so a doctor's link to /xray can be the server's first request.
    with running_app() as url:
        page = open_page(browser, f"{url}/xray")
        page.get_by_text("Not for clinical use").first.wait_for()
        wait_idle(page)
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Chest X-ray" in nav and "Poem analyzer" in nav  # the app's navigation, not the pages/ file names
        assert "streamlit app" not in nav
        page.close()


@pytest.mark.parametrize("file_name", ["IM000001", "FILM.dicom"])
def test_a_dicom_named_as_pacs_exports_are_uploads_and_is_analysed(app_url, browser, file_name):
    # PACS exports often carry no extension; the uploader must not refuse them by name
    from demo_core.examples import as_dicom, xray_examples
    from demo_core.intake import load_image
    film = as_dicom(load_image(xray_examples()[0].path).gray(), monochrome1=True, window=(2048, 4096))
    page = open_page(browser, f"{app_url}/xray")
    page.locator("input[type='file']").first.set_input_files(
        files=[{"name": file_name, "mimeType": "application/octet-stream", "buffer": film}])
    page.get_by_text("Most likely").first.wait_for()
    wait_idle(page)
    assert page.get_by_text(f"your upload, {file_name}").count() >= 1
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


PHONE = {"width": 390, "height": 844}


@pytest.mark.parametrize("path, ready", [("", "Three student ML projects"), ("xray?example=1", "Most likely"),
                                         ("poem?example=1", "Written around"), ("car?example=1", "Estimated price"),
                                         ("models", "held-out"), ("about", "Not a medical device")])
def test_on_a_phone_nothing_is_wider_than_the_screen(app_url, browser, path, ready):
    page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page.set_default_timeout(180_000)
    page.goto(f"{app_url}/{path}")
    page.get_by_text(ready).first.wait_for()
    wait_idle(page)
    shot(page, "phone_" + (path.split("?")[0] or "home"))
    # Wider than the screen and not inside a box that scrolls sideways on its own (a wide table may scroll).
    too_wide = page.evaluate("""() => {
        const scrolls = e => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(e).overflowX);
        const main = document.querySelector('[data-testid="stMain"]');  // scrolls sideways itself: not a fit
        const clipped = e => { for (let a = e.parentElement; a && a !== main; a = a.parentElement) {
            if (scrolls(a) && a.getBoundingClientRect().right <= window.innerWidth + 1) return true; } return false; };
        return [...document.querySelectorAll('[data-testid="stMain"] *')]
            .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 1; })
            .filter(e => !clipped(e))
            .map(e => (e.getAttribute('data-testid') || e.tagName) + ' ' + Math.round(e.getBoundingClientRect().right))
            .slice(0, 8); }""")
    page_width = page.evaluate("() => document.documentElement.scrollWidth")
    page.close()
    assert page_width <= PHONE["width"] and not too_wide, (page_width, too_wide)
