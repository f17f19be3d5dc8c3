"""How close is the price model to the noise in the listings themselves?

Listings that agree on every field a visitor can give (brand, model, year, fuel,
transmission, engine size) and on mileage within a few per cent still differ in
price: trim, condition, colour and the dealer are not in the data.  Where the
training set has many such look-alikes for a validation listing, their median
price is about the best any model of these fields can do, so comparing the
model with it on those same listings says how much of the error is left to win.

    python training/price_noise.py          # prints the figures and refreshes weights/car/card.json
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd

from common import ROOT, require_data

KEYS = ["brand", "model", "year", "fuel", "transmission", "engine_size"]
# (mileage tolerance, minimum look-alikes): a strict and a looser notion of "the same car"
SETTINGS = ((0.05, 5), (0.10, 10))
LIMITATION_START = "The fields a visitor gives leave trim"


def listing_split(listings: pd.DataFrame) -> np.ndarray:
    """The price model's random 70/15/15 split (seed 0), shared with train_car.py."""
    rng = np.random.default_rng(0)
    return np.array(["train", "val", "test"])[np.searchsorted([0.7, 0.85], rng.random(len(listings)))]


def _mape(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(np.mean(np.abs(p - y) / y)) if len(y) else None  # None: no such listings (tiny smoke runs)


def lookalike_floor(train: pd.DataFrame, held_out: pd.DataFrame, predicted: np.ndarray) -> dict:
    """MAPE of the look-alikes' median price against the model's MAPE, on the held-out listings that have them."""
    fill = lambda d: d.assign(engine_size=d.engine_size.fillna(-1.0))  # noqa: E731  (hybrids without a size)
    groups = {k: (g.mileage.to_numpy(), g.price.to_numpy()) for k, g in fill(train).groupby(KEYS)}
    rows = fill(held_out)
    y = held_out.price.to_numpy()
    out = {"held_out_n": int(len(y)), "model_mape_all": _mape(y, predicted), "settings": []}
    for tol, k_min in SETTINGS:
        idx, local = [], []
        for i, r in enumerate(rows[KEYS + ["mileage"]].itertuples(index=False)):
            g = groups.get(tuple(r[:len(KEYS)]))
            if g is None:
                continue
            near = g[1][np.abs(g[0] - r.mileage) <= max(500.0, tol * r.mileage)]
            if len(near) >= k_min:
                idx.append(i)
                local.append(np.median(near))
        idx = np.asarray(idx, dtype=int)
        out["settings"].append({
            "mileage_tolerance": tol, "min_lookalikes": k_min, "n": int(len(idx)),
            "share": round(len(idx) / len(y), 3),
            "lookalike_median_mape": _mape(y[idx], np.asarray(local)),
            "model_mape_same_rows": _mape(y[idx], predicted[idx]),
            "model_mape_other_rows": _mape(np.delete(y, idx), np.delete(predicted, idx)),
        })
    out["reading"] = ("On validation listings with many training look-alikes (same fields, mileage within the "
                      "tolerance) the model already matches or beats the look-alikes' median price; the rest of "
                      "its error sits on rarer cars. A 7 % MAPE overall would need rare cars priced as well as the "
                      "most common ones.")
    return out


def limitation(analysis: dict) -> str:
    """One sentence for the card's limitations (the page shows them)."""
    s = analysis["settings"][-1]
    if s["lookalike_median_mape"] is None:
        return "The fields a visitor gives leave trim and condition out, so look-alike cars differ in price."
    return (f"The fields a visitor gives leave trim and condition out: training listings identical in every field "
            f"(mileage within {s['mileage_tolerance']:.0%}) differ so much that their median price misses a "
            f"validation look-alike by {s['lookalike_median_mape']:.1%}; the model is at "
            f"{s['model_mape_same_rows']:.1%} on those cars, {s['model_mape_other_rows']:.1%} on rarer ones.")


def main() -> None:
    from demo_core.car.model import design_matrix
    listings = pd.read_csv(require_data() / "cars" / "listings.csv")
    split = listing_split(listings)
    train, val = listings[split == "train"], listings[split == "val"]
    folder = ROOT / "weights" / "car"
    with open(folder / "price_models.pkl", "rb") as f:
        point = pickle.load(f)["point"]
    catalog = json.loads((folder / "catalog.json").read_text())
    predicted = np.exp(point.predict(design_matrix(val, catalog)))
    analysis = lookalike_floor(train, val, predicted)
    print(json.dumps(analysis, indent=1))
    card_path = folder / "card.json"
    card = json.loads(card_path.read_text())
    card.setdefault("analysis", {})["noise_floor_validation"] = analysis
    card["limitations"] = [x for x in card["limitations"] if not x.startswith(LIMITATION_START)] + [limitation(analysis)]
    card_path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
