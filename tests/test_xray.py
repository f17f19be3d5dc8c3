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


def test_probabilities_average_the_probe_over_the_framings_then_blend_and_temper(xray_model, chest_film):
    # the shipped answer is softmax(log(w * fine-tuned + (1 - w) * lung probe) / T), the probe's probabilities
    # averaged over the framings of the lung crop; the framings, w and T were chosen on validation
    from demo_core.stats import tempered
    from demo_core.xray.preprocess import FRAMINGS, lung_crop, member_input, probe_input
    ensemble = xray_model.card["ensemble"]
    w, t = ensemble["finetuned_weight"], ensemble["temperature"]
    assert 0 <= w <= 1 and xray_model.finetuned_weight == w and t > 0
    assert ensemble["framings"] == list(FRAMINGS)  # the card was measured with the framings the code reads
    image = load_image(chest_film)
    _, _, lungs = xray_model.member_inputs(image)
    assert len(lungs.windows) == len(FRAMINGS) and lungs.windows[0] == lungs.window
    outs = [xray_model._forward(member_input(c)[None], probe_input(c, xray_model.probe_size)[None])
            for c in (lung_crop(image.gray(), window) for window in lungs.windows)]
    finetuned = outs[0]["probabilities"][0]  # the fine-tuned member reads the crop as found
    probe = np.mean([o["probe_probabilities"][0] for o in outs], axis=0)  # the probe, every framing
    got = np.array(list(xray_model.predict(chest_film).probabilities.values()))
    np.testing.assert_allclose(got, tempered(w * finetuned + (1 - w) * probe, t), atol=1e-5)


def test_both_members_read_the_lung_crop_each_at_its_own_size(xray_model, chest_film):
    # the fine-tuned member reads the lung crop at 224 px; the probe reads it at the size validation chose
    x, x_probe, lungs = xray_model.member_inputs(load_image(chest_film))
    size = xray_model.card["ensemble"]["probe_input_size"]
    assert tuple(x.shape) == (1, 224, 224, 3) and tuple(x_probe.shape) == (1, size, size, 3)
    assert str(size) in xray_model.input_description() and "{" not in xray_model.input_description()
    assert lungs.window[2] > lungs.window[0] and lungs.window[3] > lungs.window[1]


def test_the_lung_field_is_found_where_the_annotators_drew_it(xray_model, data_dir):
    # films with annotated lungs from the test split of the lung-field network: the crop holds both lungs
    import json
    import pandas as pd
    from demo_core.xray.preprocess import COMMON_DETAIL
    manifest = pd.read_csv(data_dir / "cxr" / "manifest.csv")
    rows = manifest[manifest.lung_boxes.fillna("[]") != "[]"].sample(12, random_state=3)
    covered = []
    for row in rows.itertuples():
        image = load_image(data_dir / "cxr" / row.file)
        x0, y0, x1, y1 = xray_model.read_lungs(image.gray())[1].window
        boxes = np.array(json.loads(row.lung_boxes)) * COMMON_DETAIL / [row.width, row.height, row.width, row.height]
        area = lambda b: max(0, b[2] - b[0]) * max(0, b[3] - b[1])  # noqa: E731
        inside = sum(area([max(b[0], x0), max(b[1], y0), min(b[2], x1), min(b[3], y1)]) for b in boxes)
        covered.append(inside / sum(area(b) for b in boxes))
    assert np.median(covered) >= 0.9


def test_an_export_barely_moves_the_answer(xray_model, data_dir):
    # the small version of bench/xray_robustness.py: a few films, every transform a hospital export applies
    from demo_core.xray.robustness import TRANSFORMS, stability_table
    from demo_core.examples import xray_examples
    films = [load_image(e.path).gray() for e in xray_examples()[:3]]
    table = stability_table(lambda im: np.array(list(xray_model.predict_image(im).probabilities.values())), films)
    assert [r.transform for r in table] == [t.name for t in TRANSFORMS]
    by_name = {r.transform: r for r in table}
    assert by_name["16-bit MONOCHROME1 DICOM"].mean_tv < 0.02
    assert max(r.mean_tv for r in table) < 0.15


def test_a_familiar_film_gets_no_caution_and_the_cli_says_so(xray_model, chest_film):
    r = xray_model.predict(chest_film)
    assert r.familiarity is not None and not r.unfamiliar and r.caution() is None
    assert r.to_dict()["unfamiliar_film"] is False


def test_a_film_unlike_the_training_films_gets_the_caution(xray_model, chest_film):
    # the same film upside down and mirrored: still grey and chest-like, but no training film looks like it
    gray = load_image(chest_film).gray()
    odd = xray_model.predict(png_bytes(np.ascontiguousarray(gray[::-1, ::-1])))
    normal = xray_model.predict(chest_film)
    assert odd.familiarity > normal.familiarity and odd.unfamiliar and not normal.unfamiliar


def test_boxes_lie_inside_the_image(xray_model, data_dir):
    from demo_core.examples import xray_examples
    for ex in xray_examples():
        r = xray_model.predict(ex.path)
        w, h = r.image_size
        for b in r.boxes:
            x0, y0, x1, y1 = b.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert 0 <= b.score <= 1


def test_annotated_film_with_opacities_gets_a_box(xray_model, data_dir):
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


def test_attention_map_matches_the_image_and_lies_in_the_lung_crop(xray_model, chest_film):
    r = xray_model.predict(chest_film)
    cam = r.attention()
    assert cam.shape == (r.image_size[1], r.image_size[0]) and 0 <= cam.min() and cam.max() <= 1
    x0, y0, x1, y1 = r.lungs.window_in_image(r.image_size)
    outside = cam.copy()
    outside[y0:y1, x0:x1] = 0
    assert cam.max() == 1.0 and outside.max() == 0.0  # both members read only the lung crop


def test_a_result_draws_itself_without_the_app(xray_model, chest_film):
    image = load_image(chest_film)
    r = xray_model.predict_image(image)
    plain, with_attention = r.annotated(image.pixels, 0.05), r.annotated(image.pixels, 0.05, attention=True)
    assert plain.size == with_attention.size and max(plain.size) <= 1280
    assert np.asarray(plain).tolist() != np.asarray(with_attention).tolist()


def test_bad_input_raises_input_error(xray_model):
    with pytest.raises(InputError):
        xray_model.predict(b"not an image")


def test_an_upload_is_checked_against_the_exports_that_move_answers_most(xray_model, chest_film):
    from demo_core.xray.robustness import SELF_CHECK
    image = load_image(chest_film)
    result = xray_model.predict_image(image)
    check = xray_model.self_check(image, result)
    assert set(check.after) == set(SELF_CHECK) and check.label == result.label
    assert check.stable == (check.caution() is None)
    assert check.stable == all(label == result.label for label in check.after.values())
    assert 0.0 <= check.max_tv <= 1.0


def test_the_card_says_how_right_the_answers_flagged_unstable_were():
    from demo_core.cards import load_card
    figures = load_card("xray").section("metrics", "robustness", "self_check")
    assert figures["n"] == 449 and 0 < figures["flagged"] < figures["n"]
    assert figures["accuracy_flagged"] < figures["accuracy_stable"]  # the flag carries information


def test_a_small_films_box_labels_fit_and_never_cover_one_another():
    from PIL import ImageDraw, ImageFont

    from demo_core.xray.drawing import DISPLAY_MIN_SIDE, annotated_film, label_places
    from demo_core.xray.model import Box
    film = np.full((256, 256, 3), 90, np.uint8)
    # five boxes a few pixels apart, as COVID-QU-Ex's 256 px films give
    boxes = [Box((40 + 6 * k, 60 + 4 * k, 120 + 6 * k, 140), 0.9 - 0.1 * k) for k in range(5)]
    picture = annotated_film(film, boxes, (20, 20, 236, 236))
    assert max(picture.size) == DISPLAY_MIN_SIDE  # drawn larger: the labels are a smaller share of the film
    scale = DISPLAY_MIN_SIDE / 256
    shown = [Box(tuple(v * scale for v in b.box), b.score) for b in boxes]
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(12, round(DISPLAY_MIN_SIDE / 45)))
    places = label_places(draw, shown, font, width=3)
    rects = [draw.textbbox(xy, label, font=font) for label, xy in places]
    assert places and places[0][0] == "opacity 0.90"  # the strongest box keeps its label
    assert all(not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
               for i, a in enumerate(rects) for b in rects[i + 1:])
