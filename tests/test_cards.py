"""Model cards: present, complete, and enforced by checksum."""

from __future__ import annotations

import shutil

import pytest

from demo_core.cards import TASKS, read_card, verified_card
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
    assert total < 120 * 2**20


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
