"""Long fuzzing run: image intake and the poem / car request parsers.

    python bench/fuzz.py --cases 10000

Feeds random bytes and mutated valid PNG, JPEG, WebP, TIFF, BMP and DICOM files
to ``load_image``, and random JSON values to the poem and car request handlers.
The only exception allowed out of demo_core is InputError; anything else is
counted and printed.  (tests/test_resilience.py runs a short profile.)
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
import traceback

import numpy as np
from PIL import Image

from _common import ROOT  # noqa: F401  (puts the project on sys.path)


def seeds() -> dict[str, bytes]:
    from demo_core.examples import as_dicom
    rng = np.random.default_rng(0)
    arr = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    out = {}
    for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "BMP"):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        out[fmt] = buf.getvalue()
    out["DICOM"] = as_dicom(arr[..., 0], window=(2048, 4096))
    out["DICOM1"] = as_dicom(arr[..., 0], monochrome1=True)
    return out


def mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 12)):
        op = rnd.random()
        if op < 0.5 and b:
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        elif op < 0.7 and b:
            i = rnd.randrange(len(b)); del b[i:i + rnd.randint(1, 64)]
        elif op < 0.85:
            i = rnd.randrange(len(b) + 1); b[i:i] = rnd.randbytes(rnd.randint(1, 64))
        else:
            b = b[: rnd.randrange(len(b) + 1)]
    return bytes(b)


def random_json(rnd: random.Random, depth: int = 0):
    kinds = ["str", "int", "float", "bool", "null", "list", "dict", "bigstr", "unicode"]
    k = rnd.choice(kinds if depth < 2 else kinds[:5])
    if k == "str":
        return rnd.choice(["", " ", "Ford", "Focus", "Petrol", "Manual", "2017", "-1", "1e309", "NaN", "abc"])
    if k == "int":
        return rnd.choice([0, -1, 1, 2017, 1969, 3000, 10**12, -10**9])
    if k == "float":
        return rnd.choice([0.0, -0.5, 1.6, 1e308, float("inf"), float("nan")])
    if k == "bool":
        return rnd.random() < 0.5
    if k == "null":
        return None
    if k == "list":
        return [random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    if k == "dict":
        return {rnd.choice(["brand", "text", "x"]): random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 3))}
    if k == "bigstr":
        return "word " * rnd.randint(1000, 8000)
    return "".join(chr(rnd.randint(0x20, 0x2FFF)) for _ in range(rnd.randint(1, 200)))


PLAUSIBLE = {"brand": ["Ford", "BMW", "audi", "vw", "Mercedes"], "model": ["Focus", "3 Series", "X9", "", "Fiesta"],
             "year": [2010, 2017, "2019", 2020, 2024], "mileage": [0, 15000, "30,000", 120000, 99999.5],
             "fuel": ["Petrol", "Diesel", "Electric", "Hybrid", "petrol"], "transmission": ["Manual", "Automatic", "Semi-Auto"],
             "engine_size": [0, 1.0, "1.6", 2.0, None], "title": ["Night", ""], "author": ["William Blake", None, ""],
             "text": ["The sea is calm tonight", "roses " * 30, "静夜思 床前明月光"]}


def request(rnd: random.Random, fields: list[str]) -> dict:
    """Half the values are random JSON, half are plausible, so both the guards and the models get exercised."""
    return {f: (rnd.choice(PLAUSIBLE[f]) if rnd.random() < 0.5 and f in PLAUSIBLE else random_json(rnd))
            for f in fields if rnd.random() < 0.7}


def run(cases: int, seed: int = 0, with_models: bool = True) -> dict:
    from demo_core.errors import InputError
    from demo_core.intake import load_image
    rnd = random.Random(seed)
    counts = {"intake": 0, "poem": 0, "car": 0}
    ok = {"intake": 0, "poem": 0, "car": 0}
    failures: list[str] = []
    base = seeds()
    names = list(base)
    for i in range(cases):
        data = rnd.randbytes(rnd.randint(0, 2000)) if i % 5 == 0 else mutate(base[names[i % len(names)]], rnd)
        counts["intake"] += 1
        try:
            load_image(data, name=rnd.choice(["x.png", "x.dcm", "x"]))
            ok["intake"] += 1
        except InputError:
            pass
        except Exception:
            failures.append("intake: " + traceback.format_exc(limit=3))
    if with_models:
        from demo_core.car import model as car
        from demo_core.poem import model as poem
        models = {"poem": (poem.load(), ["title", "text", "author"]),
                  "car": (car.load(), ["brand", "model", "year", "mileage", "fuel", "transmission", "engine_size"])}
        for task, (m, fields) in models.items():
            for _ in range(cases):
                counts[task] += 1
                req = request(rnd, fields)
                if task == "poem" and rnd.random() < 0.3:
                    req["text"] = random_json(rnd) if rnd.random() < 0.5 else "roses " * rnd.randint(1, 50)
                try:
                    json.dumps(m.predict_request(req).to_dict(), allow_nan=False)
                    ok[task] += 1
                except InputError:
                    pass
                except Exception:
                    failures.append(f"{task} {str(req)[:200]}: " + traceback.format_exc(limit=3))
    return {"cases": counts, "accepted": ok, "unexpected_exceptions": len(failures), "examples": failures[:5]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=10000, help="cases per target")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t = time.time()
    report = run(args.cases, args.seed)
    report["seconds"] = round(time.time() - t, 1)
    for ex in report.pop("examples"):
        print(ex)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
