"""Train the chest X-ray model: MobileNetV2 fine-tuned with a 4-class head and a
CenterNet-style opacity head; then the probe member, the blend and the "is this a chest X-ray?" gate.

    python training/train_xray.py            # full run (about 1 h on 2 CPU cores)
    python training/train_xray.py --smoke    # a few steps on a few images, for tests
    python training/train_xray.py --finetuned STEM.weights.h5   # weights from finetune_xray.py (e.g. a GPU run)

Writes weights/xray/{model,probe,lungs}.{keras,tflite}, heads.npz, familiarity.npz and card.json. Stages:
the lung field first (train_lungs.py), since the network reads only the lung crop it finds; then the
fine-tuned member; then the probe member, the blend and the gate (xray_probe.py); last, the LiteRT
copies the app serves (export_xray_litert.py); both class heads refitted with the outside films of cxr_nih,
view-balanced (xray_outside.py); read the app's way for the temperature and the test figures
(xray_served_read.py). With ``--finetuned``, the lung
network that run read is kept (its sha256 is in the run's log). Splits are patient-wise where the
manifest has patient ids; the test split is only read once, at the very end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import ROOT, backbone_weights, require_data, seed_everything, sha256, softmax, write_card
from export_xray_litert import export_served
from finetune_xray import DEFAULT_LUNGS, GRID, STRIDE, finetune, member_inputs_of, preload_films
from train_lungs import add_lung_field
from xray_common import CLASS_WEIGHTS, build_model, classification_metrics, load_lung_model
from xray_probe import REUSE, add_probe_member, fit_head, ieee8023_accuracy
from xray_outside import outside_stage
from xray_served_read import served_stage

from demo_core.xray import labels as L
from demo_core.xray.model import LUNG_FILE
from demo_core.xray.boxes import boxes_in_window
from demo_core.xray.lung_prior import PRIOR_SIZE, boxes_in_crop, fit_prior, prior_pooled, uniform_share
from demo_core.xray.preprocess import (COMMON_DETAIL, CROP_DETAIL, INPUT_SIZE, LUNG_PASSES, to_model_input,
                                      window_in_image)
from demo_core.xray.split import load_manifest


# ----------------------------------------------------------------------------- model

def export_model(keras, train_model, prior: np.ndarray, head: tuple):
    """Inference graph: softmax probabilities from the lung-pooled head, heat map, sizes, CAM features."""
    from keras import layers

    from demo_core.xray.keras_layers import LungPriorPooling
    o = train_model.output
    dense = layers.Dense(len(L.CLASSES), name="lung_class_logits")
    logits = dense(LungPriorPooling(prior, name="lung_pooled")(o["features"]))
    dense.set_weights([head[0].astype(np.float32), head[1].astype(np.float32)])
    probs = layers.Softmax(name="probabilities")(logits)
    return keras.Model(train_model.input, {"probabilities": probs, "heatmap": o["heatmap"],
                                           "box_size": o["box_size"], "features": o["features"]}, name="xray_inference")


# ----------------------------------------------------------------------------- metrics

def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def average_precision(preds_per_image, gts_per_image, thr=0.5) -> float:
    """VOC-style all-point AP; images without ground truth contribute false positives only."""
    scored = []
    n_gt = sum(len(g) for g in gts_per_image)
    for preds, gts in zip(preds_per_image, gts_per_image):
        used = [False] * len(gts)
        for box, score in sorted(preds, key=lambda t: -t[1]):
            best, bi = 0.0, -1
            for j, g in enumerate(gts):
                v = iou(box, g)
                if v > best and not used[j]:
                    best, bi = v, j
            hit = best >= thr
            if hit:
                used[bi] = True
            scored.append((score, hit))
    if n_gt == 0:
        return float("nan")
    scored.sort(key=lambda t: -t[0])
    tp = np.cumsum([h for _, h in scored])
    fp = np.cumsum([not h for _, h in scored])
    rec = tp / n_gt
    prec = tp / np.maximum(tp + fp, 1e-9)
    mrec = np.concatenate([[0], rec, [1]])
    mpre = np.concatenate([[0], prec, [0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


# ----------------------------------------------------------------------------- main

def film_inputs(data: Path, df: pd.DataFrame, lung_model) -> dict:
    """The films once, at 224 px with their lung windows and lung crops (for training), and the
    validation and test films as the app's fine-tuned member reads them."""
    t0 = time.time()
    films = {"pre": preload_films(data, df, lung_model), "tr": df[df.split == "train"], "va": df[df.split == "val"],
             "te": df[df.split == "test"]}
    films["xva"], films["xte"] = (member_inputs_of(films["pre"], films[k].index) for k in ("va", "te"))
    print(f"loaded in {time.time() - t0:.0f}s", flush=True)
    return films


def fine_tuned_member(keras, args, df: pd.DataFrame, films: dict):
    """(model, validation history, how it was trained): trained here, or weights trained elsewhere by the same recipe."""
    if args.finetuned:  # e.g. on a GPU machine
        model = build_model(keras)
        model.load_weights(args.finetuned)
        run_log = run_log_of(args.finetuned)
        history, args.epochs, args.batch, args.lr = run_log["history"], run_log["epochs"], run_log["batch"], run_log["lr"]
        trained_on = f"{run_log['backend']} backend on {run_log.get('device', 'an unrecorded device')}, " \
                     f"{run_log['epochs_run']} of {run_log['epochs']} epochs " \
                     f"(finetune_xray.py, seed {run_log['seed']})"
        if run_log.get("init"):
            first = run_log["init"]
            trained_on += f", started from a first cycle of {first['epochs_run']} epochs (seed {first['seed']})"
            history = [{**h, "cycle": 1} for h in first["history"]] + [{**h, "cycle": 2} for h in history]
        return model, history, trained_on
    model, history = finetune(df, films["pre"], films["xva"], epochs=args.epochs, batch=args.batch, lr=args.lr,
                              log=lambda m: print(m, flush=True))
    return model, history, f"tensorflow backend, {args.epochs} epochs (train_xray.py)"


def predictor(keras, model, prior: np.ndarray, head: tuple | None = None):
    """x -> class probabilities, heat map, box sizes and lung-pooled features (for the class head), in batches of
    64. Without ``head``, the probabilities are the training graph's own."""
    def predict(x):
        outs = {"p": [], "h": [], "s": [], "lp": []}
        for i in range(0, len(x), 64):
            o = {k: keras.ops.convert_to_numpy(v) for k, v in model(x[i:i + 64], training=False).items()}
            lp = prior_pooled(o["features"], prior)
            outs["p"].append(softmax(o["class_logits"] if head is None else lp @ head[0] + head[1]))
            outs["h"].append(o["heatmap"]); outs["s"].append(o["box_size"])
            outs["lp"].append(lp)
        return {k: np.concatenate(v) for k, v in outs.items()}
    return predict


# ----------------------------------------------------------------------------- stage: the lungs in the crop

def lung_prior_stage(films: dict) -> tuple[np.ndarray, dict]:
    """The lung prior (``demo_core.xray.lung_prior``) from the training films' drawn lung boxes, placed in the
    windows the lung network found for them; and what an even map would put inside the validation films' boxes."""
    def masks(part: pd.DataFrame) -> list[np.ndarray]:
        out = []
        for i, row in part.iterrows():
            boxes = json.loads(row.lung_boxes) if isinstance(row.lung_boxes, str) else []
            s = COMMON_DETAIL
            common = [[b[0] * s / row.width, b[1] * s / row.height, b[2] * s / row.width, b[3] * s / row.height]
                      for b in boxes]
            if common:
                out.append(boxes_in_crop(common, films["pre"][i][2]))
        return out
    train_masks, val_masks = masks(films["tr"]), masks(films["va"])
    prior = fit_prior(train_masks)
    report = {"n_train_films": len(train_masks), "size": PRIOR_SIZE,
              "val_uniform_share_in_lung_boxes": float(np.mean([m.mean() for m in val_masks])) if val_masks else None,
              "val_prior_share_in_lung_boxes": float(np.mean([uniform_share(prior, m) for m in val_masks]))
              if val_masks else None}
    print("lung prior", json.dumps(report), flush=True)
    return prior, report


GATE_LIMITATION = ("The gate was trained against photos, documents and synthetic images only. DICOM files whose "
                   "modality or body part says they are not a chest radiograph are refused by it, but a plain film "
                   "of another body part saved as PNG or JPEG may pass.")
LUNG_HEAD_C = (0.0005, 0.002, 0.01)  # smaller C, stronger L2: the features come from films the trunk learnt


def lung_pooled_head(predict, films: dict, smoke: bool) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
    """The fine-tuned member's class head refitted on its lung-pooled features (trunk frozen): the probe's
    logistic regression (``xray_probe.fit_head``: standardisation folded into the weights, so the graph's head reads
    the pooled features as they are) on the training films, indeterminate x3, C chosen by validation accuracy +
    macro AUC."""
    from sklearn.metrics import roc_auc_score
    tr, va = films["tr"], films["va"]
    y_tr = tr.y.to_numpy()
    x_tr = predict(member_inputs_of(films["pre"], tr.index))["lp"]
    x_va = predict(films["xva"])["lp"]
    # fit_head weighs the films to a mean of 1; LUNG_HEAD_C is on the scale of unnormalised class weights
    c_scale = float(CLASS_WEIGHTS[y_tr].mean())
    best, tried = None, []
    for c in LUNG_HEAD_C:
        w, b = fit_head(x_tr, y_tr, c * c_scale, standardise=True)
        p = softmax(x_va @ w + b)
        acc = float((p.argmax(1) == va.y.to_numpy()).mean())
        auc = float(roc_auc_score(va.y, p, multi_class="ovr", labels=range(len(L.CLASSES)))) \
            if va.y.nunique() == len(L.CLASSES) else None  # a smoke run lacks a class
        tried.append({"C": c, "val_accuracy": acc, "val_macro_auc": auc})
        score = acc + (auc or 0.0)
        if best is None or score > best[0]:
            best = (score, c, (w, b))
    print("lung-pooled head", json.dumps(tried), flush=True)
    return best[2], {"C": best[1], "tried": tried, "fitted_on": "training films, trunk frozen"}


def opacity_ap(out: dict, part: pd.DataFrame, pre: dict) -> tuple[float, int]:
    """AP@0.5 of the decoded boxes, in film pixels, on the films whose opacities were drawn (or are true
    negatives)."""
    mask = part.det_valid.to_numpy()
    # the boxes the member found in its lung crop, in the film's pixels, as the app draws them
    preds = [boxes_in_window(out["h"][k, ..., 0], out["s"][k], window_in_image(pre[i][2], (row.width, row.height)),
                             threshold=0.05)
             for k, (i, row) in enumerate(part.iterrows()) if mask[k]]
    return average_precision(preds, [b for b, m_ in zip(part.boxes, mask) if m_]), int(mask.sum())


def test_read(predict, films: dict) -> dict:
    """The single read of the test split: the member's classes per source, opacity AP."""
    te = films["te"]
    o = predict(films["xte"])
    test_metrics = classification_metrics(te.y.to_numpy(), o["p"], te.source.to_numpy())
    test_metrics["opacity_ap50"], test_metrics["opacity_eval_images"] = opacity_ap(o, te, films["pre"])
    print(json.dumps(test_metrics, indent=1), flush=True)
    return test_metrics


def build_card(args, df: pd.DataFrame, trained_on: str, history: list, val_ap: float, test_metrics: dict,
               baselines: dict) -> dict:
    return {
        "name": "Chest X-ray: SIIM study class, opacity boxes, chest X-ray gate",
        "task": "xray", "version": "1.0.0" if not args.smoke else "smoke",
        "architecture": "MobileNetV2 (ImageNet, fine-tuned, BatchNorm frozen) reading the lung crop at 224x224; "
                        "logistic head on its 7x7 features pooled with the lung prior; CenterNet-style opacity "
                        "head (14x14 heat map + box size) on a 2-level feature pyramid; attention = class activation "
                        "map weighted by the lung prior "
                        "(equal to Grad-CAM for a weighted-pooling + linear head).",
        "labels": L.CLASSES,
        "input": {"size": [INPUT_SIZE, INPUT_SIZE], "channels": "grayscale replicated to 3",
                  "resize": f"lung field found by lungs.keras on the film squashed to {COMMON_DETAIL} px, in "
                            f"{LUNG_PASSES} looks; the field with a 6 % margin cut from the film, brought to the common "
                            f"detail of {CROP_DETAIL} px a side, histogram-equalised, resized to 224 px",
                  "scaling": "x / 127.5 - 1",
                  "formats": "PNG, JPEG, WebP, BMP, TIFF, DICOM (windowed, MONOCHROME1 inverted)"},
        "decoding": {"stride": STRIDE, "grid": GRID, "peak": "3x3 local maximum", "top_k": 10,
                     "default_score_threshold": 0.3, "gate_threshold": 0.5},
        "training_data": {"dataset": "shared/data/cxr (2,939 frontal radiographs from 8 public sources; "
                                     "labels mapped to SIIM classes from diagnoses, see its README)",
                          "split": "70/15/15 by patient id where the source has one (otherwise by image), "
                                   "stratified by source x label, seed 0",
                          "counts": {s: df[df.split == s].label.value_counts().to_dict() for s in ("train", "val", "test")},
                          "augmentation": "lung window moved (4 % shift, 90-110 % size), contrast/brightness/gamma, "
                                          "down-up resampling, blur, JPEG quality 30-90, noise, all at the common "
                                          "detail; full-resolution sources sampled 2x",
                          "class_weights": dict(zip(L.CLASSES, CLASS_WEIGHTS.tolist()))},
        "training": {"epochs": args.epochs, "batch": args.batch, "optimizer": "AdamW, cosine, warm-up",
                     "lr": args.lr, "run": trained_on, "selected_by": "validation accuracy + macro AUC", "history": history},
        "validation": {"opacity_ap50": val_ap},
        "metrics": {"test": test_metrics},
        "baselines": baselines,
        "targets": {"accuracy": 0.85, "macro_auc": 0.93, "ieee8023_accuracy": 0.65, "opacity_ap50": 0.40,
                    "gate_xray_accepted": 0.98, "gate_photos_refused": 0.99},
        "limitations": [
            "Labels are mapped from source diagnoses (COVID-19 -> typical, bacterial -> atypical, ...), not read by "
            "radiologists; 'indeterminate' has only 39 images in the whole set.",
            "Opacity boxes were learned only from COVID-QU-Ex infection masks (256 px films), and are found "
            "only inside the lung crop.",
            "Sources differ in style and class mix: accuracy per source is reported and differs widely.",
            GATE_LIMITATION,
            "The attention map lies mostly in the lungs by design: both members pool with a lung prior, which alone "
            "puts most of an even map's weight inside the drawn lung boxes (the robustness section gives the share). "
            "Within the lungs the map is a coarse guide (one cell per 32 px of each member's input), not a locator "
            "of findings.",
            "Not a medical device. Not for clinical use."],
        "license": "Weights derived from data of mixed licences, several non-commercial (see shared/data/cxr "
                   "README); MobileNetV2 ImageNet weights Apache-2.0 / MIT. Demo and research use only.",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--smoke", action="store_true", help="tiny run for tests; writes to --out")
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "xray")
    ap.add_argument("--reuse-features", action="store_true", help="the probe's features from the last full run's "
                    "cache (.devdata/probe_features: they depend on the films and the lung network only)")
    ap.add_argument("--lungs", type=Path, help="with --finetuned: the lung network that run read (default: the "
                    "shipped one)")
    ap.add_argument("--finetuned", type=Path, help="STEM.weights.h5 from finetune_xray.py (with STEM.json): skip "
                    "training, export and evaluate those weights")
    args = ap.parse_args()
    REUSE["on"], REUSE["write"] = args.reuse_features and not args.smoke, not args.smoke
    seed_everything(0)
    import keras

    data = require_data()
    df = load_manifest(data, smoke=args.smoke)
    if args.smoke:
        args.epochs, args.batch = 1, 8
    print(df.groupby(["split", "label"]).size().unstack(fill_value=0), flush=True)
    previous = None if args.smoke or not (args.out / "card.json").is_file() else \
        json.loads((args.out / "card.json").read_text())
    lung_model = lung_field_stage(args, df, data)
    films = film_inputs(data, df, lung_model)
    model, history, trained_on = fine_tuned_member(keras, args, df, films)
    prior, prior_report = lung_prior_stage(films)
    head, head_report = lung_pooled_head(predictor(keras, model, prior), films, args.smoke)
    predict = predictor(keras, model, prior, head)
    val_ap, _ = opacity_ap(predict(films["xva"]), films["va"], films["pre"])
    test_metrics = test_read(predict, films)
    # Baselines on the same test split: majority class and the frozen ImageNet linear probe.
    baselines = {"always_typical_accuracy": float((films["te"].y == L.CLASSES.index("typical")).mean())}
    if not args.smoke:
        baselines["imagenet_linear_probe_whole_film"] = linear_probe_baseline(keras, films["te"], films["tr"],
                                                                              films["pre"])
    export_model(keras, model, prior, head).save(args.out / "model.keras")
    card = build_card(args, df, trained_on, history, val_ap, test_metrics, baselines)
    card["lung_prior"] = {**prior_report, "class_head": head_report}
    card["lung_field"] = json.loads((args.out / "card.json").read_text())["lung_field"]
    card["metrics"].update(carried_history(previous))
    write_card(args.out, card)
    # The class probabilities ship as a blend with a frozen-ImageNet probe that reads the same lung crop.
    add_probe_member(args.out, df, data, smoke=args.smoke)
    export_served(args.out)  # what the app reads: LiteRT copies, checked against these Keras files
    # both heads refitted with the outside films, view-balanced (reads the served trunks; exports again)
    outside_stage(args.out, data, smoke=args.smoke, reuse=args.reuse_features)
    served_stage(args.out, df, data, smoke=args.smoke)  # the temperature and the test figures of what the app serves
    print("wrote", args.out, flush=True)


def carried_history(previous: dict | None) -> dict:
    """What the card being replaced knew that a new card must keep: every earlier test read, its own among them
    (with its robustness), and the robustness of the design shipped before the robustness work began."""
    if not previous or "ensemble" not in previous:
        return {}
    m, e = previous["metrics"], previous["ensemble"]
    reads = list(m.get("earlier_test_reads", []))
    rob = m.get("robustness", {})
    member = "lung-crop" if "lung field" in previous.get("input", {}).get("resize", "") else "whole-film"
    pooling = ", both pooled with the lung prior" if "lung_prior" in previous else ""
    removed = e.get("probe_removed_export_directions")
    blind = f", the probe blind to {removed} export directions" if removed else ""
    framed = f", {len(e['framings'])} framings averaged" if e.get("framings") else ""
    gate = ", the gate on the probe's features" if "features" in m.get("gate", {}) else ""
    reads.append({
        "design": f"lung probe ({e['probe_input_size']} px, {e['probe_features']}) blended with the {member} "
                  f"fine-tuned member at weight {e['finetuned_weight']:g}{pooling}{blind}{framed}{gate}",
        "accuracy": m["test"]["accuracy"], "macro_auc": m["test"]["macro_auc"],
        "ieee8023_accuracy": ieee8023_accuracy(m["test"]),
        "ece": m["test"].get("ece"), "opacity_ap50": m["test"].get("opacity_ap50"),
        "min_agreement": min((r["agreement"] for r in rob.get("transforms", [])), default=None),
        "max_mean_tv": max((r["mean_tv"] for r in rob.get("transforms", [])), default=None),
        "attention_in_lungs": rob.get("attention_in_lungs", {}).get("mean_share_inside_lung_boxes"),
        "gate_chest_xrays_accepted": m.get("gate", {}).get("test_chest_xrays_accepted"),
        "gate_others_refused": m.get("gate", {}).get("test_negatives_refused"),
        "note": "shipped until the next design replaced it"})
    earlier = dict(m.get("robustness_earlier", {}))
    first = next((r for r in reads if r["design"].startswith("whole-film probe")), None)
    if earlier and first and "accuracy" not in earlier:  # the figures the robustness work is measured against
        earlier.update(accuracy=first["accuracy"], macro_auc=first["macro_auc"])
    return {"earlier_test_reads": reads, "robustness_earlier": earlier,
            "robustness_previous": {**rob, "design": reads[-1]["design"]}}


def lung_field_stage(args, df: pd.DataFrame, data: Path):
    """Empty ``args.out`` and put the lung network in it: the one the ``--finetuned`` run read (checked by its
    sha256), or one trained now. Its figures go into the card either way."""
    kept = None
    if args.finetuned:
        lungs = args.lungs or DEFAULT_LUNGS
        wanted = run_log_of(args.finetuned).get("lungs_sha256")
        if wanted != sha256(lungs):
            raise SystemExit(f"{lungs} is not the lung network the fine-tuning run read (sha256 {wanted})")
        kept = lungs.read_bytes()
    args.out.mkdir(parents=True, exist_ok=True)
    for f in args.out.glob("*"):
        f.unlink()
    if kept is None:
        return add_lung_field(args.out, df, data, smoke=args.smoke)
    (args.out / LUNG_FILE).write_bytes(kept)
    return add_lung_field(args.out, df, data, smoke=args.smoke, model=load_lung_model(args.out / LUNG_FILE))


def run_log_of(weights: Path) -> dict:
    return json.loads(weights.with_name(weights.name.removesuffix(".weights.h5") + ".json").read_text())


def linear_probe_baseline(keras, te, tr, pre):
    from sklearn.linear_model import LogisticRegression
    base = keras.applications.MobileNetV2(input_shape=(INPUT_SIZE, INPUT_SIZE, 3), include_top=False,
                                          pooling="avg", weights=str(backbone_weights()))
    # the whole film at 224 px, as the first version of the app read it
    xtr = np.stack([to_model_input(pre[i][0]) for i in tr.index])
    ftr = base.predict(xtr, batch_size=64, verbose=0)
    fte = base.predict(np.stack([to_model_input(pre[i][0]) for i in te.index]), batch_size=64, verbose=0)
    clf = LogisticRegression(C=0.5, max_iter=3000).fit(ftr, tr.y)
    return classification_metrics(te.y.to_numpy(), clf.predict_proba(fte), te.source.to_numpy())


if __name__ == "__main__":
    main()
