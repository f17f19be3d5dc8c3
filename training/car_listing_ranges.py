"""Where each car model's listings end, and how the price interval fares at that edge.

``demo_core.car.schema.build_catalog`` now records each model's mileage and year range (``train_car.py``
writes it in a full run). This script adds the same ranges, from the same training split, to the shipped
``catalog.json`` without retraining the price models, and measures the 80 % interval on the test listings at
the edge of their model's mileage range (above the 95th percentile of its training listings), and past it.

    python training/car_listing_ranges.py        # about 2 min on 2 CPU cores; updates catalog.json and the card
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from common import ROOT, require_data, write_card
from price_noise import listing_split

from demo_core.car.schema import listing_ranges, model_key

FIELDS = ("brand", "model", "year", "mileage", "fuel", "transmission", "engine_size")


def add_ranges(catalog: dict, train: pd.DataFrame) -> None:
    for (brand, model), g in train.groupby(["brand", "model"]):
        proto = catalog["prototypes"].get(model_key(brand, model))
        if proto is not None:
            proto.update(listing_ranges(g))


def request(row) -> dict:
    """A test listing as a visitor would give it (an unknown engine size left out)."""
    return {f: getattr(row, f) for f in FIELDS if not (isinstance(getattr(row, f), float) and np.isnan(getattr(row, f)))}


def edge_coverage(model, test: pd.DataFrame, train: pd.DataFrame) -> dict:
    """80 % interval coverage and width on test listings past the 95th mileage percentile of their model."""
    p95 = train.groupby(["brand", "model"]).mileage.quantile(0.95).rename("p95")
    top = train.groupby(["brand", "model"]).mileage.max().rename("top")
    t = test.join(p95, on=["brand", "model"]).join(top, on=["brand", "model"])
    out = {}
    for name, part in (("edge", t[(t.mileage > t.p95) & (t.mileage <= t.top)]), ("beyond", t[t.mileage > t.top])):
        inside, widths = [], []
        for row in part.itertuples():
            r = model.predict_details(request(row))
            lo, hi = r.price_interval
            inside.append(lo <= row.price <= hi)
            widths.append(np.log(hi / lo))
        out[name] = {"n": len(inside), "coverage": float(np.mean(inside)) if inside else None,
                     "median_log_width": float(np.median(widths)) if widths else None}
    inside = []
    for row in t.sample(min(1000, len(t)), random_state=0).itertuples():
        lo, hi = model.predict_details(request(row)).price_interval
        inside.append(lo <= row.price <= hi)
    out["all_sample"] = {"n": len(inside), "coverage": float(np.mean(inside))}
    return out


def main() -> None:
    from demo_core.car.model import load
    listings = pd.read_csv(require_data() / "cars" / "listings.csv")
    listings = listings.assign(split=listing_split(listings))
    train, test = listings[listings.split == "train"], listings[listings.split == "test"]
    folder = ROOT / "weights" / "car"
    catalog = json.loads((folder / "catalog.json").read_text())
    add_ranges(catalog, train)
    (folder / "catalog.json").write_text(json.dumps(catalog, indent=1))
    card = json.loads((folder / "card.json").read_text())
    card.pop("files", None)
    write_card(folder, card)  # the catalog's new checksum, so the model below loads
    report = edge_coverage(load(), test, train)
    print(json.dumps(report), flush=True)
    card = json.loads((folder / "card.json").read_text())
    card["metrics"]["mileage_edges"] = {
        **report, "what": "test listings whose mileage is above the 95th percentile of their model's training "
                          "listings (edge) or above the highest (beyond): coverage of the 80 % interval; past the "
                          "highest, the interval is the edge's stretched by mileage / highest mileage (at most x3)"}
    card.pop("files", None)
    write_card(folder, card)


if __name__ == "__main__":
    main()
