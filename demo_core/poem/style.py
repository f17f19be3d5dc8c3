"""The poem's "style" member: linear models over the raw text's word and character n-grams.

Where the NLTK pipeline throws spelling, function words and punctuation away,
these features keep them, and they are what dates a poem: *thee*, *'tis*,
*o'er*, archaic endings, the habits of a period or a poet. One TF-IDF space
feeds three linear heads:

* topics: one-vs-rest logistic regression (a member of the topic ensemble);
* era: which of 22 year ranges the text reads like (the range's median year);
* closest author: which training author (with at least three dated poems) the
  style matches best; when that match is confident, the year is that author's
  median year (most year labels are per-author estimates, so this is the
  strongest signal the labels allow).

Weights are stored as float16 (int8 with a per-row scale for the author head);
the training script measures the shipped, quantized heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def style_text(title: str, text: str) -> str:
    return f"{title.strip()}\n{text.strip()}"


@dataclass(frozen=True)
class StyleYear:
    era_year: float          # median year of the predicted era
    author_year: float       # median year of the closest author
    closest_author: str
    author_margin: float     # the author head's best decision value: higher = more confident


class StyleHeads:
    def __init__(self, word_vectorizer, char_vectorizer, heads: dict[str, np.ndarray]):
        self.word, self.char = word_vectorizer, char_vectorizer
        h = heads
        self.topic_w, self.topic_b = h["topic_coef"].astype(np.float32), h["topic_intercept"].astype(np.float32)
        self.era_w, self.era_b = h["era_coef"].astype(np.float32), h["era_intercept"].astype(np.float32)
        self.era_years = h["era_years"].astype(np.float32)
        self.author_w = h["author_coef_int8"].astype(np.float32) * h["author_scale"].astype(np.float32)[:, None]
        self.author_b = h["author_intercept"].astype(np.float32)
        self.author_years = h["author_years"].astype(np.float32)
        self.author_names = [str(a) for a in h["author_names"]]

    def features(self, docs: list[str]):
        import scipy.sparse as sp
        # Word and character blocks are each L2-normalised; scaling keeps the whole row at norm 1.
        return sp.hstack([self.word.transform(docs), self.char.transform(docs)]).tocsr() * np.float32(1 / np.sqrt(2))

    def topic_probabilities(self, X) -> np.ndarray:
        z = np.asarray(X @ self.topic_w.T) + self.topic_b
        return 1.0 / (1.0 + np.exp(-z))

    def years(self, X) -> list[StyleYear]:
        era = np.asarray(X @ self.era_w.T) + self.era_b
        auth = np.asarray(X @ self.author_w.T) + self.author_b
        best = auth.argmax(1)
        return [StyleYear(float(self.era_years[e]), float(self.author_years[a]), self.author_names[a], float(m))
                for e, a, m in zip(era.argmax(1), best, auth.max(1))]


def quantize_rows_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.maximum(np.abs(w).max(1), 1e-12) / 127.0
    return np.round(w / scale[:, None]).astype(np.int8), scale.astype(np.float32)
