"""The JSON Lines contract: one answer line per request line, in order, errors inline, exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def run_cli(task: str, stdin: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo_core", task], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300)


def answers(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_missing_file_and_bad_json_give_two_error_lines():
    proc = run_cli("xray", '{"image": "missing.png"}\nnot json\n')
    assert proc.returncode == 0
    out = answers(proc)
    assert len(out) == 2 and all(set(a) == {"error"} for a in out)
    assert "missing.png" in out[0]["error"]


def test_every_line_gets_an_answer_in_order(chest_film, car_photo):
    lines = [json.dumps({"image": str(chest_film)}), "", "[1, 2]", json.dumps({"image": str(car_photo)}),
             json.dumps({"image": 42})]
    out = answers(run_cli("xray", "\n".join(lines) + "\n"))
    assert len(out) == 5
    assert out[0]["is_chest_xray"] is True and set(out[0]) == {"probabilities", "label", "boxes", "is_chest_xray",
                                                      "unfamiliar_film", "familiarity", "view", "cautions"}
    assert out[0]["view"]["view"] in ("AP", "PA") and out[0]["view"]["source"] == "estimated from the film"
    assert "error" in out[1] and "error" in out[2] and "error" in out[4]
    assert out[3]["is_chest_xray"] is False


def test_the_xray_cli_draws_the_film_as_the_page_shows_it_when_asked(chest_film, tmp_path):
    from PIL import Image
    target = tmp_path / "film_annotated.png"
    lines = [json.dumps({"image": str(chest_film), "annotated": str(target), "attention": True}),
             json.dumps({"image": str(chest_film), "annotated": str(tmp_path / "film.jpg")})]
    out = answers(run_cli("xray", "\n".join(lines) + "\n"))
    assert out[0]["is_chest_xray"] is True and "must be a path ending in .png" in out[1]["error"]
    with Image.open(target) as drawn, Image.open(chest_film) as film:
        assert drawn.format == "PNG" and max(drawn.size) <= 1280
        assert abs(drawn.size[0] / drawn.size[1] - film.size[0] / film.size[1]) < 0.01


def test_poem_and_car_tasks():
    poem = answers(run_cli("poem", json.dumps({"title": "Night", "text": "The stars above the silent sea"}) + "\n"
                           + json.dumps({"title": "x", "text": "   "}) + "\n"))
    assert set(poem[0]) >= {"topics", "predicted_topics", "year", "year_interval"} and len(poem[0]["topics"]) == 18
    assert "error" in poem[1]
    car = answers(run_cli("car", json.dumps({"brand": "Ford", "model": "Fiesta", "year": 2018, "mileage": 20000,
                                             "fuel": "Petrol", "transmission": "Manual", "engine_size": 1.0}) + "\n"
                          + json.dumps({"brand": "Ford", "year": 2090}) + "\n"))
    assert car[0]["currency"] == "GBP" and car[0]["price_interval"][0] <= car[0]["price"] <= car[0]["price_interval"][1]
    assert "future" in car[1]["error"]


def test_poem_cli_refuses_junk_and_widens_for_another_language():
    lines = [{"title": "", "text": "🌙✨🌊"}, {"title": "夜", "text": "静夜思 床前明月光 疑是地上霜"},
             {"title": "Erlkönig", "text": "Wer reitet so spät durch Nacht und Wind? Es ist der Vater mit seinem Kind"}]
    emoji, chinese, german = answers(run_cli("poem", "".join(json.dumps(x) + "\n" for x in lines)))
    assert "error" in emoji and "error" in chinese
    assert german["year_interval"][1] - german["year_interval"][0] >= 100 and german["warnings"]


def test_car_cli_says_a_mileage_past_the_listings_is_an_extrapolation_and_widens():
    fiesta = {"brand": "Ford", "model": "Fiesta", "year": 2017}
    usual, far = answers(run_cli("car", json.dumps({**fiesta, "mileage": 30_000}) + "\n"
                                 + json.dumps({**fiesta, "mileage": 400_000}) + "\n"))
    assert any("extrapolation" in w for w in far["warnings"])
    assert not any("extrapolation" in w for w in usual.get("warnings", []))
    ratio = lambda r: r["price_interval"][1] / r["price_interval"][0]  # noqa: E731
    assert ratio(far) > ratio(usual)  # no narrower where no listing backs the price


@pytest.mark.parametrize("task", ["xray", "poem", "car"])
def test_a_task_without_weights_answers_errors_and_never_invents(task, tmp_path):
    proc = run_cli(task, '{"image": "a.png", "text": "x", "brand": "Ford"}\n{}\n', env={"DEMO_WEIGHTS_DIR": str(tmp_path)})
    assert proc.returncode == 0
    out = answers(proc)
    assert len(out) == 2 and all(set(a) == {"error"} for a in out)
    assert "not installed" in out[0]["error"]


def test_usage_error_exits_2():
    assert run_cli("nonsense", "").returncode == 2


def test_importing_demo_core_loads_neither_streamlit_nor_tensorflow():
    code = "import sys, demo_core, demo_core.cli, demo_core.intake; print('streamlit' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split() == ["False", "False"]


def test_car_lines_take_mpg_and_tax_as_optional_fields():
    car = {"brand": "Ford", "model": "Fiesta", "year": 2017, "mileage": 30000, "fuel": "Petrol",
           "transmission": "Manual", "engine_size": 1.0}
    lines = [json.dumps(car), json.dumps({**car, "mpg": 65.7, "tax": 145}), json.dumps({**car, "mpg": 9000})]
    plain, sharpened, implausible = answers(run_cli("car", "\n".join(lines) + "\n"))
    assert plain["price"] > 0 and sharpened["price"] > 0 and sharpened["price"] != plain["price"]
    assert "mpg" in implausible["error"]
