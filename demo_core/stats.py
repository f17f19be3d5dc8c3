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
