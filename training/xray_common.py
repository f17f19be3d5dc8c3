"""The X-ray pieces every X-ray training script shares: film reading, the lung readings, the network's
layout, the class weights and the classification metrics (the manifest and its split are
``demo_core.xray.split``'s, shared with the benchmarks). Importing nothing from the scripts, it keeps
them free of import cycles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from common import backbone_weights

from demo_core.xray import labels as L
from demo_core.xray.preprocess import INPUT_SIZE, crop_window, lung_crop, lung_field, member_input

CLASS_WEIGHTS = np.array([1.0, 1.0, 3.0, 1.0], np.float32)  # indeterminate has ~40 images


def read_gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise RuntimeError(f"cannot read {path}")
    return img


def film_grays(data: Path, part: pd.DataFrame) -> list[np.ndarray]:
    """The films of ``part``, 8-bit grayscale at their own size."""
    return [read_gray(data / "cxr" / f) for f in part.file]


@dataclass
class Readings:
    """Films read the app's way, per film: the lung window (common-detail pixels) and the lung crop both members
    read (``preprocess.lung_crop``)."""
    windows: list[tuple[int, int, int, int]]
    crops: list[np.ndarray]

    def member_inputs(self) -> np.ndarray:
        """What the fine-tuned member reads, film by film."""
        return np.stack([member_input(c) for c in self.crops])


def lung_net(lung_model) -> Callable[[np.ndarray], np.ndarray]:
    """The Keras lung-field network as ``preprocess.lung_field`` calls it: a batch of its inputs -> their fields."""
    def net(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(lung_model(batch[i:i + 256], training=False))
                               for i in range(0, len(batch), 256)])
    return net


def read_lungs(lung_model, grays: list[np.ndarray]) -> Readings:
    # In chunks: each look beyond the first copies the part of every film it cuts, at the film's own size.
    net = lung_net(lung_model)
    fields = np.concatenate([lung_field(net, grays[i:i + 512]) for i in range(0, len(grays), 512)])
    windows = [crop_window(f) for f in fields]
    return Readings(windows, [lung_crop(g, w) for g, w in zip(grays, windows)])


def load_lung_model(path: Path):
    import keras
    return keras.models.load_model(path, compile=False)


def model_inputs(lung_model, data: Path, part: pd.DataFrame) -> np.ndarray:
    """The films of ``part`` as the app feeds them to the fine-tuned member (its lung crop)."""
    return read_lungs(lung_model, film_grays(data, part)).member_inputs()


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
