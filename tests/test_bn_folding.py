"""Batch norms folded into convolutions (at load time, or before the LiteRT export): faster, the same answers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from demo_core import _tf
from demo_core.bn_folding import fold_batch_norms
from demo_core.cards import task_dir
from demo_core.intake import load_image


def _with_trained_statistics(model, rng):
    """BN layers as training leaves them: moving statistics and affine terms far from the defaults."""
    keras = _tf.keras()
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(0, 1, beta.shape),
                               rng.normal(0, 1, mean.shape), rng.uniform(0.1, 3, var.shape)])


def test_folding_removes_batch_norms_and_keeps_every_output():
    keras = _tf.keras()
    L = keras.layers
    rng = np.random.default_rng(0)
    image = keras.Input((32, 32, 3))
    a = L.BatchNormalization(name="bn_a")(L.Conv2D(8, 3, padding="same", use_bias=False, name="conv_a")(image))
    b = L.BatchNormalization(name="bn_b")(L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw_b")(a))
    # a conv with its own activation, and a conv whose output is also read elsewhere, must stay unfolded
    c = L.BatchNormalization(name="bn_c")(L.Conv2D(4, 1, activation="relu", name="conv_c")(b))
    shared = L.Conv2D(4, 1, name="conv_d")(b)
    d = L.Add()([L.BatchNormalization(name="bn_d")(shared), shared])
    returned = L.Conv2D(4, 1, name="conv_e")(b)  # returned as it is and batch-normalised: must stay unfolded
    e = L.BatchNormalization(name="bn_e")(returned)
    inner = keras.Model(image, {"c": c, "d": d, "e": e, "e_raw": returned}, name="inner")
    # nested functional models are folded too (the car photo model nests its trunk and tails)
    outer_in = keras.Input((32, 32, 3))
    inner_out = inner(outer_in)
    model = keras.Model(outer_in, {"pooled": L.GlobalAveragePooling2D()(inner_out["c"]), "d": inner_out["d"],
                                   "e": inner_out["e"], "e_raw": inner_out["e_raw"]})
    _with_trained_statistics(model, rng)

    folded = fold_batch_norms(model)
    bn_names = {l.name for l in folded._flatten_layers() if isinstance(l, L.BatchNormalization)}
    assert bn_names == {"bn_c", "bn_d", "bn_e"}
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    want, got = model(x, training=False), folded(x, training=False)
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-4, atol=1e-4)


def test_served_xray_networks_answer_like_the_keras_files_they_were_exported_from(xray_model, chest_film):
    # the app reads films through LiteRT copies of the trained graphs (batch norms folded); they must agree
    keras = _tf.keras()
    import demo_core.xray.keras_layers  # noqa: F401  (the lung-prior pooling both graphs hold)
    x, x_probe, _ = xray_model.member_inputs(load_image(chest_film))
    out = xray_model._forward(x, x_probe)
    member = keras.models.load_model(task_dir("xray") / "model.keras", compile=False)(x, training=False)
    for key in ("probabilities", "heatmap", "box_size", "features"):
        np.testing.assert_allclose(out[key], member[key].numpy(), atol=1e-3)
    probe = keras.models.load_model(task_dir("xray") / "probe.keras", compile=False)(x_probe, training=False)
    for key in ("probabilities", "is_chest_xray", "pooled", "features"):
        np.testing.assert_allclose(out[f"probe_{key}"], probe[key].numpy(), atol=1e-3)
    served = xray_model.card["served"]
    assert all(f["largest_difference"] <= served["tolerance"] <= 1e-3 for f in served["files"].values())


def test_the_xray_demo_loads_and_answers_without_importing_tensorflow(chest_film):
    # what makes the first X-ray answer on a fresh server fast: no TensorFlow import, no Keras graph to build
    script = ("import sys; from demo_core.xray import model; m = model.load(); r = m.predict(sys.argv[1]); "
              "assert r.is_chest_xray; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script, str(chest_film)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["False", "False"]


def test_served_car_photo_model_answers_like_its_file(car_model, car_photo):
    from demo_core.car.photo import to_photo_input
    keras = _tf.keras()
    unfolded = keras.models.load_model(task_dir("car") / "photo.keras", compile=False)
    x = to_photo_input(load_image(car_photo).pixels)[None]
    want, got = unfolded(x, training=False), car_model._photo(_tf.tf().constant(x))
    for key in ("is_car", "make"):
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-4)
