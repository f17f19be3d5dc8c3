"""Does the X-ray answer survive an export?  Test-split films before and after each transform.

    .venv/bin/python bench/xray_robustness.py                 # all 449 test films, about 5 min on 2 cores
    .venv/bin/python bench/xray_robustness.py --films 40      # a quick look
    .venv/bin/python bench/xray_robustness.py --write-card    # also store the table in weights/xray/card.json
    .venv/bin/python bench/xray_robustness.py --self-check --write-card   # how often an upload's self-check
                                                                # flags its answer, and how right flagged answers are
    .venv/bin/python bench/xray_robustness.py --write-card --earlier "DESIGN"   # a design about to be replaced:
                                                                # stored as metrics.robustness_earlier

Per transform (demo_core.xray.robustness.TRANSFORMS): the share of films whose top class is unchanged
and the mean total-variation distance between the two probability vectors, against the targets
(agreement >= 0.95, mean TV <= 0.05). Then the share of the attention map's mass inside the lung boxes,
on the test films that have them, beside what a uniform map would give.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _common import ROOT



def test_films(limit: int | None):
    from demo_core.xray.split import load_manifest
    from demo_core.settings import data_dir
    import cv2
    d = data_dir()
    te = load_manifest(d)
    te = te[te.split == "test"]
    if limit:
        te = te.sample(min(limit, len(te)), random_state=0)
    grays = [cv2.imread(str(d / "cxr" / f), cv2.IMREAD_GRAYSCALE) for f in te.file]
    return te, grays


def attention_share(model, te, grays) -> dict:
    from demo_core.intake import LoadedImage
    from demo_core.xray.robustness import mass_inside
    members = ("blend", "finetuned", "lung_probe")
    shares, areas, prior_shares = {m: [] for m in members}, [], []
    for row, g in zip(te.itertuples(), grays):
        boxes = json.loads(row.lung_boxes) if isinstance(row.lung_boxes, str) else []
        if not boxes:
            continue
        pred = model.predict_image(LoadedImage(np.repeat(g[..., None], 3, axis=2), "film"))
        for m in members:
            kw = {} if m == "blend" else {"member": m}
            share, area = mass_inside(pred.attention(**kw), boxes)
            shares[m].append(share)
        areas.append(area)
        prior_shares.append(mass_inside(pred.pooling_weights(), boxes)[0])
    out = {"n": len(areas), "mean_share_inside_lung_boxes": float(np.mean(shares["blend"])) if areas else None,
           "uniform_map_share": float(np.mean(areas)) if areas else None,
           # the members pool with the lung prior: a map with no preference of its own inside the crop gives this
           "pooling_weights_share": float(np.mean(prior_shares)) if areas else None}
    out.update({f"{m}_map_share": float(np.mean(v)) for m, v in shares.items() if m != "blend" and v})
    return out


def self_check_figures(model, te, grays) -> dict:
    """How often an upload's self-check flags the answer as unstable, and how right the flagged answers are."""
    from demo_core.intake import LoadedImage
    from demo_core.stats import wilson_interval
    flagged, right = [], []
    for row, g in zip(te.itertuples(), grays):
        image = LoadedImage(np.repeat(g[..., None], 3, axis=2), "film")
        pred = model.predict_image(image)
        flagged.append(not model.self_check(image, pred).stable)
        right.append(pred.label == row.label)
    flagged, right = np.array(flagged), np.array(right)
    out = {"n": int(len(flagged)), "flagged": int(flagged.sum()), "flagged_share": float(flagged.mean())}
    for name, sel in (("flagged", flagged), ("stable", ~flagged)):
        if sel.any():
            k, n = int(right[sel].sum()), int(sel.sum())
            out[f"accuracy_{name}"] = k / n
            out[f"accuracy_{name}_95ci"] = [round(v, 3) for v in wilson_interval(k, n)]
    return out


def cost_of_robustness(card: dict) -> str | None:
    """Same-source figures now against the design shipped before the robustness work, in words for the card."""
    before, test, e = card["metrics"].get("robustness_earlier", {}), card["metrics"]["test"], card.get("ensemble", {})
    if "accuracy" not in before:
        return None
    val = e.get("validation", {})
    return (f"Same-source test accuracy {before['accuracy']:.3f} -> {test['accuracy']:.3f} and macro AUC "
            f"{before['macro_auc']:.3f} -> {test['macro_auc']:.3f} against the design shipped before the robustness "
            f"work ({before.get('design', 'whole-film members')}). Validation chose the blend under the robustness-first "
            f"rule: fine-tuned weight {e.get('finetuned_weight')}, probe at {e.get('probe_input_size')} px "
            f"(validation accuracy {val.get('accuracy', float('nan')):.3f}, macro AUC "
            f"{val.get('macro_auc', float('nan')):.3f}).")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--films", type=int, default=None, help="a random sample of the test split (default: all)")
    ap.add_argument("--write-card", action="store_true")
    ap.add_argument("--earlier", metavar="DESIGN", help="store as the figures of DESIGN, the design being replaced")
    ap.add_argument("--self-check", action="store_true",
                    help="only the upload self-check's figures (with --write-card: into metrics.robustness)")
    args = ap.parse_args()
    from demo_core.xray.model import load
    from demo_core.xray.robustness import stability_table

    model = load()
    te, grays = test_films(args.films)
    t0 = time.time()
    if args.self_check:
        figures = self_check_figures(model, te, grays)
        print(json.dumps(figures), f"{time.time() - t0:.0f} s")
        if args.write_card:
            path = ROOT / "weights" / "xray" / "card.json"
            card = json.loads(path.read_text())
            card["metrics"]["robustness"]["self_check"] = figures
            path.write_text(json.dumps(card, indent=2) + "\n")
        return
    rows = stability_table(lambda image: np.array(list(model.predict_image(image).probabilities.values())), grays)
    attention = attention_share(model, te, grays)
    print(f"{len(grays)} test films, {time.time() - t0:.0f} s")
    print(f"{'transform':28s} {'agreement':>9s} {'mean TV':>8s}  targets (>= 0.95, <= 0.05)")
    for r in rows:
        print(f"{r.transform:28s} {r.agreement:9.3f} {r.mean_tv:8.4f}  {'met' if r.meets_targets else 'MISSED'}")
    print(f"attention mass inside the lung boxes: {attention['mean_share_inside_lung_boxes']:.3f} "
          f"(uniform map {attention['uniform_map_share']:.3f}, the pooling weights alone "
          f"{attention['pooling_weights_share']:.3f}, {attention['n']} films; one member alone: "
          + ", ".join(f"{k.removesuffix('_map_share')} {v:.3f}" for k, v in attention.items() if k.endswith("_map_share"))
          + ")")
    result = {"split": "test", "films": len(grays), "transforms": [r.to_dict() for r in rows],
              "attention_in_lungs": attention}
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "xray_robustness.json").write_text(json.dumps(result, indent=1))
    if args.write_card:
        path = ROOT / "weights" / "xray" / "card.json"
        card = json.loads(path.read_text())
        if args.earlier:
            result["design"] = args.earlier
        if not args.earlier:
            result["cost"] = cost_of_robustness(card)
        card.setdefault("metrics", {})["robustness_earlier" if args.earlier else "robustness"] = result
        path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
