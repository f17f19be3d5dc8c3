"""Turn the CenterNet-style heat map into scored boxes in image pixels."""

from __future__ import annotations

import numpy as np


def decode_boxes(heat: np.ndarray, size: np.ndarray, image_size: tuple[int, int], *,
                 threshold: float = 0.3, top_k: int = 10, nms_iou: float = 0.6) -> list[tuple[list[float], float]]:
    """heat (G, G) in [0, 1], size (G, G, 2) as fractions of the input side; image_size = (W, H).

    A cell is a detection when it is a 3x3 local maximum above ``threshold``.
    """
    g_h, g_w = heat.shape
    W, H = image_size
    padded = np.pad(heat, 1, constant_values=-1.0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    peaks = (heat >= windows.max(axis=(2, 3))) & (heat >= threshold)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-heat[ys, xs], kind="stable")[: top_k * 3]
    found: list[tuple[list[float], float]] = []
    for i in order:
        iy, ix = int(ys[i]), int(xs[i])
        cx, cy = (ix + 0.5) * W / g_w, (iy + 0.5) * H / g_h
        bw, bh = float(size[iy, ix, 0]) * W, float(size[iy, ix, 1]) * H
        box = [max(0.0, cx - bw / 2), max(0.0, cy - bh / 2), min(float(W), cx + bw / 2), min(float(H), cy + bh / 2)]
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        if all(_iou(box, kept) < nms_iou for kept, _ in found):
            found.append((box, float(heat[iy, ix])))
        if len(found) >= top_k:
            break
    return found


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def boxes_in_window(heat: np.ndarray, size: np.ndarray, window: tuple[int, int, int, int], *,
                    threshold: float = 0.3, top_k: int = 10) -> list[tuple[list[float], float]]:
    """Boxes the network found in the crop ``window`` (x0, y0, x1, y1 in the image's pixels), in the image's pixels."""
    x0, y0, x1, y1 = window
    found = decode_boxes(heat, size, (max(1, x1 - x0), max(1, y1 - y0)), threshold=threshold, top_k=top_k)
    return [([b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0], score) for b, score in found]
