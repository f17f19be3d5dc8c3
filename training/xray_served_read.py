"""The last X-ray stage: the served model, read as the app reads films.

The probe's stage (``xray_probe.py``) chose its head, the blend weight and a first temperature from the Keras
graphs' probabilities on one framing of the lung crop. The app reads the film through LiteRT and averages
the probe's probabilities over every framing of ``preprocess.FRAMINGS`` (``model.FRAMINGS_READ_BY``). This
stage reads the validation films that way to fit the temperature again, measures how the served answer holds
under the validation exports (the films the probe's rule read), and then reads the test split once: the card's
test figures are the served model's, and the one-framing figures stay beside them.

    python training/xray_served_read.py        # after train_xray.py or export_xray_litert.py: about 4 min
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from common import ROOT, require_data, write_card
from xray_common import classification_metrics, film_grays
from xray_probe import architecture, ieee8023_accuracy, robustness_subset

from demo_core.stats import expected_calibration_error, fit_temperature, tempered
from demo_core.xray.model import FRAMINGS_READ_BY, XrayModel, load
from demo_core.xray.preprocess import FRAMINGS, framings_in_words
from demo_core.xray.robustness import MAX_MEAN_TV, MIN_AGREEMENT, TRANSFORMS, stability
from demo_core.xray.split import load_manifest


def served_members(model: XrayModel, grays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each member's class probabilities as the app computes them (``XrayModel.framed_forward``): (n, 4) twice."""
    finetuned, probe = [], []
    for gray in grays:
        crops, _ = model.read_lungs(gray)
        _, a, b = model.framed_forward(crops)
        finetuned.append(a)
        probe.append(b)
    return np.stack(finetuned), np.stack(probe)


def calibrate_on_validation(model: XrayModel, val: pd.DataFrame, grays: list[np.ndarray], smoke: bool) -> dict:
    """The temperature fitted on the served validation answers, and those answers' accuracy and stability."""
    raw = model.mixed(*served_members(model, grays))
    y = val.y.to_numpy()
    t = fit_temperature(y, raw)
    metrics = classification_metrics(y, tempered(raw, t), val.source.to_numpy())
    subset = robustness_subset(len(grays))
    base = tempered(raw[subset], t)
    rows = []
    for transform in TRANSFORMS[:2] if smoke else TRANSFORMS:
        moved = served_members(model, [transform.apply(grays[i]).gray() for i in subset])
        rows.append(stability(transform.name, base, tempered(model.mixed(*moved), t)))
    report = {"temperature": t, "accuracy": metrics["accuracy"], "macro_auc": metrics["macro_auc"],
              "min_agreement": min(r.agreement for r in rows), "max_mean_tv": max(r.mean_tv for r in rows),
              "per_transform": {r.transform: {"agreement": r.agreement, "mean_tv": r.mean_tv} for r in rows},
              "meets_targets": all(r.agreement >= MIN_AGREEMENT and r.mean_tv <= MAX_MEAN_TV for r in rows)}
    print("served validation", json.dumps({k: v for k, v in report.items() if k != "per_transform"}), flush=True)
    return report


def test_read(model: XrayModel, test: pd.DataFrame, grays: list[np.ndarray], t: float) -> tuple[dict, dict]:
    """The single served read of the test split: the blend (with its calibration) and each member alone."""
    members = served_members(model, grays)
    y, sources = test.y.to_numpy(), test.source.to_numpy()
    raw = model.mixed(*members)
    blend = classification_metrics(y, tempered(raw, t), sources)
    blend["ece"] = expected_calibration_error(y, tempered(raw, t))
    blend["ece_before_calibration"] = expected_calibration_error(y, raw)
    alone = {"finetuned": classification_metrics(y, members[0], sources),
             "lung_probe": classification_metrics(y, members[1], sources)}
    print("served test", json.dumps({k: blend[k] for k in ("accuracy", "macro_auc", "ece")}), flush=True)
    return blend, alone


def served_stage(folder: Path, df: pd.DataFrame, data: Path, smoke: bool = False) -> dict:
    """Recalibrate the served model on validation, read the test split once, and rewrite the card."""
    model = load(folder)
    val, test = df[df.split == "val"], df[df.split == "test"]
    calibration = calibrate_on_validation(model, val, film_grays(data, val), smoke)
    blend, members = test_read(model, test, film_grays(data, test), calibration["temperature"])
    card = json.loads((folder / "card.json").read_text())
    card.pop("files", None)
    metrics, ensemble = card["metrics"], card["ensemble"]
    test = metrics["test"]
    if "test_one_framing" in metrics:  # an earlier served reading of these weights: its read stays in the card
        metrics.setdefault("earlier_test_reads", []).append(served_read_replaced(card))
    else:  # the probe stage's read: the same blend before the framings
        metrics["test_one_framing"] = {
            "what": "the same blend read on the test split from the Keras graphs, one framing, the probe stage's "
                    "temperature: the figures before the framings were averaged",
            "temperature": ensemble["temperature"],
            **{k: test[k] for k in ("accuracy", "macro_auc", "ece", "ece_before_calibration") if k in test},
            "members": {k: {"accuracy": v["accuracy"], "macro_auc": v["macro_auc"]}
                        for k, v in metrics.get("test_members", {}).items()}}
    test.update(blend)
    metrics["test_members"] = members
    ensemble["framings"] = list(FRAMINGS)
    ensemble["framings_read_by"] = FRAMINGS_READ_BY
    ensemble["framings_described"] = framings_in_words()
    ensemble["temperature"] = calibration["temperature"]
    ensemble["temperature_fitted_on"] = "validation films read as the app reads them (LiteRT, with the framings)"
    ensemble["validation_served"] = calibration
    card["architecture"] = architecture(ensemble)
    write_card(folder, card)
    return card


def served_read_replaced(card: dict) -> dict:
    """The served reading a re-run replaces, as an earlier test read: its accuracy, calibration and robustness."""
    m, e = card["metrics"], card["ensemble"]
    rows = m.get("robustness", {}).get("transforms", [])
    return {"design": f"the same weights, {e.get('framings_read_by', 'both members')} averaged over "
                      f"{len(e['framings'])} framings, temperature {e['temperature']:g}",
            "accuracy": m["test"]["accuracy"], "macro_auc": m["test"]["macro_auc"],
            "ieee8023_accuracy": ieee8023_accuracy(m["test"]), "ece": m["test"].get("ece"),
            "min_agreement": min((r["agreement"] for r in rows), default=None),
            "max_mean_tv": max((r["mean_tv"] for r in rows), default=None),
            "note": "read on the test split, then replaced by the reading the card describes"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "xray")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    data = require_data()
    served_stage(args.out, load_manifest(data, smoke=args.smoke), data, smoke=args.smoke)


if __name__ == "__main__":
    main()
