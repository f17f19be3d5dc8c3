"""A crowd on one server: simultaneous sessions, each using all three demos.

    python bench/load.py --sessions 10                          # all real browsers
    python bench/load.py --sessions 50 --browsers 5             # 45 websocket clients + 5 browsers
    python bench/load.py --sessions 50 --browsers 5 --memory-cap-gb 2.7 --one-core   # as on Community Cloud

Starts `streamlit run` in hosted mode (no data directory, as on Community Cloud) on a free localhost port.

* A **browser** session (its own Playwright context in Debian's Chromium) uploads a chest film, analyses
  a typed poem and prices a car by typing its mileage, and checks that it sees its own correct answer
  (computed beforehand with demo_core).
* A **websocket** session speaks Streamlit's own protocol (protobuf over /_stcore/stream), as the page's
  JavaScript does, without a browser: it opens each demo through its example link (``/xray?example=k``,
  ``/poem?example=k``, ``/car?example=k``) and checks the answer against demo_core's. Fifty browsers do not
  fit on 2 cores; fifty of these do, and the server does the same work for them: a session, the page
  script, the model call, every element sent back.

``--memory-cap-gb`` runs the server in a memory cgroup with that limit (Cloud gives 2.7 GB); ``--one-core``
pins it to one CPU with ``taskset -c 0``. Prints errors, p50/p95 time to result per demo and client kind,
the server's peak RSS, and whether the cgroup's out-of-memory killer fired.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import CHROMIUM_ARGS, ROOT, chromium, free_port, wait_for_health

CHROMIUM, ARGS = chromium(), CHROMIUM_ARGS
DEMOS = ("xray", "poem", "car")  # the order each session opens them (demo_core.tasks.TASKS' order)
CGROUP = Path("/sys/fs/cgroup/memory/demo_load_bench")  # cgroup v1, as on this machine
HOSTED = {"DEMO_DATA_DIR": str(ROOT / "no-data-directory-as-on-cloud")}  # no data directory, as on Cloud
os.environ.update(HOSTED)  # the expected answers come from the same examples the server offers


# ----------------------------------------------------------------------------- expected answers

def expected_answers(n_browsers: int, tmp: Path) -> tuple[list[dict], dict]:
    """Per browser: its film, poem and car with demo_core's answers; per example link: the answer it must show."""
    from demo_core import examples
    from demo_core.car import model as car
    from demo_core.poem import model as poem
    from demo_core.xray import model as xray
    xm, pm, cm = xray.load(), poem.load(), car.load()
    films = examples.xray_examples()
    browsers = []
    for i in range(n_browsers):
        film = films[i % len(films)].path
        path = tmp / f"film_{i}.jpg"
        path.write_bytes(film.read_bytes())
        text = f"The river bends {i} times beneath the hill, and night returns to every field"
        mileage = 10_000 + 3_137 * i
        details = {"brand": "Ford", "model": "Fiesta", "year": 2017, "mileage": mileage, "fuel": "Petrol",
                   "transmission": "Manual", "engine_size": 1.0}
        browsers.append({"film": str(path), "xray_label": xm.predict(film).label, "text": text,
                         "year": pm.predict(f"Poem {i}", text).year, "mileage": mileage,
                         "price": f"£{cm.predict(details).price:,.0f}"})
    poems, cars = examples.poem_examples(), examples.car_details_examples()
    links = {"xray": [f"Most likely: {xm.predict(e.path).label}" for e in films],
             "poem": [f"Written around {pm.predict(p['title'], p['text'], p['author']).year}" for p in poems],
             "car": [f"£{cm.predict(c.details).price:,.0f}" for c in cars]}
    return browsers, links


# ----------------------------------------------------------------------------- the server

def start_server(port: int, memory_cap_gb: float | None, one_core: bool) -> subprocess.Popen:
    env = {**os.environ, **HOSTED}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true"]
    if one_core:
        cmd = ["taskset", "-c", "0", *cmd]
    if memory_cap_gb:
        CGROUP.mkdir(exist_ok=True)
        (CGROUP / "memory.limit_in_bytes").write_text(str(int(memory_cap_gb * 1e9)))
        (CGROUP / "memory.max_usage_in_bytes").write_text("0")  # reset the peak
        cmd = ["sh", "-c", f'echo $$ > {CGROUP / "cgroup.procs"} && exec "$@"', "sh", *cmd]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cgroup_report() -> dict:
    if not CGROUP.is_dir():
        return {}
    oom = (CGROUP / "memory.oom_control").read_text() if (CGROUP / "memory.oom_control").is_file() else ""
    kills = next((int(line.split()[1]) for line in oom.splitlines() if line.startswith("oom_kill ")), 0)
    return {"cgroup_limit_gb": round(int((CGROUP / "memory.limit_in_bytes").read_text()) / 1e9, 2),
            "cgroup_peak_gb_incl_page_cache": round(int((CGROUP / "memory.max_usage_in_bytes").read_text()) / 1e9, 2),
            "oom_kills": kills}


def sample_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    import psutil
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            procs = [proc, *proc.children(recursive=True)]  # sh / taskset exec into python: one process
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs) / 2**20)
        except psutil.Error:
            break
        time.sleep(0.2)


# ----------------------------------------------------------------------------- websocket sessions

def page_texts(msg) -> list[str]:
    """The visible text of one ForwardMsg's new element (headings, markdown, metrics, alerts, captions)."""
    if msg.WhichOneof("type") != "delta" or msg.delta.WhichOneof("type") != "new_element":
        return []
    el = msg.delta.new_element
    kind = el.WhichOneof("type")
    if kind in ("heading", "markdown", "alert", "text"):
        return [getattr(el, kind).body]
    if kind == "progress":
        return [el.progress.text]
    if kind == "metric":
        return [el.metric.label + " " + el.metric.body]
    if kind == "exception":
        return ["EXCEPTION " + el.exception.message]
    return []


async def open_page(ws, demo: str, example: int | None) -> tuple[float, list[str]]:
    """One rerun of ``demo`` through its example link; (seconds to the script's end, the texts it sent)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    back = BackMsg()
    if example is not None:
        back.rerun_script.query_string = f"example={example + 1}"
    back.rerun_script.page_name = demo
    t = time.perf_counter()
    await ws.send(back.SerializeToString())
    texts: list[str] = []
    while True:
        msg = ForwardMsg()
        msg.ParseFromString(await ws.recv())
        texts += page_texts(msg)
        if msg.WhichOneof("type") == "script_finished":
            if msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                return time.perf_counter() - t, texts
            if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return time.perf_counter() - t, texts + [f"script ended with status {msg.script_finished}"]


async def socket_session(url: str, k: int, links: dict, times: dict, errors: list) -> None:
    import websockets
    try:
        async with websockets.connect(url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"],
                                      max_size=2**26, open_timeout=300, ping_timeout=None) as ws:
            for demo in DEMOS:
                example = k % len(links[demo])
                seconds, texts = await asyncio.wait_for(open_page(ws, demo, example), timeout=600)
                body = "\n".join(texts)
                if links[demo][example] not in body or "EXCEPTION" in body:
                    errors.append(f"websocket {demo}: expected {links[demo][example]!r}")
                times[("websocket", demo)].append(seconds)
    except Exception as exc:  # recorded, not raised: the report counts failures
        errors.append(f"websocket {type(exc).__name__}: {str(exc)[:200]}")


async def until_every_model_is_warm(url: str) -> float:
    """Seconds until the home page no longer shows the warm-up's progress bar."""
    import websockets
    t = time.perf_counter()
    while True:
        async with websockets.connect(url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"],
                                      max_size=2**26) as ws:
            _, texts = await open_page(ws, "", None)
        if not any("Warming up" in x for x in texts):
            return time.perf_counter() - t
        await asyncio.sleep(1.0)


# ----------------------------------------------------------------------------- browser sessions

async def browser_session(browser, url: str, case: dict, times: dict, errors: list) -> None:
    ctx = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await ctx.new_page()
    page.set_default_timeout(600_000)
    try:
        t = time.perf_counter()
        await page.goto(f"{url}/xray")
        await page.locator("input[type='file']").set_input_files(case["film"])
        await page.get_by_text("Most likely").first.wait_for()
        times[("browser", "xray")].append(time.perf_counter() - t)
        if case["xray_label"] not in await page.get_by_text("Most likely").first.inner_text():
            errors.append("browser xray: wrong label")

        t = time.perf_counter()
        await page.goto(f"{url}/poem")
        await page.get_by_label("Title", exact=True).fill(f"Poem {case['text'].split()[3]}")
        await page.locator("textarea").first.fill(case["text"])
        await page.get_by_role("button", name="Analyze").click()
        await page.get_by_text("Written around").first.wait_for()
        times[("browser", "poem")].append(time.perf_counter() - t)
        if str(case["year"]) not in await page.get_by_text("Written around").first.inner_text():
            errors.append("browser poem: wrong year")

        t = time.perf_counter()
        await page.goto(f"{url}/car")
        field = page.get_by_label("Mileage (miles)", exact=True)
        await field.fill(str(case["mileage"]))
        await field.press("Enter")
        await page.get_by_text(case["price"]).first.wait_for()
        times[("browser", "car")].append(time.perf_counter() - t)
    except Exception as exc:
        errors.append(f"browser {type(exc).__name__}: {str(exc)[:200]}")
    finally:
        await ctx.close()


async def drive(url: str, browsers: list[dict], n_sockets: int, links: dict):
    from playwright.async_api import async_playwright
    times = {(kind, demo): [] for kind in ("browser", "websocket") for demo in DEMOS}
    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS) if browsers else None
        await asyncio.gather(*(browser_session(browser, url, c, times, errors) for c in browsers),
                             *(socket_session(url, k, links, times, errors) for k in range(n_sockets)))
        if browser is not None:
            await browser.close()
    return times, errors


async def first_page_usable(url: str) -> float:
    """Seconds from now until the home page's title is on screen in a fresh browser."""
    from playwright.async_api import async_playwright
    t = time.perf_counter()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = await browser.new_page()
        await page.goto(url)
        await page.get_by_text("Three student ML projects").first.wait_for(timeout=300_000)
        await browser.close()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- report

def stats(v: list[float]) -> dict:
    v = sorted(v)
    return {"n": len(v), "p50_s": round(statistics.median(v), 2) if v else None,
            "p95_s": round(v[min(len(v) - 1, round(0.95 * (len(v) - 1)))], 2) if v else None}


def main() -> None:
    import tempfile
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--browsers", type=int, help="how many of the sessions are real browsers (default: all)")
    ap.add_argument("--memory-cap-gb", type=float, help="run the server in a memory cgroup with this limit")
    ap.add_argument("--one-core", action="store_true", help="pin the server to one CPU (taskset -c 0)")
    ap.add_argument("--cold", action="store_true",
                    help="the crowd arrives as the server wakes (default: once every model is warm)")
    args = ap.parse_args()
    n_browsers = args.sessions if args.browsers is None else min(args.browsers, args.sessions)
    tmp = Path(tempfile.mkdtemp())
    browsers, links = expected_answers(n_browsers, tmp)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    server = start_server(port, args.memory_cap_gb, args.one_core)
    try:
        wait_for_health(url)
        ready_s = time.perf_counter() - t0
        usable_s = ready_s + asyncio.run(first_page_usable(url))
        warm_s = None if args.cold else usable_s + asyncio.run(until_every_model_is_warm(url))
        stop, peak = threading.Event(), [0.0]
        threading.Thread(target=sample_rss, args=(server.pid, stop, peak), daemon=True).start()
        t = time.perf_counter()
        times, errors = asyncio.run(drive(url, browsers, args.sessions - n_browsers, links))
        wall = time.perf_counter() - t
        stop.set()
        alive = server.poll() is None
        memory = cgroup_report()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
        if CGROUP.is_dir():
            CGROUP.rmdir()
    report = {"sessions": args.sessions, "browsers": n_browsers, "websocket_clients": args.sessions - n_browsers,
              "memory_cap_gb": args.memory_cap_gb, "one_core": args.one_core, "server_alive_after": alive,
              "crowd_arrives": "as the server wakes" if args.cold else "once every model is warm",
              "server_health_s": round(ready_s, 2), "cold_start_first_page_usable_s": round(usable_s, 2),
              "every_model_warm_s": None if warm_s is None else round(warm_s, 1),
              "wall_s": round(wall, 1), "errors": len(errors), "error_samples": errors[:5],
              "server_peak_rss_mb": round(peak[0], 1), **memory,
              **{f"{kind}_{demo}": stats(v) for (kind, demo), v in times.items() if v}}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
