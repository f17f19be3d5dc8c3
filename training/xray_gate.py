"""The "is this a chest X-ray?" gate: a logistic regression on the probe's lung-pooled ImageNet features.

The gate used to read the fine-tuned member's pooled features. That trunk learnt from films only, so a photo or a
page lands where its training never looked; ImageNet features tell a film from a photo, a screenshot or a page far
better (cross-validated on the training images: 11 of 2,637 non-films let through with the member's features,
none with the probe's; docs/experiments.md, 2026-12-03). The probe computes these features for every upload
anyway, so the gate costs one dot product.

Chosen by cross-validation on the training films and the training negatives only (``gate_data``); the
validation films say how many chest films it lets through, the negatives' test part (never fitted on) how many
others it refuses.
"""

from __future__ import annotations

import json
import warnings

import numpy as np

GATE_C = (0.001, 0.01, 0.1)  # L2 strength on standardised features; the cross-validation chooses
GATE_FOLDS = 5
GATE_THRESHOLD = 0.5  # the card's decoding.gate_threshold: a film is accepted at or above it
FEATURES = "the probe's lung-pooled ImageNet features (every block and the last layer)"


def fit_gate(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """(weights, bias) over the raw pooled features, standardisation folded in; ``y``: 1 for a chest film. The two
    kinds of image weigh alike, however many of each there are."""
    from sklearn.linear_model import LogisticRegression
    mean, scale = x.mean(0), x.std(0) + 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence notes on tiny smoke sets
        clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit((x - mean) / scale, y)
    w = (clf.coef_[0] / scale).astype(np.float32)
    return w, float(clf.intercept_[0] - mean @ w)


def gate_scores(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ w + b)))


def cross_validated(x: np.ndarray, y: np.ndarray, c: float) -> dict:
    """Out-of-fold error rates at one C: chest films refused, other images accepted."""
    from sklearn.model_selection import StratifiedKFold
    folds = min(GATE_FOLDS, int(np.bincount(y.astype(int)).min()))
    scores = np.zeros(len(y))
    for fit_rows, held in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
        scores[held] = gate_scores(x[held], *fit_gate(x[fit_rows], y[fit_rows], c))
    accepted = scores >= GATE_THRESHOLD
    return {"C": c, "chest_films_refused": float((~accepted[y == 1]).mean()),
            "other_images_accepted": float(accepted[y == 0].mean())}


def gate_stage(x_films: np.ndarray, x_others: np.ndarray, x_others_test: np.ndarray, x_val: np.ndarray,
               x_test: np.ndarray, description: str) -> tuple[tuple[np.ndarray, float], dict]:
    """Choose C by cross-validation (fewest errors of both kinds, the strongest L2 on a tie), fit on all the
    training images, and report: validation and test films accepted, the negatives' test part refused."""
    x = np.concatenate([x_films, x_others])
    y = np.concatenate([np.ones(len(x_films), int), np.zeros(len(x_others), int)])
    tried = [cross_validated(x, y, c) for c in GATE_C]
    best = min(tried, key=lambda t: (t["chest_films_refused"] + t["other_images_accepted"], t["C"]))
    w, b = fit_gate(x, y, best["C"])
    report = {"features": FEATURES, "C": best["C"], "cross_validation": tried, "threshold": GATE_THRESHOLD,
              "train_films_n": int(len(x_films)), "train_negatives_n": int(len(x_others)),
              "val_chest_xrays_accepted": float((gate_scores(x_val, w, b) >= GATE_THRESHOLD).mean()),
              "test_chest_xrays_accepted": float((gate_scores(x_test, w, b) >= GATE_THRESHOLD).mean()),
              "test_negatives_refused": float((gate_scores(x_others_test, w, b) < GATE_THRESHOLD).mean()),
              "test_negatives_n": int(len(x_others_test)),
              "negatives": description}
    print("gate", {k: v for k, v in report.items() if k != "negatives"}, flush=True)
    return (w, b), report


def held_out_sources(x_films: np.ndarray, film_sources: np.ndarray, x_others: np.ndarray, x_every: np.ndarray,
                     every_source: np.ndarray, c: float) -> dict:
    """For each source, the gate refitted without its training films, and the share of all its films (every split)
    accepted: would a hospital the gate never saw get its films through?"""
    out = {}
    for source in sorted(set(every_source)):
        keep = film_sources != source
        x = np.concatenate([x_films[keep], x_others])
        y = np.concatenate([np.ones(int(keep.sum()), int), np.zeros(len(x_others), int)])
        scores = gate_scores(x_every[every_source == source], *fit_gate(x, y, c))
        out[str(source)] = {"n": int(scores.size), "accepted": float((scores >= GATE_THRESHOLD).mean())}
    print("gate, sources held out", json.dumps(out), flush=True)
    return out
