"""The lung prior: both X-ray members weigh their feature maps by how likely each part of the crop is lung, and the
attention map splits the class score the same way."""

from __future__ import annotations

import numpy as np
import pytest

from demo_core.intake import load_image
from demo_core.xray.lung_prior import PRIOR_SIZE, boxes_in_crop, cell_weights, fit_prior, prior_pooled, uniform_share


def test_a_flat_prior_pools_as_a_plain_average():
    features = np.random.default_rng(0).normal(size=(2, 7, 7, 5))
    flat = np.ones((PRIOR_SIZE, PRIOR_SIZE))
    np.testing.assert_allclose(prior_pooled(features, flat), features.mean(axis=(1, 2)), rtol=1e-6)


def test_what_the_prior_leaves_out_does_not_reach_the_pooled_features():
    # a prior covering only the left half: changing the right half's features changes nothing
    prior = np.zeros((PRIOR_SIZE, PRIOR_SIZE))
    prior[:, : PRIOR_SIZE // 2] = 1
    a = np.random.default_rng(1).normal(size=(12, 12, 3))
    b = a.copy()
    b[:, 6:] += 100
    np.testing.assert_allclose(prior_pooled(a, prior), prior_pooled(b, prior), atol=1e-9)
    assert cell_weights(prior, 12).mean() == pytest.approx(1.0)


def test_the_prior_is_the_share_of_training_films_whose_lungs_cover_each_point():
    window = (0, 0, 100, 100)
    left_only = boxes_in_crop([(0, 0, 50, 100)], window)
    both = boxes_in_crop([(0, 0, 50, 100), (50, 0, 100, 100)], window)
    prior = fit_prior([left_only, both])
    assert prior[:, : PRIOR_SIZE // 2].mean() == pytest.approx(1.0)
    assert prior[:, PRIOR_SIZE // 2:].mean() == pytest.approx(0.5)
    assert uniform_share(prior, left_only) == pytest.approx(2 / 3)


def test_the_shipped_prior_weighs_the_lungs_above_the_mediastinum_and_corners(xray_model):
    prior = xray_model.lung_prior
    assert prior.shape == (PRIOR_SIZE, PRIOR_SIZE) and 0 <= prior.min() and prior.max() <= 1
    e = PRIOR_SIZE // 8  # eighths of the crop: each lung's middle lies 1/8 to 3/8 in from its side
    rows = slice(2 * e, 6 * e)
    lungs = (prior[rows, e:3 * e].mean() + prior[rows, 5 * e:7 * e].mean()) / 2
    corners = np.mean([prior[:5, :5].mean(), prior[:5, -5:].mean(), prior[-5:, :5].mean(), prior[-5:, -5:].mean()])
    middle = prior[rows, PRIOR_SIZE // 2 - 2:PRIOR_SIZE // 2 + 2].mean()
    assert lungs > 0.9 and corners < 0.5 and middle < lungs


def test_the_attention_map_lies_where_the_members_pool(xray_model, chest_film):
    r = xray_model.predict(load_image(chest_film))
    cam, weights = r.attention(), r.pooling_weights()
    assert cam.shape == weights.shape
    assert cam[weights == 0].max(initial=0) == 0  # nothing outside the crop
    assert cam.max() == pytest.approx(1.0)


def test_the_graphs_pool_as_the_numpy_rule_does(xray_model):
    # the Keras layer baked into both exported graphs and the numpy rule behind the attention map are one rule
    from demo_core.xray.keras_layers import LungPriorPooling
    features = np.random.default_rng(2).uniform(0, 6, (2, 12, 12, 8)).astype("float32")
    layer = LungPriorPooling(xray_model.lung_prior)
    np.testing.assert_allclose(np.asarray(layer(features)), prior_pooled(features, xray_model.lung_prior), rtol=1e-5)
    again = LungPriorPooling.from_config(layer.get_config())
    np.testing.assert_allclose(np.asarray(again(features)), np.asarray(layer(features)), rtol=1e-5)
