"""Which car photos train, tune and test, and their labels; shared by train_car.py and finetune_photo.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

PHOTO_BRANDS = ["Audi", "BMW", "Ford", "Hyundai", "Mercedes-Benz", "Toyota", "Volkswagen"]  # >= 100 photos each
MAKE_CLASSES = PHOTO_BRANDS + ["other make"]  # the make head's outputs


def photo_split(f: str) -> str:
    """By file-name hash: 65 % train, 15 % validation, 20 % test."""
    h = int(hashlib.sha1(f.encode()).hexdigest(), 16) % 100
    return "test" if h < 20 else "val" if h < 35 else "train"


def load_photos(data: Path, smoke: bool) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """images.csv with its split and make label ("not a car", a listing brand or "other make"), and the RGB photos."""
    imgs = pd.read_csv(data / "cars" / "images.csv")
    if smoke:
        imgs = pd.concat([imgs[imgs.is_car == 0].head(20)] +
                         [imgs[imgs.brand == b].head(12) for b in PHOTO_BRANDS] + [imgs[imgs.brand == "Ferrari"].head(12)])
    imgs = imgs.reset_index(drop=True)
    imgs["split"] = imgs.file.map(photo_split)
    imgs["make"] = np.where(imgs.is_car == 0, "not a car",
                            np.where(imgs.brand.isin(PHOTO_BRANDS), imgs.brand, "other make"))
    rgb = [cv2.cvtColor(cv2.imread(str(data / "cars" / f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in imgs.file]
    return imgs, rgb
