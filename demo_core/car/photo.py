"""The car photo model's own input transform, shared by training and inference."""

from __future__ import annotations

import cv2
import numpy as np

INPUT_SIZE = 224


def to_photo_input(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """8-bit RGB (H, W, 3) -> float32 (size, size, 3) in [-1, 1], whole photo squashed to a square."""
    interp = cv2.INTER_AREA if min(rgb.shape[:2]) >= size else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (size, size), interpolation=interp)
    return small.astype(np.float32) / 127.5 - 1.0
