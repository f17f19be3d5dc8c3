"""Year intervals that mean what they say, for a poet the model never saw and for a known poet.

* **A poet the model never saw** (every visitor's own poem). The interval is conformalised on poets held out
  by author. The training and validation poems' poets are dealt into folds by a hash of their name; for each
  fold the whole year path (both neural year heads, the style space, its era and closest-author heads) is
  trained again without that fold's poets, and reads their poems. The residuals are weighted to the mix of
  poets a visitor resembles: a poet with n dated poems is left wholly out of training by the hash split with
  probability 0.3^n, so the poets the model never saw are mostly one-poem poets (whose labels are also the
  coarsest, period midpoints and birth + 30). A poem of a poet with n poems here weighs 0.3^(n-1). The same
  folds give a cross-validated coverage (each fold against a half-width set on the others). The test poems of
  poets with no dated training poem then measure the shipped interval.
* **A known poet.** The year labels of most poems are the poet's mid-life estimate, so the model
  returns the poet's year almost exactly (±1 year), yet the poem may come from any point of a career.
  The interval is widened to how far poem-level years (a book's year, a page's copyright year) lie from
  the same poet's mid-life or birth + 30 estimate, where a poet has both.

    python training/poem_author_intervals.py            # about 15 min on 2 cores (with the feature cache); writes both half-widths
    python training/poem_author_intervals.py --dry-run
    python training/poem_author_intervals.py --smoke    # a few hundred poems, two folds: checks the stages run
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common import ROOT, require_data, seed_everything, write_card
from train_poem import YEAR_MEAN, YEAR_STD, Corpus, Heads, corpus, ensure_minilm, style_space, style_year, \
    style_year_heads

from demo_core.poem.model import _normalise_author
from demo_core.poem.split import TEST_PERCENT, VAL_PERCENT
from demo_core.poem.style import StyleHeads, style_text
from demo_core.stats import wilson_interval

COVERAGE = 0.8
FOLDS = 5
OUT_OF_TRAINING = (TEST_PERCENT + VAL_PERCENT) / 100  # the chance the hash split keeps a poem out of training
AUTHOR_LEVEL = ("author_midlife_estimate", "author_birth_plus_30_estimate")
POEM_LEVEL = ("source_year_field", "pf_page_copyright_year")


# ----------------------------------------------------------------------------- stage: poets held out by fold

def poet_key(author: str, poem_id: str) -> str:
    """Who wrote the poem, as the model's author table spells it; an anonymous poem is its own poet."""
    return _normalise_author(author) or f"poem:{poem_id}"


def poet_keys(df: pd.DataFrame) -> pd.Series:
    return pd.Series([poet_key(a, i) for a, i in zip(df.author, df.id)], index=df.index)


def author_folds(keys: pd.Series, folds: int) -> np.ndarray:
    """Each poem's fold, fixed by a hash of its poet (the same on every machine): a poet sits in one fold."""
    return np.array([int(hashlib.sha1(k.encode()).hexdigest(), 16) % folds for k in keys])


@dataclass(frozen=True)
class StyleGate:
    """The shipped blend of the style member's year with the neural year (poem_config.json)."""
    neural_weight: float
    author_margin: float


def held_out_years(c: Corpus, heads: Heads, docs: list[str], out: np.ndarray, gate: StyleGate,
                   smoke: bool) -> np.ndarray:
    """Years read for the dated poems in ``out`` by a year path trained without any of their poets.

    The same stages as train_poem.py: neural year heads on the training split (validation stops them early),
    style space and heads on the training split, then the shipped gate and blend. The NLTK vocabulary is the
    shipped one (a word's id carries no poet).
    """
    keep = ~out
    tr, va = c.ysel["train"] & keep, c.ysel["val"] & keep
    rows = out & (c.ysel["train"] | c.ysel["val"])
    orig = heads.fit(heads.original_year_model(), [c.ids], c.yz, tr, va, "huber")
    mini = heads.fit(heads.minilm_year_model(), [c.emb], c.yz, tr, va, "huber")
    neural = (orig.predict(c.ids[rows], verbose=0)[:, 0] + mini.predict(c.emb[rows], verbose=0)[:, 0]) / 2
    neural = neural * YEAR_STD + YEAR_MEAN
    vecs, X = style_space(docs, (c.tsel["train"] | c.ysel["train"]) & keep, smoke)
    arrays = style_year_heads(X, c.year, tr, c.authors, smoke)
    # the year path reads no topic heads: empty ones let the shipped StyleHeads class do the reading
    no_topics = {"topic_coef": np.zeros((1, X.shape[1]), np.float16), "topic_intercept": np.zeros(1, np.float32)}
    style = StyleHeads(vecs["word"], vecs["char"], {**arrays, **no_topics}).years(X[rows])
    year = style_year(neural, np.array([s.era_year for s in style]), np.array([s.author_year for s in style]),
                      np.array([s.author_margin for s in style]), gate.neural_weight, gate.author_margin)
    return np.minimum(year, _dt.date.today().year)  # as the app caps it


@dataclass(frozen=True)
class HeldOutPoets:
    """Every dated training / validation poem read by a year path that never saw its poet."""
    residuals: np.ndarray  # |year read - year label|
    poems_by_poet: np.ndarray  # how many of these poems its poet wrote
    fold: np.ndarray

    @property
    def poets(self) -> int:
        return int(np.sum(1.0 / self.poems_by_poet).round())

    def weights(self, mix: str = "unseen") -> np.ndarray:
        """``"unseen"``: the mix of poets the split leaves out of training (a poet with n poems is wholly out
        with probability OUT_OF_TRAINING^n, and brings n such poems); ``"poet"``: one vote per poet;
        ``"poem"``: one per poem."""
        n = self.poems_by_poet.astype(float)
        return {"unseen": OUT_OF_TRAINING ** (n - 1), "poet": 1.0 / n, "poem": np.ones_like(n)}[mix]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, residuals=self.residuals, poems_by_poet=self.poems_by_poet, fold=self.fold)

    @classmethod
    def load(cls, path: Path) -> HeldOutPoets:
        with np.load(path) as f:
            return cls(f["residuals"], f["poems_by_poet"], f["fold"])


def cross_fit(c: Corpus, folds: int, gate: StyleGate, epochs: int, smoke: bool) -> HeldOutPoets:
    docs = [style_text(t, x) for t, x in zip(c.df.title, c.df.text)]
    keys = poet_keys(c.df)
    fold = author_folds(keys, folds)
    dated = c.ysel["train"] | c.ysel["val"]
    read = np.full(len(c.df), np.nan)
    for k in range(folds):
        t0 = time.time()
        seed_everything(k)
        out = fold == k
        read[out & dated] = held_out_years(c, Heads(c, epochs, smoke), docs, out, gate, smoke)
        err = np.abs(read[out & dated] - c.year[out & dated])
        print(f"fold {k}: {int((out & dated).sum())} poems held out with their poets, MAE {err.mean():.1f} "
              f"({time.time() - t0:.0f}s)", flush=True)
    keys = keys[dated]
    return HeldOutPoets(np.abs(read[dated] - c.year[dated]), keys.map(keys.value_counts()).to_numpy(), fold[dated])


def weighted_conformal_q(residuals: np.ndarray, weights: np.ndarray, coverage: float = COVERAGE) -> float:
    """The split-conformal quantile with weights: the smallest r whose weight share, counting one more point of
    the largest weight (the new poem) as above it, reaches ``coverage``."""
    order = np.argsort(residuals)
    r, w = residuals[order], weights[order]
    share = np.cumsum(w) / (w.sum() + w.max())
    i = int(np.searchsorted(share, coverage))
    return float(r[min(i, len(r) - 1)])


def cross_validated_coverage(h: HeldOutPoets, mix: str = "unseen") -> dict:
    """Each fold's poems against the half-width set on the other folds, both weighted by ``mix``."""
    w = h.weights(mix)
    inside = np.zeros(len(h.residuals), bool)
    per_fold = []
    for k in np.unique(h.fold):
        this = h.fold == k
        q = weighted_conformal_q(h.residuals[~this], w[~this])
        inside[this] = h.residuals[this] <= q
        per_fold.append({"fold": int(k), "poems": int(this.sum()), "half_width": round(q, 1),
                         "coverage": round(float((inside[this] * w[this]).sum() / w[this].sum()), 3)})
    n_eff = float(w.sum() ** 2 / (w ** 2).sum())  # Kish: how many equally weighted poems this is worth
    cover = float((inside * w).sum() / w.sum())
    return {"mix": mix, "poems": int(len(inside)), "poets": h.poets, "effective_n": round(n_eff, 1),
            "coverage": cover, "coverage_95ci": [round(v, 3) for v in wilson_interval(cover * n_eff, round(n_eff))],
            "folds": per_fold}


def half_widths(h: HeldOutPoets) -> dict:
    """The 80 % half-width under each weighting, to show what the choice of mix does."""
    return {mix: round(weighted_conformal_q(h.residuals, h.weights(mix)), 1) for mix in ("unseen", "poet", "poem")}


# ----------------------------------------------------------------------------- stage: the test read

def unseen_poets(df: pd.DataFrame, split: str, known: set[str]) -> pd.DataFrame:
    """Dated poems of ``split`` whose poet has no dated training poem."""
    part = df[(df.split == split) & df.year_f.notna()]
    return part[~part.author.map(_normalise_author).isin(known)]


def year_errors(model, poems: pd.DataFrame) -> np.ndarray:
    """|year read - year label| with the poet's name given, as a visitor would type it."""
    return np.array([abs(model.predict(r.title, r.text, r.author).year - r.year_f) for r in poems.itertuples()])


def test_read(model, df: pd.DataFrame, half: float) -> dict:
    """The shipped model on the test poems of poets with no dated training poem, against the new half-width
    and the one it replaces."""
    test_poems = unseen_poets(df, "test", set(model.author_years))
    test = year_errors(model, test_poems)  # read once, after the half-width is set
    inside = int((test <= half).sum())
    before = float(model.config["interval_half_width_unseen_poet"])
    return {"test_n": int(len(test)), "test_poets": int(test_poems.author.map(_normalise_author).nunique()),
            "test_coverage_80": inside / len(test),
            "test_coverage_95ci": [round(v, 3) for v in wilson_interval(inside, len(test))],
            "test_mae": float(test.mean()),
            "before": {"half_width": before, "test_coverage_80": float((test <= before).mean())}}


def label_spread(df: pd.DataFrame) -> dict:
    """How far poem-level years lie from the same poet's author-level estimate."""
    dated = df[df.year_f.notna()].assign(key=df.author.map(_normalise_author))
    estimate = dated[dated.year_source.isin(AUTHOR_LEVEL)].groupby("key").year_f.median()
    poems = dated[dated.year_source.isin(POEM_LEVEL) & dated.key.isin(estimate.index)]
    gap = np.abs(poems.year_f.to_numpy() - estimate[poems.key].to_numpy())
    if not len(gap):
        return {"poems": 0, "poets": 0, "mae": None, "half_width_80": None}
    return {"poems": int(len(gap)), "poets": int(poems.key.nunique()), "mae": float(gap.mean()),
            "half_width_80": float(np.quantile(gap, COVERAGE))}


# ----------------------------------------------------------------------------- stage: write

UNSEEN_LIMITATION_START = "The closest-author dating relies on poets seen in training"


def with_unseen_limitation(limitations: list[str], unseen: dict) -> list[str]:
    """The card's limitation about poets never seen, restated with this script's figures."""
    text = (f"{UNSEEN_LIMITATION_START} (authors can appear in several splits). For a poet the model never saw, "
            f"which is every visitor's own poem, the year from the text alone is a rough era guess: MAE "
            f"{unseen['test_mae']:.0f} years on {unseen['test_n']} such test poems, with an 80 % interval of "
            f"±{unseen['half_width_80']:.0f} years set on poets held out by author (it covered "
            f"{unseen['test_coverage_80']:.0%} of those test poems, and "
            f"{unseen['cross_validated']['coverage']:.0%} of held-out poets' poems in cross-validation, weighted to the "
            f"poets a visitor resembles).")
    return [text if lim.startswith(UNSEEN_LIMITATION_START) else lim for lim in limitations]


def write(unseen: dict, spread: dict) -> None:
    folder = ROOT / "weights" / "poem"
    config = json.loads((folder / "poem_config.json").read_text())
    config.update({"interval_half_width_unseen_poet": round(unseen["half_width_80"], 1),
                   "interval_half_width_author_label": round(spread["half_width_80"], 1)})
    (folder / "poem_config.json").write_text(json.dumps(config, indent=1))
    card = json.loads((folder / "card.json").read_text())
    card.pop("files", None)
    earlier = card["metrics"].get("unseen_poets")
    if earlier and earlier.get("half_width_80") != unseen["half_width_80"]:  # a new design: its read is kept
        unseen["earlier_reads"] = earlier.pop("earlier_reads", []) + [earlier]
    card["metrics"].update({"unseen_poets": unseen, "author_label_spread": spread})
    card["limitations"] = with_unseen_limitation(card["limitations"], unseen)
    write_card(folder, card)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", type=int, default=FOLDS)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "poem")
    ap.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    ap.add_argument("--reuse-folds", action="store_true", help="the held-out residuals of the last full run (.cache)")
    ap.add_argument("--smoke", action="store_true", help="a few hundred poems, two folds, nothing written")
    args = ap.parse_args()
    from demo_core.poem.model import load as load_model
    model = load_model()
    gate = StyleGate(float(model.config["style_neural_weight"]), float(model.config["style_author_margin"]))
    ensure_minilm(ROOT / "weights" / "poem")
    c = corpus(require_data(), argparse.Namespace(smoke=args.smoke, out=ROOT / "weights" / "poem", cache=args.cache))
    folds = 2 if args.smoke else args.folds
    saved = args.cache / f"held_out_poets_{folds}folds.npz"
    if args.reuse_folds and saved.is_file():
        held = HeldOutPoets.load(saved)
    else:
        held = cross_fit(c, folds, gate, args.epochs, args.smoke)
        if not args.smoke:
            held.save(saved)
    half = weighted_conformal_q(held.residuals, held.weights("unseen"))
    unseen = {"split": f"training and validation poems, their poets dealt into {folds} folds by name: each fold read "
                       "by a year path trained without its poets; the residuals weighted to the mix of poets the "
                       f"split leaves unseen (a poem of a poet with n poems weighs {OUT_OF_TRAINING:g}^(n-1)) set "
                       "the half-width. "
                       "Test poems of poets with no dated training poem measure it.",
              "calibration_n": int(len(held.residuals)), "calibration_poets": held.poets, "half_width_80": half,
              "half_width_80_by_mix": half_widths(held),
              "cross_validated": cross_validated_coverage(held, "unseen"),
              "cross_validated_by_mix": {m: cross_validated_coverage(held, m)["coverage"] for m in ("poet", "poem")}}
    if not args.smoke:
        unseen |= test_read(model, c.df, half)  # the corpus holds every poem, test ones included
    spread = label_spread(c.df)
    print(json.dumps({"unseen_poets": unseen, "author_label_spread": spread}, indent=1), flush=True)
    if not (args.dry_run or args.smoke):
        write(unseen, spread)


if __name__ == "__main__":
    main()
