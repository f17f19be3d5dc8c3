"""Model cards: read ``weights/<task>/card.json`` and verify every file's sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import ModelUnavailable
from .settings import weights_dir
from .tasks import TASKS


def task_dir(task: str) -> Path:
    return weights_dir() / task


def read_card(task: str) -> dict:
    """The card as written by training; raises ModelUnavailable if absent or unreadable."""
    path = task_dir(task) / "card.json"
    if not path.is_file():
        raise ModelUnavailable(f"The {task} model is not installed (no {path.name} in weights/{task}/).")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise ModelUnavailable(f"The {task} model card is unreadable.") from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_card(task: str) -> dict:
    """Read the card and check every listed file; a mismatch disables this demo only."""
    card = read_card(task)
    files = card.get("files") or {}
    if not files:
        raise ModelUnavailable(f"The {task} model card lists no files.")
    for name, meta in files.items():
        path = task_dir(task) / name
        if not path.is_file():
            raise ModelUnavailable(f"The {task} model is incomplete: {name} is missing.")
        if file_sha256(path) != meta.get("sha256"):
            raise ModelUnavailable(f"The {task} model file {name} failed its checksum (corrupted or "
                                   "replaced); this demo is disabled until it is restored.")
    return card


def all_cards() -> dict[str, dict | str]:
    """Every task's card, or the reason it is unavailable (for the Models page)."""
    out: dict[str, dict | str] = {}
    for task in TASKS:
        try:
            out[task] = read_card(task)
        except ModelUnavailable as exc:
            out[task] = str(exc)
    return out
