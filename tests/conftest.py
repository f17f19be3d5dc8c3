"""Shared fixtures: generated images, loaded models (once per session), the data directory."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent


def png_bytes(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from demo_core.settings import data_dir as find
    d = find()
    if d is None:
        pytest.skip("data directory not available (set DEMO_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def chest_film() -> Path:
    """A real held-out radiograph from the shipped example pack (CC BY)."""
    from demo_core.examples import xray_examples
    return xray_examples()[0].path


@pytest.fixture(scope="session")
def car_photo() -> Path:
    """A car photo whose make is a listed brand: the data directory's first, else the pack's."""
    from demo_core.examples import car_photo_examples
    return car_photo_examples()[0].path


def _loaded(task: str):
    from demo_core.tasks import TASKS
    return TASKS[task].load()


@pytest.fixture(scope="session")
def xray_model():
    return _loaded("xray")


@pytest.fixture(scope="session")
def poem_model():
    return _loaded("poem")


@pytest.fixture(scope="session")
def car_model():
    return _loaded("car")
