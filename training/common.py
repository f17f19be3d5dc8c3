"""Helpers shared by the training scripts (never imported by the app)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from demo_core.settings import data_dir

ROOT = Path(__file__).resolve().parent.parent


def require_data() -> Path:
    d = data_dir()
    if d is None:
        raise SystemExit("Data directory not found: set DEMO_DATA_DIR (default ../shared/data).")
    return d


def backbone_weights() -> Path:
    return require_data() / "weights" / "mobilenet_v2_1.0_224_no_top_slim.weights.h5"


def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import tensorflow as tf
        tf.random.set_seed(seed)
    except ImportError:
        pass


from demo_core.cards import file_sha256 as sha256  # noqa: E402  (one definition for writer and checker)


def write_card(folder: Path, card: dict) -> None:
    """Write card.json with a sha256 for every other file in the folder."""
    card = dict(card)
    card.setdefault("date", _dt.date.today().isoformat())
    card["files"] = {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size}
                     for p in sorted(folder.iterdir()) if p.is_file() and p.name != "card.json"}
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def linear_rows(clf) -> tuple[np.ndarray, np.ndarray]:
    """A fitted sklearn linear classifier's weights as one row per class (float32).

    sklearn stores a two-class problem as a single row; splitting it into -w/2, +w/2
    keeps argmax and softmax the same as the classifier's decision.
    """
    w, b = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2 and w.shape[0] == 1:
        w, b = np.concatenate([-w, w]) / 2, np.concatenate([-b, b]) / 2
    return w.astype(np.float32), b.astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax of logits along the last axis: (n, classes), or (n, framings, classes)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def keep_best_epochs(model, epochs: int, run_epoch, *, time_budget_s: float = 1e9, log=print) -> list[dict]:
    """Train epoch by epoch and leave ``model`` with the weights of its best validation epoch.

    ``run_epoch(epoch)`` trains one epoch and returns ``(record, score, message)``: the epoch's history
    record, its validation score (higher is better; the first of equal scores wins) and a log line.
    Stops after the epoch that passes ``time_budget_s``.  Returns the records, each with its seconds.
    """
    best, best_score, history = None, -np.inf, []
    t_start = time.time()
    for epoch in range(epochs):
        t0 = time.time()
        record, score, message = run_epoch(epoch)
        history.append({**record, "seconds": round(time.time() - t0, 1)})
        log(f"{message} ({time.time() - t0:.0f}s)")
        if score > best_score:
            best_score, best = score, [w.copy() for w in model.get_weights()]
        if time.time() - t_start > time_budget_s:
            log(f"time budget reached after epoch {epoch + 1}")
            break
    model.set_weights(best)
    return history
