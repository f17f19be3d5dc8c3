"""What happens to a film between the hospital and the demo, and how much the answer moves.

One list of transforms (``TRANSFORMS``), used by ``bench/xray_robustness.py``,
the tests, and the training script that picks the probe under a robustness
rule.  Each takes an 8-bit grayscale film and returns a ``LoadedImage`` as the
app would receive it after that export (a DICOM goes through the real intake).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..intake import LoadedImage, load_image

# The targets the robustness issue sets for every transform (test split).
MIN_AGREEMENT = 0.95
MAX_MEAN_TV = 0.05


def _raster(gray: np.ndarray, name: str) -> LoadedImage:
    return LoadedImage(np.repeat(gray[..., None], 3, axis=2), name)


def _jpeg(quality: int) -> Callable[[np.ndarray], LoadedImage]:
    def f(gray: np.ndarray) -> LoadedImage:
        ok, enc = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return load_image(enc.tobytes(), name="film.jpg")
    return f


def _border_crop(fraction: float) -> Callable[[np.ndarray], LoadedImage]:
    def f(gray: np.ndarray) -> LoadedImage:
        h, w = gray.shape
        dy, dx = round(h * fraction), round(w * fraction)
        return _raster(np.ascontiguousarray(gray[dy:h - dy, dx:w - dx]), "crop")
    return f


def _longest_side(side: int) -> Callable[[np.ndarray], LoadedImage]:
    def f(gray: np.ndarray) -> LoadedImage:
        h, w = gray.shape
        s = side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return _raster(cv2.resize(gray, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC), "resized")
    return f


def _gamma(g: float) -> Callable[[np.ndarray], LoadedImage]:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g + 0.5, 0, 255).astype(np.uint8)

    def f(gray: np.ndarray) -> LoadedImage:
        return _raster(lut[gray], "gamma")
    return f


def _dicom_monochrome1(gray: np.ndarray) -> LoadedImage:
    from ..examples import as_dicom
    return load_image(as_dicom(gray, monochrome1=True, window=(2048, 4096)), name="film.dcm")


@dataclass(frozen=True)
class Transform:
    name: str
    apply: Callable[[np.ndarray], LoadedImage]


TRANSFORMS: tuple[Transform, ...] = (
    Transform("JPEG q50", _jpeg(50)),
    Transform("JPEG q75", _jpeg(75)),
    Transform("border crop 2 %", _border_crop(0.02)),
    Transform("border crop 6 %", _border_crop(0.06)),
    Transform("downscale to 256 px", _longest_side(256)),
    Transform("upscale to 1,536 px", _longest_side(1536)),
    Transform("gamma 0.8", _gamma(0.8)),
    Transform("gamma 1.25", _gamma(1.25)),
    Transform("16-bit MONOCHROME1 DICOM", _dicom_monochrome1),
)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total-variation distance between rows of two probability arrays: half the L1 distance."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(axis=-1)


@dataclass(frozen=True)
class TransformStability:
    transform: str
    n: int
    agreement: float  # share of films whose top class is unchanged
    mean_tv: float  # mean total-variation distance between the two probability vectors

    @property
    def meets_targets(self) -> bool:
        return self.agreement >= MIN_AGREEMENT and self.mean_tv <= MAX_MEAN_TV

    def to_dict(self) -> dict:
        return {"transform": self.transform, "n": self.n, "agreement": round(self.agreement, 4),
                "mean_tv": round(self.mean_tv, 4)}


def stability(name: str, original: np.ndarray, transformed: np.ndarray) -> TransformStability:
    """Compare (n, classes) probabilities on the originals with those after one transform."""
    original, transformed = np.asarray(original), np.asarray(transformed)
    agree = float((original.argmax(1) == transformed.argmax(1)).mean())
    return TransformStability(name, len(original), agree, float(total_variation(original, transformed).mean()))


def stability_table(predict: Callable[[LoadedImage], np.ndarray], films: Sequence[np.ndarray],
                    transforms: Sequence[Transform] = TRANSFORMS) -> list[TransformStability]:
    """``predict`` maps a LoadedImage to its class probabilities; one row per transform."""
    base = np.stack([predict(_raster(g, "original")) for g in films])
    return [stability(t.name, base, np.stack([predict(t.apply(g)) for g in films])) for t in transforms]



def mass_inside(attention: np.ndarray, boxes: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(share of the map's mass inside the union of ``boxes``, share of the area inside them).

    The second number is what a uniform map would score: the baseline for the first.
    """
    h, w = attention.shape
    inside = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        inside[max(0, int(y0)):min(h, int(np.ceil(y1))), max(0, int(x0)):min(w, int(np.ceil(x1)))] = True
    total = float(attention.sum())
    return (float(attention[inside].sum()) / total if total > 0 else 0.0), float(inside.mean())


# ----------------------------------------------------------------------------- the self-check of one upload

# The two exports that move the answer most on the test split (bench/xray_robustness.py). Every upload is read
# again after each, so the visitor learns when the answer would change with a slightly different export.
SELF_CHECK = ("border crop 6 %", "JPEG q50")


@dataclass(frozen=True)
class SelfCheck:
    """The answer for this very film after the exports that move answers most."""

    label: str  # the answer on the film as uploaded
    after: dict[str, str]  # export -> the top class after it
    max_tv: float  # the largest total-variation shift of the four probabilities

    @property
    def flipped_by(self) -> tuple[str, ...]:
        return tuple(name for name, label in self.after.items() if label != self.label)

    @property
    def stable(self) -> bool:
        return not self.flipped_by

    def caution(self) -> str | None:
        if self.stable:
            return None
        changes = "; ".join(f"after a {name.replace(' %', '%')} it reads {self.after[name]}" for name in self.flipped_by)
        return (f"The answer is not stable for this film: {changes}. A different export of the same film could "
                "get another answer; treat it with extra caution.")

    def to_dict(self) -> dict:
        return {"stable": self.stable, "after": self.after, "max_tv": round(self.max_tv, 4)}


def self_check(predict: Callable[[LoadedImage], np.ndarray], gray: np.ndarray, original: np.ndarray,
               classes: Sequence[str]) -> SelfCheck:
    """``predict`` maps a LoadedImage to probabilities; ``original`` are the film's own."""
    by_name = {t.name: t for t in TRANSFORMS}
    after, tv = {}, 0.0
    for name in SELF_CHECK:
        p = predict(by_name[name].apply(gray))
        after[name] = classes[int(np.argmax(p))]
        tv = max(tv, float(total_variation(original, p)))
    return SelfCheck(classes[int(np.argmax(original))], after, tv)
