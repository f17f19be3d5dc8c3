"""The demos, listed once. The CLI, the app's model warm-up, the card checks and the test fixtures derive
from this registry; each demo's model module has ``load()`` and a model with ``predict_request(dict)``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str  # the CLI argument, the weights folder, the URL path
    title: str  # in running text: "the chest X-ray model"
    module: str  # where ``load()`` lives
    runtime_file: str | None = None  # the settings the model reads at run time, beside its card (Card.runtime)

    def load(self):
        """The demo's model, verified against its card (seconds: once per process)."""
        return importlib.import_module(self.module).load()


# The chest X-ray first: the app warms the models in this order, and doctors are the ones who wait.
TASKS: dict[str, Task] = {t.name: t for t in (
    Task("xray", "chest X-ray", "demo_core.xray.model"),
    Task("poem", "poem", "demo_core.poem.model", "poem_config.json"),
    Task("car", "car price", "demo_core.car.model", "catalog.json"),
)}
