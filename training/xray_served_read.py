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
from xray_common import classification_metrics, film_grays, read_gray
from xray_probe import architecture, ieee8023_accuracy, robustness_subset, with_limitation

from demo_core.stats import expected_calibration_error, fit_temperature, tempered
from demo_core.xray.model import FRAMINGS_READ_BY, XrayModel, load
from demo_core.xray.outside import (MAX_VIEW_GAP, MIN_NORMAL_CALLED_NEGATIVE, MIN_PNEUMONIA_AUC, outside_report,
                                    read_films, view_of)
from demo_core.xray.preprocess import FRAMINGS, framings_in_words
from demo_core.xray.robustness import MAX_MEAN_TV, MIN_AGREEMENT, TRANSFORMS, stability
from demo_core.xray.split import load_manifest, load_outside_manifest


def served_members(model: XrayModel, grays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each member's class probabilities as the app computes them (``XrayModel.framed_forward``): (n, 4) twice."""
    finetuned, probe = [], []
    for gray in grays:
        crops, _ = model.read_lungs(gray)
        _, a, b = model.framed_forward(crops)
        finetuned.append(a)
        probe.append(b)
    return np.stack(finetuned), np.stack(probe)


def calibrate_on_validation(model: XrayModel, val: pd.DataFrame, grays: list[np.ndarray], smoke: bool,
                            temperature: float | None = None) -> dict:
    """The temperature fitted on the served validation answers (or ``temperature``, fitted by the stage before
    this one on films read the same way), and those answers' accuracy and stability."""
    raw = model.mixed(*served_members(model, grays))
    y = val.y.to_numpy()
    t = fit_temperature(y, raw) if temperature is None else temperature
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


def served_stage(folder: Path, df: pd.DataFrame, data: Path, smoke: bool = False,
                 earlier_outside: dict | None = None) -> dict:
    """Recalibrate the served model on validation, read the test split and the held-out outside films once, and
    rewrite the card. ``earlier_outside``: the replaced design's outside read (``bench/outside_hospital.py --json``)
    when its card has none, kept among the earlier reads."""
    model = load(folder)
    val, test = df[df.split == "val"], df[df.split == "test"]
    outside = load_outside_manifest(data, smoke=smoke)
    outside_test = outside[outside.split == "test"]
    card = json.loads((folder / "card.json").read_text())
    # xray_outside.py fitted the temperature on the NIH development films out of fold: those films are training
    # films of the shipped heads now, so it is not fitted here again
    fitted = card["ensemble"]["temperature"] if "outside_training" in card else None
    calibration = calibrate_on_validation(model, val, film_grays(data, val), smoke, fitted)
    test_grays = film_grays(data, test)
    blend, members = test_read(model, test, test_grays, calibration["temperature"])
    model.temperature = calibration["temperature"]  # the outside films are read as the app will read them
    blend["unfamiliar_share"] = float(read_films(model, test_grays)["unfamiliar"].mean())
    known_view = test[test.view.map(lambda v: view_of(v) is not None)]
    outside_read = outside_report(model, outside_test, outside_grays(data, outside_test), known_view,
                                  film_grays(data, known_view))
    print("served outside test", json.dumps(outside_read["table"]["no_finding_called_negative"]),
          json.dumps(outside_read["targets_met"]), flush=True)
    card.pop("files", None)
    metrics, ensemble = card["metrics"], card["ensemble"]
    test = metrics["test"]
    if test.pop("superseded", False):  # xray_outside.py kept the read of the heads it replaced
        pass
    elif "test_one_framing" in metrics:  # an earlier served reading of these weights: its read stays in the card
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
    card.get("familiarity", {})["test_films_flagged"] = blend["unfamiliar_share"]
    metrics["test_members"] = members
    if "outside_hospital" in metrics or earlier_outside:
        metrics.setdefault("earlier_outside_reads", []).append(
            metrics.get("outside_hospital") or {"design": "heads fitted on cxr/ alone", **earlier_outside})
    metrics["outside_hospital"] = {**outside_read, "design": outside_design(card), "labels_can_show": LABELS_CAN_SHOW}
    card["targets"].update(OUTSIDE_TARGETS)
    card["limitations"] = with_outside_limitation(card["limitations"], outside_read["table"])
    ensemble["framings"] = list(FRAMINGS)
    ensemble["framings_read_by"] = FRAMINGS_READ_BY
    ensemble["framings_described"] = framings_in_words()
    ensemble["temperature"] = calibration["temperature"]
    if fitted is None:
        ensemble["temperature_fitted_on"] = "validation films read as the app reads them (LiteRT, with the framings)"
    ensemble["validation_served"] = calibration
    card["architecture"] = architecture(ensemble) + outside_architecture(card)
    write_card(folder, card)
    return card


def served_read_replaced(card: dict) -> dict:
    """The served reading a re-run replaces, as an earlier test read: its accuracy, calibration and robustness."""
    m, e = card["metrics"], card["ensemble"]
    rows = m.get("robustness", {}).get("transforms", [])
    design = outside_design(card)
    return {"design": f"{design}; {e.get('framings_read_by', 'both members')} averaged over "
                      f"{len(e['framings'])} framings, temperature {e['temperature']:g}",
            "accuracy": m["test"]["accuracy"], "macro_auc": m["test"]["macro_auc"],
            "ieee8023_accuracy": ieee8023_accuracy(m["test"]), "ece": m["test"].get("ece"),
            "min_agreement": min((r["agreement"] for r in rows), default=None),
            "max_mean_tv": max((r["mean_tv"] for r in rows), default=None),
            "note": "read on the test split, then replaced by the reading the card describes"}


OUTSIDE_TARGETS = {"nih_no_finding_called_negative_ap": MIN_NORMAL_CALLED_NEGATIVE,
                   "nih_no_finding_called_negative_pa": MIN_NORMAL_CALLED_NEGATIVE,
                   "nih_pneumonia_auc": MIN_PNEUMONIA_AUC, "nih_normal_view_gap": MAX_VIEW_GAP}
LABELS_CAN_SHOW = (
    "NIH's labels were mined from reports. 'No Finding' maps to SIIM negative and is fairly clean, so the share of "
    "normal films called negative is a real measure. 'Pneumonia' is noisy (about half showed no airspace opacity "
    "on a radiologist's read) and never says which SIIM class an opacity would be: it can show whether the model "
    "ranks these films as more abnormal than normal ones (an AUC that label noise caps well below 1), never "
    "whether typical, indeterminate or atypical is right.")


OUTSIDE_LIMITATION_START = "On films from another hospital"


def with_outside_limitation(limitations: list[str], table: dict) -> list[str]:
    """The card's limitations with the outside-hospital line stated in figures (the X-ray page shows them)."""
    ap, pa = (table["no_finding_called_negative"][v] for v in ("AP", "PA"))
    line = (f"{OUTSIDE_LIMITATION_START} (NIH, {table['n']} held-out films), {ap['share']:.0%} of normal AP and "
            f"{pa['share']:.0%} of normal PA films were called negative, and 1 - P(negative) ranked report-labelled "
            f"pneumonia above normal films with an AUC of {table['pneumonia_auc']:.2f}: a normal film can still be "
            "called abnormal, and the answer's SIIM class was never checked on outside films (their labels do not "
            "give it).")
    return with_limitation(limitations, line, OUTSIDE_LIMITATION_START, at=3)


def outside_architecture(card: dict) -> str:
    """What xray_outside.py changed in the heads, in the architecture's words ("" when it did not run)."""
    chosen = card.get("outside_training", {}).get("chosen")
    if not chosen:
        return ""
    return (" Both class heads were then refitted (xray_outside.py) on the training films and the NIH development "
            f"films of cxr_nih (weighed {chosen['nih_weight']:g}x; 'Pneumonia' as one of the three abnormal classes), "
            "AP and PA films of each class weighing the same"
            + (", blind to the directions along which AP films differ from PA films of the same class"
               if chosen["view_blind"] else "")
            + "; a logistic regression on the probe's features estimates the view (AP or PA) for the bedside caution.")


def outside_grays(data: Path, part: pd.DataFrame) -> list[np.ndarray]:
    return [read_gray(data / p) for p in part.path]


def outside_design(card: dict) -> str:
    chosen = card.get("outside_training", {}).get("chosen")
    if not chosen:
        return "heads fitted on cxr/ alone"
    return (f"heads refitted with cxr_nih (NIH weight {chosen['nih_weight']:g}, view-balanced"
            f"{', view-blind' if chosen['view_blind'] else ''}), fine-tuned weight {chosen['finetuned_weight']:g}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "xray")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--earlier-outside", type=Path, help="bench/outside_hospital.py --json of the design being replaced, "
                    "when its card holds no outside read: kept among the earlier reads")
    args = ap.parse_args()
    data = require_data()
    earlier = json.loads(args.earlier_outside.read_text()) if args.earlier_outside else None
    served_stage(args.out, load_manifest(data, smoke=args.smoke), data, smoke=args.smoke, earlier_outside=earlier)


if __name__ == "__main__":
    main()
