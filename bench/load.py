"""Drive the real app with simultaneous headless-browser sessions.

    python bench/load.py --sessions 10

Starts `streamlit run` on a free localhost port; each session (its own
Playwright context in Debian's Chromium) uploads an X-ray, analyses a poem and
prices a car, and checks that it sees its own correct answer (computed
beforehand with demo_core).  Prints median / p95 time to result per demo, the
server's peak RSS while loaded, and the time until the first page was usable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from _common import ROOT, free_port, xray_requests

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def expected_answers(n: int, tmp):
    from demo_core.car import model as car
    from demo_core.poem import model as poem
    from demo_core.xray import model as xray
    xm, pm, cm = xray.load(), poem.load(), car.load()
    films = xray_requests(n)
    cases = []
    for i in range(n):
        path = tmp / f"film_{i}.jpg"
        path.write_bytes(films[i])
        text = f"The river bends {i} times beneath the hill, and night returns to every field"
        mileage = 10_000 + 3_137 * i
        details = {"brand": "Ford", "model": "Fiesta", "year": 2017, "mileage": mileage, "fuel": "Petrol",
                   "transmission": "Manual", "engine_size": 1.0}
        cases.append({"film": str(path), "xray_label": xm.predict(films[i]).label,
                      "text": text, "year": pm.predict(f"Poem {i}", text).year,
                      "mileage": mileage, "price": f"£{cm.predict(details).price:,.0f}"})
    return cases


async def session(browser, url, case, times, errors):
    ctx = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await ctx.new_page()
    page.set_default_timeout(300_000)
    try:
        t = time.perf_counter()
        await page.goto(f"{url}/xray")
        await page.locator("input[type='file']").set_input_files(case["film"])
        await page.get_by_text("Most likely").first.wait_for()
        times["xray"].append(time.perf_counter() - t)
        if case["xray_label"] not in await page.get_by_text("Most likely").first.inner_text():
            errors.append("xray: wrong label")

        t = time.perf_counter()
        await page.goto(f"{url}/poem")
        await page.get_by_label("Title", exact=True).fill(f"Poem {case['text'].split()[3]}")
        await page.locator("textarea").first.fill(case["text"])
        await page.get_by_role("button", name="Analyze").click()
        await page.get_by_text("Written around").first.wait_for()
        times["poem"].append(time.perf_counter() - t)
        if str(case["year"]) not in await page.get_by_text("Written around").first.inner_text():
            errors.append("poem: wrong year")

        t = time.perf_counter()
        await page.goto(f"{url}/car")
        field = page.get_by_label("Mileage (miles)", exact=True)
        await field.fill(str(case["mileage"]))
        await field.press("Enter")
        await page.get_by_text(case["price"]).first.wait_for()
        times["car"].append(time.perf_counter() - t)
    except Exception as exc:  # recorded, not raised: the report counts failures
        errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
    finally:
        await ctx.close()


def sample_rss(pid, stop, peak):
    import psutil
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
        except psutil.Error:
            break
        time.sleep(0.2)


async def first_page_usable(url) -> float:
    """Seconds from now until the home page's title is on screen in a fresh browser."""
    from playwright.async_api import async_playwright
    t = time.perf_counter()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = await browser.new_page()
        await page.goto(url)
        await page.get_by_text("Three student ML projects").first.wait_for(timeout=120_000)
        await browser.close()
    return time.perf_counter() - t


async def drive(url, cases):
    from playwright.async_api import async_playwright
    times = {"xray": [], "poem": [], "car": []}
    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        await asyncio.gather(*(session(browser, url, c, times, errors) for c in cases))
        await browser.close()
    return times, errors


def main() -> None:
    import tempfile
    from pathlib import Path
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    cases = expected_answers(args.sessions, tmp)
    port = free_port()
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
                               "--server.port", str(port), "--server.address", "127.0.0.1"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        ready_s = time.perf_counter() - t0
        usable_s = ready_s + asyncio.run(first_page_usable(url))
        stop, peak = threading.Event(), [0.0]
        sampler = threading.Thread(target=sample_rss, args=(server.pid, stop, peak), daemon=True)
        sampler.start()
        t = time.perf_counter()
        times, errors = asyncio.run(drive(url, cases))
        wall = time.perf_counter() - t
        stop.set()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    def stats(v):
        v = sorted(v)
        return {"n": len(v), "median_s": round(statistics.median(v), 1) if v else None,
                "p95_s": round(v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))], 1) if v else None}

    report = {"sessions": args.sessions, "server_health_s": round(ready_s, 2),
              "cold_start_first_page_usable_s": round(usable_s, 2), "wall_s": round(wall, 1),
              "errors": errors, "server_peak_rss_mb": round(peak[0], 1), **{k: stats(v) for k, v in times.items()}}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
