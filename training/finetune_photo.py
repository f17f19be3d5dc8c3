"""Fine-tune MobileNetV2 on the car photos: car / not-car and make (listing brands + other).

Backend-agnostic Keras 3, so the same script runs on a CPU (TensorFlow, hours)
or on a GPU machine that only has PyTorch (``KERAS_BACKEND=torch``, minutes).
It writes the weights and a validation log (an experiment: on an H200 it reached
a validation make top-1 of 0.82 in 38 epochs, the CPU-sized ``finetune_tail``
below 0.815, and the latter is what ``train_car.py`` ships).

    KERAS_BACKEND=torch python training/finetune_photo.py --out /tmp/photo_ft
    python training/finetune_photo.py --smoke --out /tmp/photo_ft

Recipe: heads warmed up on the frozen backbone first (the first large gradients
would otherwise wreck the ImageNet features), then the whole network with a
cosine schedule; BatchNorm stays in inference mode (small data). Random resized
crops, flips and colour jitter, so the model looks at the car, not the framing.
The epoch with the best validation score (balanced car accuracy + make top-1)
is kept.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

from common import backbone_weights, keep_best_epochs, require_data, seed_everything

from demo_core.car.photo import INPUT_SIZE, to_photo_input
from photo_data import MAKE_CLASSES, load_photos

PRELOAD = 288  # decoded once at this size; crops are taken from it


def preload(images: list[np.ndarray]) -> list[np.ndarray]:
    """Each photo resized once to PRELOAD x PRELOAD; augmented crops are cut from these."""
    return [cv2.resize(im, (PRELOAD, PRELOAD), interpolation=cv2.INTER_AREA if min(im.shape[:2]) > PRELOAD
                       else cv2.INTER_LINEAR) for im in images]


def augment(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s, r = rng.uniform(0.45, 1.0), math.exp(rng.uniform(-0.25, 0.25))
    cw, ch = min(w, int(w * math.sqrt(s * r))), min(h, int(h * math.sqrt(s / r)))
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    crop = img[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    x = crop.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
    x = x * rng.uniform(0.85, 1.15, size=3)  # white balance
    if rng.random() < 0.15:
        x = x.mean(axis=2, keepdims=True).repeat(3, axis=2)
    return to_photo_input(np.clip(x, 0, 255).astype(np.uint8), size)


def build(keras, n_makes: int, size: int, weights: str):
    from keras import layers
    inp = keras.Input((size, size, 3), name="photo")
    backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=None,
                                              pooling="avg")
    backbone.load_weights(weights)
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    feats = backbone(inp, training=False)  # BatchNorm in inference mode throughout
    drop = layers.Dropout(0.3)(feats)
    out = {"is_car": layers.Dense(1, activation="sigmoid", name="is_car")(drop),
           "make": layers.Dense(n_makes, activation="softmax", name="make")(drop)}
    return keras.Model(inp, out, name="car_photo"), backbone


def finetune(images: list[np.ndarray], is_car: np.ndarray, make_idx: np.ndarray, n_makes: int,
             train: np.ndarray, val: np.ndarray, epochs: int = 30, warmup_epochs: int = 2, batch: int = 64,
             lr: float = 3e-4, size: int = INPUT_SIZE, smoke: bool = False, time_budget_s: float = 1e9,
             log=print):
    """Return (model, history). Labels: is_car 0/1; make_idx -1 where the make is unknown (not a car)."""
    import keras
    from keras import ops

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    pre = preload(images)
    model, backbone = build(keras, n_makes, size, str(backbone_weights()))

    def make_loss(y_true, y_pred):
        y = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        mask = ops.cast(y >= 0, "float32")
        ce = keras.losses.sparse_categorical_crossentropy(ops.maximum(y, 0), y_pred)
        return ce * mask

    idx_tr = np.nonzero(train)[0]
    # Not-car photos are ~10 %: show them about as often as a common make.
    p_pick = np.where(is_car[idx_tr] == 1, 1.0, 3.0)
    p_pick /= p_pick.sum()
    steps = max(1, len(idx_tr) // batch) if not smoke else 2

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)

        def __len__(self):
            return steps

        def __getitem__(self, _):
            pick = rng.choice(idx_tr, size=batch, p=p_pick)
            x = np.stack([augment(pre[i], rng, size) for i in pick])
            return x, {"is_car": is_car[pick].astype("float32")[:, None], "make": make_idx[pick].astype("float32")[:, None]}

    val_idx = np.nonzero(val)[0]
    x_val = np.stack([to_photo_input(images[i], size) for i in val_idx])

    def val_score():
        out = model.predict(x_val, batch_size=128, verbose=0)
        yc = is_car[val_idx] == 1
        pc = out["is_car"][:, 0] >= 0.5
        bal = float((pc[yc].mean() + (~pc[~yc]).mean()) / 2)
        sel = make_idx[val_idx] >= 0
        acc = float((out["make"][sel].argmax(1) == make_idx[val_idx][sel]).mean()) if sel.any() else 0.0
        return bal, acc

    epochs = epochs if not smoke else 2
    warmup_epochs = min(warmup_epochs, epochs - 1)
    # Phase 1: heads only on the frozen backbone.
    backbone.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={"is_car": "binary_crossentropy", "make": make_loss})

    def run_epoch(epoch):
        if epoch == warmup_epochs:
            # Phase 2: everything but BatchNorm; recompiling gives a fresh optimizer for the new variables.
            backbone.trainable = True
            for layer in backbone.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
            total = (epochs - warmup_epochs) * steps
            schedule = keras.optimizers.schedules.CosineDecay(lr, total, warmup_target=None)
            model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                          loss={"is_car": "binary_crossentropy", "make": make_loss})
        fit = model.fit(Batches(), epochs=1, verbose=0)
        bal, acc = val_score()
        loss = float(fit.history["loss"][-1])
        return ({"epoch": epoch + 1, "loss": loss, "val_car_balanced_accuracy": bal, "val_make_top1": acc},
                bal + acc, f"photo epoch {epoch + 1}: loss {loss:.3f} val car/not-car {bal:.3f} make {acc:.3f}")

    history = keep_best_epochs(model, epochs, run_epoch, time_budget_s=time_budget_s, log=log)
    return model, history


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True,
                    help="candidate path stem: writes STEM.weights.h5 and STEM.json (the validation log)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--size", type=int, default=INPUT_SIZE)
    ap.add_argument("--time-budget", type=float, default=1e9, help="seconds; stops after the epoch that passes it")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    seed_everything(0)
    import keras
    imgs, rgb = load_photos(require_data(), args.smoke)
    classes = MAKE_CLASSES
    make_idx = np.array([classes.index(m) if m in classes else -1 for m in imgs.make])
    S = {s: (imgs.split == s).to_numpy() for s in ("train", "val")}
    t0 = time.time()
    model, history = finetune(rgb, imgs.is_car.to_numpy(), make_idx, len(classes), S["train"], S["val"],
                              epochs=args.epochs, lr=args.lr, size=args.size, smoke=args.smoke,
                              time_budget_s=args.time_budget, log=lambda m: print(m, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Weights only: small enough to carry back from a GPU machine (the optimizer state would triple it);
    # build() recreates the architecture.
    clean, _ = build(keras, len(classes), args.size, str(backbone_weights()))
    clean.set_weights(model.get_weights())
    clean.save_weights(args.out.with_suffix(".weights.h5"))
    args.out.with_suffix(".json").write_text(json.dumps(
        {"backend": keras.backend.backend(), "classes": classes, "size": args.size, "lr": args.lr,
         "epochs_run": len(history), "seconds": round(time.time() - t0), "history": history}, indent=1) + "\n")
    print(f"wrote {args.out} in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()


# ----------------------------------------------------------------------------- CPU-sized variant
CUT = "block_12_add"  # 14 x 14 x 96: everything after it (blocks 13-16, Conv_1) is fine-tuned


def _tail(keras, base, name: str):
    """base's layers after CUT, replayed on a new input, as a model of its own (shares base's weights)."""
    start = base.get_layer(CUT).output
    inp = keras.Input(start.shape[1:], name=f"{name}_in")
    mapping = {id(start): inp}
    names = [l.name for l in base.layers]
    for layer in base.layers[names.index(CUT) + 1:]:
        args = [mapping[id(t)] for t in layer._inbound_nodes[0].input_tensors]
        mapping[id(layer.output)] = layer(args[0] if len(args) == 1 else args)
    return keras.Model(inp, mapping[id(base.output)], name=name)


def build_two_tail(keras, weights: str, size: int = INPUT_SIZE):
    """Shared frozen trunk; a frozen ImageNet tail for car / not-car and a tuned copy for the make."""
    frozen = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=None, pooling="avg")
    frozen.load_weights(weights)
    tuned = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=None, pooling="avg")
    tuned.load_weights(weights)
    trunk = keras.Model(frozen.input, frozen.get_layer(CUT).output, name="trunk")
    return trunk, _tail(keras, frozen, "tail_car"), _tail(keras, tuned, "tail_make")


def finetune_tail(images: list[np.ndarray], make_idx: np.ndarray, n_makes: int, train: np.ndarray,
                  val: np.ndarray, views: int = 6, epochs: int = 12, lr: float = 3e-4, batch: int = 64,
                  smoke: bool = False, log=print):
    """Fine-tune blocks 13-16 + Conv_1 for the make on cached trunk outputs of augmented views (CPU-sized).

    Returns (trunk, tail_car, tail_make, make_dense, history); the epoch with the best validation make top-1 is kept.
    """
    import keras
    from keras import layers
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    trunk, tail_car, tail_make = build_two_tail(keras, str(backbone_weights()))
    for layer in tail_make.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False  # inference-mode statistics: the cached views are few
    pre = preload(images)
    idx_tr = np.nonzero(train & (make_idx >= 0))[0]
    idx_va = np.nonzero(val & (make_idx >= 0))[0]
    if smoke:
        views, epochs = 1, 1
    t0 = time.time()
    feats, labels = [], []
    for v in range(views):
        x = np.stack([augment(pre[i], rng, INPUT_SIZE) for i in idx_tr])
        feats.append(trunk.predict(x, batch_size=64, verbose=0).astype(np.float16))
        labels.append(make_idx[idx_tr])
    f_tr, y_tr = np.concatenate(feats), np.concatenate(labels)
    f_va = trunk.predict(np.stack([to_photo_input(images[i]) for i in idx_va]), batch_size=64, verbose=0)
    y_va = make_idx[idx_va]
    log(f"trunk outputs for {len(f_tr)} training views in {time.time() - t0:.0f}s")

    inp = keras.Input(f_tr.shape[1:], name="trunk_out")
    dense = layers.Dense(n_makes, activation="softmax", name="make")
    head_model = keras.Model(inp, dense(layers.Dropout(0.3)(tail_make(inp))))
    steps = int(np.ceil(len(f_tr) / batch)) * epochs
    head_model.compile(optimizer=keras.optimizers.AdamW(keras.optimizers.schedules.CosineDecay(lr, steps),
                                                        weight_decay=1e-4),
                       loss="sparse_categorical_crossentropy")

    def run_epoch(epoch):
        fit = head_model.fit(f_tr.astype(np.float32), y_tr, batch_size=batch, epochs=1, shuffle=True, verbose=0)
        acc = float((head_model.predict(f_va, batch_size=256, verbose=0).argmax(1) == y_va).mean()) if len(y_va) else 0.0
        loss = float(fit.history["loss"][-1])
        return ({"epoch": epoch + 1, "loss": loss, "val_make_top1": acc}, acc,
                f"tail epoch {epoch + 1}: loss {loss:.3f} val make {acc:.3f}")

    history = keep_best_epochs(head_model, epochs, run_epoch, log=log)
    return trunk, tail_car, tail_make, dense, history
