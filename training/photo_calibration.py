"""Make a shown "Hyundai (99 %)" mean about 99 %: temperature-calibrate the car photo model's two answers.

The make head's probabilities (over the make classes) and the car / not-car check's probability each get
one temperature, fitted on the validation photos by negative log-likelihood, as the app reads them (the
chosen make views, the whole photo for the check). Dividing a logit by a temperature keeps every top class
and the check's 0.5 threshold, so accuracies are unchanged; only the confidence moves. The expected
calibration error is then measured on the test photos before and after.

    python training/photo_calibration.py          # about 2 min; writes the temperatures and the figures
    python training/photo_calibration.py --dry-run
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from common import ROOT, require_data, write_card
from photo_data import load_photos

from demo_core.intake import LoadedImage
from demo_core.stats import expected_calibration_error, fit_temperature, tempered

TARGET_ECE = 0.05


def raw_answers(model, imgs, rgb, split: str) -> dict[str, np.ndarray]:
    """The uncalibrated car probability and make probabilities of every photo of ``split``."""
    model.make_temperature = model.car_temperature = 1.0
    rows = np.where(imgs.split.to_numpy() == split)[0]
    car, make = zip(*(model.photo_probabilities(LoadedImage(rgb[i], "photo")) for i in rows))
    return {"rows": rows, "car": np.array(car), "make": np.stack(make)}


def make_labels(imgs, rows: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Car photos only (the make is shown for those): (which rows, index of their make class)."""
    make = imgs.make.to_numpy()[rows]
    keep = np.isin(make, classes)
    return keep, np.array([classes.index(m) for m in make[keep]])


def as_two_class(p_car: np.ndarray) -> np.ndarray:
    return np.stack([1 - p_car, p_car], axis=1)


def calibrate(model, imgs, rgb) -> dict:
    classes = model.make_classes
    val, test = raw_answers(model, imgs, rgb, "val"), raw_answers(model, imgs, rgb, "test")
    is_car = {s: imgs.is_car.to_numpy()[d["rows"]] for s, d in (("val", val), ("test", test))}
    keep_val, y_val = make_labels(imgs, val["rows"], classes)
    keep_test, y_test = make_labels(imgs, test["rows"], classes)
    t_make = fit_temperature(y_val, val["make"][keep_val])
    # the check's logit / T: the two-class form of the same temperature scaling
    t_car = fit_temperature(is_car["val"], as_two_class(val["car"]))
    p_make, p_car = test["make"][keep_test], as_two_class(test["car"])
    return {"make_temperature": t_make, "car_temperature": t_car,
            "make": {"n_test": int(keep_test.sum()), "classes": classes,
                     "test_ece_before": expected_calibration_error(y_test, p_make),
                     "test_ece_after": expected_calibration_error(y_test, tempered(p_make, t_make)),
                     "test_top1": float((p_make.argmax(1) == y_test).mean())},
            "car_check": {"n_test": int(len(test["car"])),
                          "test_ece_before": expected_calibration_error(is_car["test"], p_car),
                          "test_ece_after": expected_calibration_error(is_car["test"], tempered(p_car, t_car))},
            "fitted_on": "validation photos (negative log-likelihood); ECE: 15 equal-width confidence bins, test photos",
            "target_ece": TARGET_ECE}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    from demo_core.car.model import load
    model = load()
    imgs, rgb = load_photos(require_data(), smoke=False)
    result = calibrate(model, imgs, rgb)
    print(json.dumps(result, indent=1), flush=True)
    if args.dry_run:
        return
    folder = ROOT / "weights" / "car"
    catalog = json.loads((folder / "catalog.json").read_text())
    catalog.update({"photo_make_temperature": result["make_temperature"],
                    "photo_car_temperature": result["car_temperature"]})
    (folder / "catalog.json").write_text(json.dumps(catalog, indent=1, default=float))
    card = json.loads((folder / "card.json").read_text())
    card.pop("files", None)
    card["metrics"]["photo_calibration"] = result
    card["targets"]["photo_ece"] = TARGET_ECE
    write_card(folder, card)


if __name__ == "__main__":
    main()
