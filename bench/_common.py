"""Helpers for the bench scripts: resident memory, timing summaries, realistic requests."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium() -> str | None:
    """Debian's Chromium (the browser benches drive it through Playwright; nothing is downloaded)."""
    import shutil
    return shutil.which("chromium") or shutil.which("chromium-browser")


def wait_for_health(url: str) -> None:
    """Until a freshly started `streamlit run` answers its health check."""
    import urllib.request
    while True:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")  # high-water mark


def summarize(times_s: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times_s)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))], 1)}


def timed(fn, requests, warmup: int = 10) -> dict:  # TensorFlow's CPU kernels settle over the first calls
    for r in requests[:warmup]:
        fn(r)
    times = []
    for r in requests:
        t = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t)
    return summarize(times)


def xray_requests(n: int) -> list:
    from demo_core.settings import data_dir
    import csv
    d = data_dir()
    rows = list(csv.DictReader(open(d / "cxr" / "manifest.csv")))[::-1]
    step = max(1, len(rows) // n)
    return [(d / "cxr" / r["file"]).read_bytes() for r in rows[::step][:n]]


def poem_requests(n: int) -> list:
    from demo_core.examples import poem_examples
    ex = list(poem_examples())
    return [ex[i % len(ex)] for i in range(n)]


def car_requests(n: int) -> list:
    import csv
    from demo_core.settings import data_dir
    rows = list(csv.DictReader(open(data_dir() / "cars" / "listings.csv")))[::997][:n]
    return [{k: r[k] for k in ("brand", "model", "year", "mileage", "fuel", "transmission", "engine_size")} for r in rows]


def car_photo_requests(n: int) -> list:
    import csv
    from demo_core.settings import data_dir
    d = data_dir()
    rows = [r for r in csv.DictReader(open(d / "cars" / "images.csv")) if r["is_car"] == "1"][::50][:n]
    return [(d / "cars" / r["file"]).read_bytes() for r in rows]
