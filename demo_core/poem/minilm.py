"""all-MiniLM-L6-v2 sentence embeddings in TensorFlow, with its WordPiece tokenizer.

A faithful re-implementation of the BERT encoder (6 layers, 384 wide, 12 heads),
mean pooling and L2 normalisation, reading float16 weights from
``weights/poem/minilm.npz``.  ``training/check_minilm.py`` compares it with the
reference implementation.  Apache-2.0, see ``weights/poem/MINILM_NOTICE.txt``.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np

from .. import _tf

MAX_TOKENS = 128  # the length the model was trained with; longer poems are truncated
HIDDEN, HEADS, LAYERS = 384, 12, 6


# ----------------------------------------------------------------------------- tokenizer

def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or
            0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or
            0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPieceTokenizer:
    """BERT's uncased basic tokenizer followed by greedy longest-match WordPiece."""

    def __init__(self, vocab: list[str]):
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        self.cls, self.sep, self.unk, self.pad_id = (self.vocab[t] for t in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"))

    def basic_tokens(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if _is_cjk(cp):
                chars.append(f" {ch} ")
            elif ch.isspace() or unicodedata.category(ch) == "Zs":
                chars.append(" ")
            else:
                chars.append(ch)
        tokens = []
        for word in "".join(chars).split():
            word = unicodedata.normalize("NFD", word.lower())
            word = "".join(c for c in word if unicodedata.category(c) != "Mn")
            current = ""
            for ch in word:
                if _is_punctuation(ch):
                    if current:
                        tokens.append(current)
                    tokens.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                tokens.append(current)
        return tokens

    def wordpieces(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return ids

    def pieces(self, text: str, limit: int) -> list[int]:
        ids: list[int] = []
        for word in self.basic_tokens(text):
            ids.extend(self.wordpieces(word))
            if len(ids) >= limit:
                break
        return ids[:limit]

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        return [self.cls] + self.pieces(text, max_tokens - 2) + [self.sep]

    def chunks(self, text: str, max_chunks: int, max_tokens: int = MAX_TOKENS) -> list[list[int]]:
        """Consecutive windows of the text, each a full [CLS] ... [SEP] sequence."""
        step = max_tokens - 2
        ids = self.pieces(text, step * max_chunks)
        return [[self.cls] + ids[i:i + step] + [self.sep] for i in range(0, max(len(ids), 1), step)]

    def pad(self, encoded: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        length = max(len(e) for e in encoded)
        ids = np.full((len(encoded), length), self.pad_id, np.int32)
        mask = np.zeros((len(encoded), length), np.int32)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = e
            mask[i, : len(e)] = 1
        return ids, mask

    def batch(self, texts: list[str], max_tokens: int = MAX_TOKENS) -> tuple[np.ndarray, np.ndarray]:
        return self.pad([self.encode(t, max_tokens) for t in texts])


# ----------------------------------------------------------------------------- encoder

class MiniLMEncoder:
    """Sentence embeddings (L2-normalised, 384-d).  Thread-safe: weights are constants."""

    def __init__(self, weights: dict[str, np.ndarray], vocab: list[str]):
        tf = _tf.tf()
        self.tokenizer = WordPieceTokenizer(vocab)
        w = {k: tf.constant(np.asarray(v, np.float32)) for k, v in weights.items()}
        self._embed = tf.function(self._build(tf, w), autograph=False, input_signature=[
            tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.int32)])

    @staticmethod
    def _build(tf, w):
        def layer_norm(x, name):
            mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(var + 1e-12) * w[f"{name}.weight"] + w[f"{name}.bias"]

        def dense(x, name):
            return tf.matmul(x, w[f"{name}.weight"], transpose_b=True) + w[f"{name}.bias"]

        def embed(ids, mask):
            b, t = tf.shape(ids)[0], tf.shape(ids)[1]
            x = (tf.gather(w["embeddings.word_embeddings.weight"], ids)
                 + w["embeddings.position_embeddings.weight"][None, :t]
                 + w["embeddings.token_type_embeddings.weight"][0])
            x = layer_norm(x, "embeddings.LayerNorm")
            maskf = tf.cast(mask, tf.float32)
            bias = (1.0 - maskf)[:, None, None, :] * -1e9
            dh = HIDDEN // HEADS

            def heads(z):
                return tf.transpose(tf.reshape(z, [b, t, HEADS, dh]), [0, 2, 1, 3])

            for i in range(LAYERS):
                p = f"encoder.layer.{i}"
                q = heads(dense(x, f"{p}.attention.self.query"))
                k = heads(dense(x, f"{p}.attention.self.key"))
                v = heads(dense(x, f"{p}.attention.self.value"))
                att = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / float(np.sqrt(dh)) + bias, axis=-1)
                ctx = tf.reshape(tf.transpose(tf.matmul(att, v), [0, 2, 1, 3]), [b, t, HIDDEN])
                x = layer_norm(x + dense(ctx, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
                h = tf.nn.gelu(dense(x, f"{p}.intermediate.dense"), approximate=False)
                x = layer_norm(x + dense(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
            pooled = tf.reduce_sum(x * maskf[..., None], 1) / tf.maximum(tf.reduce_sum(maskf, 1, keepdims=True), 1e-9)
            return tf.math.l2_normalize(pooled, axis=-1)
        return embed

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            ids, mask = self.tokenizer.batch(texts[i:i + batch_size])
            out.append(self._embed(ids, mask).numpy())
        return np.concatenate(out) if out else np.zeros((0, HIDDEN), np.float32)


    def embed_long(self, texts: list[str], max_chunks: int = 4, batch_size: int = 64) -> np.ndarray:
        """Whole-poem embeddings: the mean of up to ``max_chunks`` consecutive 128-piece windows."""
        chunks, owner = [], []
        for i, t in enumerate(texts):
            for c in self.tokenizer.chunks(t, max_chunks):
                chunks.append(c)
                owner.append(i)
        order = np.argsort([len(c) for c in chunks], kind="stable")  # similar lengths batch together
        vecs = np.zeros((len(chunks), HIDDEN), np.float32)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            ids, mask = self.tokenizer.pad([chunks[j] for j in idx])
            vecs[idx] = self._embed(ids, mask).numpy()
        out = np.zeros((len(texts), HIDDEN), np.float32)
        np.add.at(out, np.asarray(owner), vecs)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def load_encoder(folder: Path) -> MiniLMEncoder:
    with np.load(folder / "minilm.npz") as z:
        weights = {k: z[k] for k in z.files}
    vocab = (folder / "minilm_vocab.txt").read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab = vocab[:-1]
    return MiniLMEncoder(weights, vocab)
