"""How far off is the year for a text of a few words?  Sets the interval the poem page gives such texts.

A visitor's text that is very short, or mostly not English, gets no style match and a year interval as wide
as the year error measured here: validation poems (never trained on by the year models) cut to their first
1 to 5 words, with no title and no author, read by the shipped model. The half-width is the 80 % quantile of
the absolute error, so that about 80 % of such texts fall inside it. No non-English poems are available
offline, so a text that is mostly another language is given the same width: the model then reads only its
few English words.

    python training/poem_edge_intervals.py          # about 1 min; writes interval_half_width_short_text
    python training/poem_edge_intervals.py --dry-run
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from common import ROOT, require_data, write_card
from train_poem import load

WORDS = (1, 2, 3, 4, 5)
PER_LENGTH = 200  # validation poems per text length


def short_texts(df, rng: np.random.Generator) -> list[tuple[str, float, int]]:
    """(first n words, year, n) for dated validation poems."""
    val = df[(df.split == "val") & df.year_f.notna()]
    out = []
    for n in WORDS:
        for row in val.sample(min(PER_LENGTH, len(val)), random_state=int(rng.integers(1 << 31))).itertuples():
            words = row.text.split()
            if len(words) >= n:
                out.append((" ".join(words[:n]), float(row.year_f), n))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    from demo_core.poem.model import load as load_model
    model = load_model()
    texts = short_texts(load(require_data(), smoke=False), np.random.default_rng(0))
    from demo_core.errors import InputError
    errors, lengths, refused = [], [], 0
    for t, y, n in texts:
        try:
            errors.append(abs(model.predict("", t).year - y))
            lengths.append(n)
        except InputError:  # no English word at all: refused, as a visitor's would be
            refused += 1
    errors, lengths = np.array(errors), np.array(lengths)
    half = float(np.quantile(errors, 0.8))
    report = {"n": len(errors), "refused_no_english": refused, "mae": float(errors.mean()), "half_width_80": half,
              "mae_per_length": {int(n): float(errors[lengths == n].mean()) for n in WORDS}}
    print(json.dumps(report), flush=True)
    if args.dry_run:
        return
    folder = ROOT / "weights" / "poem"
    config = json.loads((folder / "poem_config.json").read_text())
    config["interval_half_width_short_text"] = half
    (folder / "poem_config.json").write_text(json.dumps(config, indent=1))
    card = json.loads((folder / "card.json").read_text())
    card.setdefault("metrics", {})["short_text_validation"] = {
        **report, "what": "validation poems cut to their first 1-5 words, no title or author; the half-width is "
                          "the 80 % quantile of the year error, used for very short or mostly non-English texts"}
    card.pop("files", None)
    write_card(folder, card)


if __name__ == "__main__":
    main()
