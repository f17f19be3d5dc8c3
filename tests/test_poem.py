"""Poem analyzer: the NLTK steps on known inputs, and the model's answers."""

from __future__ import annotations

import pytest

from demo_core.errors import InputError
from demo_core.poem.text import SEQUENCE_LENGTH, TextPipeline, decontract


@pytest.fixture(scope="module")
def pipeline():
    return TextPipeline(["", "[UNK]", "rose", "love", "bloom"])


def test_decontraction_table():
    assert decontract("I can't and won't") == "I cannot and will not"
    assert decontract("they're here, we've gone, I'm sure") == "they are here, we have gone, I am sure"
    assert decontract("o'er the hills, ne'er again") == "over the hills, never again"
    assert decontract("Don’t") == "Do not"  # curly apostrophe


def test_stop_words_are_removed_and_lemmas_found(pipeline):
    r = pipeline.run("The roses were blooming and we loved them")
    assert "the" not in r.without_stopwords and "were" not in r.without_stopwords
    assert r.lemmas == ("rose", "bloom", "love")
    assert r.ids[:3] == (2, 4, 3) and r.n_unknown == 0


def test_sequences_are_padded_and_truncated_to_150(pipeline):
    assert len(pipeline.run("rose").ids) == SEQUENCE_LENGTH
    long = pipeline.run("rose love " * 200)
    assert len(long.ids) == SEQUENCE_LENGTH and long.truncated
    assert pipeline.run("zebra").ids[0] == 1  # unknown word


def test_the_vocabulary_lookup_equals_keras_textvectorization(poem_model):
    from demo_core import _tf
    vec = _tf.keras().layers.TextVectorization(vocabulary=poem_model.pipeline.vocabulary[2:], standardize=None,
                                               split="whitespace", output_sequence_length=SEQUENCE_LENGTH)
    pre = poem_model.pipeline.run("The roses bloom where the old river bends toward the quiet sea, zzqx")
    assert tuple(vec([" ".join(pre.lemmas)]).numpy()[0].tolist()) == pre.ids


def test_a_poem_gets_all_topics_a_year_and_an_interval(poem_model):
    r = poem_model.predict("The Sea", "The sea is calm tonight. The tide is full, the moon lies fair upon the straits")
    d = r.to_dict()
    assert set(d) >= {"topics", "predicted_topics", "year", "year_interval"}
    assert len(d["topics"]) == 18 and all(0 <= p <= 1 for p in d["topics"].values())
    assert d["predicted_topics"] and set(d["predicted_topics"]) <= set(d["topics"])
    lo, hi = d["year_interval"]
    assert lo <= d["year"] <= hi <= 2100


def test_topics_follow_the_text(poem_model):
    love = poem_model.predict("My love", "I love thee, my darling, my heart is thine, kiss me, sweet beloved, forever")
    war = poem_model.predict("The battle", "Soldiers fall in the trenches, guns roar, the war devours the young men")
    assert love.topics["Love"] > war.topics["Love"]
    assert war.topics["War & Conflict"] > love.topics["War & Conflict"]


def width(prediction) -> int:
    return prediction.year_interval[1] - prediction.year_interval[0]


def test_a_known_author_narrows_the_interval_but_not_below_the_spread_of_a_career(poem_model):
    text = "Because I could not stop for Death, He kindly stopped for me"
    alone, with_author = poem_model.predict("", text), poem_model.predict("", text, "Emily Dickinson")
    assert with_author.author_known and not alone.author_known
    assert width(with_author) < width(alone)
    assert 1820 <= with_author.year <= 1900
    # her year labels are one estimate for her whole life: the interval keeps the measured label spread
    assert width(with_author) >= 2 * poem_model.config["interval_half_width_author_label"] - 1


def test_a_poet_the_model_never_saw_gets_the_interval_measured_on_held_out_poets(poem_model):
    from demo_core.cards import read_card
    mine = poem_model.predict("Tuesday", "The kettle sings beside the window while the city wakes in grey", "A. Visitor")
    assert not mine.author_known
    assert width(mine) >= 2 * poem_model.config["interval_half_width_unseen_poet"] - 1
    unseen = read_card("poem")["metrics"]["unseen_poets"]
    lo, hi = unseen["test_coverage_95ci"]
    assert lo <= 0.8 <= hi  # 80 % is within what the held-out poets' test poems allow


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_an_error(poem_model, text):
    with pytest.raises(InputError, match="empty"):
        poem_model.predict("Title", text)


def test_giant_text_is_truncated_with_a_warning(poem_model):
    r = poem_model.predict("Long", "the sea and the sky " * 20_000)
    assert any("truncated" in w for w in r.warnings)


@pytest.mark.parametrize("title, text", [("夜", "静夜思 床前明月光 疑是地上霜 举头望明月 低头思故乡"),
                                         ("", "😀🌙✨🌊 🌹💔")])
def test_text_with_no_english_word_is_refused_not_dated(poem_model, title, text):
    with pytest.raises(InputError, match="No English words"):
        poem_model.predict(title, text)


def test_a_german_poem_is_named_as_such_and_gets_a_wide_year_interval(poem_model):
    r = poem_model.predict("Erlkönig", "Wer reitet so spät durch Nacht und Wind? Es ist der Vater mit seinem Kind; "
                                       "Er hat den Knaben wohl in dem Arm, Er faßt ihn sicher, er hält ihn warm.")
    assert any("German" in w for w in r.warnings)
    assert r.year_interval[1] - r.year_interval[0] >= 100 and r.style_match is None


def test_a_single_word_is_too_short_to_date_closely(poem_model):
    one = poem_model.predict("", "love")
    full = poem_model.predict("Night", "The stars above the silent sea, the moon upon the water bright, "
                                       "and all the world is still tonight")
    assert any("too short" in w for w in one.warnings) and one.style_match is None
    assert width(one) >= width(full) - 1  # whole years: each end is rounded
    assert not any("too short" in w for w in full.warnings)


def test_requests_are_validated(poem_model):
    with pytest.raises(InputError):
        poem_model.predict_request({"title": 3, "text": "x"})
    with pytest.raises(InputError):
        poem_model.predict_request({"title": "x"})


def test_deterministic(poem_model):
    a = poem_model.predict("Night", "Stars over the silent hills")
    b = poem_model.predict("Night", "Stars over the silent hills")
    assert a.to_dict() == b.to_dict()


def test_missing_nltk_resource_degrades_visibly(monkeypatch):
    from demo_core.poem import nltk_resources
    monkeypatch.setattr(nltk_resources, "missing", lambda: {"wordnet": "lemmatization"})
    p = TextPipeline(["", "[UNK]"])
    r = p.run("The roses were blooming")
    assert r.lemmas == ("roses", "blooming")  # no lemmatization...
    assert any("wordnet" in w for w in r.warnings)  # ...and it says so


def test_archaic_wording_is_dated_earlier_than_modern_wording(poem_model):
    archaic = ("Shall I compare thee to a summer's day? Thou art more lovely and more temperate. "
               "Rough winds do shake the darling buds of May, and summer's lease hath all too short a date. "
               "O, thou that dost in heav'n abide, whence cometh thy mercy, lo, I sing thy praise.")
    modern = ("i scroll past your photos at 3am, the laptop glowing, my phone buzzing with texts i won't answer. "
              "we were kids on skateboards in the parking lot, now it's rent and emails and the subway home.")
    assert poem_model.predict("", archaic).year < poem_model.predict("", modern).year


def test_a_style_match_names_a_training_poet_only_without_a_known_author(poem_model):
    text = "Because I could not stop for Death, he kindly stopped for me; the carriage held but just ourselves"
    alone, with_author = poem_model.predict("", text), poem_model.predict("", text, "Emily Dickinson")
    assert alone.style_match is None or isinstance(alone.style_match, str)
    if with_author.author_known:
        assert with_author.style_match is None


def test_int8_author_weights_round_trip_within_half_a_step():
    import numpy as np
    from demo_core.poem.style import quantize_rows_int8
    w = np.random.default_rng(0).normal(size=(5, 300)).astype(np.float32)
    q, scale = quantize_rows_int8(w)
    assert q.dtype == np.int8
    assert np.all(np.abs(q * scale[:, None] - w) <= scale[:, None] / 2 + 1e-6)
