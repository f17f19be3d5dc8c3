"""The X-ray models' own input transforms, shared by training and inference.

Keeping them in one place is what makes "the same pixels give the same answer"
true between the training scripts, the app and the CLI.

The *lung reading* (``LungReading``), which both members use: every film is first brought to one
  common level of detail, the coarsest source's (224 px squashed, as the
  COVID-QU-Ex and Radiography DB films already are), so sharpness, resolution
  and JPEG blocks stop telling sources apart; a small network finds the lung
  field there; the members read that crop only, histogram-equalised, so that
  gamma, windowing and an inverted DICOM LUT give the same pixels and borders,
  markers and burnt-in text around the chest are not read at all. The fine-tuned
  member reads that crop at 224 px (``member_input``), the probe at its own size.

``to_model_input`` (the whole film squashed to 224 px) is how the first fine-tuned
member read films; the whole-film ImageNet baseline in the card still reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SIZE = 224
COMMON_DETAIL = 224  # px, squashed: the detail of the coarsest training sources
LUNG_NET_SIZE = 96  # px: what the lung-field network reads
LUNG_MARGIN = 0.06  # the crop reaches this fraction of the lung field's size beyond it on every side
MIN_CROP_FRACTION = 0.35  # a predicted field smaller than this share of a side is widened to it


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


def crop_window(field: np.ndarray) -> tuple[int, int, int, int]:
    """The lung field (x0, y0, x1, y1 as fractions of the film) -> the crop, in common-detail pixels."""
    x0, y0, x1, y1 = (float(v) for v in np.clip(field, 0.0, 1.0))
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    w, h = max(x1 - x0, MIN_CROP_FRACTION), max(y1 - y0, MIN_CROP_FRACTION)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = w * (1 + 2 * LUNG_MARGIN), h * (1 + 2 * LUNG_MARGIN)
    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]).clip(0.0, 1.0) * COMMON_DETAIL
    return int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3]))


def probe_input(common: np.ndarray, window: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The lung crop as a member reads it: equalised, resized to ``size``, float32 (size, size, 3)."""
    x0, y0, x1, y1 = window
    crop = cv2.equalizeHist(np.ascontiguousarray(common[y0:y1, x0:x1]))
    return _scaled(cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR))


def member_input(common: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """What the fine-tuned member reads: the lung crop, equalised, at INPUT_SIZE (float32, 224 x 224 x 3)."""
    return probe_input(common, window, INPUT_SIZE)


@dataclass(frozen=True)
class LungReading:
    """Where the probe looked: the lung field the network found and the crop it read, in film fractions."""

    field: tuple[float, float, float, float]
    window: tuple[int, int, int, int]  # common-detail pixels

    def window_in_image(self, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The crop in the input image's pixels (x0, y0, x1, y1)."""
        return window_in_image(self.window, image_size)


def window_in_image(window: tuple[int, int, int, int], image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A window in common-detail pixels -> the same part of the input image, in its pixels (x0, y0, x1, y1)."""
    w, h = image_size
    s = COMMON_DETAIL
    x0, y0, x1, y1 = window
    return (round(x0 * w / s), round(y0 * h / s), round(x1 * w / s), round(y1 * h / s))
