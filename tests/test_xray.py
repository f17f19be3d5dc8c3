"""Chest X-ray model: behaviour a radiologist trying the demo would rely on."""

from __future__ import annotations

import numpy as np
import pytest

from demo_core.errors import InputError
from demo_core.examples import as_dicom
from demo_core.intake import load_image
from demo_core.xray.labels import CLASSES
from conftest import png_bytes


def test_a_film_gets_four_probabilities_summing_to_one(xray_model, chest_film):
    r = xray_model.predict(chest_film)
    assert r.is_chest_xray
    assert list(r.probabilities) == CLASSES
    assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert r.label == max(r.probabilities, key=r.probabilities.get)


def test_probabilities_blend_the_two_members_with_the_cards_weight(xray_model, chest_film):
    # the shipped answer is w * fine-tuned + (1 - w) * ImageNet probe, w chosen on validation
    w = xray_model.card["ensemble"]["finetuned_weight"]
    assert 0 <= w <= 1 and xray_model.finetuned_weight == w
    out = xray_model._forward(*xray_model.member_inputs(load_image(chest_film)))
    finetuned, probe = out["probabilities"].numpy()[0], out["probe_probabilities"].numpy()[0]
    got = np.array(list(xray_model.predict(chest_film).probabilities.values()))
    np.testing.assert_allclose(got, w * finetuned + (1 - w) * probe, atol=1e-5)


def test_each_member_reads_the_film_at_its_own_size(xray_model, chest_film):
    # the fine-tuned member reads 224 px; the probe reads the size validation chose for it (in the card)
    x, x_probe = xray_model.member_inputs(load_image(chest_film))
    size = xray_model.card["ensemble"].get("probe_input_size", 224)
    assert tuple(x.shape) == (1, 224, 224, 3) and tuple(x_probe.shape) == (1, size, size, 3)
    assert str(size) in xray_model.input_description()


def test_boxes_lie_inside_the_image(xray_model, data_dir):
    from demo_core.examples import xray_examples
    for ex in xray_examples():
        r = xray_model.predict(ex.path)
        w, h = r.image_size
        for b in r.boxes:
            x0, y0, x1, y1 = b.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert 0 <= b.score <= 1


def test_annotated_film_with_opacities_gets_a_box(xray_model):
    from demo_core.examples import xray_examples
    ex = next(e for e in xray_examples() if "opacity annotation" in e.label)
    assert xray_model.predict(ex.path).boxes_above(0.1)


def test_same_pixels_as_png_and_as_dicom_give_the_same_answer(xray_model, chest_film):
    gray = load_image(chest_film).gray()
    as_png = xray_model.predict(png_bytes(gray))
    as_dcm = xray_model.predict(as_dicom(gray, window=(2048, 4096)), name="film.dcm")  # full-range window
    for c in CLASSES:
        assert as_dcm.probabilities[c] == pytest.approx(as_png.probabilities[c], abs=0.02)


def test_monochrome1_gives_the_same_answer_as_its_inverted_twin(xray_model, chest_film):
    gray = load_image(chest_film).gray()
    mono1 = xray_model.predict(as_dicom(gray, monochrome1=True))
    mono2 = xray_model.predict(as_dicom(gray))
    assert mono1.to_dict() == mono2.to_dict()


def test_a_photo_is_refused(xray_model, car_photo):
    r = xray_model.predict(car_photo)
    assert r.is_chest_xray is False and r.boxes == () and r.refusal_reason


def test_a_grey_photo_and_a_document_are_refused(xray_model, car_photo):
    grey_photo = load_image(car_photo).gray()
    assert not xray_model.predict(png_bytes(grey_photo)).is_chest_xray
    page = np.full((800, 600), 250, np.uint8)
    page[100:700:30, 60:540] = 20  # lines of "text"
    assert not xray_model.predict(png_bytes(page)).is_chest_xray


def test_results_are_deterministic(xray_model, chest_film):
    assert xray_model.predict(chest_film).to_dict() == xray_model.predict(chest_film).to_dict()


def test_attention_map_matches_the_image(xray_model, chest_film):
    r = xray_model.predict(chest_film)
    cam = xray_model.attention_map(r)
    assert cam.shape == (r.image_size[1], r.image_size[0]) and 0 <= cam.min() and cam.max() <= 1


def test_bad_input_raises_input_error(xray_model):
    with pytest.raises(InputError):
        xray_model.predict(b"not an image")
