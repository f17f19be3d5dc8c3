"""How unlike the training films a film is: distance in the probe's feature space.

The probe's pooled features are standardised, projected on their first
principal components (whitened), and a film's score is its mean distance to
its ``k`` nearest training films, relative to how far apart those training
films themselves lie (a local-outlier ratio: a film among a source's spread-out
full-resolution films is as familiar as one in the dense cluster of small
films), divided by the median score of held-out films from the training
sources.  So 1.0 is a typical familiar film, and the threshold above which the
page warns is chosen on sources held out entirely (``training/xray_probe.py``,
leave-one-source-out).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

FAMILIARITY_FILE = "familiarity.npz"
COMPONENTS = 48
NEIGHBOURS = 10


@dataclass(frozen=True)
class FamiliarityIndex:
    mean: np.ndarray  # (d,) standardisation
    scale: np.ndarray  # (d,)
    components: np.ndarray  # (COMPONENTS, d), whitened rows
    reference: np.ndarray  # (n, COMPONENTS): the training films, projected
    typical: float  # median raw score of held-out familiar films
    threshold: float  # scores above this (in units of ``typical``) are unfamiliar
    local_scale: np.ndarray | None = None  # (n,) each training film's own mean distance to its neighbours

    def project(self, pooled: np.ndarray) -> np.ndarray:
        return ((np.atleast_2d(pooled) - self.mean) / self.scale) @ self.components.T

    def raw_scores(self, pooled: np.ndarray) -> np.ndarray:
        d = _distances(self.project(pooled), self.reference)
        nearest = np.argsort(d, axis=1)[:, :NEIGHBOURS]
        mean_distance = np.take_along_axis(d, nearest, axis=1).mean(1)
        if self.local_scale is None:
            return mean_distance
        return mean_distance / self.local_scale[nearest].mean(1)

    def scores(self, pooled: np.ndarray) -> np.ndarray:
        """Distance to the training films, 1.0 = a typical familiar film."""
        return self.raw_scores(pooled) / self.typical

    @classmethod
    def fit(cls, pooled: np.ndarray, familiar_held_out: np.ndarray, threshold: float = np.inf) -> FamiliarityIndex:
        """From the training films' pooled features; ``familiar_held_out`` (e.g. validation films of the same
        sources) sets the unit."""
        mean, scale = pooled.mean(0), pooled.std(0) + 1e-6
        z = (pooled - mean) / scale
        _, s, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
        k = min(COMPONENTS, len(s))
        components = vt[:k] / (s[:k, None] / np.sqrt(max(len(z) - 1, 1)) + 1e-6)
        reference = (z @ components.T).astype(np.float32)
        among = _distances(reference, reference)
        np.fill_diagonal(among, np.inf)  # a film is not its own neighbour
        among.sort(axis=1)
        index = cls(mean.astype(np.float32), scale.astype(np.float32), components.astype(np.float32), reference,
                    1.0, float(threshold), among[:, :NEIGHBOURS].mean(1).astype(np.float32))
        return replace(index, typical=float(np.median(index.raw_scores(familiar_held_out))))

    def with_threshold(self, threshold: float) -> FamiliarityIndex:
        return replace(self, threshold=float(threshold))

    def save(self, path: Path) -> None:
        extra = {} if self.local_scale is None else {"local_scale": self.local_scale}
        np.savez_compressed(path, mean=self.mean, scale=self.scale, components=self.components,
                            reference=self.reference, typical=self.typical, threshold=self.threshold, **extra)

    @classmethod
    def load(cls, path: Path) -> FamiliarityIndex:
        with np.load(path) as f:
            return cls(f["mean"], f["scale"], f["components"], f["reference"], float(f["typical"]),
                       float(f["threshold"]), f["local_scale"] if "local_scale" in f.files else None)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))
