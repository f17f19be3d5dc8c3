"""The X-ray model's own input transform, shared by training and inference.

Keeping it in one place is what makes "the same pixels give the same answer"
true between the training script, the app and the CLI.
"""

from __future__ import annotations

import cv2
import numpy as np

INPUT_SIZE = 224


def to_model_input(gray: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """8-bit grayscale (H, W) -> float32 (size, size, 3) scaled to [-1, 1].

    The whole film is squashed to a square (no crop), as two of the training
    sources already are, so a box maps back by scaling x and y separately.
    """
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    interp = cv2.INTER_AREA if min(gray.shape) >= size else cv2.INTER_LINEAR
    small = cv2.resize(gray, (size, size), interpolation=interp)
    x = small.astype(np.float32) / 127.5 - 1.0
    return np.repeat(x[..., None], 3, axis=2)
