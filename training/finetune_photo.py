"""Fine-tune MobileNetV2 on the car photos: make (7 listing brands + other) and car / not-car.

Called by train_car.py (``--finetune``).  Heads are warmed up on the frozen
backbone first: without that, the first large gradients wreck the ImageNet
features.  BatchNorm stays in inference mode (small batches).
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np

from demo_core.car.photo import INPUT_SIZE, to_photo_input

PRELOAD = 256


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    s, r = rng.uniform(0.6, 1.0), math.exp(rng.uniform(-0.2, 0.2))
    cw, ch = min(w, int(w * math.sqrt(s * r))), min(h, int(h * math.sqrt(s / r)))
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    crop = img[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    x = crop.astype(np.float32) * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
    if rng.random() < 0.2:
        x = x.mean(axis=2, keepdims=True).repeat(3, axis=2)
    return to_photo_input(np.clip(x, 0, 255).astype(np.uint8))


def finetune(keras, tf, base_weights: str, images: list[np.ndarray], is_car: np.ndarray, make_idx: np.ndarray,
             n_makes: int, train: np.ndarray, val: np.ndarray, epochs: int = 8, batch: int = 32, smoke: bool = False):
    from keras import layers
    rng = np.random.default_rng(0)
    pre = [cv2.resize(im, (PRELOAD, PRELOAD), interpolation=cv2.INTER_AREA) for im in images]
    inp = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="photo")
    backbone = keras.applications.MobileNetV2(input_tensor=inp, include_top=False, weights=None, pooling="avg")
    backbone.load_weights(base_weights)
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    feats = backbone.output
    drop = layers.Dropout(0.3)(feats)
    car_out = layers.Dense(1, activation="sigmoid", name="is_car")(drop)
    make_out = layers.Dense(n_makes, activation="softmax", name="make")(drop)
    model = keras.Model(inp, {"is_car": car_out, "make": make_out, "features": feats})
    idx_tr = np.nonzero(train)[0]
    # Balance: not-car photos are ~10 %; show them as often as a typical make.
    w = np.where(is_car[idx_tr] == 1, 1.0, 4.0)
    w /= w.sum()
    steps = max(1, len(idx_tr) // batch)
    head_vars = [v for l in model.layers if l.name in ("is_car", "make") for v in l.trainable_variables]

    def make_step(variables, opt):
        @tf.function(reduce_retracing=True)
        def step(x, yc, ym, mask, lr):
            opt.learning_rate.assign(lr)
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                lc = tf.reduce_mean(keras.losses.binary_crossentropy(yc[:, None], out["is_car"]))
                lm = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(ym, out["make"]) * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
                loss = lc + lm
            grads = tape.gradient(loss, variables)
            opt.apply_gradients(zip(grads, variables))
            return lc, lm
        return step

    images_for_eval = {i: to_photo_input(images[i]) for i in np.nonzero(val)[0]}
    val_idx = np.nonzero(val)[0]
    best, best_score = None, -1
    # Separate optimizers: a Keras optimizer is bound to the variables it first saw.
    head_step = make_step(head_vars, keras.optimizers.Adam(1e-3))
    all_step = make_step(model.trainable_variables, keras.optimizers.Adam(1e-4))
    epochs = epochs if not smoke else 2
    total = epochs * steps
    for epoch in range(epochs):
        t0 = time.time()
        for s in range(steps if not smoke else 2):
            pick = rng.choice(idx_tr, size=batch, p=w)
            x = np.stack([augment(pre[i], rng) for i in pick])
            g = epoch * steps + s
            if epoch == 0:
                head_step(x, is_car[pick].astype("float32"), np.maximum(make_idx[pick], 0), (make_idx[pick] >= 0).astype("float32"), 1e-3)
            else:
                lr = 1e-4 * 0.5 * (1 + math.cos(math.pi * g / total))
                all_step(x, is_car[pick].astype("float32"), np.maximum(make_idx[pick], 0), (make_idx[pick] >= 0).astype("float32"), lr)
        out = model.predict(np.stack([images_for_eval[i] for i in val_idx]), batch_size=64, verbose=0)
        yc = is_car[val_idx] == 1
        pc = out["is_car"][:, 0] >= 0.5
        bal = (pc[yc].mean() + (~pc[~yc]).mean()) / 2
        sel = make_idx[val_idx] >= 0
        acc = float((out["make"][sel].argmax(1) == make_idx[val_idx][sel]).mean()) if sel.any() else 0.0
        print(f"photo epoch {epoch + 1}: val car/not-car {bal:.3f} make {acc:.3f} ({time.time() - t0:.0f}s)", flush=True)
        if bal + acc > best_score:
            best_score, best = bal + acc, [v.copy() for v in model.get_weights()]
    model.set_weights(best)
    return model
