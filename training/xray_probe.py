"""Second X-ray class member: a linear head on frozen ImageNet MobileNetV2 features of the lungs.

The fine-tuned model (train_xray.py) gives the opacity boxes, the gate and one set of class
probabilities. The probe reads the film the way ``demo_core.xray.preprocess.LungReading`` says:
the lung field that ``train_lungs.py``'s network finds (in three looks), cut from the film and
brought to the common level of detail of the coarsest sources, histogram-equalised. Its head learns from the training films
and from random exports of them (JPEG, border crops, resampling, gamma: the transforms a film
meets between a hospital and the demo).

Chosen on validation, under a rule that counts robustness first: among the settings whose answer
survives every transform of ``demo_core.xray.robustness`` on the validation films (top class
agreement >= 0.95, mean total variation <= 0.05), the best accuracy + macro AUC; the probe's
input size, its features, C and the blend weight ``w`` (``w * fine-tuned + (1 - w) * probe``).
Then a temperature is fitted on validation (calibration), the familiarity index is built and its
threshold set on sources held out entirely, every source large enough is held out in turn
(leave-one-source-out), the chest X-ray gate is fitted on the chosen probe's features (xray_gate.py),
and the test split is read once.

    python training/xray_probe.py       # about 30 min on 2 CPU cores; rewrites probe.keras, familiarity.npz, card
    python training/xray_probe.py --smoke --out DIR   (DIR holds a smoke model.keras, lungs.keras and card.json)
    python training/xray_probe.py --gate-held-out-only   # the gate refitted without each source (cached features)

Run alone, it leaves the served copies behind: run export_xray_litert.py and xray_served_read.py after it, as
train_xray.py does, so that the app serves this probe and the card's temperature and test figures are its own.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from common import ROOT, backbone_weights, linear_rows, require_data, seed_everything, softmax, write_card
from xray_common import CLASS_WEIGHTS, Readings, classification_metrics, film_grays, read_lungs

from demo_core.bn_folding import fold_batch_norms
from demo_core.stats import expected_calibration_error, fit_temperature, wilson_interval
from demo_core.stats import tempered as calibrated
from demo_core.xray import labels as L
from demo_core.xray.familiarity import FAMILIARITY_FILE, FamiliarityIndex
from demo_core.xray.model import FRAMINGS_READ_BY, LUNG_FILE, PROBE_FILE
from demo_core.xray.preprocess import CROP_DETAIL, FRAMINGS, LUNG_PASSES, framings_in_words, probe_input
from demo_core.xray.robustness import MAX_MEAN_TV, MIN_AGREEMENT, TRANSFORMS, stability
from demo_core.xray.split import load_manifest

LAST = "out_relu"
DESIGNS = {
    "last_layer": {"layers": (LAST,), "standardise": False, "C": (0.01, 0.05, 0.2)},
    # every block's expanded features: 8,384 numbers, pooled from maps the forward pass computes anyway
    "all_blocks": {"layers": tuple(f"block_{i}_expand_relu" for i in range(1, 17)) + (LAST,),
                   "standardise": True, "C": (0.0005, 0.002, 0.005)},
}
# The crop is at the common detail (CROP_DETAIL px a side); a larger input lets each ImageNet feature see a
# smaller patch of lung. 384 px fits the speed target (bench/run.py: 5x faster than VGG19).
PROBE_SIZES = (224, 384)
SMOKE_SIZES = (224,)
W_GRID = tuple(round(w, 1) for w in np.arange(0.0, 1.01, 0.1))  # weight of the fine-tuned member
# How many of the directions an export moves the probe's features along its head ignores (0: none; validation
# chooses, with the rest of the grid).
REMOVED_DIRECTIONS = (0, 64)
EXPORTS_PER_FILM = 1  # a random export of each training film, beside the film itself
ROBUSTNESS_FILMS = 200  # validation films whose transformed copies the selection rule reads (all 433 cost 2x)
MIN_SOURCE_FILMS = 30  # sources held out in turn
MAX_FAMILIAR_FLAGGED = 0.2  # the unfamiliar-film caution may fire on at most this share of familiar films


# ----------------------------------------------------------------------------- stage: films and exports

def random_export(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The film as a hospital might export it: cut borders, another resolution, gamma, JPEG."""
    h, w = gray.shape
    if rng.random() < 0.5:
        f = rng.uniform(0.0, 0.08)
        gray = gray[round(h * f):h - round(h * f), round(w * f):w - round(w * f)]
    if rng.random() < 0.5:
        s = rng.uniform(200, 1600) / max(gray.shape)
        gray = cv2.resize(gray, (max(16, round(gray.shape[1] * s)), max(16, round(gray.shape[0] * s))),
                          interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        gray = np.clip(255.0 * (gray / 255.0) ** rng.uniform(0.75, 1.35), 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        gray = cv2.imdecode(cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 96))])[1], 0)
    return np.ascontiguousarray(gray)


def with_random_exports(grays: list[np.ndarray]) -> list[np.ndarray]:
    """The films, then ``EXPORTS_PER_FILM`` random exports of each (seed 0): the rows the probe's head learns from."""
    rng = np.random.default_rng(0)
    return grays + [random_export(g, rng) for _ in range(EXPORTS_PER_FILM) for g in grays]


def n_films_of(train_views: np.ndarray) -> int:
    """How many training films a row set of the films and their exports (films first) holds."""
    return len(train_views) // (EXPORTS_PER_FILM + 1)


def robustness_subset(n_val: int) -> np.ndarray:
    """The validation films whose transformed copies are read (the same ones for every setting)."""
    return np.sort(np.random.default_rng(0).permutation(n_val)[:ROBUSTNESS_FILMS])


def readings_of(lung_model, films: dict[str, list[np.ndarray]], df: dict[str, pd.DataFrame],
                smoke: bool) -> dict[str, Readings]:
    """Training films with their exports, validation films with every transform, test films as they are."""
    out = {"train": read_lungs(lung_model, with_random_exports(films["train"])),
           "val": read_lungs(lung_model, films["val"]),
           "test": read_lungs(lung_model, films["test"])}
    subset = robustness_subset(len(films["val"]))
    for t in TRANSFORMS[:2] if smoke else TRANSFORMS:
        out["val:" + t.name] = read_lungs(lung_model, [t.apply(films["val"][i]).gray() for i in subset])
    print("lung readings done", flush=True)
    return out


# ----------------------------------------------------------------------------- stage: features

def imagenet_backbone(keras, size: int):
    backbone = keras.applications.MobileNetV2(input_tensor=keras.Input((size, size, 3), name="image"),
                                              include_top=False, weights=None)
    backbone.load_weights(str(backbone_weights()))
    return backbone


def lung_pooling(prior: np.ndarray, layer: str):
    from demo_core.xray.keras_layers import LungPriorPooling
    return LungPriorPooling(prior, name=f"lung_pooled_{layer}")


def probe_backbone(keras, layer_names, size: int, prior: np.ndarray):
    """Frozen ImageNet MobileNetV2 reading ``size`` px crops: ``layer_names`` pooled with the lung prior
    (concatenated in that order) for the head and the familiarity index, and the last feature map for attention."""
    from keras import layers
    backbone = imagenet_backbone(keras, size)
    pooled = [lung_pooling(prior, n)(backbone.get_layer(n).output) for n in layer_names]
    pooled = pooled[0] if len(pooled) == 1 else layers.Concatenate()(pooled)
    return keras.Model(backbone.input, {"pooled": pooled, "features": backbone.get_layer(LAST).output})


def pooled_features(keras, readings: dict[str, Readings], size: int,
                    prior: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Reading set -> layer -> lung-prior-pooled features at ``size`` px (the served, folded graph)."""
    names = sorted({n for d in DESIGNS.values() for n in d["layers"]})
    backbone = imagenet_backbone(keras, size)
    model = fold_batch_norms(keras.Model(backbone.input, {n: lung_pooling(prior, n)(
        backbone.get_layer(n).output) for n in names}))
    out = {}
    for key, r in readings.items():
        parts = []
        for i in range(0, len(r.crops), 128):
            x = np.stack([probe_input(c, size) for c in r.crops[i:i + 128]])
            parts.append(model.predict(x, batch_size=4, verbose=0))  # small batches: 2x faster on 2 cores
        out[key] = {n: np.concatenate([p[n] for p in parts]) for n in names}
    print(f"features at {size} px done", flush=True)
    return out


CACHE = ROOT / ".devdata" / "probe_features"  # git-ignored; --reuse-features reads it instead of recomputing
REUSE = {"on": False, "write": False}


def cache_path(size: int, images: str = "features") -> Path:
    # The features depend on the lung reading (its looks and crop detail) and on the prior, which depends on the
    # lung network's windows too. ``images``: "features" for the films, "gate" for the gate's other images.
    return CACHE / f"{images}_{size}_lung_prior_looks{LUNG_PASSES}_crop{CROP_DETAIL}.npz"


def cached(size: int, compute, images: str = "features"):
    """The features at ``size`` px, from the cache when --reuse-features says so; always written back."""
    path = cache_path(size, images)
    if REUSE["on"] and path.is_file():
        with np.load(path) as f:
            flat = {k: f[k] for k in f.files}
        out: dict = {}
        for k, v in flat.items():
            key, layer = k.split("|")
            out.setdefault(key, {})[layer] = v
        return out
    feats = compute()
    if REUSE["write"]:  # full runs only: smoke runs (the tests) leave nothing behind
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"{k}|{n}": v for k, d in feats.items() for n, v in d.items()})
    return feats


def design_features(per_layer: dict[str, np.ndarray], design: str) -> np.ndarray:
    return np.concatenate([per_layer[n] for n in DESIGNS[design]["layers"]], axis=1)


# ----------------------------------------------------------------------------- stage: heads

def film_weights(y: np.ndarray) -> np.ndarray:
    """Indeterminate films x3, as in the fine-tuned member; mean 1."""
    w = CLASS_WEIGHTS[y].astype(np.float64)
    return w * len(w) / w.sum()


def standardiser(x: np.ndarray, standardise: bool) -> tuple[np.ndarray, np.ndarray]:
    if not standardise:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    return x.mean(0), x.std(0) + 1e-6


def export_directions(x: np.ndarray, n_films: int, standardise: bool) -> np.ndarray:
    """The feature directions along which a random export moves a training film, most first: (d, n_films) at
    most. ``x``'s rows are the training films (the first ``n_films``) and then one export of each, in order; the
    directions live in the head's own (standardised) space."""
    mean, scale = standardiser(x, standardise)
    z = (x - mean) / scale
    moves = z[:n_films] - z[n_films:2 * n_films]
    return np.linalg.svd(moves - moves.mean(0), full_matrices=False)[2].T.astype(np.float32)


def fit_head(x: np.ndarray, y: np.ndarray, c: float, standardise: bool,
             removed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression; standardisation is folded into the returned (weights, bias) so the exported
    head reads the raw pooled features. ``removed``: directions (d, k) of the standardised features the head must
    not read (an export's moves, ``export_directions``); they are projected out before fitting, and the weights
    come out orthogonal to them, so a film moved along them gets the same answer."""
    from sklearn.linear_model import LogisticRegression
    mean, scale = standardiser(x, standardise)
    z = (x - mean) / scale
    if removed is not None and removed.shape[1]:
        z = z - (z @ removed) @ removed.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence notes on tiny smoke sets
        clf = LogisticRegression(C=c, max_iter=3000).fit(z, y, sample_weight=film_weights(y))
    w, b = four_class_rows(clf)
    if removed is not None and removed.shape[1]:
        w = w - removed @ (removed.T @ w)
    w = w / scale[:, None].astype(np.float32)
    return w, (b - mean.astype(np.float32) @ w).astype(np.float32)


def four_class_rows(clf) -> tuple[np.ndarray, np.ndarray]:
    """(d, 4) weights and (4,) bias; a class absent from training (tiny smoke runs) gets no mass."""
    coef, icpt = linear_rows(clf)
    w = np.zeros((coef.shape[1], len(L.CLASSES)), np.float32)
    b = np.full(len(L.CLASSES), -30.0, np.float32)
    for row, k in enumerate(clf.classes_):
        w[:, int(k)], b[int(k)] = coef[row], icpt[row]
    return w, b


# ----------------------------------------------------------------------------- stage: choose on validation

def ieee8023_accuracy(m: dict) -> float | None:
    """Accuracy on the ieee8023 films (None when the split has none, e.g. tiny smoke runs)."""
    return m["accuracy_per_source"].get("ieee8023", {}).get("accuracy")


def meets_targets(m: dict, targets: dict) -> bool:
    """Whether validation metrics reach the card's accuracy and macro AUC targets."""
    return m["accuracy"] >= targets.get("accuracy", 0) and m["macro_auc"] >= targets.get("macro_auc", 0)


def robustness_on(p_original: np.ndarray, p_transformed: dict[str, np.ndarray]) -> list:
    return [stability(name, p_original, p) for name, p in p_transformed.items()]


def evaluate_setting(y, src, p_ft, p_probe, w: float) -> dict:
    """One blend on validation: calibrated, with its class metrics and its robustness."""
    blend = {k: w * p_ft[k] + (1 - w) * p_probe[k] for k in p_probe}
    t = fit_temperature(y, blend["val"])
    cal = {k: calibrated(p, t) for k, p in blend.items()}
    m = classification_metrics(y, cal["val"], src)
    subset = robustness_subset(len(y))
    rob = robustness_on(cal["val"][subset], {k.split(":", 1)[1]: p for k, p in cal.items() if k != "val"})
    return {"metrics": m, "temperature": t, "robust": all(r.meets_targets for r in rob),
            "min_agreement": min(r.agreement for r in rob), "max_mean_tv": max(r.mean_tv for r in rob),
            "per_transform": [r.to_dict() for r in rob]}


def rank_of(e: dict, targets: dict) -> tuple:
    """Robust first; among settings that are not, the smallest shortfall (to 0.01) before accuracy counts."""
    shortfall = max(0.0, MIN_AGREEMENT - e["min_agreement"]) + max(0.0, e["max_mean_tv"] - MAX_MEAN_TV)
    m = e["metrics"]
    return (e["robust"], -round(shortfall, 2), meets_targets(m, targets), m["accuracy"] + m["macro_auc"])


def choose(keras, readings, y, src_val, p_ft, targets, sizes, prior) -> tuple[dict, list, dict]:
    """The validation grid. ``readings()`` gives the films read the probe's way (only when features are not
    cached). Returns the chosen setting, the grid, and the chosen size's features."""
    grid, best, kept = [], None, {}
    for size in sizes:
        feats = cached(size, lambda: pooled_features(keras, readings(), size, prior))
        val_keys = [k for k in feats if k.startswith("val")]
        for design, spec in DESIGNS.items():
            x_tr = design_features(feats["train"], design)
            directions = export_directions(x_tr, n_films_of(y["train"]), spec["standardise"])
            for removed, c in ((r, c) for r in REMOVED_DIRECTIONS for c in spec["C"]):
                rows = fit_head(x_tr, y["train"], c, spec["standardise"], directions[:, :removed])
                p_probe = {k: softmax(design_features(feats[k], design) @ rows[0] + rows[1]) for k in val_keys}
                for w in W_GRID:
                    e = evaluate_setting(y["val"], src_val, p_ft, p_probe, w)
                    m = e["metrics"]
                    rank = rank_of(e, targets)
                    grid.append({"input_size": size, "features": design, "C": c, "finetuned_weight": w,
                                 "removed_export_directions": removed,
                                 "val_accuracy": m["accuracy"], "val_macro_auc": m["macro_auc"],
                                 "val_ieee8023_accuracy": ieee8023_accuracy(m), "temperature": e["temperature"],
                                 "val_min_agreement": e["min_agreement"], "val_max_mean_tv": e["max_mean_tv"],
                                 "val_robust": e["robust"], "val_meets_targets": rank[2]})
                    if best is None or rank > best["rank"]:
                        best = {"rank": rank, "size": size, "design": design, "C": c, "w": w, "rows": rows,
                                "removed": removed, "temperature": e["temperature"], "val": e}
            print(f"probe grid: {size} px {design} done; best so far {best['size']} px {best['design']} "
                  f"C={best['C']} w={best['w']} removed={best['removed']} rank={best['rank']}", flush=True)
            print("  per transform: " + json.dumps(best["val"]["per_transform"]), flush=True)
        if best["size"] == size:
            kept = feats
    return best, grid, kept


# ----------------------------------------------------------------------------- stage: familiarity

def held_out_sources(sources: np.ndarray) -> list[str]:
    names, counts = np.unique(sources, return_counts=True)
    return [str(s) for s, n in zip(names, counts) if n >= MIN_SOURCE_FILMS]


def originals(x_train: np.ndarray, n_films: int) -> np.ndarray:
    """The training films themselves (the first rows), without their exports."""
    return x_train[:n_films]


def familiarity_threshold(x_tr, src_tr, x_va, src_va, x_all, src_all, smoke: bool) -> tuple[float, dict]:
    """Hold each large source out: fit the index without it, score its films (unfamiliar) and the other
    sources' validation films (familiar); the threshold maximises the mean over held-out sources of
    (share of its films flagged - share of familiar films flagged), among the thresholds that flag at most
    ``MAX_FAMILIAR_FLAGGED`` of the familiar films: a caution shown on every third ordinary film means nothing."""
    folds = {}
    for s in held_out_sources(src_all):
        keep_tr, keep_va = src_tr != s, src_va != s
        if keep_tr.sum() < 20 or keep_va.sum() < 5:
            continue
        index = FamiliarityIndex.fit(x_tr[keep_tr], x_va[keep_va])
        folds[s] = (index.scores(x_all[src_all == s]), index.scores(x_va[keep_va]))
    if not folds:
        return (2.0 if smoke else np.inf), {}
    candidates = np.linspace(1.0, 4.0, 61)
    gain = np.array([np.mean([(u > t).mean() - (f > t).mean() for u, f in folds.values()]) for t in candidates])
    false_alarms = np.array([np.mean([(f > t).mean() for _, f in folds.values()]) for t in candidates])
    allowed = false_alarms <= MAX_FAMILIAR_FLAGGED
    t = float(candidates[int(np.argmax(np.where(allowed, gain, -np.inf)))] if allowed.any()
              else candidates[int(np.argmin(false_alarms))])
    per_source = {s: {"n": int(len(u)), "flagged": float((u > t).mean()),
                      "familiar_validation_flagged": float((f > t).mean())} for s, (u, f) in folds.items()}
    return t, per_source


# ----------------------------------------------------------------------------- stage: leave one source out

def leave_one_source_out(x_tr, y_tr, src_tr, x_all, y_all, src_all, best) -> dict:
    """The chosen probe refitted without each large source, read on every film of that source. The
    fine-tuned member is not retrained (an hour on this machine per source), so these are probe-only."""
    out = {}
    for s in held_out_sources(src_all):
        keep = src_tr != s
        if len(np.unique(y_tr[keep])) < 2:
            continue
        standardise = DESIGNS[best["design"]]["standardise"]
        removed = export_directions(x_tr[keep], n_films_of(y_tr[keep]), standardise)[:, :best["removed"]]
        rows = fit_head(x_tr[keep], y_tr[keep], best["C"], standardise, removed)
        p = calibrated(softmax(x_all[src_all == s] @ rows[0] + rows[1]), best["temperature"])
        right = int((p.argmax(1) == y_all[src_all == s]).sum())
        n = int((src_all == s).sum())
        labels = {L.CLASSES[k]: int((y_all[src_all == s] == k).sum()) for k in range(4) if (y_all[src_all == s] == k).any()}
        lo, hi = wilson_interval(right, n)
        out[s] = {"n": n, "accuracy": right / n, "interval_95": [lo, hi], "labels": labels,
                  "called": {L.CLASSES[k]: int((p.argmax(1) == k).sum()) for k in range(4)}}
        print(f"leave out {s}: {right}/{n} = {right / n:.3f} ({lo:.2f}-{hi:.2f})", flush=True)
    return out


# ----------------------------------------------------------------------------- stage: export

def export_probe(keras, backbone, w: np.ndarray, b: np.ndarray, gate: tuple[np.ndarray, float]):
    """The probe's inference graph: class probabilities, the gate's score, pooled features (familiarity) and the
    last feature map (attention)."""
    from keras import layers
    head = layers.Dense(len(L.CLASSES), name="probe_logits")
    logits = head(backbone.output["pooled"])
    head.set_weights([w.astype(np.float32), b.astype(np.float32)])
    gate_layer = layers.Dense(1, activation="sigmoid", name="is_chest_xray")
    is_chest_xray = gate_layer(backbone.output["pooled"])
    gate_layer.set_weights([gate[0].reshape(-1, 1).astype(np.float32), np.array([gate[1]], np.float32)])
    return keras.Model(backbone.input, {"probabilities": layers.Softmax(name="probabilities")(logits),
                                        "is_chest_xray": is_chest_xray,
                                        "features": backbone.output["features"],
                                        "pooled": backbone.output["pooled"]}, name="xray_probe")


def gate_of(keras, lung_model, data: Path, smoke: bool, best: dict, prior: np.ndarray, x: dict,
            n_train: int, src: dict) -> tuple[tuple[np.ndarray, float], dict]:
    """The chest X-ray gate on the chosen probe's features (``xray_gate``): the training films against photos,
    documents and generated images (``gate_data``), read the app's way; and refitted without each source."""
    from gate_data import gate_negatives  # training-only helpers
    from xray_gate import gate_stage
    train, test, description = gate_negatives(data, smoke=smoke)
    feats = cached(best["size"], lambda: pooled_features(
        keras, {"train": read_lungs(lung_model, train), "test": read_lungs(lung_model, test)}, best["size"], prior),
        images="gate")
    others = design_features(feats["train"], best["design"])
    gate, report = gate_stage(originals(x["train"], n_train), others, design_features(feats["test"], best["design"]),
                              x["val"], x["test"], description)
    report["held_out_sources"] = gate_held_out(x, src, n_train, others, report["C"])
    return gate, report


def gate_held_out(x: dict, src: dict, n_train: int, others: np.ndarray, c: float) -> dict:
    from xray_gate import held_out_sources
    return held_out_sources(originals(x["train"], n_train), src["train"], others,
                            np.concatenate([originals(x["train"], n_train), x["val"], x["test"]]),
                            np.concatenate([src["train"], src["val"], src["test"]]), c)


def refit_gate_held_out(folder: Path, df: pd.DataFrame) -> None:
    """Only the gate's held-out-source figures, from the features the last full run cached (seconds)."""
    card = json.loads((folder / "card.json").read_text())
    x, src = cached_films(card, df)
    others = design_features(cached_features(card, "gate")["train"], card["ensemble"]["probe_features"])
    gate = card["metrics"]["gate"]
    gate["held_out_sources"] = gate_held_out(x, src, int((df.split == "train").sum()), others, gate["C"])
    card.pop("files", None)
    write_card(folder, card)


def cached_features(card: dict, images: str = "features") -> dict:
    """The features the last full run cached for the card's probe size (the cache-only refits read them)."""
    size = card["ensemble"]["probe_input_size"]
    if not cache_path(size, images).is_file():
        raise SystemExit(f"no cached features in {CACHE}: run train_xray.py or xray_probe.py in full first")
    REUSE["on"] = True
    return cached(size, compute=None, images=images)


def cached_films(card: dict, df: pd.DataFrame) -> tuple[dict, dict]:
    """The films' cached features in the card's probe design, and their sources, per split."""
    feats = cached_features(card)
    x = {k: design_features(feats[k], card["ensemble"]["probe_features"]) for k in ("train", "val", "test")}
    return x, {s: df[df.split == s].source.to_numpy() for s in ("train", "val", "test")}


def summarise_grid(grid: list[dict]) -> dict:
    """The validation grid in the card: its size, and the best setting of each (size, features)."""
    best: dict[tuple, tuple] = {}
    for g in grid:
        key = (g["input_size"], g["features"])
        rank = (g["val_robust"], g["val_meets_targets"], g["val_accuracy"] + g["val_macro_auc"])
        if key not in best or rank > best[key][0]:
            best[key] = (rank, g)
    return {"settings_tried": len(grid), "settings_robust_on_validation": sum(g["val_robust"] for g in grid),
            "best_per_design_by": BEST_PER_DESIGN_BY,
            "best_per_design": [g for _, g in sorted(best.values(), key=lambda r: r[0], reverse=True)]}


BEST_PER_DESIGN_BY = ("validation accuracy + macro AUC within each (size, features), for comparison; the shipped "
                      "setting was ranked by robustness first (see selected_by)")


SOURCE_LIMITATION_STARTS = ("Sources differ in style", "Accuracy differs by source", "On a source it never saw")


def with_source_limitation(limitations: list[str], loso: dict) -> list[str]:
    """The card's limitations with the unseen-source line stated in figures (doctors read it on the X-ray page)."""
    if not loso:
        return limitations
    worst = min(loso, key=lambda k: loso[k]["accuracy"])
    best = max(loso, key=lambda k: loso[k]["accuracy"])
    line = (f"On a source it never saw, the lung probe's accuracy ranged from {loso[worst]['accuracy']:.2f} ({worst}, "
            f"{loso[worst]['n']} films) to {loso[best]['accuracy']:.2f} ({best}, {loso[best]['n']} films) when that "
            "source was held out of training. Films from other hospitals, scanners or exports may fare as badly; "
            "a film far from every training film gets a caution beside its answer.")
    return with_limitation(limitations, line, SOURCE_LIMITATION_STARTS, at=2)


def with_limitation(limitations: list[str], line: str, replaces: str | tuple[str, ...], at: int) -> list[str]:
    """The card's limitations with ``line`` at position ``at``, in place of any earlier line that starts with
    ``replaces`` (a retrained model states its figures again)."""
    kept = [x for x in limitations if not x.startswith(replaces)]
    return kept[:at] + [line] + kept[at:]


def architecture(ensemble: dict) -> str:
    size, w = ensemble["probe_input_size"], ensemble["finetuned_weight"]
    return (
        f"Two MobileNetV2 members, both reading only the lungs: a small CNN finds the lung field in {LUNG_PASSES} "
        "looks (each next one at the film cut to the last field), the field with a margin is cut from the film, "
        f"brought to the common detail of the coarsest sources ({CROP_DETAIL} px a side) and histogram-equalised. "
        "Both members pool their feature maps with the lung prior: each point of the crop weighs as the share of "
        "training films whose drawn lung boxes cover it, so the mediastinum, shoulders, corners and abdomen count "
        "little. Fine-tuned member (ImageNet start, BatchNorm frozen) reading that crop at 224x224: logistic head on "
        "its lung-pooled 7x7 features (refitted with the trunk frozen), CenterNet-style opacity head (14x14 heat map "
        "+ box size). Frozen ImageNet probe reading the same "
        f"crop at {size}x{size}: logistic regression on the lung-pooled features of "
        f"{'every block and the last layer (standardised)' if ensemble['probe_features'] == 'all_blocks' else 'the last layer'}"
        ", trained on the training films and a random export of each"
        + (f", blind to the {ensemble['probe_removed_export_directions']} feature directions those exports move the "
           "films along most" if ensemble.get("probe_removed_export_directions") else "") + ". "
        "The chest X-ray gate: a logistic regression on the probe's pooled features (photos, pages and generated "
        "images against the training films). "
        f"Class probabilities = softmax(log({w:g} x fine-tuned + {1 - w:g} x probe) / {ensemble['temperature']:g}), "
        f"{FRAMINGS_READ_BY}'s probabilities averaged over {len(FRAMINGS)} framings of the lung crop "
        f"({framings_in_words()}) (weight, framings and temperature chosen on validation). "
        "Attention = each member's class activation map weighted "
        "by the same prior, placed on the lung crop. Both networks are served with their batch norms folded into "
        "the convolutions.")


# ----------------------------------------------------------------------------- the whole step

def add_probe_member(folder: Path, df: pd.DataFrame, data: Path, smoke: bool = False) -> dict:
    """Fit, choose and export the probe member next to ``folder/model.keras`` and ``folder/lungs.keras``;
    complete the card."""
    import keras

    import demo_core.xray.keras_layers  # noqa: F401  (registers the lung-prior pooling that model.keras holds)
    finetuned = keras.models.load_model(folder / "model.keras", compile=False)
    prior = finetuned.get_layer("lung_pooled").prior  # one prior for both members
    lung_model = keras.models.load_model(folder / LUNG_FILE, compile=False)
    parts = {s: df[df.split == s] for s in ("train", "val", "test")}
    films = {s: film_grays(data, parts[s]) for s in parts}
    y = {s: parts[s].y.to_numpy() for s in parts}
    y["train_views"] = np.tile(y["train"], EXPORTS_PER_FILM + 1)
    src = {s: parts[s].source.to_numpy() for s in parts}
    memo: dict = {}

    def readings() -> dict[str, Readings]:
        if "r" not in memo:
            memo["r"] = readings_of(lung_model, films, parts, smoke)
        return memo["r"]

    def finetuned_probabilities(r: Readings) -> np.ndarray:
        x = r.member_inputs()
        return np.concatenate([keras.ops.convert_to_numpy(finetuned(x[i:i + 64], training=False)["probabilities"])
                               for i in range(0, len(x), 64)])
    # the validation and test films, and the validation films after each transform, as the member reads them
    p_ft = {k: finetuned_probabilities(r) for k, r in readings().items() if k != "train"}

    card = json.loads((folder / "card.json").read_text())
    targets = card.get("targets", {})
    best, grid, feats = choose(keras, readings, {"train": y["train_views"], "val": y["val"]}, src["val"], p_ft,
                               targets, SMOKE_SIZES if smoke else PROBE_SIZES, prior)
    size, design, w, t = best["size"], best["design"], best["w"], best["temperature"]
    print(f"chosen: {design} at {size} px, C={best['C']}, fine-tuned weight {w}, temperature {t}, "
          f"validation rank {best['rank']}", flush=True)

    x = {k: design_features(v, design) for k, v in feats.items()}
    n_train = len(parts["train"])
    index, per_source_flags = familiarity_stage(x, src, n_train, smoke)
    threshold = index.threshold
    x_all = np.concatenate([originals(x["train"], n_train), x["val"], x["test"]])
    src_all = np.concatenate([src["train"], src["val"], src["test"]])
    y_all = np.concatenate([y["train"], y["val"], y["test"]])
    src_views = np.tile(src["train"], EXPORTS_PER_FILM + 1)
    loso = leave_one_source_out(x["train"], y["train_views"], src_views, x_all, y_all, src_all, best)

    # ---- the single test read, for the chosen blend (and both members, for the card)
    p_probe_te = softmax(x["test"] @ best["rows"][0] + best["rows"][1])
    raw = w * p_ft["test"] + (1 - w) * p_probe_te
    blend = classification_metrics(y["test"], calibrated(raw, t), src["test"])
    blend["ece"] = expected_calibration_error(y["test"], calibrated(raw, t))
    blend["ece_before_calibration"] = expected_calibration_error(y["test"], raw)
    blend["unfamiliar_share"] = float((index.scores(x["test"]) > threshold).mean())
    members = {"finetuned": classification_metrics(y["test"], p_ft["test"], src["test"]),
               "lung_probe": classification_metrics(y["test"], p_probe_te, src["test"])}
    print(json.dumps({k: blend[k] for k in ("accuracy", "macro_auc", "ece", "ece_before_calibration")}), flush=True)

    gate, gate_report = gate_of(keras, lung_model, data, smoke, best, prior, x, n_train, src)
    export_probe(keras, probe_backbone(keras, DESIGNS[design]["layers"], size, prior),
                 *best["rows"], gate).save(folder / PROBE_FILE)
    index.save(folder / FAMILIARITY_FILE)
    write_probe_card(folder, card, best, blend, members, grid, loso, per_source_flags, index, gate_report)
    return card


def familiarity_stage(x: dict, src: dict, n_train: int, smoke: bool) -> tuple[FamiliarityIndex, dict]:
    """The familiarity index on the training films, its threshold set by holding sources out."""
    x_all = np.concatenate([originals(x["train"], n_train), x["val"], x["test"]])
    src_all = np.concatenate([src["train"], src["val"], src["test"]])
    index = FamiliarityIndex.fit(originals(x["train"], n_train), x["val"])
    threshold, per_source_flags = familiarity_threshold(originals(x["train"], n_train), src["train"], x["val"],
                                                        src["val"], x_all, src_all, smoke)
    return index.with_threshold(threshold), per_source_flags


def refit_familiarity(folder: Path, df: pd.DataFrame) -> None:
    """Only the familiarity index and its threshold, from the features the last full run cached (seconds)."""
    card = json.loads((folder / "card.json").read_text())
    x, src = cached_films(card, df)
    index, flags = familiarity_stage(x, src, int((df.split == "train").sum()), smoke=False)
    index.save(folder / FAMILIARITY_FILE)
    share = float((index.scores(x["test"]) > index.threshold).mean())
    card["metrics"]["test"]["unfamiliar_share"] = share
    card["familiarity"] = familiarity_section(index, flags, share)
    card.pop("files", None)
    write_card(folder, card)
    print(json.dumps(card["familiarity"], indent=1))


def familiarity_section(index: FamiliarityIndex, flags: dict, test_share: float) -> dict:
    """The card's account of the familiarity index: what it measures, its threshold and how it was set."""
    return {"what": "mean distance to the 10 nearest training films in the probe's standardised, whitened "
                    "48-component feature space, divided by those films' own mean distance to their neighbours (a "
                    "local-outlier ratio), in units of a typical validation film",
            "threshold": index.threshold,
            "threshold_set_by": "leave-one-source-out: the threshold that maximises the mean over held-out sources "
                                "of (their films flagged - familiar validation films flagged), among those flagging "
                                f"at most {MAX_FAMILIAR_FLAGGED:.0%} of the familiar validation films",
            "held_out_sources": flags,
            "test_films_flagged": test_share}


def write_probe_card(folder, card, best, blend, members, grid, loso, flags, index, gate_report) -> None:
    card.pop("files", None)
    card.pop("date", None)  # the class probabilities changed today
    test = card["metrics"]["test"]
    if "ensemble" in card:  # the blend shipped before was read on test too: keep its figures beside the new ones
        e = card["ensemble"]
        card["metrics"].setdefault("earlier_test_reads", []).append({
            "design": f"probe at {e.get('probe_input_size')} px ({e.get('probe_features')}, C={e.get('probe_C')}), "
                      f"fine-tuned weight {e.get('finetuned_weight')}",
            "accuracy": test["accuracy"], "macro_auc": test["macro_auc"],
            "ieee8023_accuracy": ieee8023_accuracy(test), "note": "shipped until the current design replaced it"})
    test.update(blend)  # opacity AP and counts stay: the box head is unchanged
    card["metrics"]["test_members"] = members
    card["metrics"]["leave_one_source_out"] = {
        "what": "the chosen probe head refitted on the training films of every other source and read on all films "
                "of the held-out source; the fine-tuned member is not retrained (about 40 minutes per source on 2 "
                "CPU cores), so these are probe-only. The lung-field network did see ieee8023 and COVID-QU-Ex lung "
                "boxes (anatomy, no classes).",
        "sources": loso}
    card["ensemble"] = {"finetuned_weight": best["w"], "probe_C": best["C"], "probe_features": best["design"],
                        "probe_removed_export_directions": best["removed"],
                        "probe_input_size": best["size"], "probe_layers": list(DESIGNS[best["design"]]["layers"]),
                        "probe_standardised": DESIGNS[best["design"]]["standardise"],
                        "probe_reading": f"lung crop at the common detail ({CROP_DETAIL} px), histogram-equalised",
                        "probe_exports_per_film": EXPORTS_PER_FILM,
                        "temperature": best["temperature"],
                        "selected_by": "validation: first the settings whose calibrated answer meets the robustness "
                                       f"targets on every transform (agreement >= {MIN_AGREEMENT}, mean TV <= "
                                       f"{MAX_MEAN_TV}), else the smallest shortfall from them (to 0.01); then those "
                                       "meeting the accuracy and macro AUC targets, then best accuracy + macro AUC",
                        "validation_robust": bool(best["rank"][0]),
                        "validation_meets_targets": bool(best["rank"][2]),
                        "validation": {"accuracy": best["val"]["metrics"]["accuracy"],
                                       "macro_auc": best["val"]["metrics"]["macro_auc"],
                                       "min_agreement": best["val"]["min_agreement"],
                                       "max_mean_tv": best["val"]["max_mean_tv"],
                                       "per_transform": best["val"]["per_transform"]},
                        "validation_grid": summarise_grid(grid)}
    card["familiarity"] = familiarity_section(index, flags, blend["unfamiliar_share"])
    card["metrics"]["gate"] = gate_report
    card["training_data"]["gate_negatives"] = gate_report["negatives"]
    card["architecture"] = architecture(card["ensemble"])
    card["limitations"] = with_source_limitation(card.get("limitations", []), loso)
    card["input"]["probe_reading"] = (f"lung field from lungs.keras ({LUNG_PASSES} looks), cut from the film with "
                                      f"a 6 % margin, brought to {CROP_DETAIL} px (INTER_AREA when shrinking), "
                                      f"histogram equalisation, bilinear resize to {best['size']} px")
    write_card(folder, card)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "xray")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--reuse-features", action="store_true", help="read the features cached by the last run")
    ap.add_argument("--gate-held-out-only", action="store_true",
                    help="refit only the gate without each source in turn (card figures), from the cached features")
    ap.add_argument("--familiarity-only", action="store_true",
                    help="refit only the familiarity index and its threshold, from the cached features")
    args = ap.parse_args()
    if args.gate_held_out_only:
        return refit_gate_held_out(args.out, load_manifest(require_data()))
    if args.familiarity_only:
        return refit_familiarity(args.out, load_manifest(require_data()))
    REUSE["on"], REUSE["write"] = args.reuse_features and not args.smoke, not args.smoke
    seed_everything(0)
    data = require_data()
    add_probe_member(args.out, load_manifest(data, smoke=args.smoke), data, smoke=args.smoke)


if __name__ == "__main__":
    main()
