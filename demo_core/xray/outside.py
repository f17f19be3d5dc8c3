"""How the X-ray answer holds on films from another hospital, and whether it follows the film's view.

One reading of the figures for the training stage that chooses the heads (``training/xray_outside.py``), the
served read that writes the card, the benchmark (``bench/outside_hospital.py``) and the tests.

The outside films (``split.load_outside_manifest``) are NIH Clinical Center films labelled from reports: "No
Finding", which maps to SIIM negative, and "Pneumonia", which is noisy (about half showed no airspace opacity on a
radiologist's read) and says nothing of which SIIM class an opacity would be. So the table reads only what the
labels can show: how often a normal film is called negative, per view; how well 1 - P(negative) ranks the
pneumonia films above the normal ones (an AUC the label noise caps well below 1); how often the caution fires;
and the calibration of P(abnormal) against the report label.
"""

from __future__ import annotations

import numpy as np

from ..stats import wilson_interval
from .labels import CLASSES

NEGATIVE = CLASSES.index("negative")
VIEWS = ("AP", "PA")
# The targets the outside-hospital issue sets (held-out NIH films; the view audit on films with a known view).
MIN_NORMAL_CALLED_NEGATIVE = 0.85  # per view
MIN_PNEUMONIA_AUC = 0.80
MAX_VIEW_GAP = 0.10  # |mean P(negative), normal AP - normal PA|
BOOTSTRAP = 2000


def view_of(view: str) -> str | None:
    """A manifest's view as AP or PA ("AP Supine" and "AP erect" are AP films); None when unknown."""
    v = str(view).strip().upper()
    return "AP" if v.startswith("AP") else "PA" if v == "PA" else None


def rank_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The probability that a positive scores above a negative (ties count half): the ROC AUC, equal to
    scikit-learn's (a test), in a fraction of its time, which the 2,000 bootstrap draws of ``auc_interval`` need."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if not len(positive) or not len(negative):
        return float("nan")
    ranks = _average_ranks(np.concatenate([positive, negative]))
    return float((ranks[:len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
                 / (len(positive) * len(negative)))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, ranks)
    return (sums / np.bincount(inverse))[inverse]


def auc_interval(positive: np.ndarray, negative: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """A 95 % bootstrap interval of ``rank_auc`` (each group resampled on its own)."""
    rng = np.random.default_rng(seed)
    if len(positive) < 2 or len(negative) < 2:
        return float("nan"), float("nan")
    draws = [rank_auc(rng.choice(positive, len(positive)), rng.choice(negative, len(negative)))
             for _ in range(BOOTSTRAP)]
    return float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def binary_ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of a probability ``p`` of the event ``y`` (equal-width bins)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0, 1, bins + 1)
    k = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(y[k == b].mean() - p[k == b].mean()) * (k == b).mean() for b in range(bins) if (k == b).any()))


def _share(hits: np.ndarray) -> dict:
    n, right = int(len(hits)), int(np.sum(hits))
    lo, hi = wilson_interval(right, n) if n else (float("nan"), float("nan"))
    return {"n": n, "share": right / n if n else float("nan"), "interval_95": [lo, hi]}


def outside_table(p: np.ndarray, labels, views, unfamiliar=None, cautioned=None, intervals: bool = True) -> dict:
    """The outside-hospital figures of class probabilities ``p`` (n, 4) for films labelled ``no_finding`` or
    ``pneumonia``, with their views (AP / PA) and, when given, whether each film was flagged unfamiliar and whether
    any caution went beside its answer. ``intervals=False`` skips the AUC's bootstrap (a training grid reads
    hundreds of settings and never the interval)."""
    p, labels = np.asarray(p, float), np.asarray(labels)
    views = np.array([view_of(v) for v in views], dtype=object)
    normal, pneumonia = labels == "no_finding", labels == "pneumonia"
    called_negative = p.argmax(1) == NEGATIVE
    abnormal = 1 - p[:, NEGATIVE]
    table = {"n": int(len(p)), "n_no_finding": int(normal.sum()), "n_pneumonia": int(pneumonia.sum()),
             "no_finding_called_negative": {v: _share(called_negative[normal & (views == v)]) for v in VIEWS},
             "no_finding_called_negative_all": _share(called_negative[normal]),
             "pneumonia_called_abnormal": _share(~called_negative[pneumonia]),
             "pneumonia_auc": rank_auc(abnormal[pneumonia], abnormal[normal]),
             "pneumonia_auc_interval_95": list(auc_interval(abnormal[pneumonia], abnormal[normal])) if intervals
             else None,
             "pneumonia_auc_per_view": {v: rank_auc(abnormal[pneumonia & (views == v)], abnormal[normal & (views == v)])
                                        for v in VIEWS},
             "abnormal_ece": binary_ece(pneumonia[normal | pneumonia], abnormal[normal | pneumonia]),
             "mean_p_negative": {f"{label}/{v}": float(p[(labels == label) & (views == v), NEGATIVE].mean())
                                 for label in ("no_finding", "pneumonia") for v in VIEWS
                                 if ((labels == label) & (views == v)).any()},
             "called": {c: int((p.argmax(1) == k).sum()) for k, c in enumerate(CLASSES)}}
    wrong = normal & ~called_negative
    table["wrong_on_normal"] = {"n": int(wrong.sum()),
                                "median_top_probability": float(np.median(p[wrong].max(1))) if wrong.any() else None}
    if unfamiliar is not None:
        unfamiliar = np.asarray(unfamiliar, bool)
        table["flagged_unfamiliar"] = float(unfamiliar.mean())
        table["wrong_on_normal"]["flagged_unfamiliar"] = int((wrong & unfamiliar).sum())
    if cautioned is not None:
        cautioned = np.asarray(cautioned, bool)
        table["with_a_caution"] = float(cautioned.mean())
        table["wrong_on_normal"]["with_a_caution"] = int((wrong & cautioned).sum())
    return table


def meets_outside_targets(table: dict) -> dict[str, bool]:
    """Each outside-hospital target, met or not."""
    per_view = table["no_finding_called_negative"]
    return {**{f"no_finding_called_negative_{v}": per_view[v]["share"] >= MIN_NORMAL_CALLED_NEGATIVE for v in VIEWS},
            "pneumonia_auc": table["pneumonia_auc"] >= MIN_PNEUMONIA_AUC}


def view_audit(p: np.ndarray, classes, views, collections) -> dict:
    """Within each collection and class, the answer on AP films against PA films (films with a known view): how
    many of each, the mean P(negative) and the share called each class. ``classes``: the class each film belongs to
    (a SIIM class, or ``no_finding`` / ``pneumonia``)."""
    p = np.asarray(p, float)
    views = np.array([view_of(v) for v in views], dtype=object)
    classes, collections = np.asarray(classes), np.asarray(collections)
    rows = []
    for collection in sorted(set(collections)):
        for c in sorted(set(classes[collections == collection])):
            group = (collections == collection) & (classes == c)
            row = {"collection": str(collection), "class": str(c)}
            for v in VIEWS:
                part = p[group & (views == v)]
                row[v] = {"n": int(len(part)),
                          "mean_p_negative": float(part[:, NEGATIVE].mean()) if len(part) else None,
                          "top_class": CLASSES[int(np.bincount(part.argmax(1), minlength=4).argmax())]
                          if len(part) else None}
            a, b = row["AP"]["mean_p_negative"], row["PA"]["mean_p_negative"]
            row["gap_p_negative"] = None if a is None or b is None else a - b
            rows.append(row)
    return {"rows": rows}


def normal_view_gap(audit: dict, collection: str = "nih", normal_class: str = "no_finding") -> float | None:
    """Mean P(negative) of normal AP films minus normal PA films, from a ``view_audit``."""
    row = next((r for r in audit["rows"] if r["collection"] == collection and r["class"] == normal_class), None)
    return None if row is None else row["gap_p_negative"]


def read_films(model, grays) -> dict[str, np.ndarray]:
    """Films (8-bit grayscale) read as the app reads them: the class probabilities, whether the caution fires and
    whether the gate accepts the film."""
    from ..intake import LoadedImage
    preds = [model.predict_image(LoadedImage(np.repeat(g[..., None], 3, axis=2), "film")) for g in grays]
    return {"p": np.array([list(r.probabilities.values()) for r in preds]),
            "unfamiliar": np.array([r.unfamiliar for r in preds]),
            "cautioned": np.array([bool(r.cautions()) for r in preds]),
            "view": np.array([None if r.view is None else r.view.view for r in preds], dtype=object),
            "accepted": np.array([r.is_chest_xray for r in preds])}


def view_accuracy(estimated, stated) -> dict | None:
    """How often the view estimate agrees with the view the manifest states (films with a known view)."""
    truth = np.array([view_of(v) for v in stated], dtype=object)
    known = np.array([t is not None and e is not None for t, e in zip(truth, estimated)])
    if not known.any():
        return None
    return _share(np.asarray(estimated)[known] == truth[known])


def outside_report(model, outside, outside_grays, audit_films, audit_grays) -> dict:
    """The card's outside-hospital section for ``model``: the table on the outside films (a manifest part from
    ``split.load_outside_manifest``) and the view audit over them and the ``cxr/`` films with a known view."""
    o = read_films(model, outside_grays)
    a = read_films(model, audit_grays)
    table = outside_table(o["p"], outside.label, outside.view, o["unfamiliar"], o["cautioned"])
    table["gate_accepted"] = float(o["accepted"].mean())
    table["view_estimate_accuracy"] = view_accuracy(np.concatenate([o["view"], a["view"]]),
                                                    np.concatenate([outside.view, audit_films.view]))
    audit = view_audit(np.concatenate([o["p"], a["p"]]), np.concatenate([outside.label, audit_films.label]),
                       np.concatenate([outside.view, audit_films.view]),
                       np.array(["nih"] * len(outside) + ["cxr"] * len(audit_films)))
    audit["normal_view_gap_nih"] = normal_view_gap(audit)
    return {"table": table, "view_audit": audit, "targets_met": meets_outside_targets(table)
            | {"view_gap": audit["normal_view_gap_nih"] is not None
               and abs(audit["normal_view_gap_nih"]) <= MAX_VIEW_GAP}}
