"""Fold inference-mode batch normalisation into the convolution before it.

At inference a BatchNormalization layer is a fixed per-channel scale and
shift, so ``conv -> BN`` equals one convolution with rescaled kernels and a
bias.  Keras 3 runs BN as separate element-wise ops over every activation map,
and on 2 CPU cores those memory-bound passes cost about a third of a
MobileNetV2 forward pass (bench: 25 ms -> 16 ms at 384 px).  Folding at load
time keeps the weight files and their checksums as trained; the outputs agree
with the unfolded model to float32 rounding (tests/test_bn_folding.py).
"""

from __future__ import annotations

import functools

import numpy as np

from . import _tf


def fold_batch_norms(model):
    """A copy of a functional ``model`` (nested functional models included) with every BN that directly
    follows a linear Conv2D / DepthwiseConv2D folded into it.  Other layers keep their weights."""
    keras = _tf.keras()
    layers = keras.layers
    convs = (layers.Conv2D, layers.DepthwiseConv2D)

    outputs = {id(t) for t in model.outputs}  # a conv whose own output is returned must keep it
    folds = {}  # BN layer name -> conv layer, for this model's own layers
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        parent = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
        if (isinstance(parent, convs) and parent.get_config().get("activation") == "linear"
                and len(parent._outbound_nodes) == 1 and id(parent.output) not in outputs and _channels_last(layer)):
            folds[layer.name] = parent
    folded_convs = {conv.name: bn_name for bn_name, conv in folds.items()}

    def clone(layer):
        if layer.name in folds:
            return _passthrough_class()(name=layer.name)
        if layer.name in folded_convs:
            return layer.__class__.from_config({**layer.get_config(), "use_bias": True})
        if isinstance(layer, keras.Model) and layer.layers:
            return fold_batch_norms(layer)
        return layer.__class__.from_config(layer.get_config())

    folded = keras.models.clone_model(model, clone_function=clone)
    # clone_model keeps the layer order (input layers may be renamed, so names cannot pair them)
    for old, new in zip(model.layers, folded.layers, strict=True):
        if new.name in folds:
            continue
        if new.name in folded_convs:
            new.set_weights(_folded_weights(old, model.get_layer(folded_convs[new.name])))
        elif not isinstance(new, keras.Model):  # nested models were folded (and filled) above
            new.set_weights(old.get_weights())
    return folded


def _channels_last(bn) -> bool:
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    return axis in (-1, 3)


def _folded_weights(conv, bn) -> list[np.ndarray]:
    weights = conv.get_weights()
    kernel = weights[0].astype(np.float64)
    bias = weights[1].astype(np.float64) if len(weights) > 1 else 0.0
    gamma = bn.gamma.numpy().astype(np.float64) if bn.scale else 1.0
    beta = bn.beta.numpy().astype(np.float64) if bn.center else 0.0
    mean = bn.moving_mean.numpy().astype(np.float64)
    scale = gamma / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
    if isinstance(conv, _tf.keras().layers.DepthwiseConv2D):
        # depthwise kernels end in (input channel, multiplier); flattened, that is the output channel order
        kernel = kernel * scale.reshape(kernel.shape[-2:])
    else:
        kernel = kernel * scale  # Conv2D kernels end in the output channel
    return [kernel.astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)]


@functools.cache
def _passthrough_class():
    """Built on first use, so importing demo_core does not import Keras."""
    keras = _tf.keras()

    class Passthrough(keras.layers.Layer):
        """Stands where a folded BN was, under its name, so layers that read its output by name still find it."""

        def call(self, inputs, training=None, mask=None):  # the BN's recorded call passes these
            return inputs

    return Passthrough


def load_for_inference(path):
    """Load a ``.keras`` file (no optimizer state) and fold its batch norms: what the demos serve."""
    return fold_batch_norms(_tf.keras().models.load_model(path, compile=False))
