"""Which split a chest film belongs to: one rule for training, the benchmarks and the tests.

Patient-wise where the manifest has patient ids (otherwise by image), 70 / 15 / 15, stratified by
source x label, seed 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as L


def source_of(file: str) -> str:
    return Path(file).name.split("_", 1)[0]


def load_manifest(data: Path, smoke: bool = False) -> pd.DataFrame:
    """``data/cxr/manifest.csv`` with source, class index, detection mask and split; ``smoke``: 24 films per split."""
    df = pd.read_csv(data / "cxr" / "manifest.csv")
    df["source"] = df["file"].map(source_of)
    df["y"] = df["label"].map(L.CLASSES.index)
    df["boxes"] = df["boxes"].map(json.loads)
    # Where detection supervision exists: the masked COVID-QU-Ex films (boxes from expert
    # masks), TBX11K's boxes, and true negatives.  Other films' opacities were never drawn.
    df["det_valid"] = (df["boxes"].map(len) > 0) | (df["label"] == "negative")
    keys = [p if isinstance(p, str) and p else f"img:{f}" for p, f in zip(df["patient_id"].fillna(""), df["file"])]
    df["split"] = group_split(keys, (df["source"] + "/" + df["label"]).tolist(), seed=0)
    if smoke:
        df = pd.concat([g.sample(min(len(g), 24), random_state=0) for _, g in df.groupby("split")])
    return df


def group_split(keys: list[str], strata: list[str], fractions=(0.7, 0.15, 0.15), seed: int = 0):
    """Assign each row to train/val/test so that rows sharing a key stay together.

    Groups are shuffled within their stratum so every stratum (e.g. source x label)
    is spread over the three splits.
    """
    rng = np.random.default_rng(seed)
    group_stratum: dict[str, str] = {}
    for k, s in zip(keys, strata):
        group_stratum.setdefault(k, s)
    by_stratum: dict[str, list[str]] = {}
    for k, s in group_stratum.items():
        by_stratum.setdefault(s, []).append(k)
    assignment: dict[str, str] = {}
    for s in sorted(by_stratum):
        groups = sorted(by_stratum[s])
        rng.shuffle(groups)
        n = len(groups)
        n_test = int(round(n * fractions[2]))
        n_val = int(round(n * fractions[1]))
        for i, g in enumerate(groups):
            assignment[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return np.array([assignment[k] for k in keys])


# ----------------------------------------------------------------------------- films from another hospital

OUTSIDE_FOLDER = "cxr_nih"  # NIH Clinical Center films, "No Finding" or report-mined "Pneumonia" (its README)
# More of them are held out than in ``cxr/``: the test split must measure a share per view (AP, PA) of the normal
# films with a useful interval. Fixed once (2026-12-07): patient-wise, stratified by label x view, seed 0.
OUTSIDE_FRACTIONS = (0.45, 0.20, 0.35)


def load_outside_manifest(data: Path, smoke: bool = False) -> pd.DataFrame:
    """``data/cxr_nih/manifest.csv`` with its split (train / val / test by patient id); ``smoke``: 6 films per split
    and label. ``path`` is each film's path under ``data``."""
    df = pd.read_csv(data / OUTSIDE_FOLDER / "manifest.csv")
    df["path"] = OUTSIDE_FOLDER + "/images/" + df["file"]
    df["source"] = "nih"
    df["split"] = group_split(df["patient_id"].tolist(), (df["label"] + "/" + df["view"]).tolist(),
                              fractions=OUTSIDE_FRACTIONS, seed=0)
    if smoke:
        df = pd.concat([g.sample(min(len(g), 6), random_state=0) for _, g in df.groupby(["split", "label"])])
    return df
