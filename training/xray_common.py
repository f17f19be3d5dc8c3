"""The X-ray pieces every X-ray training script shares: the manifest and its split, film reading, the
network's layout, the class weights and the classification metrics. Importing nothing from the scripts,
it keeps them free of import cycles."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from common import backbone_weights, group_split

from demo_core.xray import labels as L
from demo_core.xray.preprocess import INPUT_SIZE, to_model_input

CLASS_WEIGHTS = np.array([1.0, 1.0, 3.0, 1.0], np.float32)  # indeterminate has ~40 images


def source_of(file: str) -> str:
    return Path(file).name.split("_", 1)[0]


def load_manifest(data: Path, smoke: bool = False) -> pd.DataFrame:
    """The manifest with source, class index, detection mask and split; ``smoke``: 24 films per split."""
    df = pd.read_csv(data / "cxr" / "manifest.csv")
    df["source"] = df["file"].map(source_of)
    df["y"] = df["label"].map(L.CLASSES.index)
    df["boxes"] = df["boxes"].map(json.loads)
    # Where detection supervision exists: the masked COVID-QU-Ex films (boxes from expert
    # masks), TBX11K's boxes, and true negatives.  Other films' opacities were never drawn.
    df["det_valid"] = (df["boxes"].map(len) > 0) | (df["label"] == "negative")
    keys = [p if isinstance(p, str) and p else f"img:{f}" for p, f in zip(df["patient_id"].fillna(""), df["file"])]
    df["split"] = group_split(keys, (df["source"] + "/" + df["label"]).tolist(), seed=0)
    if smoke:
        df = pd.concat([g.sample(min(len(g), 24), random_state=0) for _, g in df.groupby("split")])
    return df


def read_gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise RuntimeError(f"cannot read {path}")
    return img


def film_grays(data: Path, part: pd.DataFrame) -> list[np.ndarray]:
    """The films of ``part``, 8-bit grayscale at their own size."""
    return [read_gray(data / "cxr" / f) for f in part.file]


def model_inputs(data: Path, part: pd.DataFrame) -> np.ndarray:
    """The films of ``part`` as the app feeds them to the model (full file, squashed to 224 px)."""
    return np.stack([to_model_input(g) for g in film_grays(data, part)])


def build_model(keras):
    from keras import layers
    inp = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    backbone = keras.applications.MobileNetV2(input_tensor=inp, include_top=False, weights=None)
    backbone.load_weights(str(backbone_weights()))
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False  # tiny batches: keep ImageNet statistics (inference mode)
    c4 = backbone.get_layer("block_13_expand_relu").output
    c5 = backbone.get_layer("out_relu").output
    pooled = layers.GlobalAveragePooling2D(name="pooled")(c5)
    logits = layers.Dense(4, name="class_logits")(layers.Dropout(0.3)(pooled))
    p = layers.Add()([layers.UpSampling2D(2)(layers.Conv2D(128, 1)(c5)), layers.Conv2D(128, 1)(c4)])
    p = layers.Conv2D(128, 3, padding="same", activation="relu")(layers.ReLU()(p))
    heat = layers.Conv2D(1, 1, activation="sigmoid", name="heatmap",
                         bias_initializer=keras.initializers.Constant(-2.19))(p)
    size = layers.Conv2D(2, 1, activation="sigmoid", name="box_size")(p)
    return keras.Model(inp, {"class_logits": logits, "heatmap": heat, "box_size": size,
                             "pooled": pooled, "features": c5}, name="xray")


def classification_metrics(y: np.ndarray, p: np.ndarray, sources: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score
    pred = p.argmax(1)
    per_class_auc, per_class_ap = {}, {}
    for k, name in enumerate(L.CLASSES):
        if 0 < (y == k).sum() < len(y):
            per_class_auc[name] = float(roc_auc_score(y == k, p[:, k]))
            per_class_ap[name] = float(average_precision_score(y == k, p[:, k]))
    per_source = {s: {"n": int((sources == s).sum()), "accuracy": float((pred[sources == s] == y[sources == s]).mean())}
                  for s in sorted(set(sources))}
    confusion = np.zeros((4, 4), int)
    for t, q in zip(y, pred):
        confusion[t, q] += 1
    return {"n": int(len(y)), "accuracy": float((pred == y).mean()),
            "macro_auc": float(np.mean(list(per_class_auc.values()))),
            "auc_per_class": per_class_auc, "ap_per_class": per_class_ap,
            "accuracy_per_source": per_source, "confusion": confusion.tolist()}
