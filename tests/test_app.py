"""The Streamlit pages, driven by streamlit.testing (no browser): each renders, each handles bad input."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from demo_core.examples import as_dicom

TIMEOUT = 180


def page(name: str, **state) -> AppTest:
    """Run one page through the real entry point (st.navigation), with session state preset."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    if name != "home":
        at.switch_page(f"pages/{name}.py")
    return at.run()


def texts(at: AppTest) -> str:
    parts = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "subheader", "title", "text", "code",
                 "metric", "header"):
        for el in getattr(at, kind, []):
            parts.append(str(getattr(el, "value", "")) + " " + str(getattr(el, "label", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("name", ["home", "models", "about", "xray", "poem", "car"])
def test_every_page_renders_without_exception(name):
    at = page(name)
    assert not at.exception, at.exception


def test_models_page_shows_every_card():
    at = page("models")
    body = texts(at)
    assert "Chest X-ray" in body and "Poem" in body and "Car price" in body
    assert not at.error


def test_models_page_says_how_well_the_xray_finds_the_lungs_it_reads():
    # both members read only the lung field, so the page says how well it is found and how little a crop moves it
    from demo_core.cards import load_card
    field = load_card("xray").raw["lung_field"]
    body = texts(page("models"))
    assert f"IoU with the drawn lung boxes {field['test']['mean_iou']:.3f}" in body
    assert f"cut by 6 % per side {field['border_crop_6pct_iou']:.3f}" in body


def test_models_page_says_how_the_xray_answer_is_read_and_what_the_gate_reads():
    from demo_core.cards import load_card
    card = load_card("xray").raw
    body = texts(page("models"))
    assert f"reads {len(card['ensemble']['framings'])} framings of the lung crop" in body
    one = card["metrics"]["test_one_framing"]
    assert f"same blend read with one framing on this test split: accuracy {one['accuracy']:.3f}" in body
    assert "The gate reads the probe's lung-pooled ImageNet features" in body
    assert f"({len(card['metrics']['gate']['held_out_sources'])} sources" in body


def test_xray_page_with_an_uploaded_film(chest_film):
    at = page("xray", xray_input=(chest_film.name, chest_film.read_bytes()))
    assert not at.exception
    body = texts(at)
    assert "Most likely" in body and "Not for clinical use" in body
    assert at.slider[0].value == pytest.approx(0.3)


def test_the_attention_map_comes_with_how_far_it_can_be_trusted(chest_film):
    at = page("xray", xray_input=(chest_film.name, chest_film.read_bytes()))
    assert "inside the lungs" not in texts(at)
    at.toggle[0].set_value(True).run()
    assert not at.exception
    assert "inside the lungs, against" in texts(at) and "not a locator" in texts(at)


def test_xray_page_refuses_a_photo(car_photo):
    at = page("xray", xray_input=(car_photo.name, car_photo.read_bytes()))
    assert "Not analysed" in texts(at) and not at.exception


def test_xray_page_explains_a_corrupt_upload():
    at = page("xray", xray_input=("scan.png", b"\x89PNG\r\n\x1a\n garbage"))
    assert at.error and "Cannot use this file" in at.error[0].value


def test_poem_page_analyzes_a_typed_poem():
    at = page("poem")
    at.text_input(key="poem_title").input("Winter")
    at.text_area(key="poem_text").input("Snow falls on the frozen fields, the cold wind howls through bare trees")
    next(b for b in at.button if b.label == "Analyze").click().run()
    assert not at.exception
    body = texts(at)
    assert "Written around" in body and "Topics" in body
    assert any(e.label == "Limits of this model" for e in at.expander)


def test_poem_page_rejects_empty_text():
    at = page("poem", poem_analyzed=True, poem_title="x", poem_text="  ")
    assert at.error and "empty" in at.error[0].value


def test_car_page_prices_the_default_car_and_a_photo(car_photo):
    at = page("car")
    assert not at.exception and "Estimated price" in texts(at)
    assert any(e.label == "Limits of these models" for e in at.expander)
    at = page("car", car_photo=(car_photo.name, car_photo.read_bytes()))
    assert not at.exception and "Make from the photo" in texts(at)


def test_a_photo_suggests_its_make_but_never_changes_the_brand_the_visitor_set(car_model, car_photo):
    suggestion = car_model.suggested_brand(car_photo)
    assert suggestion is not None  # the example photo is a confident make
    other = next(b for b in car_model.catalog["brands"] if b != suggestion[0])
    at = page("car", car_brand=other, car_photo=(car_photo.name, car_photo.read_bytes()))
    assert not at.exception
    assert at.selectbox(key="car_brand").value == other  # the photo did not override it
    offer = at.button(key="car_use_suggestion")
    assert suggestion[0] in offer.label
    offer.click().run()
    assert at.selectbox(key="car_brand").value == suggestion[0]  # taken only on the visitor's click


def test_choosing_a_model_offers_its_own_commonest_engine_and_fuel():
    at = page("car", car_brand="BMW", car_model="3 Series")
    assert not at.exception
    assert (at.selectbox(key="car_fuel").value, at.number_input(key="car_engine").value) == ("Diesel", 2.0)
    # the visitor's own change sticks until the model changes again
    at.number_input(key="car_engine").set_value(3.0).run()
    assert at.number_input(key="car_engine").value == 3.0
    at.selectbox(key="car_model").set_value("1 Series").run()
    assert at.number_input(key="car_engine").value != 3.0
    at.selectbox(key="car_model").set_value("i3").run()  # its commonest listing has no engine size
    assert not at.exception and at.selectbox(key="car_fuel").value == "Hybrid"
    assert "engine size" in at.multiselect(key="car_unsure").value  # not the 3 Series' 2.0 litres
    assert not any("litre engine" in w.value for w in at.warning)


def test_a_corrupted_weight_file_disables_only_that_demo(tmp_path, monkeypatch, chest_film):
    from demo_core.settings import weights_dir
    for task in ("xray", "poem", "car"):
        shutil.copytree(weights_dir() / task, tmp_path / task)
    with open(tmp_path / "car" / "photo.keras", "r+b") as f:
        f.seek(1000); f.write(b"\x00corrupt\x00")
    monkeypatch.setenv("DEMO_WEIGHTS_DIR", str(tmp_path))
    st.cache_resource.clear()
    try:
        car = page("car")
        assert car.error and "checksum" in car.error[0].value and not car.exception
        xray = page("xray", xray_input=(chest_film.name, chest_film.read_bytes()))
        assert "Most likely" in texts(xray)
    finally:
        st.cache_resource.clear()


def test_privacy_a_dicom_name_never_reaches_the_page_logs_or_disk(chest_film, caplog, tmp_path):
    import tempfile
    from demo_core.intake import load_image
    name, pid = "Testpatient^Zelda", "ZX-998877"
    dicom = as_dicom(load_image(chest_film).gray(), patient_name=name, patient_id=pid)

    def snapshot():
        files = set()
        for root in {ROOT, Path(tempfile.gettempdir())}:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if d not in (".venv", ".git", "__pycache__")]
                files.update(os.path.join(dirpath, f) for f in filenames)
        return files

    page("xray", xray_input=(chest_film.name, chest_film.read_bytes()))  # models loaded before we watch the disk
    before = snapshot()
    with caplog.at_level(logging.DEBUG):
        at = page("xray", xray_input=("study.dcm", dicom))
    created = snapshot() - before
    assert not at.exception and "Most likely" in texts(at)
    body = texts(at) + "".join(str(j.value) for j in at.json)
    for secret in ("Zelda", "Testpatient", pid):
        assert secret not in body
        assert secret not in caplog.text
    assert not [f for f in created if not f.endswith((".pyc", ".lock"))], created


def test_a_link_with_an_example_number_opens_that_example_once():
    from demo_core.examples import car_details_examples, xray_examples
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/xray.py")
    at.query_params["example"] = "2"
    at.run()
    assert not at.exception and "Most likely" in texts(at)
    assert f"example film: {xray_examples()[1].label}" in texts(at)
    assert "example" not in at.query_params  # consumed: the visitor's next upload is not replaced

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/car.py")
    at.query_params["example"] = "2"
    at.run()
    assert not at.exception
    assert at.selectbox(key="car_model").value == car_details_examples()[1].details["model"]

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/poem.py")
    at.query_params["example"] = "99"  # out of range: nothing is filled in, nothing breaks
    at.run()
    assert not at.exception and "Written around" not in texts(at)


# ----------------------------------------------------------------------------- the X-ray page shows the visitor's input

def test_removing_an_upload_takes_its_film_and_reading_off_the_page(chest_film):
    # the state the page leaves after an upload: the film, its label, the uploader's file id and its reading
    at = page("xray", xray_input=(chest_film.name, chest_film.read_bytes()), xray_upload_id="upload-1",
              xray_input_from_upload=True, xray_input_label=f"your upload, {chest_film.name}")
    # the uploader is empty on this run: the visitor clicked its ✕
    assert not at.exception
    assert "Most likely" not in texts(at) and "Upload a film or pick an example to start" in texts(at)
    assert "xray_input" not in at.session_state and "xray_reading" not in at.session_state
    assert not at.get("imgs")


def test_removing_an_earlier_upload_leaves_the_example_chosen_after_it():
    from demo_core.examples import xray_examples
    example = xray_examples()[1]
    # an upload was on screen, then the visitor chose an example (the uploader kept their file); now they remove
    # the file: the example they chose stays
    at = page("xray", xray_input=(example.path.name, example.path.read_bytes()), xray_upload_id="upload-1",
              xray_input_from_upload=False, xray_input_example=example.label,
              xray_input_label=f"example film: {example.label}")
    assert not at.exception and f"example film: {example.label}" in texts(at) and "Most likely" in texts(at)


def test_an_examples_source_label_stands_beside_the_answer_and_says_when_they_differ():
    from demo_core.examples import xray_examples
    for example in xray_examples():
        at = page("xray", xray_input=(example.path.name, example.path.read_bytes()), xray_input_example=example.label,
                  xray_input_label=f"example film: {example.label}")
        shown = texts(at)
        truth = example.label.split(":")[0].lower()
        assert f"The source says: **{truth}**" in shown, example.label
        said = next(s.value for s in at.subheader if str(s.value).startswith("Most likely"))
        assert ("The model agrees" in shown) == (f"Most likely: {truth} " in said)
        if f"Most likely: {truth} " not in said:
            assert "one of the films it gets wrong" in shown
    # the visitor's own film has no answer key
    own = page("xray", xray_input=(example.path.name, example.path.read_bytes()))
    assert "The source says" not in texts(own)


def test_the_example_chooser_names_the_example_a_link_put_on_screen():
    from demo_core.examples import xray_examples
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/xray.py")
    at.query_params["example"] = "2"
    at.run()
    assert at.selectbox[0].value == xray_examples()[1].label


def test_a_link_to_example_zero_says_that_links_count_from_one():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/xray.py")
    at.query_params["example"] = "0"
    at.run()
    assert not at.exception
    assert any("count from 1" in str(w.value) for w in at.warning)


def test_an_example_poems_answer_key_leaves_with_the_example():
    at = page("poem")
    at.button[0].click().run()  # ✨ Fill in a public-domain example
    at.button(key="FormSubmitter:poem-Analyze").click().run()
    assert "Source tags:" in texts(at)  # the example, unedited: its source's tags and year label
    at.text_area(key="poem_text").set_value("The stars above the silent sea\nkeep watch while the harbour sleeps")
    at.text_input(key="poem_title").set_value("Night")
    at.button(key="FormSubmitter:poem-Analyze").click().run()
    assert not at.exception and "Source tags:" not in texts(at)  # the visitor's own poem has no answer key


def test_a_photo_that_is_not_a_car_gets_a_verdict_and_no_make(tmp_path):
    import numpy as np
    from conftest import png_bytes
    flower = np.zeros((256, 256, 3), np.uint8)
    flower[..., 0], flower[64:192, 64:192, 1] = 200, 180  # red and green: no car exterior
    at = page("car", car_photo=("flower.png", png_bytes(flower)), car_use_details=True, car_brand="Ford")
    assert not at.exception
    assert "Make from the photo" not in texts(at)
    check = next(m for m in at.metric if m.label == "Car photo check")
    assert check.value == "not a car ✘" and not check.delta  # a verdict, no green arrow


def test_the_what_if_chart_includes_the_visitors_year_and_mileage():
    import json
    at = page("car", car_brand="Ford", car_use_details=True)
    at.number_input(key="car_year").set_value(2013)
    at.number_input(key="car_mileage").set_value(150_000)
    at.run()
    assert not at.exception
    chart = next(c for c in at.get("plotly_chart") if "What if" in c.proto.spec)
    spec = json.loads(chart.proto.spec)
    assert "2013" in {trace["name"] for trace in spec["data"]}  # before: 2014, 2016, 2018, 2020 only
    assert max(max(_plotted(t["x"])) for t in spec["data"]) >= 150_000  # before: 120,000 at most


def _plotted(values) -> list[float]:
    """A trace's values as plotly wrote them: a list, or a typed array in base64."""
    import base64

    import numpy as np
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)
