"""Model cards: read ``weights/<task>/card.json`` and verify every file's sha256."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelUnavailable
from .settings import weights_dir
from .tasks import TASKS


def task_dir(task: str) -> Path:
    return weights_dir() / task


def read_card(task: str, folder: Path | None = None) -> dict:
    """The card as written by training (in ``folder``, by default the task's weights); raises ModelUnavailable if
    absent or unreadable."""
    path = (folder or task_dir(task)) / "card.json"
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


def verified_card(task: str, folder: Path | None = None) -> dict:
    """Read the card and check every listed file; a mismatch disables this demo only. ``folder``: where the files
    are, by default the task's weights (a training run checks the folder it just wrote)."""
    folder = folder or task_dir(task)
    card = read_card(task, folder)
    files = card.get("files") or {}
    if not files:
        raise ModelUnavailable(f"The {task} model card lists no files.")
    for name, meta in files.items():
        path = folder / name
        if not path.is_file():
            raise ModelUnavailable(f"The {task} model is incomplete: {name} is missing.")
        if file_sha256(path) != meta.get("sha256"):
            raise ModelUnavailable(f"The {task} model file {name} failed its checksum (corrupted or "
                                   "replaced); this demo is disabled until it is restored.")
    return card


def read_runtime(task: str) -> dict:
    """The settings the task's model reads at run time (thresholds, interval widths, the listings' catalog), from
    the file its training wrote beside the card; ``{}`` for a task that keeps them in the card itself."""
    name = TASKS[task].runtime_file
    if name is None:
        return {}
    try:
        return json.loads((task_dir(task) / name).read_text())
    except (OSError, ValueError):
        raise ModelUnavailable(f"The {task} model's settings ({name}) are missing or unreadable.") from None


def all_cards() -> dict[str, dict | str]:
    """Every task's card, or the reason it is unavailable (for the Models page)."""
    out: dict[str, dict | str] = {}
    for task in TASKS:
        try:
            out[task] = read_card(task)
        except ModelUnavailable as exc:
            out[task] = str(exc)
    return out


# ----------------------------------------------------------------------------- the typed card

REQUIRED_KEYS = ("name", "task", "labels", "metrics", "targets", "limitations", "files")
LOWER_IS_BETTER = ("mae", "mape", "ece", "gap")  # a target whose name contains one of these is a ceiling


@dataclass(frozen=True)
class Target:
    """One promise of a card: a floor (accuracy >= 0.85), a ceiling (MAPE <= 7 %) or a band (coverage 0.75-0.85)."""

    name: str
    value: float | tuple[float, float]

    @property
    def is_band(self) -> bool:
        return isinstance(self.value, tuple)

    @property
    def is_ceiling(self) -> bool:
        return not self.is_band and any(word in self.name for word in LOWER_IS_BETTER)

    def describe(self) -> str:
        if self.is_band:
            return f"{self.value[0]:g}–{self.value[1]:g}"
        return f"{'≤' if self.is_ceiling else '≥'} {self.value:g}"

    def met_by(self, result: float | None) -> bool | None:
        if result is None:
            return None
        if self.is_band:
            return self.value[0] <= result <= self.value[1]
        return result <= self.value if self.is_ceiling else result >= self.value


@dataclass(frozen=True)
class Card:
    """A model card as the app reads it: what the training script wrote, checked against the code.

    The common fields are typed; each demo's detailed figures stay in ``metrics`` and ``raw`` (their layout is the
    training script's, and tests/test_cards.py checks that the page's reader and the script's writer agree).
    """

    task: str
    name: str
    labels: list | dict
    targets: dict[str, Target]
    metrics: dict
    baselines: dict
    limitations: tuple[str, ...]
    files: dict[str, dict]
    version: str = ""
    date: str = ""
    runtime: dict = field(default_factory=dict, repr=False)  # what the model reads at run time (read_runtime)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, task: str, d: dict, runtime: dict | None = None) -> Card:
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise ModelUnavailable(f"The {task} model card lacks {', '.join(missing)}.")
        runtime = runtime or {}
        labels = d["labels"]
        if ("topics" in runtime and runtime["topics"] != labels) or (
                "photo_make_classes" in runtime and isinstance(labels, dict)
                and runtime["photo_make_classes"] != labels.get("photo_makes")):
            raise ModelUnavailable(f"The {task} model's card and its settings name different labels.")
        targets = {k: Target(k, tuple(v) if isinstance(v, list) else float(v)) for k, v in d["targets"].items()}
        return cls(task=task, name=d["name"], labels=d["labels"], targets=targets, metrics=d["metrics"],
                   baselines=d.get("baselines", {}), limitations=tuple(d["limitations"]), files=d["files"],
                   version=str(d.get("version", "")), date=str(d.get("date", "")), runtime=runtime, raw=d)

    def target(self, name: str) -> Target | None:
        return self.targets.get(name)

    def target_text(self, name: str) -> str:
        """The target as a table shows it ("≥ 0.85", "≤ 0.07", "0.75–0.85"); "" when the card sets none."""
        target = self.targets.get(name)
        return target.describe() if target else ""

    def section(self, *path: str) -> dict:
        """A nested part of the raw card, ``{}`` where absent (older cards lack newer sections)."""
        out = self.raw
        for key in path:
            out = out.get(key, {}) if isinstance(out, dict) else {}
        return out if isinstance(out, dict) else {}


def load_card(task: str, *, verify: bool = False) -> Card:
    """The task's card, typed, with its run-time settings; ``verify``: every file checked against its sha256 first
    (what a model loader does). Raises ModelUnavailable when absent, unreadable, inconsistent or incomplete."""
    return Card.from_dict(task, verified_card(task) if verify else read_card(task), read_runtime(task))
