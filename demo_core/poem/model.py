"""Poem analyzer: one loader, one ``predict``.

Topics come from the shipped design (see the card: original NLTK-sequence
model, MiniLM heads, or their ensemble); the year is the text's estimate,
pulled toward the author's median training year when the author is known, with
a conformal 80 % interval.
"""

from __future__ import annotations

import datetime as _dt
import json
import pickle
import threading
from dataclasses import dataclass

import numpy as np

from .. import _tf
from ..cards import load_card, task_dir
from ..errors import InputError
from .style import StyleHeads, style_text
from .text import MAX_CHARS, Preprocessed, TextPipeline

MAX_TITLE = 300
MAX_AUTHOR = 200
# The members each design averages (training/train_poem.py compares the designs on validation).
DESIGN_MEMBERS = {"original": {"original"}, "minilm": {"minilm"}, "ensemble": {"original", "minilm"},
                  "ensemble3": {"original", "minilm", "tfidf"}, "ensemble3s": {"original", "minilm", "style"}}


def embedding_text(title: str, text: str) -> str:
    """What MiniLM reads: the title, then the poem (the first 128 word pieces count)."""
    return f"{title.strip()}.\n{text.strip()}" if title.strip() else text.strip()


def _normalise_author(author: str | None) -> str:
    return " ".join((author or "").lower().split())


@dataclass(frozen=True)
class PoemPrediction:
    topics: dict[str, float]
    predicted_topics: tuple[str, ...]
    thresholds: dict[str, float]
    year: int
    year_interval: tuple[int, int]
    author_known: bool
    warnings: tuple[str, ...]
    preprocessing: Preprocessed
    style_match: str | None = None  # the training author whose style dated the poem, when that match was confident

    def to_dict(self) -> dict:
        out = {"topics": {k: round(v, 6) for k, v in self.topics.items()},
               "predicted_topics": list(self.predicted_topics),
               "year": self.year, "year_interval": list(self.year_interval)}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


MIN_WORDS = 6  # fewer words than this: too short to date
MIN_ENGLISH_SHARE = 0.5  # fewer recognised English words than this share: another language


class PoemModel:
    def __init__(self, card: dict, config: dict, pipeline: TextPipeline, original, minilm_heads, encoder,
                 author_years: dict[str, list], tfidf: dict | None = None, style: StyleHeads | None = None):
        self.card, self.config, self.pipeline = card, config, pipeline
        self.topics: list[str] = config["topics"]
        self.thresholds = np.array(config["thresholds"], np.float32)
        self.design: str = config["design"]
        self.author_years = author_years
        self.encoder = encoder
        self.tfidf = tfidf
        self.style = style
        tf = _tf.tf()
        self._original = tf.function(lambda x: original(x, training=False), reduce_retracing=True, autograph=False) if original else None
        self._minilm = tf.function(lambda x: minilm_heads(x, training=False), reduce_retracing=True, autograph=False) if minilm_heads else None
        self._tf = tf
        self.predict("Warm-up", "the sea at night")  # trace the graphs once, before visitors arrive

    def predict_request(self, request: dict) -> PoemPrediction:
        title, text, author = request.get("title", ""), request.get("text"), request.get("author")
        for name, value in (("title", title), ("author", author)):
            if value is not None and not isinstance(value, str):
                raise InputError(f'"{name}" must be a string.')
        if not isinstance(text, str):
            raise InputError('"text" is required: the poem as a string.')
        return self.predict(title or "", text, author)

    @staticmethod
    def _unreliable_text(pre) -> list[str]:
        """Warnings for a text too short or too little English to date or classify: such a text gets no
        style match and the wider year interval measured on texts of a few words."""
        out = []
        if len(pre.words) < MIN_WORDS:
            out.append(f"This text has only {len(pre.words)} word{'s' * (len(pre.words) != 1)}: too short to date or "
                       "classify reliably, so the year interval is wide.")
        if pre.other_language:
            out.append(f"This reads like {pre.other_language}, not English: the analyzer learnt from English poems, "
                       "so the year interval is wide and no style match is given.")
        elif pre.english_share() < MIN_ENGLISH_SHARE:
            out.append(f"Only {pre.english_share():.0%} of the words are recognised English (another language?): "
                       "the analyzer learnt from English poems, so the year interval is wide and no style match "
                       "is given.")
        return out

    def predict(self, title: str, text: str, author: str | None = None) -> PoemPrediction:
        if not text or not text.strip():
            raise InputError("Please enter the poem's text; it is empty.")
        warnings: list[str] = []
        if len(text) > MAX_CHARS:
            warnings.append(f"The text was truncated to its first {MAX_CHARS:,} characters.")
            text = text[:MAX_CHARS]
        if len(title) > MAX_TITLE:
            warnings.append(f"The title was truncated to {MAX_TITLE} characters.")
            title = title[:MAX_TITLE]
        author = (author or "")[:MAX_AUTHOR]
        pre = self.pipeline.run(f"{title}\n{text}")
        warnings += list(pre.warnings)
        if pre.n_english == 0:
            raise InputError("No English words were recognised in this text. The analyzer learnt from English "
                             "poems only, so it cannot read this one.")
        unreliable = self._unreliable_text(pre)
        warnings += unreliable
        n_words = len(pre.lemmas)
        if not unreliable and n_words and pre.n_unknown / n_words > 0.6:
            warnings.append("Most words are outside the model's vocabulary; treat the answer with caution.")
        if pre.truncated:
            warnings.append("Only the first 150 processed words enter the sequence model.")

        probs, year_z = [], []
        if self._original is not None:
            out = self._original(self._tf.constant([pre.ids], dtype=self._tf.int32))
            probs.append(out["topics"].numpy()[0]); year_z.append(float(out["year"].numpy()[0, 0]))
        if self._minilm is not None:
            emb = self.encoder.embed_long([embedding_text(title, text)],
                                          max_chunks=int(self.config.get("minilm_chunks", 1)))
            out = self._minilm(self._tf.constant(emb))
            probs.append(out["topics"].numpy()[0]); year_z.append(float(out["year"].numpy()[0, 0]))
        year = float(np.mean(year_z)) * self.config["year_std"] + self.config["year_mean"]
        if self.tfidf is not None:
            bag = self.tfidf["vectorizer"].transform([" ".join(pre.lemmas)])
            probs.append(self.tfidf["classifier"].predict_proba(bag)[0])
        style_author = None
        if self.style is not None:
            X = self.style.features([style_text(title, text)])
            probs.append(self.style.topic_probabilities(X)[0])
            sy = self.style.years(X)[0]
            if sy.author_margin > float(self.config["style_author_margin"]) and not unreliable:
                year, style_author = sy.author_year, sy.closest_author
            else:
                w = float(self.config["style_neural_weight"])
                year = w * year + (1 - w) * sy.era_year
        p = np.mean(probs, axis=0).astype(float)

        key = _normalise_author(author)
        known = key in self.author_years
        if known:
            median, n = self.author_years[key]
            w = n / (n + float(self.config["author_prior_strength"]))
            year = w * median + (1 - w) * year
            # the poet's year is known almost exactly, but their poems span a career: the labels' own spread
            half = max(self.config["interval_half_width_with_author"],
                       float(self.config.get("interval_half_width_author_label", 0.0)))
        else:
            if key:
                warnings.append("This author is not in the training data, so the year comes from the text alone.")
            # conformalised on poets held out by author (training/poem_author_intervals.py)
            half = self.config.get("interval_half_width_unseen_poet") or \
                self.config["interval_half_width_style_author" if style_author else "interval_half_width_text_only"]
        if unreliable and not known:  # as wide as the year error measured on such texts
            half = max(half, float(self.config.get("interval_half_width_short_text", half)))
        this_year = _dt.date.today().year
        year = min(year, this_year)
        lo, hi = int(round(year - half)), int(min(this_year, round(year + half)))

        chosen = [t for t, v, th in zip(self.topics, p, self.thresholds) if v >= th]
        if not chosen:
            chosen = [self.topics[int(np.argmax(p))]]
        chosen.sort(key=lambda t: -p[self.topics.index(t)])
        return PoemPrediction(
            topics=dict(zip(self.topics, p.tolist())), predicted_topics=tuple(chosen),
            thresholds=dict(zip(self.topics, self.thresholds.astype(float).tolist())),
            year=int(round(year)), year_interval=(lo, hi), author_known=known,
            warnings=tuple(warnings), preprocessing=pre, style_match=None if known else style_author)


_load_lock = threading.Lock()


def load() -> PoemModel:
    typed = load_card("poem", verify=True)
    card, config = typed.raw, typed.runtime
    folder = task_dir("poem")
    keras = _tf.keras()
    vocab = json.loads((folder / "vocabulary.json").read_text())
    authors = json.loads((folder / "author_years.json").read_text())
    with _load_lock:
        pipeline = TextPipeline(vocab)
        members = DESIGN_MEMBERS[config["design"]]
        original = minilm_heads = encoder = tfidf = style = None
        if "original" in members:
            original = keras.models.load_model(folder / "original.keras", compile=False)
        # The pickles are our own files, checked against card.json's sha256 above.
        if "tfidf" in members:
            with open(folder / "tfidf_topics.pkl", "rb") as f:
                tfidf = pickle.load(f)
        if "style" in members:
            with open(folder / "style_vectorizers.pkl", "rb") as f:
                vecs = pickle.load(f)
            with np.load(folder / "style_heads.npz") as heads:
                style = StyleHeads(vecs["word"], vecs["char"], dict(heads))
        if "minilm" in members:
            from .minilm import load_encoder
            minilm_heads = keras.models.load_model(folder / "minilm_heads.keras", compile=False)
            encoder = load_encoder(folder)
    return PoemModel(card, config, pipeline, original, minilm_heads, encoder, authors, tfidf, style)
