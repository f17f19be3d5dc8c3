"""Films from another hospital: does a normal film come back negative, whatever its view?

    .venv/bin/python bench/outside_hospital.py               # the held-out NIH films and the view audit, ~1 min
    .venv/bin/python bench/outside_hospital.py --films 20    # a quick look (the tests run this)
    .venv/bin/python bench/outside_hospital.py --split val   # the validation films the training stage chose on

Reads the shipped model as the app does (LiteRT) on the held-out part of ``cxr_nih`` (``demo_core.xray.split``:
patient-wise, never trained or tuned on) and prints the outside-hospital table of ``demo_core.xray.outside``:
normal films called negative per view (95 % intervals), pneumonia against normal AUC by 1 - P(negative), the
caution's rate and calibration; then the view audit over those films and the ``cxr/`` test films whose view is known.
"""

from __future__ import annotations

import argparse
import json

from _common import ROOT  # noqa: F401  (puts the project on the path, quiets TensorFlow)


def films(split: str, limit: int | None):
    """(outside films, their grays, cxr films of the same split with a known view, their grays)."""
    import cv2

    from demo_core.settings import data_dir
    from demo_core.xray.outside import view_of
    from demo_core.xray.split import load_manifest, load_outside_manifest
    data = data_dir()
    if data is None:
        raise SystemExit("no data directory (DEMO_DATA_DIR)")
    outside = load_outside_manifest(data)
    outside = outside[outside.split == split]
    cxr = load_manifest(data)
    cxr = cxr[(cxr.split == split) & cxr.view.map(lambda v: view_of(v) is not None)]
    if limit:
        outside = outside.groupby(["label", "view"]).sample(frac=1, random_state=0).groupby(["label", "view"]).head(
            max(1, limit // 4))
        cxr = cxr.sample(min(limit, len(cxr)), random_state=0)
    read = lambda paths: [cv2.imread(str(data / p), cv2.IMREAD_GRAYSCALE) for p in paths]  # noqa: E731
    return outside, read(outside.path), cxr, read("cxr/" + cxr.file)


def format_report(report: dict) -> str:
    t, a = report["table"], report["view_audit"]
    lines = [f"outside-hospital films: {t['n']} ({t['n_no_finding']} No Finding, {t['n_pneumonia']} Pneumonia)"]
    for v, s in t["no_finding_called_negative"].items():
        lo, hi = s["interval_95"]
        lines.append(f"  No Finding {v} called negative: {s['share']:.3f} ({lo:.2f}-{hi:.2f}, n={s['n']})  target 0.85")
    lo, hi = t["pneumonia_auc_interval_95"]
    lines += [f"  pneumonia vs No Finding AUC by 1-P(negative): {t['pneumonia_auc']:.3f} ({lo:.2f}-{hi:.2f})  target 0.80",
              f"  per view: " + ", ".join(f"{v} {x:.3f}" for v, x in t["pneumonia_auc_per_view"].items()),
              f"  flagged unfamiliar: {t['flagged_unfamiliar']:.3f}; gate accepted {t['gate_accepted']:.3f}",
              f"  P(abnormal) calibration error: {t['abnormal_ece']:.3f}",
              f"  wrong on normal films: {t['wrong_on_normal']}",
              "view audit: mean P(negative), AP against PA (n)"]
    for r in a["rows"]:
        ap, pa = r["AP"], r["PA"]
        fmt = lambda s: "-" if s["n"] == 0 else f"{s['mean_p_negative']:.2f} (n={s['n']}, top {s['top_class']})"  # noqa: E731
        lines.append(f"  {r['collection']:>4} {r['class']:<13} AP {fmt(ap):<32} PA {fmt(pa)}")
    lines.append(f"  normal AP - normal PA (nih): {a['normal_view_gap_nih']:+.3f}  target within 0.10")
    lines.append("targets met: " + json.dumps(report["targets_met"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--films", type=int, help="about this many films of each collection (default: all)")
    ap.add_argument("--split", default="test", choices=("test", "val"))
    ap.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = ap.parse_args()
    from demo_core.xray.model import load
    from demo_core.xray.outside import outside_report
    report = outside_report(load(), *films(args.split, args.films))
    print(format_report(report))
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
