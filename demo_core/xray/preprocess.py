"""The X-ray models' own input transforms, shared by training and inference.

Keeping them in one place is what makes "the same pixels give the same answer"
true between the training scripts, the app and the CLI.

The *lung reading* (``LungReading``), which both members use:

- **Where the lungs are.** A small network finds the lung field on the film
  squashed to 224 px (``COMMON_DETAIL``), equalised.  It then looks again at the
  film cut to that field with a margin (``lung_field``, ``LUNG_PASSES`` looks in
  all), so its last look sees the lungs framed the same way whatever borders the
  export had.
- **What the members read.** That field, with a margin, is cut from the film
  itself and brought to one common level of detail, ``CROP_DETAIL`` px a side
  (``lung_crop``): the lungs of the coarsest sources (224 px films) already
  measure about that.  So sharpness, resolution and JPEG blocks stop telling
  sources apart, a film cut at its borders gives the same pixels, and borders,
  markers and burnt-in text around the chest are not read at all.  The crop is
  histogram-equalised, so gamma, windowing and an inverted DICOM LUT give the
  same pixels.  The fine-tuned member reads it at 224 px (``member_input``), the
  probe at its own size (``probe_input``).
- **Three framings.** The probe reads the crop at three framings of the same
  field (``FRAMINGS``: as found, 4 % tighter, 4 % wider) and its class
  probabilities are averaged, so a lung field found a few pixels off, or an
  export that moves it, barely moves the answer.  The fine-tuned member, the
  boxes, the attention map, the gate and the familiarity score read the first
  framing (``model.FRAMINGS_READ_BY``).

``to_model_input`` (the whole film squashed to 224 px) is how the first fine-tuned
member read films; the whole-film ImageNet baseline in the card still reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SIZE = 224
COMMON_DETAIL = 224  # px, squashed: the film as the lung-field network reads it; windows are in these pixels
CROP_DETAIL = 176  # px a side: the lung crop's common detail (a 224 px source's lungs span about 190 px)
LUNG_PASSES = 3  # looks for the lung field: the first at the whole film, each next one at the film cut to the last
REFINE_MARGIN = 0.15  # each next look sees the last field widened by this share of its size on every side
MIN_REFINE_PX = 32  # a cut smaller than this (in film pixels) is not looked at again
LUNG_NET_SIZE = 96  # px: what the lung-field network reads
LUNG_MARGIN = 0.06  # the crop reaches this fraction of the lung field's size beyond it on every side
MIN_CROP_FRACTION = 0.35  # a predicted field smaller than this share of a side is widened to it
# The crop window scaled about the field's centre; the probe's class probabilities are averaged over these.
# The first is the crop as found (the fine-tuned member, boxes, attention, gate and familiarity read it). Chosen
# on validation (docs/experiments.md, 2026-12-03): worst mean TV over the nine exports 0.053 -> 0.048.
FRAMINGS = (1.0, 0.96, 1.04)


def framings_in_words() -> str:
    """``FRAMINGS`` as the page says them: "as found, 4 % tighter and 4 % wider"."""
    words = ["as found" if f == 1 else f"{abs(1 - f):.0%} {'tighter' if f < 1 else 'wider'}".replace("%", " %")
             for f in FRAMINGS]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def to_model_input(gray: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """8-bit grayscale (H, W) -> float32 (size, size, 3) scaled to [-1, 1].

    The whole film is squashed to a square (no crop), as two of the training
    sources already are, so a box maps back by scaling x and y separately.
    """
    return _scaled(_squashed(gray, size))


def _squashed(gray: np.ndarray, size: int) -> np.ndarray:
    """The whole film, 8-bit grayscale, resized to size x size (area-averaged when shrinking)."""
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    interp = cv2.INTER_AREA if min(gray.shape) >= size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)


def _unit_range(gray: np.ndarray) -> np.ndarray:
    return gray.astype(np.float32) / 127.5 - 1.0


def _scaled(gray: np.ndarray) -> np.ndarray:
    return np.repeat(_unit_range(gray)[..., None], 3, axis=2)


def common_detail(gray: np.ndarray) -> np.ndarray:
    """The film at the common level of detail: uint8 (COMMON_DETAIL, COMMON_DETAIL)."""
    return _squashed(gray, COMMON_DETAIL)


def lung_net_input(common: np.ndarray) -> np.ndarray:
    """What the lung-field network reads: the equalised common-detail film, float32 (96, 96, 1) in [-1, 1]."""
    small = cv2.resize(cv2.equalizeHist(common), (LUNG_NET_SIZE, LUNG_NET_SIZE), interpolation=cv2.INTER_AREA)
    return _unit_range(small)[..., None]


def crop_window(field: np.ndarray, framing: float = 1.0) -> tuple[int, int, int, int]:
    """The lung field (x0, y0, x1, y1 as fractions of the film) -> the crop, in common-detail pixels; ``framing``
    scales the crop about its centre (``FRAMINGS``)."""
    x0, y0, x1, y1 = (float(v) for v in np.clip(field, 0.0, 1.0))
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    w, h = max(x1 - x0, MIN_CROP_FRACTION), max(y1 - y0, MIN_CROP_FRACTION)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = w * (1 + 2 * LUNG_MARGIN) * framing, h * (1 + 2 * LUNG_MARGIN) * framing
    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]).clip(0.0, 1.0) * COMMON_DETAIL
    return int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3]))


def lung_field(net: Callable[[np.ndarray], np.ndarray], grays: Sequence[np.ndarray],
               passes: int = LUNG_PASSES) -> np.ndarray:
    """The lung field of each film, as fractions (x0, y0, x1, y1) of it: (n, 4).

    ``net`` maps a batch of ``lung_net_input`` arrays to their fields.  The first look is at the whole film; each
    next look is at the film cut to the last field widened by ``REFINE_MARGIN``, and its answer is mapped back.
    The later looks see the lungs framed alike whether the export cut the borders or not.
    """
    fields = np.asarray(net(np.stack([lung_net_input(common_detail(g)) for g in grays])), np.float64)
    for _ in range(passes - 1):
        views, cuts = zip(*(_cut(g, _refine_cut(f)) for g, f in zip(grays, fields)))
        looked = [k for k, v in enumerate(views) if min(v.shape) >= MIN_REFINE_PX]
        if not looked:
            break
        inner = np.asarray(net(np.stack([lung_net_input(common_detail(views[k])) for k in looked])), np.float64)
        for k, f in zip(looked, inner):
            x0, y0, x1, y1 = cuts[k]
            fields[k] = [x0 + f[0] * (x1 - x0), y0 + f[1] * (y1 - y0), x0 + f[2] * (x1 - x0), y0 + f[3] * (y1 - y0)]
    return fields


def _refine_cut(field: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in field)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    mx, my = REFINE_MARGIN * (x1 - x0), REFINE_MARGIN * (y1 - y0)
    return tuple(float(v) for v in np.clip([x0 - mx, y0 - my, x1 + mx, y1 + my], 0.0, 1.0))


def _cut(gray: np.ndarray, cut: tuple[float, float, float, float]) -> tuple[np.ndarray, tuple[float, ...]]:
    """The part of the film a cut (fractions) covers, in the film's own pixels, and the cut snapped to them."""
    h, w = gray.shape[:2]
    c0, r0, c1, r1 = round(cut[0] * w), round(cut[1] * h), round(cut[2] * w), round(cut[3] * h)
    return np.ascontiguousarray(gray[r0:r1, c0:c1]), (c0 / w, r0 / h, c1 / w, r1 / h)


def lung_crop(gray: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """The lung crop at the common detail: the window (common-detail pixels) cut from the film at its own size,
    then resized to CROP_DETAIL x CROP_DETAIL (area-averaged when shrinking): uint8."""
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    x0, y0, x1, y1 = (v / COMMON_DETAIL for v in window)
    (r0, r1), (c0, c1) = _span(y0, y1, h), _span(x0, x1, w)
    crop = gray[r0:r1, c0:c1]
    interp = cv2.INTER_AREA if min(crop.shape) >= CROP_DETAIL else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (CROP_DETAIL, CROP_DETAIL), interpolation=interp)


def _span(start: float, end: float, n: int) -> tuple[int, int]:
    """Fractions of a side -> pixel rows or columns, at least one pixel, inside the film."""
    first = min(round(start * n), n - 1)
    return first, max(round(end * n), first + 1)


def probe_input(crop: np.ndarray, size: int) -> np.ndarray:
    """The lung crop (``lung_crop``) as a member reads it: equalised, resized to ``size``, float32 (size, size, 3)."""
    return _scaled(cv2.resize(cv2.equalizeHist(crop), (size, size), interpolation=cv2.INTER_LINEAR))


def member_input(crop: np.ndarray) -> np.ndarray:
    """What the fine-tuned member reads: the lung crop, equalised, at INPUT_SIZE (float32, 224 x 224 x 3)."""
    return probe_input(crop, INPUT_SIZE)


@dataclass(frozen=True)
class LungReading:
    """Where the probe looked: the lung field the network found and the crop it read, in film fractions."""

    field: tuple[float, float, float, float]
    window: tuple[int, int, int, int]  # common-detail pixels, the first framing

    @classmethod
    def of(cls, field: np.ndarray) -> LungReading:
        """The reading of a lung field the network found (fractions of the film)."""
        return cls(tuple(float(v) for v in field), crop_window(field))

    @property
    def windows(self) -> tuple[tuple[int, int, int, int], ...]:
        """The crop at every framing (``FRAMINGS``), the first one first, in common-detail pixels."""
        return tuple(crop_window(np.array(self.field), f) for f in FRAMINGS)

    def window_in_image(self, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The crop in the input image's pixels (x0, y0, x1, y1)."""
        return window_in_image(self.window, image_size)


def window_in_image(window: tuple[int, int, int, int], image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A window in common-detail pixels -> the same part of the input image, in its pixels (x0, y0, x1, y1)."""
    w, h = image_size
    s = COMMON_DETAIL
    x0, y0, x1, y1 = window
    return (round(x0 * w / s), round(y0 * h / s), round(x1 * w / s), round(y1 * h / s))
