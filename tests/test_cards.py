"""Model cards: present, complete, and enforced by checksum."""

from __future__ import annotations

import shutil

import pytest

from demo_core.cards import read_card, verified_card
from demo_core.tasks import TASKS
from demo_core.errors import ModelUnavailable
from demo_core.settings import weights_dir

REQUIRED = ("name", "version", "date", "training_data", "metrics", "baselines", "labels", "input", "files", "license")


@pytest.mark.parametrize("task", TASKS)
def test_every_card_is_complete_and_matches_its_files(task):
    card = verified_card(task)
    for key in REQUIRED:
        assert card.get(key), f"{task} card lacks {key}"
    assert card["version"] != "smoke"
    for name, meta in card["files"].items():
        assert meta["bytes"] < 60 * 2**20, f"{name} is too big for weights/"


def test_weights_are_small():
    total = sum(p.stat().st_size for p in weights_dir().rglob("*") if p.is_file())
    # a fresh clone for Streamlit Community Cloud carries them all (about 145 MiB: the X-ray's LiteRT copies
    # beside its Keras files, the lung field, the familiarity index, the car's mpg/tax correction); every file
    # stays far under GitHub's 100 MB per file
    assert total < 160 * 2**20
    assert max(p.stat().st_size for p in weights_dir().rglob("*") if p.is_file()) < 50 * 2**20


def test_a_corrupted_file_disables_only_its_demo(tmp_path, monkeypatch):
    for task in TASKS:
        shutil.copytree(weights_dir() / task, tmp_path / task)
    victim = tmp_path / "car" / "catalog.json"
    victim.write_text(victim.read_text().replace("Ford", "Frod", 1))
    monkeypatch.setenv("DEMO_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(ModelUnavailable, match="checksum"):
        verified_card("car")
    verified_card("xray"), verified_card("poem")  # the others still verify


def test_missing_card_says_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(ModelUnavailable, match="not installed"):
        read_card("xray")


def test_a_small_held_out_source_gets_a_wide_interval_and_a_large_one_a_narrow_one():
    from demo_core.stats import wilson_interval

    lo, hi = wilson_interval(36, 57)  # the X-ray card's ieee8023 films
    assert lo < 36 / 57 < hi and 0.49 < lo < 0.51 and 0.74 < hi < 0.76
    lo5, hi5 = wilson_interval(5, 5)  # a perfect score on five films is still uncertain
    assert hi5 == 1.0 and lo5 < 0.6
    lo_big, hi_big = wilson_interval(3600, 5700)
    assert hi_big - lo_big < (hi - lo) / 5
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("task", TASKS)
def test_each_card_loads_typed_with_its_targets_settings_and_the_labels_the_code_uses(task):
    from demo_core.cards import load_card
    card = load_card(task, verify=True)
    assert card.targets and all(t.describe() for t in card.targets.values())
    if task == "xray":
        from demo_core.xray.labels import CLASSES
        assert card.labels == CLASSES and card.runtime == {}  # its settings are in the card (ensemble, decoding)
    elif task == "poem":
        assert card.labels == card.runtime["topics"] and len(card.runtime["thresholds"]) == len(card.labels)
    else:
        assert card.labels["photo_makes"] == card.runtime["photo_make_classes"]


def test_a_card_whose_settings_name_other_labels_disables_the_demo(tmp_path, monkeypatch):
    import json
    import shutil
    from demo_core.cards import load_card, task_dir
    from demo_core.errors import ModelUnavailable
    shutil.copytree(task_dir("poem"), tmp_path / "poem")
    config = json.loads((tmp_path / "poem" / "poem_config.json").read_text())
    config["topics"] = config["topics"][::-1]
    (tmp_path / "poem" / "poem_config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DEMO_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(ModelUnavailable, match="different labels"):
        load_card("poem")


def test_a_target_knows_floors_ceilings_and_bands():
    from demo_core.cards import Target
    assert Target("accuracy", 0.85).met_by(0.86) and not Target("accuracy", 0.85).met_by(0.84)
    assert Target("mape", 0.07).met_by(0.065) and Target("mape", 0.07).describe() == "≤ 0.07"
    assert Target("interval_coverage", (0.75, 0.85)).met_by(0.8) is True
    assert Target("interval_coverage", (0.75, 0.85)).met_by(0.884) is False


def test_a_card_missing_a_required_key_disables_the_demo_with_a_reason():
    from demo_core.cards import Card
    from demo_core.errors import ModelUnavailable
    with pytest.raises(ModelUnavailable, match="targets"):
        Card.from_dict("car", {"name": "x", "task": "car", "labels": [], "metrics": {}, "limitations": [], "files": {}})
