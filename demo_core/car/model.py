"""Car price: one loader, one ``predict``.

Details drive the price (gradient boosting on log price, conformalised 10-90 %
interval).  Fields the visitor leaves out are filled with prototype cars of
that brand and model, and the prototypes' predictive distributions are pooled,
so less information honestly gives a wider interval.  A photo adds a car /
not-car check and a make estimate; on its own it yields a brand-mixture price.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .. import _tf
from ..bn_folding import load_for_inference
from ..cards import load_card, task_dir
from ..errors import InputError
from ..intake import LoadedImage, load_image
from ..stats import tempered
from .fast_trees import FastTrees
from .photo import MakeViews, to_photo_input
from .schema import CATEGORICAL, FIELDS, NUMERIC, PAPERS, CarDetails, model_key, validate

Z90 = 1.2815515655446004  # the 90 % quantile of a standard normal
MAX_PROTOTYPES = 400
FAST_ROWS = 64  # up to this many rows the numpy tree walker beats sklearn's per-tree calls
CAR_THRESHOLD = 0.5
MAX_STRETCH = 3.0  # the most an interval past the listings' mileage is stretched (in log price)
SUGGEST_BRAND_AT = 0.5  # the photo's make is offered (never imposed) at or above this probability
OPTIONAL_FIELDS = [f for f in FIELDS if f != "brand"]  # what prototypes fill in when the visitor leaves it out
PAPERS_FILE = "price_papers.pkl"


def design_matrix(df: pd.DataFrame, catalog: dict, papers: bool = False) -> pd.DataFrame:
    """The model's input columns with the catalog's categories (unknown values become missing); ``papers``
    adds mpg and tax (missing where not given) for the models trained with them."""
    cats = catalog["categories"]
    out = pd.DataFrame(index=df.index)
    out["brand"] = pd.Categorical(df["brand"], categories=cats["brand"])
    models = [model_key(b, m) if isinstance(m, str) else None for b, m in zip(df["brand"], df.get("model", [None] * len(df)))]
    out["model"] = pd.Categorical(models, categories=cats["model"])
    for c in ("fuel", "transmission"):
        out[c] = pd.Categorical(df[c] if c in df else [None] * len(df), categories=cats[c])
    numeric = NUMERIC + (PAPERS if papers else [])
    for c in numeric:
        out[c] = pd.to_numeric(df[c], errors="coerce").astype(float) if c in df else np.nan
    return out[CATEGORICAL + numeric]


@dataclass(frozen=True)
class PricePrediction:
    price: float | None
    price_interval: tuple[float, float] | None
    is_car: bool | None
    car_score: float | None
    brand_from_image: dict[str, float] | None
    warnings: tuple[str, ...]
    details: dict = field(default_factory=dict)  # what the price was computed from
    filled_in: tuple[str, ...] = ()  # fields averaged over prototype cars
    currency: str = "GBP"

    def to_dict(self) -> dict:
        return {"price": None if self.price is None else round(self.price, 2), "currency": self.currency,
                "price_interval": None if self.price_interval is None else [round(v, 2) for v in self.price_interval],
                "is_car": self.is_car,
                "brand_from_image": None if self.brand_from_image is None else
                {k: round(v, 6) for k, v in self.brand_from_image.items()},
                "warnings": list(self.warnings)}


class CarModel:
    def __init__(self, models: dict, catalog: dict, photo_model, card: dict, papers_models: dict | None = None):
        self.point, self.q10, self.q90 = models["point"], models["q10"], models["q90"]
        self._fast = {k: FastTrees(models[k]) for k in ("point", "q10", "q90")}
        self.catalog, self.card = catalog, card
        self.correction = float(catalog["interval_correction"])
        # A correction in log price from mpg and tax, added to all three outputs: only when the visitor gives one.
        self._papers = papers_models["correction"] if papers_models else None
        self._papers_fast = FastTrees(self._papers) if self._papers is not None else None
        self.papers_correction: dict[str, float] = catalog.get("papers_correction", {})  # per "mpg,tax" / "mpg" / "tax"
        self.make_classes: list[str] = catalog.get("photo_make_classes", [])
        self.make_views = MakeViews.from_catalog(catalog)
        self.make_temperature = float(catalog.get("photo_make_temperature", 1.0))
        self.car_temperature = float(catalog.get("photo_car_temperature", 1.0))
        self._photo = None
        if photo_model is not None:
            tf = _tf.tf()
            self._tf = tf
            self._photo = tf.function(lambda x: photo_model(x, training=False), reduce_retracing=True, autograph=False)
            self.photo_scores(LoadedImage(np.full((64, 64, 3), 127, np.uint8), "warm-up"))
        self.predict_details({"brand": self.catalog["brands"][0]})  # warm the trees

    # ------------------------------------------------------------------ public
    def predict_request(self, request: dict) -> PricePrediction:
        image = request.get("image")
        if image is not None and not isinstance(image, str):
            raise InputError('"image" must be a path to a photo.')
        return self.predict(request, image=image or None)

    def predict(self, details: dict, image=None) -> PricePrediction:
        """``details``: any of brand, model, year, mileage, fuel, transmission, engine_size;
        ``image``: bytes, a path or a LoadedImage, optional."""
        has_details = any(details.get(k) not in (None, "") for k in FIELDS)
        if image is None:
            if not has_details:
                raise InputError("Give the car's details (at least the brand) or a photo.")
            return self.predict_details(details)
        is_car, car_score, brands, other = self.photo_scores(image)
        warnings: list[str] = []
        if not is_car:
            warnings.append("The photo does not look like a car's exterior (it may be an interior, a part or "
                            "something else), so it was not used.")
            # a refused photo suggests no make: its "Hyundai 19 %" would read as a finding
            if not has_details:
                return PricePrediction(None, None, False, car_score, None, tuple(warnings))
            base = self.predict_details(details)
            return _replace(base, is_car=False, car_score=car_score, brand_from_image=None,
                            warnings=tuple(warnings) + base.warnings)
        if not has_details:
            return self._photo_only(brands, other, car_score)
        base = self.predict_details(details)
        form_brand = base.details.get("brand")
        top, p_top = max(brands.items(), key=lambda kv: kv[1]) if brands else (None, 0.0)
        if form_brand and top and top != form_brand and p_top >= SUGGEST_BRAND_AT:
            warnings.append(f"The photo looks like a {top} ({p_top:.0%}), but the form says {form_brand}; "
                            "the price follows the form.")
        return _replace(base, is_car=True, car_score=car_score, brand_from_image=brands,
                        warnings=base.warnings + tuple(warnings))

    def predict_details(self, request: dict) -> PricePrediction:
        details, warnings = validate(request, self.catalog)
        if details.brand is None:
            raise InputError("Please choose the brand (or add a photo).")
        warnings += self._outside_the_listings(details)
        papers = details.has_papers and self._papers is not None
        if details.has_papers and not papers:
            warnings.append("This server's price model does not use mpg or road tax; they were ignored.")
        rows, weights, filled = self._prototypes(details)
        price, lo, hi = self._pooled(rows, weights, papers)
        lo, hi = self._widened(price, lo, hi, filled)
        lo, hi = self._no_narrower_beyond_the_listings(details, price, lo, hi)
        if filled:
            warnings.append(f"Not given: {', '.join(filled)}; the price averages over typical cars, so the "
                            "interval is wider.")
        return PricePrediction(price, (lo, hi), None, None, None, tuple(warnings), details.given(), tuple(filled))

    def _outside_the_listings(self, d: CarDetails) -> list[str]:
        """Say so when the model never comes with the given fuel or engine size in the listings: such a price is
        an extrapolation (the trees still answer, but no listing backs it)."""
        proto = self.catalog["prototypes"].get(model_key(d.brand, d.model)) if d.model else None
        if not proto:
            return []
        name, out = f"{d.brand} {d.model}", []
        if d.fuel is not None and "fuels" in proto and d.fuel not in proto["fuels"]:
            out.append(f"No {name} in the listings runs on {d.fuel.lower()} (only {', '.join(proto['fuels']).lower()}); "
                       "this price is an extrapolation.")
        miles = proto.get("miles")
        if d.mileage is not None and miles and d.mileage > miles[1]:
            out.append(f"No {name} in the listings has more than {miles[1]:,.0f} miles; this price is an "
                       "extrapolation, and its interval widens with the distance past it.")
        years = proto.get("year_range")
        if d.year is not None and years and not years[0] <= d.year <= years[1]:
            out.append(f"The listings have {name}s from {years[0]} to {years[1]} only; this price for a {d.year} car "
                       "is an extrapolation.")
        engines = proto.get("engines")
        if d.engine_size is not None and d.engine_size > 0 and engines and \
                not engines[0] - 0.05 <= d.engine_size <= engines[1] + 0.05:
            out.append(f"No {name} in the listings has a {d.engine_size:g}-litre engine (they range "
                       f"{engines[0]:g}–{engines[1]:g} litres); this price is an extrapolation.")
        return out

    def _no_narrower_beyond_the_listings(self, d: CarDetails, price: float, lo: float, hi: float) -> tuple[float, float]:
        """Past the highest mileage the model's listings reach, the trees answer as at that edge and their interval
        would not grow. No listing backs such a price, so the interval is the edge's (relative to the price),
        stretched in proportion to how far past the edge the mileage is: x2 at twice the highest mileage, at most
        x3."""
        proto = self.catalog["prototypes"].get(model_key(d.brand, d.model)) if d.model else None
        miles = (proto or {}).get("miles")
        if d.mileage is None or not miles or d.mileage <= miles[1]:
            return lo, hi
        edge = self.predict_details({**d.given(), "mileage": miles[1]})
        (e_lo, e_hi), e_price = edge.price_interval, edge.price
        stretch = min(MAX_STRETCH, d.mileage / miles[1])
        return min(lo, price * (e_lo / e_price) ** stretch), max(hi, price * (e_hi / e_price) ** stretch)

    def photo_probabilities(self, image) -> tuple[float, np.ndarray]:
        """(probability that the photo shows a car's exterior, the make head's probabilities over
        ``make_classes``), both temperature-calibrated on validation photos (training/photo_calibration.py)."""
        if self._photo is None:
            raise InputError("The photo model is not available on this server.")
        img = image if isinstance(image, LoadedImage) else load_image(image)
        # One batch: the whole photo for the car check, then the make's views (chosen on validation). When the
        # make reads the whole photo too, its first view is that same input.
        make_x = self.make_views.inputs(img.pixels)
        whole_first = self.make_views.center_crop >= 1.0
        x = make_x if whole_first else np.concatenate([to_photo_input(img.pixels)[None], make_x])
        out = self._photo(self._tf.constant(x))
        car = float(out["is_car"].numpy()[0, 0])
        make = out["make"].numpy()[0 if whole_first else 1:].mean(axis=0).astype(float)
        # the check's sigmoid tempered as its two-class softmax: the logit divided by T, so 0.5 stays 0.5
        car = float(tempered(np.array([1.0 - car, car]), self.car_temperature)[1])
        return car, tempered(make, self.make_temperature)

    def photo_scores(self, image) -> tuple[bool, float, dict[str, float], float]:
        car, probs = self.photo_probabilities(image)
        brands = {c: float(p) for c, p in zip(self.make_classes, probs) if c in self.catalog["brands"]}
        other = float(sum(p for c, p in zip(self.make_classes, probs) if c not in self.catalog["brands"]))
        return car >= CAR_THRESHOLD, car, brands, other

    def suggested_brand(self, image) -> tuple[str, float] | None:
        """The listing brand a car photo suggests, with its probability; None for a non-car photo or an unsure
        make. A suggestion only: the page offers it, and a brand the visitor chose always wins."""
        is_car, _, brands, _ = self.photo_scores(image)
        if not is_car or not brands:
            return None
        top = max(brands, key=brands.get)
        return (top, brands[top]) if brands[top] >= SUGGEST_BRAND_AT else None

    def typical_details(self, brand: str, model: str) -> dict:
        """The commonest fuel, gearbox and engine of that model in the listings, and its median year: what a
        form should offer once the model is chosen (a 1.0-litre 3 Series does not exist, and its price would
        be a guess far from the data).  Empty for an unknown model; no engine size where the listings lack it."""
        proto = self.catalog["prototypes"].get(model_key(brand, model))
        if not proto or not proto["combos"]:
            return {}
        fuel, transmission, engine, _ = proto["combos"][0]
        typical = {"fuel": fuel, "transmission": transmission, "year": int(proto["years"][len(proto["years"]) // 2])}
        if engine is not None:
            typical["engine_size"] = float(engine)
        return typical

    def what_if(self, details: dict, mileages: list[float], years: list[int]) -> pd.DataFrame:
        """Price over a grid of mileage and year for an otherwise fixed car (for the chart)."""
        rows = []
        for y in years:
            for m in mileages:
                d = dict(details, year=y, mileage=m)
                p = self.predict_details(d)
                rows.append({"year": y, "mileage": m, "price": p.price, "lo": p.price_interval[0], "hi": p.price_interval[1]})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ internals
    def _photo_only(self, brands: dict[str, float], other: float, car_score: float) -> PricePrediction:
        warnings = ["Priced from the photo alone: the make is estimated and the year, mileage and engine are "
                    "unknown, so this is a wide, rough estimate. Add details for a real valuation."]
        if other > 0.5:
            warnings.append(f"The car looks like a make outside the nine listing brands ({other:.0%}); the price "
                            "uses the closest listing brands.")
        total = sum(brands.values())
        mix = {b: p / total for b, p in brands.items() if p / total >= 0.05} if total > 0 else {}
        rows, weights = [], []
        for b, p in mix.items():
            r, w, _ = self._prototypes(CarDetails(brand=b))
            rows.append(r); weights.append(w * p)
        price, lo, hi = self._pooled(pd.concat(rows, ignore_index=True), np.concatenate(weights))
        lo, hi = self._widened(price, lo, hi, OPTIONAL_FIELDS)
        top = max(brands, key=brands.get) if brands else None
        return PricePrediction(price, (lo, hi), True, car_score, brands, tuple(warnings),
                               {"brand": top} if top else {}, tuple(OPTIONAL_FIELDS))

    def _widened(self, price: float, lo: float, hi: float, filled: list[str]) -> tuple[float, float]:
        """Widen a pooled interval by the factor that gave 80 % coverage on validation listings
        with the same fields missing (or, for an unseen pattern, the widest factor of patterns
        missing at least as many fields)."""
        factors: dict = self.catalog.get("partial_interval_factors", {})
        if not filled or not factors:
            return lo, hi
        key = ",".join(sorted(filled))
        factor = factors.get(key)
        if factor is None:
            wider = [f for k, f in factors.items() if len(k.split(",")) >= len(filled)]
            factor = max(wider or factors.values())
        return price * (lo / price) ** factor, price * (hi / price) ** factor

    def _prototypes(self, d: CarDetails) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
        cat = self.catalog
        filled = [f for f in OPTIONAL_FIELDS if getattr(d, f) is None and not (f == "engine_size" and d.fuel == "Electric")]
        if d.model is not None:
            models, year_idx, n_combos = {d.model: 1.0}, [0, 1, 2, 3, 4], 8
        else:
            counts = cat["models"][d.brand]
            top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
            total = sum(n for _, n in top)
            models, year_idx, n_combos = {m: n / total for m, n in top}, [0, 2, 4], 4
        # Unknown mileage varies around the model's typical miles per year: low, typical, high.
        mileage_factors = [1.0] if d.mileage is not None else [0.5, 1.0, 1.7]
        rows, weights = [], []
        for model, w_model in models.items():
            proto = cat["prototypes"].get(model_key(d.brand, model))
            if proto is None:
                continue
            years = [d.year] if d.year is not None else [proto["years"][i] for i in year_idx]
            combos = [c for c in proto["combos"]
                      if (d.fuel is None or c[0] == d.fuel) and (d.transmission is None or c[1] == d.transmission)
                      and (d.engine_size is None or c[2] == d.engine_size)][:n_combos]
            if not combos:  # the given combination is rare: keep the given values, fill the rest
                combos = proto["combos"][:3]
            total = sum(c[3] for c in combos)
            for y in years:
                typical = proto["miles_per_year"] * max(0.5, cat["year_max"] + 0.5 - y)
                for f_m in mileage_factors:
                    miles = d.mileage if d.mileage is not None else typical * f_m
                    for fuel, trans, engine, n in combos:
                        rows.append({"brand": d.brand, "model": model, "year": y, "mileage": miles,
                                     "fuel": d.fuel or fuel, "transmission": d.transmission or trans,
                                     "engine_size": d.engine_size if d.engine_size is not None else engine,
                                     "mpg": d.mpg, "tax": d.tax})
                        weights.append(w_model * (n / total) / (len(years) * len(mileage_factors)))
        if not rows:
            raise InputError(f"No listings for {d.brand} {d.model or ''}".strip() + ".")
        df = pd.DataFrame(rows)
        w = np.asarray(weights, float)
        if len(df) > MAX_PROTOTYPES:
            keep = np.argsort(-w, kind="stable")[:MAX_PROTOTYPES]
            df, w = df.iloc[keep].reset_index(drop=True), w[keep]
        return df, w / w.sum(), filled

    def _pooled(self, rows: pd.DataFrame, weights: np.ndarray, papers: bool = False) -> tuple[float, float, float]:
        X = design_matrix(rows, self.catalog)
        if len(X) <= FAST_ROWS:  # a typical request: all trees at once in numpy (identical numbers)
            mid, lo, hi = (self._fast[k].predict(X) for k in ("point", "q10", "q90"))
        else:
            # Many prototype rows: sklearn, one thread per request (OpenMP start-up costs more than it
            # saves here, and concurrent visitors already keep the cores busy).
            with threadpool_limits(limits=1, user_api="openmp"):
                mid, lo, hi = self.point.predict(X), self.q10.predict(X), self.q90.predict(X)
        correction = self.correction
        if papers:
            shift = self._papers_fast.predict(design_matrix(rows, self.catalog, papers=True))
            given = ",".join(p for p in PAPERS if rows[p].notna().any())
            mid, lo, hi, correction = mid + shift, lo + shift, hi + shift, self.papers_correction[given]
        lo, hi = lo - correction, hi + correction
        if len(rows) == 1:
            return float(np.exp(mid[0])), float(np.exp(min(lo[0], mid[0]))), float(np.exp(max(hi[0], mid[0])))
        # Each prototype: a normal in log price matching its own 10/90 % interval; pool the mixture.
        sigma = np.maximum((hi - lo) / (2 * Z90), 1e-3)
        center = (hi + lo) / 2
        grid = np.linspace((center - 4 * sigma).min(), (center + 4 * sigma).max(), 2000)
        from math import sqrt
        z = (grid[:, None] - center[None, :]) / sigma[None, :]
        cdf = (0.5 * (1 + _erf(z / sqrt(2)))) @ weights
        q = lambda p: float(np.interp(p, cdf, grid))
        median = _weighted_median(mid, weights)
        return float(np.exp(median)), float(np.exp(min(q(0.1), median))), float(np.exp(max(q(0.9), median)))


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz-Stegun 7.1.26, |error| < 1.5e-7: avoids a SciPy dependency
    s = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-x * x)
    return s * y


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _replace(p: PricePrediction, **kw) -> PricePrediction:
    from dataclasses import replace
    return replace(p, **kw)


def load() -> CarModel:
    typed = load_card("car", verify=True)
    card, catalog = typed.raw, typed.runtime
    folder = task_dir("car")
    with open(folder / "price_models.pkl", "rb") as f:
        models = pickle.load(f)  # our own file, checked against card.json's sha256 above
    papers = None
    if PAPERS_FILE in card["files"]:
        with open(folder / PAPERS_FILE, "rb") as f:
            papers = pickle.load(f)  # checked against the card like the rest
    photo = load_for_inference(folder / "photo.keras")
    return CarModel(models, catalog, photo, card, papers)
