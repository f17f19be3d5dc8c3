"""Latency, cold start and memory of every model present.

    python bench/run.py [--n 40] [--no-vgg]

Prints a table and one JSON line.  The X-ray row is compared with a VGG19
forward pass (the original student architecture) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import ROOT, car_photo_requests, car_requests, peak_rss_mb, poem_requests, rss_mb, timed, xray_requests

COLD = """
import time, json
t = time.perf_counter()
from demo_core.{task} import model
m = model.load()
print(json.dumps({{"cold_start_s": round(time.perf_counter() - t, 2)}}))
"""


def cold_start(task: str) -> float:
    out = subprocess.run([sys.executable, "-c", COLD.format(root=str(ROOT), task=task)], capture_output=True, text=True)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])["cold_start_s"]
    except (IndexError, ValueError):
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--no-vgg", action="store_true")
    args = ap.parse_args()
    from demo_core.errors import ModelUnavailable
    results = {}
    base = rss_mb()
    loaded = {}
    for task in ("xray", "poem", "car"):
        try:
            mod = __import__(f"demo_core.{task}.model", fromlist=["load"])
            t = time.perf_counter()
            loaded[task] = mod.load()
            results[task] = {"load_s_in_process": round(time.perf_counter() - t, 2), "cold_start_s": cold_start(task)}
        except ModelUnavailable as exc:
            results[task] = {"unavailable": str(exc)}
    if "xray" in loaded:
        m = loaded["xray"]
        results["xray"].update(timed(m.predict, xray_requests(args.n)))
    if "poem" in loaded:
        m = loaded["poem"]
        results["poem"].update(timed(lambda e: m.predict(e["title"], e["text"]), poem_requests(args.n)))
    if "car" in loaded:
        m = loaded["car"]
        results["car"].update(timed(m.predict, car_requests(args.n)))
        photos = car_photo_requests(args.n)
        details = car_requests(len(photos))
        results["car_with_photo"] = timed(lambda i: m.predict(details[i], image=photos[i]), list(range(len(photos))))
    results["rss_all_models_mb"] = round(rss_mb(), 1)  # before VGG19 joins the process
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if "xray" in loaded and not args.no_vgg:
        import numpy as np
        from demo_core import _tf
        keras = _tf.keras()
        vgg = keras.applications.VGG19(weights=None, include_top=True, input_shape=(224, 224, 3))
        tf = _tf.tf()
        fwd = tf.function(lambda x: vgg(x, training=False))
        x = tf.constant(np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype("float32"))
        results["vgg19_forward"] = timed(lambda _: fwd(x).numpy(), list(range(min(args.n, 20))))
        results["xray_speedup_vs_vgg19"] = round(results["vgg19_forward"]["median_ms"] / results["xray"]["median_ms"], 1)
        del vgg
    results["rss_before_models_mb"] = round(base, 1)

    print(f"{'model':<16}{'cold start s':>14}{'median ms':>12}{'p95 ms':>10}")
    for k in ("xray", "poem", "car", "car_with_photo", "vgg19_forward"):
        r = results.get(k, {})
        print(f"{k:<16}{r.get('cold_start_s', ''):>14}{r.get('median_ms', ''):>12}{r.get('p95_ms', ''):>10}")
    print(f"RSS with every model loaded: {results['rss_all_models_mb']} MB (peak {results['peak_rss_mb']} MB)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
