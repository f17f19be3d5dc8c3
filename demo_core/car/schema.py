"""Car details: field names, validation with messages fit for a visitor, the catalog."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError

CATEGORICAL = ["brand", "model", "fuel", "transmission"]
NUMERIC = ["year", "mileage", "engine_size"]
FIELDS = ["brand", "model", "year", "mileage", "fuel", "transmission", "engine_size"]
# Optional figures from the car's advert or papers; given, they sharpen the price (price_papers.pkl).
PAPERS = ["mpg", "tax"]
PAPERS_LIMITS = {"mpg": (5.0, 500.0), "tax": (0.0, 1000.0)}  # listed mpg reaches 470 (plug-in hybrids), tax £580
MAX_MILEAGE = 500_000
MAX_ENGINE = 8.0
BRAND_ALIASES = {"vw": "Volkswagen", "merc": "Mercedes-Benz", "mercedes": "Mercedes-Benz", "mercedes benz": "Mercedes-Benz",
                 "hyundi": "Hyundai", "opel": "Vauxhall"}


def model_key(brand: str, model: str) -> str:
    return f"{brand}|{model}"


def listing_ranges(g: pd.DataFrame) -> dict:
    """The mileage and years one model's listings cover: beyond them a price is an extrapolation."""
    return {"miles": [float(g.mileage.min()), float(g.mileage.max())],
            "year_range": [int(g.year.min()), int(g.year.max())]}


def build_catalog(train: pd.DataFrame) -> dict:
    """Everything inference needs to know about the listings, as summaries only (no rows)."""
    cat = {"brands": sorted(train.brand.unique().tolist()),
           "categories": {"brand": sorted(train.brand.unique().tolist()),
                          "model": sorted({model_key(b, m) for b, m in zip(train.brand, train.model)}),
                          "fuel": sorted(train.fuel.unique().tolist()),
                          "transmission": sorted(train.transmission.unique().tolist())},
           "year_min": int(train.year.min()), "year_max": int(train.year.max()),
           "models": {}, "prototypes": {}}
    num = train[NUMERIC].astype(float)
    cat["numeric_mean"] = num.mean().fillna(0).round(4).tolist()
    cat["numeric_std"] = num.std().fillna(1).round(4).tolist()
    for brand, g in train.groupby("brand"):
        counts = g.model.value_counts()
        cat["models"][brand] = {m: int(n) for m, n in counts.items()}
    for (brand, model), g in train.groupby(["brand", "model"]):
        age = (cat["year_max"] + 0.5 - g.year).clip(lower=0.5)
        combos = (g.assign(engine_size=g.engine_size.fillna(-1.0))
                  .groupby(["fuel", "transmission", "engine_size"]).size().sort_values(ascending=False).head(8))
        cat["prototypes"][model_key(brand, model)] = {
            "years": [int(round(v)) for v in np.percentile(g.year, [10, 30, 50, 70, 90])],
            "miles_per_year": float(np.median(g.mileage / age)),
            "combos": [[f, t, (None if e < 0 else float(e)), int(n)] for (f, t, e), n in combos.items()],
            # what this model comes with in the listings, so a form can say when a request leaves the data
            "fuels": sorted(g.fuel.unique().tolist()),
            "engines": [float(e) for e in g.engine_size[g.engine_size > 0].agg(["min", "max"])]
            if (g.engine_size > 0).any() else None,
            **listing_ranges(g),
        }
    return cat


@dataclass(frozen=True)
class CarDetails:
    brand: str | None = None
    model: str | None = None
    year: int | None = None
    mileage: float | None = None
    fuel: str | None = None
    transmission: str | None = None
    engine_size: float | None = None
    mpg: float | None = None
    tax: float | None = None  # annual road tax, GBP

    @property
    def has_papers(self) -> bool:
        return self.mpg is not None or self.tax is not None

    def given(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _number(name: str, value, integer: bool = False) -> float:
    if isinstance(value, bool):
        raise InputError(f"{name.replace('_', ' ').capitalize()} must be a number.")
    try:
        x = float(str(value).replace(",", "").strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name.replace('_', ' ').capitalize()} must be a number, not {str(value)[:30]!r}.") from None
    if not math.isfinite(x):
        raise InputError(f"{name.replace('_', ' ').capitalize()} must be a finite number.")
    if integer and x != int(x):
        raise InputError(f"{name.capitalize()} must be a whole number.")
    return x


def _choice(name: str, value, options: list[str]) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name.capitalize()} must be text, one of: {', '.join(options)}.")
    lookup = {o.lower(): o for o in options}
    hit = lookup.get(value.strip().lower())
    if hit is None:
        raise InputError(f"Unknown {name} {value[:40]!r}; choose one of: {', '.join(options)}.")
    return hit


def validate(request: dict, catalog: dict) -> tuple[CarDetails, list[str]]:
    """Check every given field; returns the cleaned details and warnings (never guesses silently)."""
    warnings: list[str] = []
    out: dict = {}
    brand = request.get("brand")
    if not _blank(brand):
        if not isinstance(brand, str):
            raise InputError("Brand must be text.")
        b = BRAND_ALIASES.get(brand.strip().lower(), brand)
        out["brand"] = _choice("brand", b, catalog["brands"])
    model = request.get("model")
    if not _blank(model):
        if not isinstance(model, str):
            raise InputError("Model must be text.")
        if "brand" not in out:
            raise InputError("Please give the brand together with the model.")
        models = catalog["models"][out["brand"]]
        lookup = {m.lower().replace("-", " ").strip(): m for m in models}
        hit = lookup.get(model.strip().lower().replace("-", " "))
        if hit is None:
            warnings.append(f"Model {model.strip()[:40]!r} is not among the {out['brand']} models in the "
                            f"listings; the price uses {out['brand']}'s typical models instead.")
        else:
            out["model"] = hit
    this_year = _dt.date.today().year
    if not _blank(request.get("year")):
        year = int(_number("year", request["year"], integer=True))
        if year > this_year:
            raise InputError(f"Year {year} is in the future.")
        if year < catalog["year_min"]:
            raise InputError(f"Year {year} is before {catalog['year_min']}, the oldest car in the listings; "
                             "the model cannot price it.")
        if year > catalog["year_max"]:
            warnings.append(f"The listings stop at {catalog['year_max']}; the car is priced as a "
                            f"{catalog['year_max']} car.")
            year = catalog["year_max"]
        out["year"] = year
    if not _blank(request.get("mileage")):
        miles = _number("mileage", request["mileage"])
        if miles < 0:
            raise InputError("Mileage cannot be negative.")
        if miles > MAX_MILEAGE:
            raise InputError(f"A mileage of {miles:,.0f} miles is not plausible (limit {MAX_MILEAGE:,}).")
        out["mileage"] = miles
    if not _blank(request.get("fuel")):
        out["fuel"] = _choice("fuel", request["fuel"], catalog["categories"]["fuel"])
    if not _blank(request.get("transmission")):
        out["transmission"] = _choice("transmission", request["transmission"], catalog["categories"]["transmission"])
    if not _blank(request.get("engine_size")):
        size = _number("engine_size", request["engine_size"])
        if size < 0:
            raise InputError("Engine size cannot be negative.")
        if size > MAX_ENGINE:
            raise InputError(f"An engine of {size:g} litres is not plausible for these brands (limit {MAX_ENGINE:g} L).")
        if size == 0:
            if out.get("fuel") == "Electric":
                size = None
            else:
                raise InputError("Engine size 0 is only possible for an electric car; give the size in litres "
                                 "(e.g. 1.6) or choose Electric.")
        elif out.get("fuel") == "Electric":
            warnings.append("An electric car has no engine size; it was ignored.")
            size = None
        if size is not None and size < 0.6:
            raise InputError(f"An engine of {size:g} litres is too small for a car (did you mean {size * 10:g}?).")
        out["engine_size"] = size
    for name, (low, high) in PAPERS_LIMITS.items():
        if not _blank(request.get(name)):
            value = _number(name, request[name])
            if not low <= value <= high:
                what = "miles per gallon" if name == "mpg" else "road tax (GBP a year)"
                raise InputError(f"{name} {value:g} is not plausible for {what}; give a value from {low:g} to "
                                 f"{high:g}, or leave it empty.")
            out[name] = value
    unknown = sorted(set(request) - set(FIELDS) - set(PAPERS) - {"image"})
    if unknown:
        warnings.append(f"Ignored unknown field(s): {', '.join(unknown)[:100]}.")
    return CarDetails(**out), warnings
