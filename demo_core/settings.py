"""Where weights and example data live.

Both can be moved with environment variables so that a deployment (or a test)
can point elsewhere without touching code.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def weights_dir() -> Path:
    return Path(os.environ.get("DEMO_WEIGHTS_DIR", PROJECT_ROOT / "weights"))


def data_dir() -> Path | None:
    """The data directory, or None when it is not present (e.g. on Community Cloud)."""
    configured = os.environ.get("DEMO_DATA_DIR")
    candidate = Path(configured) if configured else PROJECT_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


SHIPPED_NLTK_DATA = PROJECT_ROOT / "nltk_data"  # the English resources, in the repository (nltk_data/LICENSES.md)
LOCAL_NLTK_DATA = PROJECT_ROOT / ".nltk_data"  # WordNet, assembled from Debian's wordnet-base (git-ignored)


def nltk_data_dirs() -> list[Path]:
    """Local NLTK data folders, most specific first; nothing is downloaded."""
    dirs: list[Path] = []
    if os.environ.get("NLTK_DATA"):
        dirs += [Path(p) for p in os.environ["NLTK_DATA"].split(os.pathsep) if p]
    dirs.append(SHIPPED_NLTK_DATA)
    data = data_dir()
    if data is not None:
        dirs.append(data / "nltk_data")
    dirs.append(LOCAL_NLTK_DATA)
    return [d for d in dirs if d.is_dir()]
