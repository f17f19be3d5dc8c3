"""Fine-tune the X-ray network (class head + opacity head) in backend-agnostic Keras 3.

The network reads what the app gives it: the lung crop of the film at the common level of detail
(``demo_core.xray.preprocess.lung_crop`` and ``member_input``), found by the lung-field network
(``train_lungs.py``), so borders, markers, burnt-in text and each source's resolution never reach it.
Augmentation jitters that window (as another export's framing moves it), cutting it from the film kept at
224 px, and the crop's contrast, detail, blur, JPEG and noise; validation reads the app's own crops.

``train_xray.py`` calls :func:`finetune` with TensorFlow on the CPU (14 epochs, about
an hour on 2 cores).  The same recipe can run longer on a GPU machine that only has
PyTorch; its weights then go back through ``train_xray.py --finetuned`` on the CPU
machine, which fits the gate, exports the model, reads the test split once and refits
the probe blend, so the card always comes from one place:

    python training/finetune_xray.py --pack-out .devdata/xray_pack.npz      # train + val films, lung windows
    KERAS_BACKEND=torch python training/finetune_xray.py --pack .devdata/xray_pack.npz --epochs 50 \
        --stop-after 31 --seed 1 --workers 6 --out /tmp/xr       # the shipped run: ~13 s an epoch on an H200
    python training/train_xray.py --finetuned /tmp/xr.weights.h5

The pack holds the training and validation films only: the test split never leaves
the machine that reads it once.  It is a derived cache of ``shared/data`` for the
GPU machine's trip, git-ignored and never committed.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from common import ROOT, keep_best_epochs, require_data, seed_everything, sha256, softmax
from xray_common import (CLASS_WEIGHTS, build_model, classification_metrics, film_grays, load_lung_model,
                         read_lungs)

from demo_core.xray.model import LUNG_FILE
from demo_core.xray.preprocess import COMMON_DETAIL, INPUT_SIZE, common_detail, lung_crop, member_input
from demo_core.xray.split import load_manifest

PRELOAD = COMMON_DETAIL  # each film is kept at the common detail; its lung crop is cut from it
STRIDE = 16
GRID = INPUT_SIZE // STRIDE
PACK_COLUMNS = ["file", "source", "label", "y", "det_valid", "split", "width", "height"]
DEFAULT_LUNGS = ROOT / "weights" / "xray" / LUNG_FILE

Window = tuple[int, int, int, int]
# manifest index -> (the film at the common detail, its opacity boxes there, its lung window there, the lung crop
# the app reads)
Films = dict[int, tuple[np.ndarray, list[list[float]], Window, np.ndarray]]


# ----------------------------------------------------------------------------- films

def preload_films(data: Path, df: pd.DataFrame, lung_model) -> Films:
    grays = film_grays(data, df)
    r = read_lungs(lung_model, grays)
    s = PRELOAD
    return {i: (common_detail(g), [[b[0] * s / row.width, b[1] * s / row.height, b[2] * s / row.width,
                                    b[3] * s / row.height] for b in row.boxes], tuple(int(v) for v in window), crop)
            for (i, row), g, window, crop in zip(df.iterrows(), grays, r.windows, r.crops)}


def member_inputs_of(films: Films, index) -> np.ndarray:
    """The films as the app's fine-tuned member reads them."""
    return np.stack([member_input(films[i][3]) for i in index])


def write_pack(df: pd.DataFrame, films: Films, path: Path, quality: int = 92) -> None:
    """Training and validation films as JPEG bytes (their lung crops as PNG, as the app reads them) plus their
    manifest rows (the test split stays home)."""
    keep = df[df.split.isin(["train", "val"])]
    jpeg = [cv2.imencode(".jpg", films[i][0], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes() for i in keep.index]
    png = [cv2.imencode(".png", films[i][3])[1].tobytes() for i in keep.index]
    meta = keep[PACK_COLUMNS].assign(boxes=[json.dumps(films[i][1]) for i in keep.index],
                                     window=[json.dumps(films[i][2]) for i in keep.index])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, jpeg=np.frombuffer(b"".join(jpeg), np.uint8), ends=np.cumsum([len(b) for b in jpeg]),
             png=np.frombuffer(b"".join(png), np.uint8), png_ends=np.cumsum([len(b) for b in png]),
             meta=np.frombuffer(meta.to_csv(index=False).encode(), np.uint8))


def _decoded(blob: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
    starts = np.concatenate([[0], ends[:-1]])
    return [cv2.imdecode(blob[s:e], cv2.IMREAD_GRAYSCALE) for s, e in zip(starts, ends)]


def read_pack(path: Path) -> tuple[pd.DataFrame, Films]:
    z = np.load(path)
    df = pd.read_csv(io.BytesIO(z["meta"].tobytes()))
    films = {i: (common, json.loads(b), tuple(json.loads(w)), crop)
             for i, common, crop, b, w in zip(df.index, _decoded(z["jpeg"], z["ends"]), _decoded(z["png"], z["png_ends"]),
                                              df.boxes, df.window)}
    return df, films


# ----------------------------------------------------------------------------- targets and augmentation

def heat_targets(boxes_224: list[list[float]]):
    heat = np.zeros((GRID, GRID), np.float32)
    size = np.zeros((GRID, GRID, 2), np.float32)
    size_mask = np.zeros((GRID, GRID), np.float32)
    ys, xs = np.mgrid[0:GRID, 0:GRID].astype(np.float32) + 0.5
    for x0, y0, x1, y1 in boxes_224:
        w, h = x1 - x0, y1 - y0
        if w < 2 or h < 2:
            continue
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        sx, sy = max(0.5, w / STRIDE / 6), max(0.5, h / STRIDE / 6)
        g = np.exp(-((xs - cx) ** 2 / (2 * sx * sx) + (ys - cy) ** 2 / (2 * sy * sy)))
        heat = np.maximum(heat, g)
        ix, iy = min(GRID - 1, int(cx)), min(GRID - 1, int(cy))
        heat[iy, ix] = 1.0
        size[iy, ix] = (w / INPUT_SIZE, h / INPUT_SIZE)
        size_mask[iy, ix] = 1.0
    return heat, size, size_mask


def jittered_window(window: Window, rng: np.random.Generator, size: int = PRELOAD) -> Window:
    """The lung window as another export's framing, or the lung network's error, would move it."""
    x0, y0, x1, y1 = window
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + rng.uniform(-0.04, 0.04) * w, (y0 + y1) / 2 + rng.uniform(-0.04, 0.04) * h
    w, h = w * rng.uniform(0.9, 1.1), h * rng.uniform(0.9, 1.1)
    box = np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, size)
    if box[2] - box[0] < 16 or box[3] - box[1] < 16:
        return window
    return int(box[0]), int(box[1]), int(np.ceil(box[2])), int(np.ceil(box[3]))


REFRAME_DETAIL = 2 * COMMON_DETAIL  # px: a film kept this fine can be cut and squashed again as an export would be
REFRAME_SHARE = 0.5  # of the training views (with --reframe)
MAX_CUT, MAX_PAD = 0.10, 0.04  # per side, as fractions of the film


def preload_detailed(data: Path, df: pd.DataFrame) -> dict[int, np.ndarray]:
    """The films of ``df`` squashed to REFRAME_DETAIL px (for ``reframed``)."""
    return {i: cv2.resize(g, (REFRAME_DETAIL, REFRAME_DETAIL), interpolation=cv2.INTER_AREA
                          if min(g.shape) >= REFRAME_DETAIL else cv2.INTER_LINEAR)
            for i, g in zip(df.index, film_grays(data, df))}


def reframed(detailed: np.ndarray, boxes: list, window: Window, rng: np.random.Generator):
    """The film as an export with other borders reaches the member: each side cut by up to 10 % or padded by up
    to 4 %, then squashed to the common detail again (so a cut film's lungs get more pixels, as they do in the
    app). Its opacity boxes and lung window move with it; the lung network would find the window again, and the
    member's own window jitter covers its error. Returns (common-detail film, boxes, window) like ``Films``."""
    s = detailed.shape[0]
    cut = rng.uniform(-MAX_PAD, MAX_CUT, 4) * s  # left, top, right, bottom; < 0 pads
    pad = int(np.ceil(max(0.0, -cut.min())))
    canvas = cv2.copyMakeBorder(detailed, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x0, y0, x1, y1 = (int(round(v)) for v in (cut[0], cut[1], s - cut[2], s - cut[3]))
    common = cv2.resize(canvas[y0 + pad:y1 + pad, x0 + pad:x1 + pad], (PRELOAD, PRELOAD), interpolation=cv2.INTER_AREA)
    k, sx, sy = s / PRELOAD, PRELOAD / (x1 - x0), PRELOAD / (y1 - y0)

    def moved(b):
        return np.clip([(b[0] * k - x0) * sx, (b[1] * k - y0) * sy, (b[2] * k - x0) * sx, (b[3] * k - y0) * sy],
                       0, PRELOAD)
    new_boxes = [m.tolist() for m in map(moved, boxes) if m[2] - m[0] > 2 and m[3] - m[1] > 2]
    w = moved(window)
    if w[2] - w[0] < 16 or w[3] - w[1] < 16:
        return common, new_boxes, window
    return common, new_boxes, (int(w[0]), int(w[1]), int(np.ceil(w[2])), int(np.ceil(w[3])))


def augment(common: np.ndarray, boxes: list, window: Window, rng: np.random.Generator):
    """The member's input after a random export: the window moved, contrast, detail, blur, JPEG and noise
    jittered. Returns the input and the opacity boxes in its 224 px frame."""
    x0, y0, x1, y1 = jittered_window(window, rng)
    cw, ch = x1 - x0, y1 - y0
    out_boxes = []
    for bx0, by0, bx1, by1 in boxes:
        nb = [max(bx0 - x0, 0), max(by0 - y0, 0), min(bx1 - x0, cw), min(by1 - y0, ch)]
        if nb[2] - nb[0] > 2 and nb[3] - nb[1] > 2:
            out_boxes.append([nb[0] * INPUT_SIZE / cw, nb[1] * INPUT_SIZE / ch,
                              nb[2] * INPUT_SIZE / cw, nb[3] * INPUT_SIZE / ch])
    x = common.astype(np.float32)
    x = np.clip(x * rng.uniform(0.75, 1.3) + rng.uniform(-25, 25), 0, 255)
    x = (255.0 * (x / 255.0) ** rng.uniform(0.7, 1.4)).astype(np.uint8)
    if rng.random() < 0.25:
        f = rng.uniform(0.5, 0.9)
        small = cv2.resize(x, (int(PRELOAD * f), int(PRELOAD * f)), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (PRELOAD, PRELOAD), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.3:
        ok, enc = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        x = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
    if rng.random() < 0.15:
        x = np.clip(x + rng.normal(0, rng.uniform(1, 5), x.shape), 0, 255).astype(np.uint8)
    return member_input(lung_crop(x, (x0, y0, x1, y1))), out_boxes


# ----------------------------------------------------------------------------- losses
# Keras averages per-sample losses over the batch; each one below is scaled so that the
# average equals the batch-normalised sum (class-weighted CE / sum of weights, CenterNet
# focal loss / number of valid centres).  Detection terms count only films whose
# opacities were drawn (``det_valid``), packed into the target's last channel.

def class_loss(y_true, logits):
    from keras import ops
    y = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    w = ops.take(ops.convert_to_tensor(CLASS_WEIGHTS), y)
    ce = ops.sparse_categorical_crossentropy(y, logits, from_logits=True)
    n = ops.cast(ops.shape(y)[0], "float32")
    return ce * w * n / ops.sum(w)


def heat_loss(y_true, heat_pred):
    from keras import ops
    heat, dv = y_true[..., :1], y_true[..., 1:2]
    p = ops.clip(heat_pred, 1e-4, 1 - 1e-4)
    pos = ops.cast(heat >= 1.0, "float32")
    focal = -(pos * (1 - p) ** 2 * ops.log(p) + (1 - pos) * (1 - heat) ** 4 * p ** 2 * ops.log(1 - p))
    n = ops.cast(ops.shape(heat)[0], "float32")
    return ops.sum(focal * dv, axis=(1, 2, 3)) * n / ops.maximum(ops.sum(pos * dv), 1.0)


def size_loss(y_true, size_pred):
    from keras import ops
    size, mask = y_true[..., :2], y_true[..., 2:3] * y_true[..., 3:4]
    n = ops.cast(ops.shape(size)[0], "float32")
    return ops.sum(ops.abs(size_pred - size) * mask, axis=(1, 2, 3)) * n / ops.maximum(ops.sum(mask), 1.0)


# ----------------------------------------------------------------------------- training

def finetune(df: pd.DataFrame, films: Films, x_val: np.ndarray, *, epochs: int = 14, batch: int = 32,
             lr: float = 3e-4, seed: int = 0, workers: int = 1, stop_after: int | None = None,
             time_budget_s: float = 1e9, init: Path | None = None, detailed: dict | None = None, log=print):
    """Return (model, history): ``train_xray.build_model`` trained on the train split, best validation epoch kept.

    ``x_val`` are the validation films as the model sees them (same order as ``df``'s val rows).
    The learning-rate schedule spans ``epochs``; ``stop_after`` (or the time budget) ends the run earlier.
    ``init``: start from these weights (an earlier run's) instead of ImageNet's: a second learning-rate cycle.
    ``detailed``: the training films at REFRAME_DETAIL px; then REFRAME_SHARE of the views are ``reframed`` first.
    """
    import keras
    from keras import ops

    keras.utils.set_random_seed(seed)
    tr, va = df[df.split == "train"], df[df.split == "val"]
    # Full-resolution films are the varied, rarer domain: show them twice as often.
    pick_p = np.where(tr.source.isin(["covidquex", "covidradiography"]), 1.0, 2.0)
    pick_p /= pick_p.sum()
    idx, y_all, dv_all = tr.index.to_numpy(), df.y.to_numpy(), df.det_valid.to_numpy(np.float32)
    row_of = {i: r for r, i in enumerate(df.index)}
    steps = max(1, int(len(tr) * 1.3) // batch)

    class Batches(keras.utils.PyDataset):
        """Batch ``k`` of epoch ``e`` is drawn from its own seed, so any number of worker threads gives
        the same batches."""

        epoch = 0

        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=2 * max(workers, 1))

        def __len__(self):
            return steps

        def __getitem__(self, k):
            rng = np.random.default_rng((seed, self.epoch, k))
            xs, ys, heats, sizes = [], [], [], []
            for i in rng.choice(idx, size=batch, p=pick_p):
                film = films[i]
                if detailed is not None and rng.random() < REFRAME_SHARE:
                    film = reframed(detailed[i], film[1], film[2], rng)
                x, boxes = augment(*film[:3], rng)
                h, s, m = heat_targets(boxes)
                dv = np.full((GRID, GRID, 1), dv_all[row_of[i]], np.float32)
                xs.append(x); ys.append(y_all[row_of[i]])
                heats.append(np.concatenate([h[..., None], dv], -1))
                sizes.append(np.concatenate([s, m[..., None], dv], -1))
            return np.stack(xs), {"class_logits": np.array(ys, np.int32), "heatmap": np.stack(heats),
                                  "box_size": np.stack(sizes)}

    model = build_model(keras)
    if init is not None:
        model.load_weights(init)
    out = model.output
    trainer = keras.Model(model.input, {k: out[k] for k in ("class_logits", "heatmap", "box_size")})
    total = steps * epochs
    warm = min(100, total // 5 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(1, total - warm), warmup_target=lr, warmup_steps=warm)
    trainer.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                    loss={"class_logits": class_loss, "heatmap": heat_loss, "box_size": size_loss},
                    loss_weights={"class_logits": 1.0, "heatmap": 1.0, "box_size": 5.0})
    scorer = keras.Model(model.input, out["class_logits"])
    data = Batches()
    y_val, src_val = va.y.to_numpy(), va.source.to_numpy()

    def run_epoch(epoch):
        data.epoch = epoch
        fit = trainer.fit(data, epochs=1, verbose=0)
        logits = np.concatenate([ops.convert_to_numpy(scorer(x_val[i:i + 64], training=False))
                                 for i in range(0, len(x_val), 64)])
        m = classification_metrics(y_val, softmax(logits), src_val)
        losses = [round(float(fit.history[f"{k}_loss"][-1]), 4) for k in ("class_logits", "heatmap", "box_size")]
        return ({"epoch": epoch + 1, "loss": losses, "val_accuracy": m["accuracy"], "val_macro_auc": m["macro_auc"]},
                m["accuracy"] + m["macro_auc"],
                f"epoch {epoch + 1}: loss {losses} val acc {m['accuracy']:.3f} auc {m['macro_auc']:.3f}")

    history = keep_best_epochs(model, min(epochs, stop_after or epochs), run_epoch, time_budget_s=time_budget_s,
                               log=log)
    return model, history


def compute_device() -> str:
    """What trained the weights, for the card (a GPU's name, or "CPU")."""
    import keras
    if keras.backend.backend() == "torch":
        import torch
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"
    return keras.backend.backend()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack-out", type=Path, help="write the train + val pack for a GPU machine and stop")
    ap.add_argument("--pack", type=Path, help="read films from a pack instead of the data directory")
    ap.add_argument("--out", type=Path, help="path stem: writes STEM.weights.h5 and STEM.json (the validation log)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="threads that augment batches")
    ap.add_argument("--stop-after", type=int, help="end after this many epochs (the schedule still spans --epochs)")
    ap.add_argument("--time-budget", type=float, default=1e9, help="seconds; stops after the epoch that passes it")
    ap.add_argument("--init", type=Path, help="STEM.weights.h5 of an earlier run to start from (a second cycle)")
    ap.add_argument("--lungs", type=Path, default=DEFAULT_LUNGS, help="the lung-field network whose windows it reads")
    ap.add_argument("--reframe", action="store_true", help="half the training views cut or padded at the film's "
                    "borders and squashed again, as another export frames the film (needs the data directory)")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.reframe and args.pack:
        raise SystemExit("--reframe reads the films at twice the common detail from the data directory, not a pack")
    seed_everything(args.seed)
    if args.pack:
        df, films = read_pack(args.pack)
    else:
        data = require_data()
        df = load_manifest(data, smoke=args.smoke)
        films = preload_films(data, df, load_lung_model(args.lungs))
    if args.pack_out:
        write_pack(df, films, args.pack_out)
        print(f"wrote {args.pack_out} ({args.pack_out.stat().st_size / 1e6:.1f} MB)")
        return
    if args.smoke:
        args.epochs, args.batch = 1, 8
    import keras
    # Validation films as the app sees them (from the pack, a JPEG copy of the common-detail film; the CPU
    # machine re-scores the chosen weights on the original files).
    x_val = member_inputs_of(films, df[df.split == "val"].index)
    detailed = preload_detailed(data, df[df.split == "train"]) if args.reframe else None
    t0 = time.time()
    model, history = finetune(df, films, x_val, epochs=args.epochs, batch=args.batch, lr=args.lr, seed=args.seed,
                              workers=args.workers, stop_after=args.stop_after, time_budget_s=args.time_budget,
                              init=args.init, detailed=detailed, log=lambda m: print(m, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    clean = build_model(keras)  # weights only, no optimizer state: small enough to come back from a GPU machine
    clean.set_weights(model.get_weights())
    clean.save_weights(args.out.with_suffix(".weights.h5"))
    args.out.with_suffix(".json").write_text(json.dumps(
        {"backend": keras.backend.backend(), "device": compute_device(), "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
         "seed": args.seed, "epochs_run": len(history), "seconds": round(time.time() - t0), "reframe": args.reframe,
         "lungs_sha256": sha256(args.lungs) if args.lungs.is_file() else None,
         "init": None if args.init is None else json.loads(args.init.with_name(
             args.init.name.removesuffix(".weights.h5") + ".json").read_text()),
         "history": history}, indent=1) + "\n")
    print(f"wrote {args.out} in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
