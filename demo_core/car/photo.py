"""The car photo model's own input transform, shared by training and inference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

INPUT_SIZE = 224


def to_photo_input(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """8-bit RGB (H, W, 3) -> float32 (size, size, 3) in [-1, 1], whole photo squashed to a square."""
    interp = cv2.INTER_AREA if min(rgb.shape[:2]) >= size else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (size, size), interpolation=interp)
    return small.astype(np.float32) / 127.5 - 1.0


def center_crop(rgb: np.ndarray, fraction: float) -> np.ndarray:
    """The middle ``fraction`` of each side. The margins are equal, so cropping commutes with mirroring."""
    if fraction >= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    my, mx = round(h * (1 - fraction) / 2), round(w * (1 - fraction) / 2)
    return rgb[my:h - my, mx:w - mx]


@dataclass(frozen=True)
class MakeViews:
    """How the make head looks at a photo: a centred crop, and optionally its mirror image too (probabilities
    averaged).  The make was fine-tuned on random crops of 45-100 % of the photo's area, so a crop like the
    average training view reads the car better than the whole frame; the car / not-car check always reads
    the whole photo."""

    center_crop: float = 1.0
    flip: bool = False

    @classmethod
    def from_catalog(cls, catalog: dict) -> MakeViews:
        if "photo_make_views" in catalog:
            return cls(**catalog["photo_make_views"])
        return cls(flip=bool(catalog.get("photo_make_flip_tta", False)))  # catalogs written before crops

    def inputs(self, rgb: np.ndarray) -> np.ndarray:
        """(views, INPUT_SIZE, INPUT_SIZE, 3) model inputs for one photo."""
        x = to_photo_input(center_crop(rgb, self.center_crop))[None]
        return np.concatenate([x, np.ascontiguousarray(x[:, :, ::-1])]) if self.flip else x

    def describe(self) -> str:
        crop = "the whole photo" if self.center_crop >= 1 else f"the centre {self.center_crop:.0%} of each side"
        return crop + (" and its mirror image (mean)" if self.flip else "")

    def to_dict(self) -> dict:
        return asdict(self)
