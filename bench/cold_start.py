"""A fresh server as Community Cloud starts it, seen from one browser: how long until the first X-ray result?

    .venv/bin/python bench/cold_start.py            # about 1 min
    .venv/bin/python bench/cold_start.py --warm 9   # more warm uploads for the median

Starts `streamlit run` with no data directory (hosted mode), opens the home page in Debian's Chromium,
then the X-ray page, and uploads a 2,000 px PNG film as soon as the page is usable. Prints: seconds from
`streamlit run` to the home page being usable; from that moment to the first X-ray result; and the
median upload-to-result time of further 2,000 px PNGs once every model is warm (targets: <= 5 s, <= 1.5 s).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time

import numpy as np

from _common import CHROMIUM_ARGS, chromium, free_port, wait_for_health
from load import start_server

CHROMIUM, ARGS = chromium(), CHROMIUM_ARGS
FIRST_RESULT_TARGET_S, WARM_TARGET_S = 5.0, 1.5


def png_film(i: int, side: int = 2000) -> bytes:
    """A shipped example film upscaled to ``side`` px, nudged so every upload is new to the page."""
    import cv2
    from PIL import Image
    from demo_core.examples import xray_examples
    films = xray_examples()
    gray = cv2.imread(str(films[i % len(films)].path), cv2.IMREAD_GRAYSCALE)
    h, w = gray.shape
    big = cv2.resize(gray, (side, round(side * h / w)), interpolation=cv2.INTER_CUBIC)
    big = np.clip(big.astype(np.int16) + (i % 3) - 1, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    return buf.getvalue()


def upload_and_wait(page, name: str, data: bytes) -> float:
    page.locator("input[type='file']").first.set_input_files(
        files=[{"name": name, "mimeType": "image/png", "buffer": data}])
    t = time.perf_counter()
    page.wait_for_function("n => [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"]')]"
                           ".some(e => e.innerText.includes('Showing: your upload, ' + n))"
                           " && [...document.querySelectorAll('h3')].some(e => e.innerText.startsWith('Most likely'))"
                           " && !document.querySelector('[data-testid=\"stStatusWidget\"]')", arg=name,
                           timeout=300_000)
    return time.perf_counter() - t


def wait_until_every_model_is_warm(browser, url: str) -> float:
    """The moment the sidebar no longer shows the warm-up (the poem and car models load after the X-ray's)."""
    probe = browser.new_page()
    while True:
        probe.goto(url)
        probe.get_by_text("Three student ML projects").first.wait_for()
        probe.wait_for_timeout(300)
        if probe.get_by_text("Warming up the models").count() == 0:
            probe.close()
            return time.perf_counter()
        probe.wait_for_timeout(1000)


def main() -> None:
    from playwright.sync_api import sync_playwright
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", type=int, default=5, help="warm uploads after the first")
    args = ap.parse_args()
    films = [png_film(i) for i in range(args.warm + 1)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    server = start_server(port, memory_cap_gb=None, one_core=False)  # hosted mode: no data directory
    try:
        wait_for_health(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(300_000)
            page.goto(url)
            page.get_by_text("Three student ML projects").first.wait_for()
            usable_s = time.perf_counter() - t0
            page.goto(f"{url}/xray")
            page.locator("input[type='file']").first.wait_for(state="attached")
            t = time.perf_counter()
            upload_and_wait(page, "film_0.png", films[0])
            first_s = time.perf_counter() - t
            warm_all_s = wait_until_every_model_is_warm(browser, url) - t0
            warm = [upload_and_wait(page, f"film_{i}.png", films[i]) for i in range(1, len(films))]
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {"first_page_usable_s": round(usable_s, 2), "first_xray_result_after_usable_s": round(first_s, 2),
              "every_model_warm_s": round(warm_all_s, 1),
              "warm_upload_to_result_s": {"n": len(warm), "median": round(statistics.median(warm), 2),
                                          "max": round(max(warm), 2)},
              "film_png_bytes": len(films[0]),
              "targets": {"first_result_s": FIRST_RESULT_TARGET_S, "warm_s": WARM_TARGET_S}}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
