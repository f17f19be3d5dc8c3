"""Build ``examples/``: the small, licence-clean pack of example inputs that ships with the app.

The hosted app (Community Cloud) has no data directory, so its one-click examples come from here.
Only files whose licence allows redistribution are copied, byte for byte, each with its attribution
in ``examples/LICENSES.md``:

* chest films: Hannover Medical School (CC BY 3.0) and COVID-CXNet (CC BY 4.0) films from the test
  split, which no model was trained or tuned on;
* poems: facjure/public-domain-poetry poems from the poem test split whose authors died before
  1956 (more than 70 years ago), so they are public domain in life+70 countries too;
* car photos: two used-car listing photos from a CC BY 4.0 Roboflow dataset and not-a-car photos that
  are public domain or CC0 (via scikit-image). No photo of the nine listed brands' UK cars has a
  redistributable licence, so the UK examples are details only.

    .venv/bin/python training/build_examples.py          # rewrites examples/ from the data directory
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from common import ROOT, require_data

from demo_core.examples import PACK_DIR, PACK_FILE, held_out_poem
from demo_core.xray.split import load_manifest

FILMS_PER_SOURCE = {"hannover": 4, "cxnet": 2}
FILM_NOTES = {"hannover": ("COVID-19, Hannover Medical School", "Hannover Medical School, "
                           "ml-workgroup/covid-19-image-repository (Winther et al. 2020)"),
              "cxnet": ("COVID-19 PCR-positive, film read as normal (COVID-CXNet)",
                        "armiro/COVID-CXNet (Haghanifar et al. 2022); the collection re-gathered the films from "
                        "public sources")}
# Year of death of the poets whose poems may be picked: all before 1956, so public domain in life+70 countries.
POETS_DIED = {"Emily Dickinson": 1886, "Christina Rossetti": 1894, "Walt Whitman": 1892, "William Blake": 1827,
              "William Shakespeare": 1616, "John Keats": 1821, "Percy Bysshe Shelley": 1822, "Alfred Tennyson": 1892}
CAR_PHOTOS = (  # (file in cars/images, label, licence note)
    ("images/dmg_heli_7664036-hyundai-hyundai-elantra-2016-2019-16-sx-mt-2019-mino_88d85d.jpg",
     "Hyundai Elantra (Indian listing photo)", "CC BY 4.0, Roboflow dataset exported by heliyahasani/lensor_case_study"),
    ("images/dmg_heli_8715176-hyundai-hyundai-i20-2012-2014-magna-o-12-2014-minor_7495b8.jpg",
     "Hyundai i20 (Indian listing photo)", "CC BY 4.0, Roboflow dataset exported by heliyahasani/lensor_case_study"),
    ("images/notcar_chelsea.jpg", "Not a car: a cat", "CC0 (Stefan van der Walt), scikit-image's data/chelsea"),
    ("images/notcar_rocket.jpg", "Not a car: a rocket launch", "public domain (SpaceX), scikit-image's data/rocket"),
)
# Details only: facts a visitor types, no licence involved.
CAR_DETAILS = (
    {"label": "2017 Ford Fiesta 1.0 petrol, manual, 30,000 miles", "brand": "Ford", "model": "Fiesta", "year": 2017,
     "fuel": "Petrol", "transmission": "Manual", "engine_size": 1.0, "mileage": 30000},
    {"label": "2019 BMW 3 Series 2.0 diesel, automatic, 20,000 miles", "brand": "BMW", "model": "3 Series",
     "year": 2019, "fuel": "Diesel", "transmission": "Automatic", "engine_size": 2.0, "mileage": 20000},
    {"label": "2015 Toyota Yaris 1.5 hybrid, automatic, 60,000 miles", "brand": "Toyota", "model": "Yaris",
     "year": 2015, "fuel": "Hybrid", "transmission": "Automatic", "engine_size": 1.5, "mileage": 60000},
)


def pick_films(data: Path) -> list[dict]:
    df = load_manifest(data)
    picks = []
    for source, n in FILMS_PER_SOURCE.items():
        rows = df[(df.source == source) & (df.split == "test") & df.license.str.startswith("CC BY")]
        for row in rows.sort_values("file").head(n).itertuples():
            title, credit = FILM_NOTES[source]
            picks.append({"file": f"xray/{Path(row.file).name}", "from": f"cxr/{row.file}", "label": row.label,
                          "note": title, "licence": row.license, "credit": f"{credit}; {row.source_repo}"})
    return picks


def pick_poems(data: Path) -> list[dict]:
    csv.field_size_limit(10**9)
    with open(data / "poems" / "poems.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["id"].startswith("pdp_") and r["author"] in POETS_DIED
                and r["topics"] and r["year"] and 200 < len(r["text"]) < 1500 and held_out_poem(r["id"])]
    picks, seen = [], set()
    for r in sorted(rows, key=lambda r: r["id"]):
        if r["author"] not in seen:
            seen.add(r["author"])
            picks.append({"title": r["title"], "author": r["author"], "text": r["text"], "year": r["year"],
                          "topics": r["topics"].replace("|", ", "), "author_died": POETS_DIED[r["author"]],
                          "source": f"{r['source_repo']}, {r['source_path']}"})
    return picks


def pick_car_photos(data: Path) -> list[dict]:
    with open(data / "cars" / "images.csv", newline="", encoding="utf-8") as f:
        licences = {r["file"]: r["license"] for r in csv.DictReader(f)}
    return [{"file": f"cars/{Path(file).name}", "from": f"cars/{file}", "label": label, "licence": note,
             "source_licence_column": licences[file]} for file, label, note in CAR_PHOTOS]


def licences_text(films: list[dict], poems: list[dict], photos: list[dict]) -> str:
    lines = ["# Licences and attribution of the example pack", "",
             "Every file here may be redistributed under the licence named beside it. Files are copied byte for "
             "byte from the project's data directory (`training/build_examples.py`); nothing was edited.", "",
             "## Chest films", "", "| file | licence | credit |", "|---|---|---|"]
    lines += [f"| `{f['file']}` | {f['licence']} | {f['credit']} |" for f in films]
    lines += ["", "CC BY 3.0: https://creativecommons.org/licenses/by/3.0/ · CC BY 4.0: "
              "https://creativecommons.org/licenses/by/4.0/", "",
              "## Poems (in `pack.json`)", "",
              "Public domain: each author died before 1956, more than 70 years ago. Texts as published by "
              "facjure/public-domain-poetry, whose README asks that its notice be kept: *Copyright (c) Facjure "
              "LLC; free for personal or commercial use provided this BSD-style (Zenup) licence is retained.*", "",
              "| title | author | died | source |", "|---|---|---|---|"]
    lines += [f"| {p['title']} | {p['author']} | {p['author_died']} | {p['source']} |" for p in poems]
    lines += ["", "## Car photos", "", "| file | licence |", "|---|---|"]
    lines += [f"| `{p['file']}` | {p['licence']} |" for p in photos]
    lines += ["", "The car examples of the nine UK brands the price model knows are details only "
              "(`pack.json`, `car_details`): no photo of them in the data has a licence that allows redistribution."]
    return "\n".join(lines) + "\n"


def write_pack(data: Path, films: list[dict], poems: list[dict], photos: list[dict]) -> None:
    if PACK_DIR.exists():
        shutil.rmtree(PACK_DIR)
    for item in films + photos:
        target = PACK_DIR / item["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / item["from"], target)
    pack = {"xray": [{k: f[k] for k in ("file", "label", "note", "licence")} for f in films],
            "poems": [{k: p[k] for k in ("title", "author", "text", "year", "topics")} for p in poems],
            "car_photos": [{k: p[k] for k in ("file", "label", "licence")} for p in photos],
            "car_details": list(CAR_DETAILS)}
    (PACK_DIR / PACK_FILE).write_text(json.dumps(pack, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (PACK_DIR / "LICENSES.md").write_text(licences_text(films, poems, photos), encoding="utf-8")


def main() -> None:
    data = require_data()
    films, poems, photos = pick_films(data), pick_poems(data), pick_car_photos(data)
    write_pack(data, films, poems, photos)
    size = sum(p.stat().st_size for p in PACK_DIR.rglob("*") if p.is_file())
    print(f"{len(films)} films, {len(poems)} poems, {len(photos)} car photos, {len(CAR_DETAILS)} car details: "
          f"{size / 1e6:.2f} MB in {PACK_DIR.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
