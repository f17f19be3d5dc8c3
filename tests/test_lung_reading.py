"""The lung reading: where the members look, found in several looks and cut from the film at one detail.

A fake lung network that finds a bright rectangle stands in for the real one, so these tests check the geometry
(looks mapped back to the film, the crop's detail) rather than a trained network."""

from __future__ import annotations

import numpy as np

from demo_core.xray.preprocess import (CROP_DETAIL, FRAMINGS, LUNG_NET_SIZE, LUNG_PASSES, LungReading, crop_window,
                                       framings_in_words, lung_crop, lung_field, member_input, probe_input)

LUNGS = (0.22, 0.18, 0.78, 0.86)  # the bright "lung field" of the synthetic film, as fractions


def film(width: int = 900, height: int = 1000) -> np.ndarray:
    """A dark film with a bright textured rectangle where the lungs are."""
    rng = np.random.default_rng(0)
    out = np.full((height, width), 30, np.uint8)
    x0, y0, x1, y1 = (round(v * s) for v, s in zip(LUNGS, (width, height, width, height)))
    out[y0:y1, x0:x1] = 150 + rng.integers(0, 60, (y1 - y0, x1 - x0))
    return out


def bright_box_net(batch: np.ndarray) -> np.ndarray:
    """A lung network that finds the bright rectangle exactly: its extent as fractions of each input."""
    fields = []
    for x in batch[..., 0]:
        ys, xs = np.nonzero(x > x.mean())
        fields.append([xs.min() / LUNG_NET_SIZE, ys.min() / LUNG_NET_SIZE,
                       (xs.max() + 1) / LUNG_NET_SIZE, (ys.max() + 1) / LUNG_NET_SIZE])
    return np.array(fields, np.float32)


def border_cut(gray: np.ndarray, fraction: float) -> np.ndarray:
    h, w = gray.shape
    dy, dx = round(h * fraction), round(w * fraction)
    return gray[dy:h - dy, dx:w - dx]


def test_each_look_is_mapped_back_onto_the_whole_film():
    # later looks see only the film cut to the last field; their answers come back as fractions of the whole film
    gray = film()
    assert LUNG_PASSES >= 2
    for passes in range(1, LUNG_PASSES + 1):
        np.testing.assert_allclose(lung_field(bright_box_net, [gray], passes)[0], LUNGS, atol=0.012)


def test_a_film_cut_at_its_borders_gives_the_same_field_and_nearly_the_same_crop():
    gray, cut = film(), border_cut(film(), 0.06)
    field, field_cut = lung_field(bright_box_net, [gray, cut])
    in_original = 0.06 + field_cut * 0.88  # the cut film spans 6-94 % of the original
    np.testing.assert_allclose(in_original, field, atol=0.012)
    a, b = lung_crop(gray, crop_window(field)), lung_crop(cut, crop_window(field_cut))
    assert a.shape == b.shape == (CROP_DETAIL, CROP_DETAIL) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 6  # the same pixels, up to a few rows of framing


def test_the_crop_has_the_same_detail_whatever_the_films_resolution():
    # a 224 px film and the same film at 1,800 px reach the members at the same size and nearly the same pixels
    big = film(1600, 1800)
    small = np.asarray(__import__("cv2").resize(big, (200, 224), interpolation=3))  # INTER_AREA
    crops = [lung_crop(g, crop_window(lung_field(bright_box_net, [g])[0])) for g in (big, small)]
    assert crops[0].shape == crops[1].shape == (CROP_DETAIL, CROP_DETAIL)
    assert abs(float(crops[0].mean()) - float(crops[1].mean())) < 3


def test_a_tiny_or_blank_film_still_gives_a_reading():
    # a 20 px image is too small to look at again; a flat one gives the network nothing: neither breaks
    for gray in (np.full((20, 20), 90, np.uint8), film(40, 30)):
        field = lung_field(lambda b: np.tile([[0.1, 0.1, 0.9, 0.9]], (len(b), 1)), [gray])[0]
        crop = lung_crop(gray, crop_window(field))
        assert crop.shape == (CROP_DETAIL, CROP_DETAIL)
        assert member_input(crop).shape == (224, 224, 3) and probe_input(crop, 384).shape == (384, 384, 3)


def test_the_framings_share_the_field_s_centre_one_as_found_one_tighter_one_wider():
    reading = LungReading.of(lung_field(bright_box_net, [film()])[0])
    found, *others = reading.windows
    assert found == reading.window and len(others) == len(FRAMINGS) - 1
    centre = lambda w: ((w[0] + w[2]) / 2, (w[1] + w[3]) / 2)  # noqa: E731
    width = lambda w: w[2] - w[0]  # noqa: E731
    for framing, window in zip(FRAMINGS[1:], others):
        assert np.allclose(centre(window), centre(found), atol=1.0)  # common-detail pixels, snapped outwards
        assert (width(window) < width(found)) == (framing < 1)
    assert framings_in_words() == "as found, 4 % tighter and 4 % wider"
