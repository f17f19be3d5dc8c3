"""What the X-ray page shows is the visitor's current input, and only that: one place for its session keys (the
page and Home both set them)."""

from __future__ import annotations

import streamlit as st

from demo_core.examples import Example, as_dicom
from demo_core.intake import load_image

INPUT, LABEL, EXAMPLE, UPLOAD_ID, FROM_UPLOAD, READING, CHOICE = (
    "xray_input", "xray_input_label", "xray_input_example", "xray_upload_id", "xray_input_from_upload",
    "xray_reading", "xray_example_choice")


def show_example(example: Example, *, as_dicom_file: bool = False) -> None:
    """Put an example film on screen (as a MONOCHROME1 DICOM when asked): its source label goes beside the answer."""
    if as_dicom_file:
        gray = load_image(example.path).gray()
        data = as_dicom(gray, monochrome1=True, window=(2048, 4096))
        st.session_state[INPUT] = (example.path.stem + ".dcm", data)
        st.session_state[LABEL] = f"example film as a MONOCHROME1 DICOM: {example.label}"
    else:
        st.session_state[INPUT] = (example.path.name, example.path.read_bytes())
        st.session_state[LABEL] = f"example film: {example.label}"
    st.session_state[EXAMPLE] = example.label
    st.session_state[FROM_UPLOAD] = False  # the uploader may still hold a file: it stays off screen


def follow_uploader(uploaded) -> None:
    """A new upload goes on screen (and the example chooser empties); removing it in the uploader takes it, its
    reading and its self-check off the screen and out of the session."""
    if uploaded is not None:
        if st.session_state.get(UPLOAD_ID) != uploaded.file_id:  # a new file, not the one an example replaced
            st.session_state.update({UPLOAD_ID: uploaded.file_id, INPUT: (uploaded.name, uploaded.getvalue()),
                                     LABEL: f"your upload, {uploaded.name}", FROM_UPLOAD: True, CHOICE: None})
            st.session_state.pop(EXAMPLE, None)
    elif st.session_state.pop(UPLOAD_ID, None) is not None and st.session_state.get(FROM_UPLOAD):
        clear()  # the visitor removed the file that is on screen


def clear() -> None:
    for key in (INPUT, LABEL, EXAMPLE, UPLOAD_ID, FROM_UPLOAD, READING):
        st.session_state.pop(key, None)


def source_label(example_label: str | None) -> str | None:
    """The class the example's source gives ("Negative: No finding (...)" -> "negative")."""
    return example_label.split(":", 1)[0].strip().lower() if example_label else None
