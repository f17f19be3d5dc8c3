"""Where in the lung crop the lungs lie, and feature pooling weighted by it.

The lung crop is one box around both lungs, so a plain average over it also reads the mediastinum between them,
the shoulders and corners above and the abdomen below. Both members therefore pool their feature maps with the
*lung prior*: for each point of the crop, the share of training films whose drawn lung boxes cover it. A cell of
the feature map counts in the class score in proportion to how likely it is to be lung. The attention map splits
the score the same way (each cell's share, spread over its pixels by the prior), so a map that lies inside the
lungs is what the model computes, not a drawing choice.

Pure numpy: the Keras layer that bakes the same weights into the graphs is ``keras_layers.LungPriorPooling``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

PRIOR_SIZE = 56  # px of the crop, whatever its size: 8 cells of the fine-tuned member's 7 x 7 map each


def cell_weights(prior: np.ndarray, grid: int) -> np.ndarray:
    """The prior on a ``grid`` x ``grid`` feature map (each cell's mean prior), scaled to mean 1 so that a flat
    prior pools exactly as a global average does."""
    w = cv2.resize(np.asarray(prior, np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    return (w / max(float(w.mean()), 1e-6)).astype(np.float32)


def prior_pooled(features: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(..., grid, grid, channels) -> (..., channels): the prior-weighted mean of every channel."""
    w = cell_weights(prior, features.shape[-2])
    return (features * w[..., None]).mean(axis=(-3, -2))


def prior_over(prior: np.ndarray, width: int, height: int) -> np.ndarray:
    """The prior stretched over a crop of ``width`` x ``height`` pixels (values in [0, 1])."""
    return cv2.resize(np.asarray(prior, np.float32), (width, height), interpolation=cv2.INTER_LINEAR).clip(0, 1)


def boxes_in_crop(boxes: Iterable[Sequence[float]], window: tuple[int, int, int, int]) -> np.ndarray:
    """Lung boxes (x0, y0, x1, y1 in common-detail pixels) as a 0/1 mask over ``window``, at PRIOR_SIZE."""
    x0, y0, x1, y1 = window
    mask = np.zeros((max(1, y1 - y0), max(1, x1 - x0)), np.float32)
    for bx0, by0, bx1, by1 in boxes:
        mask[max(0, int(by0 - y0)):max(0, int(np.ceil(by1 - y0))), max(0, int(bx0 - x0)):max(0, int(np.ceil(bx1 - x0)))] = 1
    return cv2.resize(mask, (PRIOR_SIZE, PRIOR_SIZE), interpolation=cv2.INTER_AREA)


def fit_prior(masks: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the training films' lung masks in crop coordinates (PRIOR_SIZE x PRIOR_SIZE, in [0, 1])."""
    if not len(masks):
        return np.ones((PRIOR_SIZE, PRIOR_SIZE), np.float32)
    return np.mean(np.stack(masks), axis=0).astype(np.float32)


def uniform_share(prior: np.ndarray, lung_mask: np.ndarray) -> float:
    """What an even map weighted by the prior alone would put inside ``lung_mask`` (both at PRIOR_SIZE)."""
    return float((prior * lung_mask).sum() / max(float(prior.sum()), 1e-9))
