"""Resident memory over 1,000 predictions per demo after warm-up (leak check).

    python bench/memory.py [--n 1000]
"""

from __future__ import annotations

import argparse
import gc
import json

from _common import car_requests, poem_requests, rss_mb, xray_requests


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    from demo_core.car import model as car
    from demo_core.poem import model as poem
    from demo_core.xray import model as xray
    demos = {"xray": (xray.load(), xray_requests(20), lambda m, r: m.predict(r)),
             "poem": (poem.load(), poem_requests(20), lambda m, r: m.predict(r["title"], r["text"])),
             "car": (car.load(), car_requests(20), lambda m, r: m.predict(r))}
    report = {"rss_all_loaded_mb": round(rss_mb(), 1)}
    for name, (m, reqs, call) in demos.items():
        for r in reqs * 5:  # warm-up: caches, graph tracing, allocator pools
            call(m, r)
        gc.collect()
        before = rss_mb()
        for i in range(args.n):
            call(m, reqs[i % len(reqs)])
        gc.collect()
        report[name] = {"predictions": args.n, "rss_before_mb": round(before, 1),
                        "growth_mb": round(rss_mb() - before, 1)}
        print(name, report[name], flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
