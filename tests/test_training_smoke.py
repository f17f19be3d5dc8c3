"""Each training script runs end to end on a few examples and writes a loadable, verified model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def train(script: str, out, *extra) -> None:
    subprocess.run([sys.executable, script, "--smoke", "--out", str(out), *extra], cwd=ROOT / "training", check=True,
                   capture_output=True, text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


# The Models page, run in its own process on a weights folder: its warm-up thread dies with that process, so
# the smoke models never reach the shared model cache of the other tests.
MODELS_PAGE = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=600)
at.switch_page("pages/models.py")
at.run()
print(json.dumps({"exceptions": [str(e.value) for e in at.exception], "errors": [str(e.value) for e in at.error],
                  "subheaders": [str(e.value) for e in at.subheader]}))
"""


def models_page_on(weights) -> dict:
    """What the Models page shows when the app reads ``weights`` (each task's card as its script wrote it)."""
    done = subprocess.run([sys.executable, "-c", MODELS_PAGE, str(ROOT / "streamlit_app.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "DEMO_WEIGHTS_DIR": str(weights), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("task, script, extra", [
    ("car", "train_car.py", ["--photo-tail-epochs", "1"]),
    ("poem", "train_poem.py", []),
    ("xray", "train_xray.py", []),
])
def test_smoke_training_writes_a_verified_model(task, script, extra, tmp_path, monkeypatch, data_dir):
    train(script, tmp_path / task, *extra)
    card = json.loads((tmp_path / task / "card.json").read_text())
    assert card["version"] == "smoke" and card["files"]
    if task == "car":  # the price error is put beside the spread of look-alike listings
        assert card["analysis"]["noise_floor_validation"]["settings"]
        # retraining the price alone keeps the photo model byte for byte, and its figures in the card
        photo = (tmp_path / task / "photo.keras").read_bytes()
        train(script, tmp_path / task, "--keep-photo")
        again = json.loads((tmp_path / task / "card.json").read_text())
        assert (tmp_path / task / "photo.keras").read_bytes() == photo
        assert again["metrics"]["photo_test"] == card["metrics"]["photo_test"]
        # the mpg / tax correction trains on top of the details-only trees and joins the verified files
        train("train_car_papers.py", tmp_path / task)
        card = json.loads((tmp_path / task / "card.json").read_text())
        assert "price_papers.pkl" in card["files"] and card["metrics"]["with_papers"]["test"]
    monkeypatch.setenv("DEMO_WEIGHTS_DIR", str(tmp_path))
    from demo_core.cards import verified_card
    assert verified_card(task)["task"] == task
    # the writer and the reader agree: the Models page renders this card, as written, without an error
    shown = models_page_on(tmp_path)
    assert shown["exceptions"] == []
    assert not [e for e in shown["errors"] if f"The {task} model" in e], shown["errors"]
    assert card["name"] in shown["subheaders"]


def test_gpu_fine_tuning_script_runs_on_the_cpu_backend_and_writes_small_weights(tmp_path, data_dir):
    train("finetune_photo.py", tmp_path / "photo_ft")
    log = json.loads((tmp_path / "photo_ft.json").read_text())
    assert log["epochs_run"] == 2 and log["classes"][-1] == "other make"
    # weights only, no optimizer state: small enough to carry back from a GPU machine
    assert (tmp_path / "photo_ft.weights.h5").stat().st_size < 12_000_000


def test_xray_weights_trained_elsewhere_go_through_the_same_export_and_card(tmp_path, monkeypatch, data_dir):
    # The GPU recipe (any Keras backend) writes weights only; train_xray.py --finetuned turns them into the app's model.
    train("finetune_xray.py", tmp_path / "xray_ft")
    log = json.loads((tmp_path / "xray_ft.json").read_text())
    assert log["epochs_run"] == 1 and log["history"][0]["val_macro_auc"] >= 0
    assert (tmp_path / "xray_ft.weights.h5").stat().st_size < 16_000_000  # comes back from a GPU machine
    train("train_xray.py", tmp_path / "xray", "--finetuned", str(tmp_path / "xray_ft.weights.h5"))
    card = json.loads((tmp_path / "xray" / "card.json").read_text())
    assert "finetune_xray.py" in card["training"]["run"] and card["ensemble"]["finetuned_weight"] is not None
    # the gate is fitted on the probe's features; the temperature and test figures are the served model's
    assert card["metrics"]["gate"]["cross_validation"] and "probe" in card["metrics"]["gate"]["features"]
    assert card["metrics"]["gate"]["held_out_sources"]
    assert card["ensemble"]["framings"] and card["ensemble"]["validation_served"]["per_transform"]
    assert card["metrics"]["test_one_framing"]["accuracy"] >= 0
    monkeypatch.setenv("DEMO_WEIGHTS_DIR", str(tmp_path))
    from demo_core.cards import verified_card
    assert verified_card("xray")["task"] == "xray"


def test_the_gate_reads_raw_features_with_its_standardisation_folded_in(monkeypatch):
    import numpy as np
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xray_gate import GATE_C, fit_gate, gate_scores, gate_stage

    rng = np.random.default_rng(0)
    films, others = rng.normal(3.0, 1.0, (80, 6)) * [1, 10, 100, 1, 1, 1], rng.normal(-3.0, 2.0, (90, 6))
    x, y = np.concatenate([films, others]), np.r_[np.ones(80, int), np.zeros(90, int)]
    w, b = fit_gate(x, y, 0.01)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, class_weight="balanced", max_iter=5000))
    np.testing.assert_allclose(gate_scores(x, w, b), reference.fit(x, y).predict_proba(x)[:, 1], atol=1e-4)
    # two well-separated kinds of image: cross-validation finds no errors, and the strongest L2 wins the tie
    _, report = gate_stage(films, others, others[:10], films[:10], films[10:20], "synthetic")
    assert report["C"] == min(GATE_C) and len(report["cross_validation"]) == len(GATE_C)
    assert report["test_negatives_refused"] == report["val_chest_xrays_accepted"] == 1.0


def smooth_film(rng, size: int):
    """A film-like 8-bit image: smooth enough that JPEG barely changes it."""
    import cv2
    import numpy as np
    noise = rng.integers(0, 255, (size // 8, size // 8)).astype(np.uint8)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


def test_the_gpu_pack_round_trips_films_and_boxes_without_the_test_split(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    from finetune_xray import PRELOAD, read_pack, write_pack
    from demo_core.xray.preprocess import lung_crop

    rng = np.random.default_rng(0)
    films = {}
    for i in range(3):
        common, window = smooth_film(rng, PRELOAD), (8, 12, 200 + i, 210)
        films[i] = (common, [[10.0, 20.0, 100.0 + i, 120.0]], window, lung_crop(common, window))
    df = pd.DataFrame({"file": ["a.png", "b.png", "c.png"], "source": "covidquex", "label": "typical", "y": 1,
                       "det_valid": True, "split": ["train", "val", "test"], "width": 512, "height": 512})
    write_pack(df, films, tmp_path / "pack.npz")
    back, back_films = read_pack(tmp_path / "pack.npz")
    assert back.split.tolist() == ["train", "val"]  # the test split never travels
    for row, i in zip(back.index, (0, 1)):
        img, boxes, window, crop = back_films[row]
        assert img.shape == (PRELOAD, PRELOAD) and boxes == films[i][1] and window == films[i][2]
        assert np.abs(img.astype(int) - films[i][0]).mean() < 2  # JPEG q92 on a smooth film
        assert np.array_equal(crop, films[i][3])  # the member's validation input travels exactly


def test_a_reframed_training_view_moves_its_boxes_and_lung_window_with_the_film(monkeypatch):
    # with --reframe the member learns from films cut or padded at their borders, as another export frames them
    import numpy as np
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    from finetune_xray import PRELOAD, REFRAME_DETAIL, reframed

    film = np.zeros((REFRAME_DETAIL, REFRAME_DETAIL), np.uint8)
    film[100:300, 60:200] = 255  # a bright patch at (30, 50)-(100, 150) in common-detail pixels
    rng = np.random.default_rng(0)
    for _ in range(10):
        common, boxes, window = reframed(film, [[30, 50, 100, 150]], (20, 30, 200, 190), rng)
        ys, xs = np.nonzero(common > 128)
        assert common.shape == (PRELOAD, PRELOAD)
        np.testing.assert_allclose(boxes[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.5)
        assert 0 <= window[0] < window[2] <= PRELOAD and 0 <= window[1] < window[3] <= PRELOAD


def test_xray_probe_weights_films_like_the_fine_tuned_member_and_selects_robust_settings_first(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    import numpy as np
    import xray_probe

    w = xray_probe.film_weights(np.array([0, 1, 2, 3, 2]))
    assert w.mean() == pytest.approx(1.0) and w[2] == pytest.approx(3 * w[0])  # indeterminate x3

    targets = {"accuracy": 0.85, "macro_auc": 0.93}
    val = {"accuracy": 0.86, "macro_auc": 0.95}
    assert xray_probe.meets_targets(val, targets)
    assert not xray_probe.meets_targets({**val, "accuracy": 0.84}, targets)

    # the answer must survive every export on validation before accuracy counts
    p = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.6, 0.1, 0.1]])
    y, src = np.array([0, 1]), np.array(["a", "a"])
    steady = {"val": p, "val:JPEG q50": p}
    flipping = {"val": p, "val:JPEG q50": p[:, ::-1].copy()}
    assert xray_probe.evaluate_setting(y, src, steady, steady, 0.5)["robust"]
    assert not xray_probe.evaluate_setting(y, src, steady, flipping, 0.0)["robust"]


def test_the_probe_head_can_be_blind_to_how_an_export_moves_a_film(monkeypatch):
    # training films, then one export of each that shifts them along one direction the classes do not depend on
    import numpy as np
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    import xray_probe

    rng = np.random.default_rng(0)
    n, d = 120, 6
    y = np.arange(n) % 4
    films = rng.normal(size=(n, d)) + np.eye(4, d)[y] * 4
    drift = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0]) / np.sqrt(2)
    exports = films + rng.normal(0, 2, (n, 1)) * drift
    x = np.concatenate([films, exports])
    directions = xray_probe.export_directions(x, n, standardise=True)
    w, b = xray_probe.fit_head(x, np.concatenate([y, y]), 1.0, True, directions[:, :1])
    moved = films + 3.0 * drift * x.std(0)  # three export-sized steps along the drift, in raw units
    np.testing.assert_allclose(films @ w + b, moved @ w + b, atol=0.02 * np.abs(films @ w).max())  # without: ~3 %
    assert ((films @ w + b).argmax(1) == y).mean() > 0.9  # and it still reads the classes


def test_a_random_export_is_still_an_eight_bit_film(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    import numpy as np
    import xray_probe

    film = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (240, 1))
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = xray_probe.random_export(film, rng)
        assert out.dtype == np.uint8 and out.ndim == 2 and min(out.shape) >= 16


def test_a_prolific_poet_barely_weighs_in_the_unseen_poet_interval():
    import numpy as np
    from poem_author_intervals import HeldOutPoets, weighted_conformal_q
    # one canonical poet with 100 badly dated poems, nine new poets with one well-dated poem each
    held = HeldOutPoets(np.array([300.0] * 100 + [10.0] * 9), np.array([100] * 100 + [1] * 9), np.zeros(109))
    assert held.poets == 10
    assert weighted_conformal_q(held.residuals, held.weights("poem")) == 300.0
    assert weighted_conformal_q(held.residuals, held.weights("poet")) == 10.0
    # the poets a hash split leaves wholly out of training are almost never a canon's
    assert weighted_conformal_q(held.residuals, held.weights("unseen")) == 10.0
    assert held.weights("unseen")[0] < 1e-40 < held.weights("unseen")[-1] == 1.0


def test_a_poet_sits_in_one_fold_however_the_name_is_typed():
    import pandas as pd
    from poem_author_intervals import author_folds, poet_keys
    poems = pd.DataFrame({"author": ["Emily Dickinson", " emily  DICKINSON", "", ""], "id": ["a", "b", "c", "d"]})
    folds = author_folds(poet_keys(poems), 5)
    assert folds[0] == folds[1]
    assert list(author_folds(poet_keys(poems), 5)) == list(folds)  # the same on every run


def test_unseen_poet_intervals_refit_the_year_path_per_fold_without_writing(data_dir):
    before = {p.name: p.read_bytes() for p in (ROOT / "weights" / "poem").glob("*.json")}
    done = subprocess.run([sys.executable, "poem_author_intervals.py", "--smoke"], cwd=ROOT / "training",
                          capture_output=True, text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout[done.stdout.index("\n{\n") + 1:])["unseen_poets"]
    cv = figures["cross_validated"]
    assert [f["fold"] for f in cv["folds"]] == [0, 1]
    assert sum(f["poems"] for f in cv["folds"]) == cv["poems"] == figures["calibration_n"] > 0
    assert 0 <= cv["coverage"] <= 1 and figures["half_width_80"] > 0 and cv["effective_n"] > 0
    assert {p.name: p.read_bytes() for p in (ROOT / "weights" / "poem").glob("*.json")} == before
