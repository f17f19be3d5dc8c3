"""Which car photos train, tune and test, shared by train_car.py and finetune_photo.py."""

from __future__ import annotations

import hashlib

PHOTO_BRANDS = ["Audi", "BMW", "Ford", "Hyundai", "Mercedes-Benz", "Toyota", "Volkswagen"]  # >= 100 photos each


def photo_split(f: str) -> str:
    """By file-name hash: 65 % train, 15 % validation, 20 % test."""
    h = int(hashlib.sha1(f.encode()).hexdigest(), 16) % 100
    return "test" if h < 20 else "val" if h < 35 else "train"
