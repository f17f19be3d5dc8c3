"""The X-ray graphs' one custom layer, for the training scripts and the checks that load the ``.keras`` files.

Importing this module registers the layer with Keras; the app never imports it (it serves LiteRT copies).
"""

from __future__ import annotations

import numpy as np

from .._tf import keras as _keras
from .lung_prior import cell_weights

keras = _keras()


@keras.saving.register_keras_serializable(package="demo_core")
class LungPriorPooling(keras.layers.Layer):
    """Pools a square feature map with the lung prior's weights (``lung_prior.prior_pooled`` in a graph)."""

    def __init__(self, prior, **kwargs):
        super().__init__(**kwargs)
        self.prior = np.asarray(prior, np.float32)

    def build(self, input_shape):
        grid = int(input_shape[1])
        self._weights_map = keras.ops.convert_to_tensor(cell_weights(self.prior, grid)[None, :, :, None])
        super().build(input_shape)

    def call(self, x):
        return keras.ops.mean(x * self._weights_map, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "prior": np.round(self.prior, 6).tolist()}
