"""How far to trust a figure measured on a few held-out examples."""

from __future__ import annotations

from math import sqrt


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
