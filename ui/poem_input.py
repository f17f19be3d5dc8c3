"""The poem form's example: one place for its session keys (the page and Home both fill it in), and its answer
key, shown only while the form still holds that example as it was filled in."""

from __future__ import annotations

import streamlit as st

TITLE, TEXT, AUTHOR, INDEX, TRUTH, ANALYZED = ("poem_title", "poem_text", "poem_author", "poem_example_i",
                                               "poem_truth", "poem_analyzed")


def fill_in(examples: tuple[dict, ...], i: int) -> None:
    """Put example ``i`` (cycling) in the form, with its answer key."""
    ex = examples[i % len(examples)]
    st.session_state.update({INDEX: i, TITLE: ex["title"], TEXT: ex["text"], AUTHOR: ex["author"],
                             TRUTH: (f"Source tags: {ex['topics']} · year label {ex['year']}",
                                     (ex["title"], ex["text"], ex["author"]))})


def answer_key(title: str, text: str, author: str) -> str | None:
    """The example's source tags and year label, while the form holds that example unedited; else None."""
    truth = st.session_state.get(TRUTH)
    if not isinstance(truth, tuple) or truth[1] != (title or "", text or "", author or ""):
        return None
    return truth[0]
