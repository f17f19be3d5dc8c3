"""Whether a film was taken AP (bedside, the X-ray tube in front) or PA (standing, the tube behind).

The class heads learnt to lean on the view: in our collections COVID-19 films are mostly bedside AP films,
and the heart and the shoulder blades look different on an AP film. The heads were refitted to weigh AP and PA
films alike and to ignore the features that tell them apart within a class (``training/xray_outside.py``), but
normal AP films from another hospital are still called abnormal more often than normal PA films. So the app says
so beside the answer of an AP film: from the DICOM's ViewPosition when the file gives it, otherwise estimated by a
logistic regression on the probe's pooled features (trained on the films whose view is known).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIEW_FILE = "view.npz"


@dataclass(frozen=True)
class ViewReading:
    view: str  # "AP" or "PA"
    p_ap: float | None  # the estimate's probability of AP; None when the file's ViewPosition said it
    source: str  # "DICOM ViewPosition" or "estimated from the film"

    def to_dict(self) -> dict:
        return {"view": self.view, "p_ap": None if self.p_ap is None else round(self.p_ap, 4), "source": self.source}


@dataclass(frozen=True)
class ViewHead:
    weights: np.ndarray  # (d,): reads the raw pooled features (standardisation folded in)
    bias: float

    def p_ap(self, pooled: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.atleast_2d(pooled) @ self.weights + self.bias)))

    def read(self, pooled: np.ndarray, info: dict) -> ViewReading:
        """The view the file states (ViewPosition AP or PA), else the estimate."""
        stated = str(info.get("ViewPosition", "")).strip().upper()
        if stated in ("AP", "PA"):
            return ViewReading(stated, None, "DICOM ViewPosition")
        p = float(self.p_ap(pooled)[0])
        return ViewReading("AP" if p >= 0.5 else "PA", p, "estimated from the film")

    def save(self, path: Path) -> None:
        np.savez(path, weights=self.weights.astype(np.float32), bias=np.float32(self.bias))

    @classmethod
    def load(cls, path: Path) -> ViewHead | None:
        """None for a model trained before the view head existed."""
        if not path.is_file():
            return None
        with np.load(path) as f:
            return cls(f["weights"], float(f["bias"]))
