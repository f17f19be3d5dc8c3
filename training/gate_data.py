"""Negatives for the "is this a chest X-ray?" gate: real photos and generated images.

Real photos come from shared/data/cars (cars, interiors, parts, animals, people,
fruit, scenes); generated ones imitate what else a visitor may upload: documents,
screenshots, charts, gradients, noise.  Everything is split 70/30 by a hash of
the file name (or the generator seed) so the gate's refusal rate is measured on
images it never saw.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd



def _is_test(key: str) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10 >= 7


def synthetic_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    h, w = int(rng.integers(300, 900)), int(rng.integers(300, 900))
    if kind == "document":
        img = np.full((h, w, 3), rng.integers(225, 256), np.uint8)
        y = int(rng.integers(20, 60))
        while y < h - 20:
            words = " ".join("".join(chr(rng.integers(97, 123)) for _ in range(rng.integers(2, 9)))
                             for _ in range(rng.integers(3, 12)))
            cv2.putText(img, words, (int(rng.integers(10, 60)), y), cv2.FONT_HERSHEY_SIMPLEX,
                        rng.uniform(0.4, 0.9), (int(rng.integers(0, 60)),) * 3, 1, cv2.LINE_AA)
            y += int(rng.integers(18, 40))
        return img
    if kind == "screen":
        img = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
        for _ in range(rng.integers(4, 15)):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(10, h // 3))),
                          rng.integers(0, 256, 3).tolist(), -1)
            cv2.putText(img, "Menu File Edit", (x0 + 5, y0 + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        return img
    if kind == "chart":
        img = np.full((h, w, 3), 255, np.uint8)
        pts = np.stack([np.linspace(40, w - 20, 30), h - 40 - np.cumsum(rng.normal(0, 10, 30)).clip(-h / 3, h / 2)], 1)
        cv2.polylines(img, [pts.astype(np.int32)], False, rng.integers(0, 200, 3).tolist(), 2)
        cv2.line(img, (40, 20), (40, h - 40), (0, 0, 0), 1)
        cv2.line(img, (40, h - 40), (w - 20, h - 40), (0, 0, 0), 1)
        return img
    if kind == "gradient":
        a = np.linspace(0, 1, w)[None, :] * rng.uniform(0, 1) + np.linspace(0, 1, h)[:, None] * rng.uniform(0, 1)
        g = (255 * a / max(a.max(), 1e-6)).astype(np.uint8)
        return np.repeat(g[..., None], 3, 2)
    if kind == "noise":
        n = cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), rng.uniform(0.5, 8))
        return np.repeat(n[..., None], 3, 2)
    # solid or near-solid
    return np.full((h, w, 3), rng.integers(0, 256), np.uint8)


KINDS = ["document", "screen", "chart", "gradient", "noise", "solid"]


def gate_negatives(data: Path, smoke: bool = False) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """Images that are not chest films, as 8-bit grayscale: (training, test, a description for the card)."""
    cars = pd.read_csv(data / "cars" / "images.csv")
    if smoke:
        cars = cars.sample(24, random_state=0)
    train, test = [], []
    for f in cars.file:
        img = cv2.imread(str(data / "cars" / f), cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        (test if _is_test(f) else train).append(img)
    rng = np.random.default_rng(7)
    n_synth = 12 if smoke else 360
    for i in range(n_synth):
        kind = KINDS[i % len(KINDS)]
        img = cv2.cvtColor(synthetic_image(kind, rng), cv2.COLOR_RGB2GRAY)
        (test if _is_test(f"{kind}{i}") else train).append(img)
    desc = (f"{len(cars)} photos from shared/data/cars (cars, interiors, parts, animals, people, scenes) and "
            f"{n_synth} generated documents, screenshots, charts, gradients, noise and solid images, all "
            "converted to grayscale (colour images are refused before the gate); split 70/30 by file-name hash")
    return train, test, desc
