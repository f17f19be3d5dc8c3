"""How far to trust a figure measured on a few held-out examples."""

from __future__ import annotations

from math import sqrt

import numpy as np


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % (by default) Wilson score interval for a proportion of ``successes`` out of ``n``.

    Unlike the normal approximation it stays inside [0, 1] and behaves for the 5-film sources and for
    accuracies of 1.0, which the cards have.
    """
    if n <= 0:
        return 0.0, 1.0
    p = min(max(successes / n, 0.0), 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float]:
    """``wilson_interval`` for an accuracy as the cards store it (a fraction of ``n`` examples)."""
    return wilson_interval(round(accuracy * n), n)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    p = np.asarray(p)
    conf, pred = p.max(1), p.argmax(1)
    right = (pred == np.asarray(y)).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(right[inside].mean() - conf[inside].mean())
    return float(ece)


def tempered(p: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (..., classes) tempered as softmax(log p / T) along the last axis: T > 1 softens, T < 1
    sharpens, the top class is kept. Temperature scaling, fitted on validation, calibrates the demos' classes."""
    z = np.log(np.clip(p, 1e-12, None)) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


TEMPERATURE_GRID = np.round(np.exp(np.linspace(np.log(0.5), np.log(4.0), 43)), 3)


def fit_temperature(y: np.ndarray, p: np.ndarray) -> float:
    """The temperature on ``TEMPERATURE_GRID`` with the smallest negative log-likelihood of labels ``y`` under
    ``p`` (n, classes)."""
    return fit_temperature_to_sets(np.eye(p.shape[1], dtype=bool)[np.asarray(y).astype(int)], p)


def fit_temperature_to_sets(allowed: np.ndarray, p: np.ndarray) -> float:
    """``fit_temperature`` for labels that may be sets of classes: ``allowed`` (n, classes) is True where a label
    allows the class (a report's "pneumonia" allows every abnormal class); the likelihood is their summed
    probability."""
    nll = [-np.log((tempered(p, t) * allowed).sum(1) + 1e-12).mean() for t in TEMPERATURE_GRID]
    return float(TEMPERATURE_GRID[int(np.argmin(nll))])
