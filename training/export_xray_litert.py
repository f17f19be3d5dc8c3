"""Export the X-ray networks for serving: each trained Keras file, batch norms folded, as a LiteRT ``.tflite`` file.

The app then reads chest films without importing TensorFlow: the first X-ray answer on a fresh server no longer
waits for TensorFlow's import and three Keras graphs to load, and a reading takes a few milliseconds. The class
weights that draw the attention maps go beside them (``heads.npz``). Every output of every exported network is
compared with the Keras graph it came from, on random inputs and on real films; the largest difference goes in
the card, and the export stops if one exceeds ``TOLERANCE``.

    python training/export_xray_litert.py            # a few seconds; rewrites the served files and the card
    python training/export_xray_litert.py --out DIR  (DIR holds model.keras, probe.keras, lungs.keras, card.json)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import ROOT, write_card
from xray_common import lung_net

import demo_core.xray.keras_layers  # noqa: F401  (registers the lung-prior pooling the X-ray graphs hold)
from demo_core.bn_folding import load_for_inference
from demo_core.xray.model import HEADS_FILE, LUNG_FILE, SERVED

TOLERANCE = 1e-3


def convert(keras_model) -> tuple[bytes, dict[str, str]]:
    """The folded graph as a ``.tflite`` flatbuffer for a batch of one, and its output names -> the graph's."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    fn = tf.function(lambda x: keras_model(x, training=False), autograph=False)
    concrete = fn.get_concrete_function(tf.TensorSpec((1, *keras_model.input_shape[1:]), tf.float32, name="image"))
    flat = convert_variables_to_constants_v2(concrete)
    data = tf.lite.TFLiteConverter.from_concrete_functions([flat], keras_model).convert()
    output = keras_model.output
    names = sorted(output) if isinstance(output, dict) else ["output"]  # tf.nest flattens a dict by sorted key
    return data, {f"output_{i}": name for i, name in enumerate(names)}


def largest_difference(keras_model, path: Path, outputs: dict[str, str], inputs: np.ndarray) -> float:
    from demo_core.served import ServedNet
    served = ServedNet(path, outputs)
    worst = 0.0
    for x in inputs:
        want = keras_model(x[None], training=False)
        want = {k: np.asarray(v) for k, v in want.items()} if isinstance(want, dict) else {"output": np.asarray(want)}
        got = served(x[None])
        worst = max(worst, *(float(np.abs(got[k] - want[k]).max()) for k in want))
    return worst


def sample_inputs(shape: tuple[int, ...], films: list[np.ndarray]) -> np.ndarray:
    """Random inputs in the models' [-1, 1] range, and real films' readings when there are any."""
    rng = np.random.default_rng(0)
    random = rng.uniform(-1, 1, (3, *shape)).astype(np.float32)
    return np.concatenate([random, np.stack(films)]) if films else random


def real_readings(folder: Path, probe_size: int) -> dict[str, list[np.ndarray]]:
    """The example pack's films as each network reads them (the pack ships with the repository)."""
    import keras

    from demo_core.examples import xray_examples
    from demo_core.intake import load_image
    from demo_core.xray.preprocess import (common_detail, crop_window, lung_crop, lung_field, lung_net_input,
                                           member_input, probe_input)
    lungs = keras.models.load_model(folder / LUNG_FILE, compile=False)
    out: dict[str, list[np.ndarray]] = {"lungs": [], "model": [], "probe": []}
    for example in xray_examples()[:3]:
        gray = load_image(example.path.read_bytes(), name=example.path.name).gray()
        field = lung_field(lung_net(lungs), [gray])[0]
        crop = lung_crop(gray, crop_window(field))
        out["lungs"].append(lung_net_input(common_detail(gray)))
        out["model"].append(member_input(crop))
        out["probe"].append(probe_input(crop, probe_size))
    return out


def export_served(folder: Path) -> dict:
    """Write the served files beside the Keras ones and describe them in the card (``served``)."""
    nets = {name: load_for_inference(folder / f"{name}.keras") for name in SERVED}
    probe_size = int(nets["probe"].input_shape[1])
    films = real_readings(folder, probe_size)
    served = {"runtime": "LiteRT (ai-edge-litert), XNNPACK, float32; batch norms folded into the convolutions",
              "tolerance": TOLERANCE, "files": {}}
    for name, net in nets.items():
        data, outputs = convert(net)
        path = folder / f"{name}.tflite"
        path.write_bytes(data)
        worst = largest_difference(net, path, outputs, sample_inputs(tuple(net.input_shape[1:]), films[name]))
        print(f"{path.name}: {len(data) / 1e6:.1f} MB, largest difference from {name}.keras {worst:.2e}", flush=True)
        if worst > TOLERANCE:
            raise SystemExit(f"{path.name} differs from {name}.keras by {worst:.2e} (> {TOLERANCE})")
        served["files"][path.name] = {"from": f"{name}.keras", "outputs": outputs, "largest_difference": worst}
    probe_channels = nets["probe"].output["features"].shape[-1]
    np.savez(folder / HEADS_FILE,
             finetuned_class_weights=nets["model"].get_layer("lung_class_logits").get_weights()[0],
             probe_class_weights=nets["probe"].get_layer("probe_logits").get_weights()[0][-probe_channels:],
             lung_prior=nets["model"].get_layer("lung_pooled").prior)
    card = json.loads((folder / "card.json").read_text())
    card.pop("files", None)
    card["served"] = served
    write_card(folder, card)
    return served


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "xray")
    args = ap.parse_args()
    print(json.dumps(export_served(args.out), indent=1))


if __name__ == "__main__":
    main()
