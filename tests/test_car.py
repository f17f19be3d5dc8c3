"""Car price: plausible, monotone, validated, honest about what it does not know."""

from __future__ import annotations

import math

import pytest

from demo_core.errors import InputError

FIESTA = {"brand": "Ford", "model": "Fiesta", "year": 2017, "mileage": 30000, "fuel": "Petrol",
          "transmission": "Manual", "engine_size": 1.0}


def test_known_cars_price_in_a_plausible_range(car_model):
    fiesta = car_model.predict(FIESTA)
    assert 5_000 < fiesta.price < 15_000
    lo, hi = fiesta.price_interval
    assert lo <= fiesta.price <= hi
    x5 = car_model.predict({"brand": "BMW", "model": "X5", "year": 2019, "mileage": 15000, "fuel": "Diesel",
                            "transmission": "Automatic", "engine_size": 3.0})
    assert x5.price > 2 * fiesta.price


@pytest.mark.parametrize("car", [FIESTA, {**FIESTA, "year": 2016},
                                 {"brand": "BMW", "model": "3 Series", "year": 2018, "fuel": "Diesel",
                                  "transmission": "Automatic", "engine_size": 2.0},
                                 {"brand": "Volkswagen", "model": "Golf"}])  # the last one pools prototypes
def test_lower_mileage_never_means_a_lower_price(car_model, car):
    # The what-if chart draws exactly this: the price must not rise as the miles go up, anywhere on the axis.
    miles = [0, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 100_000, 150_000]
    prices = [car_model.predict({**car, "mileage": m}).price for m in miles]
    assert prices == sorted(prices, reverse=True)
    assert prices[0] > prices[-1]


@pytest.mark.parametrize("change, message", [
    ({"year": 2090}, "future"),
    ({"year": 1900}, "before"),
    ({"mileage": -5}, "negative"),
    ({"mileage": 5_000_000}, "plausible"),
    ({"engine_size": 0}, "electric"),
    ({"engine_size": 25}, "plausible"),
    ({"fuel": "Steam"}, "Unknown fuel"),
    ({"brand": "Trabant"}, "Unknown brand"),
    ({"year": "soon"}, "number"),
    ({"mileage": True}, "number"),
])
def test_impossible_values_get_clear_messages(car_model, change, message):
    with pytest.raises(InputError, match=message):
        car_model.predict({**FIESTA, **change})


def test_unknown_model_falls_back_to_the_brand_with_a_warning(car_model):
    r = car_model.predict({**FIESTA, "model": "Model T"})
    assert any("Model T" in w for w in r.warnings)
    assert r.price > 0


def test_fewer_details_give_a_wider_interval(car_model):
    full = car_model.predict(FIESTA)
    brand_only = car_model.predict({"brand": "Ford"})
    assert (brand_only.price_interval[1] - brand_only.price_interval[0]) > (full.price_interval[1] - full.price_interval[0])
    assert "year" in brand_only.filled_in


def test_a_car_photo_alone_gets_a_price_and_a_make(car_model, car_photo):
    r = car_model.predict_request({"image": str(car_photo)})
    d = r.to_dict()
    assert d["is_car"] is True and d["price"] > 0 and d["brand_from_image"]
    assert d["price_interval"][0] < d["price"] < d["price_interval"][1]


def test_a_not_car_photo_is_refused(car_model, data_dir):
    import csv
    rows = list(csv.DictReader(open(data_dir / "cars" / "images.csv")))
    interior = next(r for r in rows if r["is_car"] == "0" and "int_" in r["file"])
    r = car_model.predict_request({"image": str(data_dir / "cars" / interior["file"])})
    assert r.is_car is False and r.price is None


def test_photo_disagreeing_with_the_form_is_flagged(car_model, data_dir):
    import csv
    rows = list(csv.DictReader(open(data_dir / "cars" / "images.csv")))
    bmws = [data_dir / "cars" / r["file"] for r in rows if r["brand"] == "BMW" and r["is_car"] == "1"][:5]
    flagged = [any("form says Ford" in w for w in car_model.predict(FIESTA, image=p).warnings) for p in bmws]
    assert any(flagged)


def test_schema_and_determinism(car_model):
    a, b = car_model.predict(FIESTA).to_dict(), car_model.predict(FIESTA).to_dict()
    assert a == b
    assert set(a) == {"price", "currency", "price_interval", "is_car", "brand_from_image", "warnings"}
    assert a["currency"] == "GBP" and a["is_car"] is None


def test_nothing_given_is_an_error(car_model):
    with pytest.raises(InputError):
        car_model.predict_request({})


def test_the_fast_tree_walker_equals_sklearn(car_model, data_dir):
    import numpy as np
    import pandas as pd
    from demo_core.car.fast_trees import FastTrees
    from demo_core.car.model import design_matrix
    df = pd.read_csv(data_dir / "cars" / "listings.csv").sample(500, random_state=3)
    df.loc[df.index[:50], "model"] = "Unknown model"  # unknown category -> missing branch
    df.loc[df.index[50:100], "engine_size"] = np.nan
    X = design_matrix(df, car_model.catalog)
    for trees in (car_model.point, car_model.q10, car_model.q90):
        assert np.allclose(FastTrees(trees).predict(X), trees.predict(X), rtol=0, atol=1e-9)


def test_a_car_the_listings_never_had_is_priced_with_a_warning(car_model):
    odd = car_model.predict({**FIESTA, "brand": "BMW", "model": "3 Series", "engine_size": 1.0})
    assert odd.price > 0 and any("1-litre engine" in w and "extrapolation" in w for w in odd.warnings)
    electric = car_model.predict({**FIESTA, "fuel": "Electric"})
    assert any("runs on electric" in w for w in electric.warnings)
    assert not any("extrapolation" in w for w in car_model.predict(FIESTA).warnings)


def test_typical_details_are_the_models_commonest_listing(car_model):
    assert car_model.typical_details("Ford", "Fiesta") == {"fuel": "Petrol", "transmission": "Manual",
                                                           "engine_size": 1.0, "year": 2017}
    assert car_model.typical_details("BMW", "3 Series")["fuel"] == "Diesel"
    assert car_model.typical_details("Ford", "Not a model") == {}
    # the commonest BMW i3 listing has no engine size recorded: the form keeps its own
    assert set(car_model.typical_details("BMW", "i3")) == {"fuel", "transmission", "year"}


def test_a_centre_crop_has_equal_margins_so_it_commutes_with_mirroring():
    import numpy as np
    from demo_core.car.photo import center_crop
    rgb = np.random.default_rng(0).integers(0, 255, (301, 448, 3), dtype=np.uint8)
    crop = center_crop(rgb, 0.85)
    assert abs(crop.shape[0] / 301 - 0.85) < 0.01 and abs(crop.shape[1] / 448 - 0.85) < 0.01
    assert np.array_equal(center_crop(rgb[:, ::-1], 0.85), crop[:, ::-1])
    assert center_crop(rgb, 1.0) is rgb and center_crop(rgb[:1, :1], 0.5).shape == (1, 1, 3)


def test_older_catalogs_without_crops_still_describe_their_views():
    import numpy as np
    from demo_core.car.photo import MakeViews
    assert MakeViews.from_catalog({"photo_make_flip_tta": True}) == MakeViews(1.0, True)
    assert MakeViews.from_catalog({"photo_make_views": {"center_crop": 0.85, "flip": True}}) == MakeViews(0.85, True)
    assert MakeViews.from_catalog({}).inputs(np.zeros((50, 80, 3), np.uint8)).shape == (1, 224, 224, 3)


def test_the_car_check_reads_the_whole_photo_whatever_the_make_reads(car_model, car_photo):
    from demo_core.car.photo import to_photo_input
    from demo_core.intake import load_image
    photo = load_image(car_photo.read_bytes())
    _, car_score, _, _ = car_model.photo_scores(photo)
    whole = float(car_model._photo(car_model._tf.constant(to_photo_input(photo.pixels)[None]))["is_car"].numpy()[0, 0])
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    # the score is that whole-photo probability, its logit divided by the calibration temperature
    assert logit(car_score) == pytest.approx(logit(whole) / car_model.car_temperature, abs=1e-3)


def test_the_photo_probabilities_are_calibrated_on_validation_and_measured_on_test():
    from demo_core.cards import read_card
    card = read_card("car")
    calibration = card["metrics"]["photo_calibration"]
    assert calibration["make"]["test_ece_after"] <= card["targets"]["photo_ece"]
    assert calibration["car_check"]["test_ece_after"] <= card["targets"]["photo_ece"]


def test_with_flip_averaging_a_mirrored_photo_gets_the_same_make(car_model, car_photo):
    import numpy as np
    from demo_core.intake import LoadedImage, load_image
    if not car_model.make_views.flip:
        pytest.skip("validation did not choose flip averaging for the shipped photo model")
    photo = load_image(car_photo.read_bytes())
    mirrored = LoadedImage(np.ascontiguousarray(photo.pixels[:, ::-1]), photo.source_format)
    _, _, brands, other = car_model.photo_scores(photo)
    _, _, brands_m, other_m = car_model.photo_scores(mirrored)
    assert abs(other - other_m) < 1e-3
    assert all(abs(brands[b] - brands_m[b]) < 1e-3 for b in brands)


FIESTA = {"brand": "Ford", "model": "Fiesta", "year": 2017, "mileage": 30_000, "fuel": "Petrol",
          "transmission": "Manual", "engine_size": 1.0}


def test_mpg_and_tax_from_the_advert_sharpen_the_price_and_leaving_them_out_changes_nothing(car_model):
    details_only = car_model.predict(FIESTA)
    assert car_model.predict({**FIESTA, "mpg": None, "tax": ""}).to_dict() == details_only.to_dict()
    # a 1.0 EcoBoost's listed 65.7 mpg and £145 against a thirsty, high-tax one: the figures move the price
    frugal = car_model.predict({**FIESTA, "mpg": 65.7, "tax": 0})
    thirsty = car_model.predict({**FIESTA, "mpg": 40.0, "tax": 265})
    assert frugal.price != details_only.price and thirsty.price != frugal.price
    for p in (frugal, thirsty):
        lo, hi = p.price_interval
        assert lo < p.price < hi and not any("ignored" in w for w in p.warnings)


def test_implausible_mpg_or_tax_gets_a_clear_error(car_model):
    from demo_core.errors import InputError
    for bad in ({"mpg": 900}, {"tax": -5}, {"mpg": "lots"}):
        with pytest.raises(InputError):
            car_model.predict({**FIESTA, **bad})


def test_the_card_reports_the_price_error_with_and_without_mpg_and_tax():
    from demo_core.cards import read_card
    card = read_card("car")
    with_both = next(t for t in card["metrics"]["with_papers"]["test"] if t["given"] == ["mpg", "tax"])
    assert with_both["mape"] <= card["targets"]["mape_with_mpg_and_tax"]
    assert with_both["mape"] < card["metrics"]["test"]["mape"]
    assert all(0.75 <= t["interval_coverage_80"] <= 0.85 for t in card["metrics"]["with_papers"]["test"])
