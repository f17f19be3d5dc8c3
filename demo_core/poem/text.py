"""The original project's NLTK preprocessing, step by step.

decontract -> tokenize (Punkt) -> lowercase words -> drop stop words ->
POS-tag + WordNet lemmatize -> integer ids (the saved vocabulary) -> pad to 150.
Each step's output is kept so the page can show how text becomes numbers.  A
missing NLTK resource switches that step to a simpler fallback and says so.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from . import nltk_resources

SEQUENCE_LENGTH = 150
MAX_CHARS = 20_000  # longer input is cut: a poem, not a novel
PAD, UNK = 0, 1

# Our own table; apostrophes are normalised to ' first.  Whole words before suffixes.
CONTRACTIONS = {
    "won't": "will not", "can't": "cannot", "shan't": "shall not", "ain't": "am not", "let's": "let us",
    "'tis": "it is", "'twas": "it was", "'twere": "it were", "o'er": "over", "e'er": "ever",
    "ne'er": "never", "e'en": "even", "'gainst": "against", "y'all": "you all", "ma'am": "madam",
    "it's": "it is", "he's": "he is", "she's": "she is", "that's": "that is", "what's": "what is",
    "there's": "there is", "here's": "here is", "who's": "who is", "where's": "where is", "how's": "how is",
}
SUFFIXES = [("n't", " not"), ("'re", " are"), ("'ll", " will"), ("'ve", " have"), ("'m", " am"), ("'d", " would")]
_WORD_CONTRACTION = re.compile("|".join(re.escape(k) for k in sorted(CONTRACTIONS, key=len, reverse=True)) + r"\b",
                               re.IGNORECASE)
_SUFFIX = re.compile(r"(\w)(" + "|".join(re.escape(s) for s, _ in SUFFIXES) + r")\b", re.IGNORECASE)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_FALLBACK_TOKEN = re.compile(r"[A-Za-z\u00C0-\u024F]+(?:'[A-Za-z]+)?|\d+|[^\w\s]")
_FALLBACK_STOPWORDS = frozenset(
    "a an the and or but if of at by for with about to from in on is are was were be been being i me my we our "
    "you your he him his she her it its they them their this that these those am do does did have has had not no "
    "so than too very s t can will just".split())


def decontract(text: str) -> str:
    text = text.translate(_APOSTROPHES)

    def whole(m: re.Match) -> str:
        expanded = CONTRACTIONS[m.group(0).lower()]
        return expanded.capitalize() if m.group(0)[0].isupper() else expanded

    text = _WORD_CONTRACTION.sub(whole, text)
    suffix_map = dict(SUFFIXES)
    return _SUFFIX.sub(lambda m: m.group(1) + suffix_map[m.group(2).lower()], text)


@dataclass(frozen=True)
class Preprocessed:
    decontracted: str
    tokens: tuple[str, ...]
    words: tuple[str, ...]  # lowercase alphabetic tokens
    without_stopwords: tuple[str, ...]
    lemmas: tuple[str, ...]
    ids: tuple[int, ...]  # padded / truncated to SEQUENCE_LENGTH
    n_unknown: int
    truncated: bool
    warnings: tuple[str, ...] = field(default=())
    n_english: int = 0  # words in plain English letters that are English stop words or in the vocabulary
    other_language: str | None = None  # a language whose stop words the text uses more than English ones

    def english_share(self) -> float:
        return self.n_english / len(self.words) if self.words else 0.0



def _other_languages_stopwords() -> dict[str, frozenset[str]]:
    """Stop-word lists of the other languages NLTK ships (empty where only English is installed)."""
    import nltk
    try:
        ids = [f for f in nltk.corpus.stopwords.fileids() if f not in ("english", "README")]
        return {f: frozenset(nltk.corpus.stopwords.words(f)) for f in ids}
    except (LookupError, OSError):
        return {}


class TextPipeline:
    """Thread-safe after construction: NLTK's lazy corpora are loaded here, under a lock."""

    _load_lock = threading.Lock()

    def __init__(self, vocabulary: list[str] | None = None):
        import nltk
        from nltk.stem import WordNetLemmatizer

        self.missing = nltk_resources.missing()
        self.vocabulary = list(vocabulary or [])
        self.index = {tok: i for i, tok in enumerate(self.vocabulary)}
        self.warnings = tuple(f"NLTK resource '{name}' is missing: {purpose} uses a simpler fallback."
                              for name, purpose in self.missing.items())
        with self._load_lock:
            self._word_tokenize = nltk.word_tokenize if "punkt_tab" not in self.missing else None
            self.stopwords = (frozenset(nltk.corpus.stopwords.words("english"))
                              if "stopwords" not in self.missing else _FALLBACK_STOPWORDS)
            self.other_stopwords = _other_languages_stopwords() if "stopwords" not in self.missing else {}
            self._tagger = None
            if "averaged_perceptron_tagger_eng" not in self.missing:
                from nltk.tag import PerceptronTagger
                self._tagger = PerceptronTagger()
            self._lemmatizer = None
            if "wordnet" not in self.missing:
                self._lemmatizer = WordNetLemmatizer()
                self._lemmatizer.lemmatize("warming", "v")  # force the lazy corpus load now

    def tokenize(self, text: str) -> list[str]:
        if self._word_tokenize is not None:
            return self._word_tokenize(text)
        return _FALLBACK_TOKEN.findall(text)

    def lemmatize(self, words: list[str]) -> list[str]:
        if self._lemmatizer is None:
            return list(words)
        tags = [t for _, t in self._tagger.tag(words)] if self._tagger is not None and words else ["NN"] * len(words)
        pos = {"J": "a", "V": "v", "N": "n", "R": "r"}
        return [self._lemmatizer.lemmatize(w, pos.get(t[:1], "n")) for w, t in zip(words, tags)]

    def to_ids(self, lemmas: list[str]) -> tuple[tuple[int, ...], int, bool]:
        ids = [self.index.get(w, UNK) for w in lemmas]
        unknown = sum(1 for i in ids if i == UNK)
        truncated = len(ids) > SEQUENCE_LENGTH
        ids = (ids + [PAD] * SEQUENCE_LENGTH)[:SEQUENCE_LENGTH]
        return tuple(ids), unknown, truncated

    def lemmas(self, text: str) -> list[str]:
        """The token stream the vocabulary was built from (used by training too)."""
        return self.run(text).lemmas

    def run(self, text: str) -> Preprocessed:
        text = text[:MAX_CHARS]
        dec = decontract(text)
        tokens = self.tokenize(dec)
        words = [t.lower() for t in tokens if any(c.isalpha() for c in t) and re.fullmatch(r"[\w'-]+", t)]
        words = [w.strip("'-") for w in words if w.strip("'-")]
        kept = [w for w in words if w not in self.stopwords]
        lemmas = self.lemmatize(kept)
        ids, unknown, truncated = self.to_ids(lemmas)
        # CJK and other scripts count as letters for str.isalpha(): English means ASCII letters the
        # stop-word list or the vocabulary (as the word or its lemma) knows.
        english = sum(1 for w in words if w.isascii() and w in self.stopwords)
        english += sum(1 for w, lem in zip(kept, lemmas) if w.isascii() and (w in self.index or lem in self.index))
        return Preprocessed(dec, tuple(tokens), tuple(words), tuple(kept), tuple(lemmas), ids, unknown,
                            truncated, self.warnings, english, self.other_language(words))

    def other_language(self, words: list[str]) -> str | None:
        """The language whose stop words the text uses most, when that is not English: function words
        tell languages apart well even in a few lines (a German ballad: 17 German, 2 English)."""
        if not self.other_stopwords or not words:
            return None
        english = sum(1 for w in words if w in self.stopwords)
        hits = {lang: sum(1 for w in words if w in sw) for lang, sw in self.other_stopwords.items()}
        lang, best = max(hits.items(), key=lambda kv: kv[1])
        return lang.capitalize() if best >= 2 and best > 2 * english else None
