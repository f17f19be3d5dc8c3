"""Train the lung-field network: where the lungs are, so that the X-ray probe reads them and not the collection.

A small CNN reads the film squashed to 224 px (``demo_core.xray.preprocess``), equalised, at
96 px, and returns the box around both lungs as fractions of the film. Supervision: the manifest's
``lung_boxes`` (ieee8023 annotations and COVID-QU-Ex lung masks, 2,217 films), on the X-ray split's
training films; augmented with border crops, added margins, mirroring, gamma and JPEG, so that the box
follows the anatomy when a visitor's export frames the film differently. The app looks more than once
(``preprocess.lung_field``): each next look is at the film cut to the last field, so the last look sees the
lungs framed alike whatever the export's borders; the card reports the field after all looks and after one.

    python training/train_lungs.py            # about 3 min on 2 CPU cores; writes weights/xray/lungs.keras
    python training/train_lungs.py --smoke --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from common import ROOT, require_data, seed_everything, write_card
from xray_common import lung_net

from demo_core.xray.model import LUNG_FILE
from demo_core.xray.preprocess import LUNG_NET_SIZE, LUNG_PASSES, common_detail, lung_field, lung_net_input
from demo_core.xray.split import load_manifest

# ----------------------------------------------------------------------------- data

def drawn_field(lung_boxes: str, width: int, height: int) -> np.ndarray | None:
    """The manifest's lung boxes -> one box around both lungs, as fractions (x0, y0, x1, y1)."""
    boxes = json.loads(lung_boxes) if isinstance(lung_boxes, str) else []
    if not boxes:
        return None
    b = np.array(boxes, float)
    return np.array([b[:, 0].min() / width, b[:, 1].min() / height, b[:, 2].max() / width, b[:, 3].max() / height])


def films_with_fields(data: Path, df: pd.DataFrame) -> tuple[list[np.ndarray], np.ndarray]:
    grays, fields = [], []
    for row in df.itertuples():
        field = drawn_field(row.lung_boxes, row.width, row.height)
        if field is not None:
            grays.append(cv2.imread(str(data / "cxr" / row.file), cv2.IMREAD_GRAYSCALE))
            fields.append(field)
    return grays, np.array(fields, np.float32)


def reframe(gray: np.ndarray, field: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random export of the film: each border cut (up to 12 %) or padded (up to 10 %), mirrored, gamma,
    JPEG. The lung field is moved with it."""
    h, w = gray.shape
    cut = rng.uniform(-0.10, 0.12, 4) * np.array([w, h, w, h])  # left, top, right, bottom; < 0 pads
    x0, y0, x1, y1 = int(cut[0]), int(cut[1]), w - int(cut[2]), h - int(cut[3])
    pad_value = int(rng.choice([0, 255, int(np.median(gray[:5]))]))
    canvas = cv2.copyMakeBorder(gray, max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w),
                                cv2.BORDER_CONSTANT, value=pad_value)
    ox, oy = max(0, -x0), max(0, -y0)
    out = canvas[y0 + oy:y1 + oy, x0 + ox:x1 + ox]
    W, H = x1 - x0, y1 - y0
    f = (field * np.array([w, h, w, h]) - np.array([x0, y0, x0, y0])) / np.array([W, H, W, H])
    if rng.random() < 0.5:
        out, f = out[:, ::-1], np.array([1 - f[2], f[1], 1 - f[0], f[3]])
    out = np.clip(255.0 * (out / 255.0) ** rng.uniform(0.7, 1.4), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        out = cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])[1], 0)
    return np.ascontiguousarray(out), np.clip(f, 0, 1).astype(np.float32)


def batch_inputs(grays: list[np.ndarray]) -> np.ndarray:
    return np.stack([lung_net_input(common_detail(g)) for g in grays])


# ----------------------------------------------------------------------------- model

def build(keras):
    from keras import layers
    x = inp = keras.Input((LUNG_NET_SIZE, LUNG_NET_SIZE, 1), name="film")
    for filters in (16, 32, 64, 96, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)  # few steps an epoch: statistics must settle fast
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)  # 96 -> 3
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(layers.Dense(128, activation="relu")(x))
    # linear, starting at a typical lung field: a sigmoid saturated at the film's edges and stopped learning
    out = layers.Dense(4, name="lung_field", kernel_initializer="zeros",
                       bias_initializer=keras.initializers.Constant([0.13, 0.13, 0.87, 0.80]))(x)
    return keras.Model(inp, out, name="lung_field")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def found_fields(model, grays: list[np.ndarray], passes: int = LUNG_PASSES) -> np.ndarray:
    """The fields as the app finds them (``preprocess.lung_field``: ``passes`` looks), as fractions of each film."""
    return lung_field(lung_net(model), grays, passes)


def field_report(model, grays: list[np.ndarray], fields: np.ndarray) -> dict:
    """IoU with the drawn fields, after all the app's looks and after the first look alone."""
    if not grays:
        return {"n": 0}
    iou, first = (box_iou(found_fields(model, grays, k), fields) for k in (LUNG_PASSES, 1))
    return {"n": len(grays), "looks": LUNG_PASSES, "mean_iou": float(iou.mean()),
            "iou_over_0.75": float((iou >= 0.75).mean()), "first_look_mean_iou": float(first.mean())}


# ----------------------------------------------------------------------------- stages

def train(keras, grays: list[np.ndarray], fields: np.ndarray, val: tuple, epochs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    model = build(keras)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, epochs * 25)),
                  loss=keras.losses.Huber(delta=0.05))
    x_val, f_val = batch_inputs(val[0]), val[1]
    best, best_iou = None, -1.0
    for epoch in range(epochs):
        views = [reframe(g, f, rng) if rng.random() < 0.8 else (g, f) for g, f in zip(grays, fields)]
        x = batch_inputs([v[0] for v in views])
        model.fit(x, np.stack([v[1] for v in views]), batch_size=64, epochs=1, verbose=0, shuffle=True)
        iou = float(box_iou(model.predict(x_val, verbose=0), f_val).mean()) if len(f_val) else 0.0
        print(f"lung field epoch {epoch + 1}: validation IoU {iou:.3f}", flush=True)
        if iou > best_iou:
            best, best_iou = [w.copy() for w in model.get_weights()], iou
    model.set_weights(best)
    return model


def robustness_of_fields(model, grays: list[np.ndarray], seed: int = 1) -> dict:
    """How far the found field moves (relative to the film) when the same film is cut by 6 % per side: IoU
    between the two fields, after all the app's looks and after the first look alone."""
    from demo_core.xray.robustness import TRANSFORMS
    crop = next(t for t in TRANSFORMS if t.name == "border crop 6 %")
    cut = [crop.apply(g).gray() for g in grays]
    out = {}
    for key, k in (("border_crop_6pct_iou", LUNG_PASSES), ("border_crop_6pct_iou_first_look", 1)):
        b_in_original = 0.06 + found_fields(model, cut, k) * 0.88  # the cropped film spans 6-94 % of the original
        out[key] = float(box_iou(found_fields(model, grays, k), b_in_original).mean())
    return out


def add_lung_field(folder: Path, df: pd.DataFrame, data: Path, *, epochs: int = 30, smoke: bool = False,
                   model=None):
    """Train (unless ``model`` is given), measure and save ``folder/lungs.keras``; its figures go into the card
    as ``lung_field``. Returns the network."""
    import keras
    parts = {s: films_with_fields(data, df[df.split == s]) for s in ("train", "val", "test")}
    trained = model is None
    if trained:
        model = train(keras, *parts["train"], parts["val"], 2 if smoke else epochs)
    report = {s: field_report(model, *parts[s]) for s in ("val", "test")}
    report.update(robustness_of_fields(model, parts["val"][0]))
    print(json.dumps(report), flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    if trained:  # a given network is already in the folder, byte for byte (its sha256 is on record elsewhere)
        plain = keras.models.clone_model(model)  # without the optimizer's state: a third of the file
        plain.set_weights(model.get_weights())
        plain.save(folder / LUNG_FILE)
        model = plain
    card_path = folder / "card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    card["lung_field"] = {"architecture": "5 conv blocks (16-128 filters) + dense, 96 px equalised input, "
                                          f"linear box around both lungs; {LUNG_PASSES} looks, each next one at the "
                                          "film cut to the last field with a margin",
                          "trained_on": "lung_boxes of the X-ray split's training films (ieee8023 annotations, "
                                        "COVID-QU-Ex lung masks), reframed, mirrored, gamma and JPEG jitter",
                          "n_train": len(parts["train"][1]), **report}
    write_card(folder, card)
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "xray")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    seed_everything(0)
    data = require_data()
    add_lung_field(args.out, load_manifest(data, smoke=args.smoke), data, epochs=args.epochs, smoke=args.smoke)


if __name__ == "__main__":
    main()
