"""Chest X-ray: upload a film, get the four SIIM study classes and opacity boxes."""

import hashlib
import json

import plotly.graph_objects as go
import streamlit as st

from demo_core import examples
from demo_core.errors import InputError
from demo_core.intake import load_image
from demo_core.xray.labels import CLASSES, DESCRIPTIONS
from demo_core.xray.drawing import png_bytes
from ui import models, xray_input
from ui.charts import CHART_CONFIG
from ui.links import example_from_link
from ui.navigation import run_inside_app_navigation

run_inside_app_navigation()

st.title("🩻 Chest X-ray")
st.warning("**Not for clinical use.** A student demo trained on public research images with labels mapped from "
           "diagnoses, not read by radiologists. It must not inform any decision about a patient.", icon="⚠️")

# ---- 1. input: an upload, or an example from the data directory
# Any file name: PACS exports are often named IM000001 or FILM.dicom. The content decides, and a file that
# is not an image gets a visible message below, not a hover-only refusal in the uploader.
uploaded = st.file_uploader("Upload a frontal chest radiograph",
                            help="PNG, JPEG, WebP, BMP, TIFF or DICOM (any file name, old ACR-NEMA files too), up "
                                 "to 50 MB. Processed in memory only; nothing is stored.")
xray_input.follow_uploader(uploaded)

example_list = examples.xray_examples()
linked = example_from_link(len(example_list))
if linked is not None:
    xray_input.show_example(example_list[linked])
    st.session_state[xray_input.CHOICE] = example_list[linked].label
if example_list:
    cols = st.columns([3, 1, 1])
    choice = cols[0].selectbox("...or try an example film", [e.label for e in example_list], index=None,
                               placeholder="Choose an example", key=xray_input.CHOICE)
    chosen = next((e for e in example_list if e.label == choice), None)
    if cols[1].button("Use example", disabled=chosen is None, width="stretch"):
        xray_input.show_example(chosen)
    if cols[2].button("Same film as DICOM", disabled=chosen is None, width="stretch",
                      help="Wraps the example in a MONOCHROME1 DICOM with a window, to show the DICOM path."):
        xray_input.show_example(chosen, as_dicom_file=True)

if xray_input.INPUT not in st.session_state:
    st.info("Upload a film or pick an example to start.")
    st.stop()

model = models.get("xray")
if model is None:
    st.stop()

# ---- 2. one call
name, data = st.session_state[xray_input.INPUT]
st.caption(f"Showing: {st.session_state.get(xray_input.LABEL, name)}")
try:
    image = load_image(data, name=name)
    # One reading per input: moving the slider or the attention toggle reruns the page, not the model (the
    # prediction and its self-check are three forward passes). Kept in this session's memory only.
    reading_key = hashlib.sha256(data).hexdigest()
    if st.session_state.get(xray_input.READING, (None,))[0] != reading_key:
        first = model.predict(image)
        check = model.self_check(image, first) if first.is_chest_xray else None  # a refused upload needs none
        st.session_state[xray_input.READING] = (reading_key, first, check)
    _, result, check = st.session_state[xray_input.READING]
except InputError as exc:
    st.error(f"Cannot use this file: {exc}")
    st.stop()

# ---- 3. results
if not result.is_chest_xray:
    st.error(f"**Not analysed.** {result.refusal_reason} This demo only reads frontal chest radiographs "
             f"(model's chest X-ray score: {result.gate_score:.2f}).")
    st.image(image.pixels, caption="Your upload", width=400)
    st.stop()

card = model.card
# The answer first, full width: on a phone the columns below stack, and the picture would push it a screen down.
st.subheader(f"Most likely: {result.label} ({result.probabilities[result.label]:.0%})")
st.caption(DESCRIPTIONS[result.label])
truth = xray_input.source_label(st.session_state.get(xray_input.EXAMPLE))
if truth == result.label:
    st.success(f"The source says: **{truth}**. The model agrees.", icon="✅")
elif truth:
    st.info(f"The source says: **{truth}**. The model's answer differs: this is one of the films it gets wrong "
            f"(about {1 - card['metrics']['test']['accuracy']:.0%} of held-out films).", icon="🔎")
if result.caution():
    st.warning(f"**Unfamiliar film.** {result.caution()} (distance to the training films: "
               f"{result.familiarity:.2f}, warning above {result.familiarity_threshold:.2f})", icon="🧭")
if result.bedside_caution():
    st.warning(f"**Bedside (AP) film** ({result.view.source}). {result.bedside_caution()}", icon="🛏️")
if check.caution():
    st.warning(f"**Unstable answer.** {check.caution()}", icon="🔁")
else:
    st.caption("Self-check: the same answer after a 6 % border crop and as a quality-50 JPEG, the two exports "
               "that change answers most often.")
if model.outside_hospital_note():
    st.caption(model.outside_hospital_note())
left, right = st.columns([3, 2])
with right:
    ap = card.get("metrics", {}).get("test", {}).get("ap_per_class", {})
    fig = go.Figure(go.Bar(
        x=[result.probabilities[c] for c in CLASSES], y=CLASSES, orientation="h",
        text=[f"{result.probabilities[c]:.0%}   (held-out AP {ap.get(c, float('nan')):.2f})" for c in CLASSES],
        textposition="auto", marker_color=["#1f6feb" if c == result.label else "#9db9e6" for c in CLASSES]))
    fig.update_layout(xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"), height=260,
                      yaxis=dict(autorange="reversed"), margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)
    st.caption("AP = average precision of that class on held-out films (from the model card): how much to "
               "trust that bar. 'Indeterminate' had only a few dozen training films.")
    threshold = st.slider("Opacity box score threshold", 0.05, 0.95, model.default_threshold, 0.05)
    show_heat = st.toggle("Show model attention",
                          help="Class activation map for the top class: which parts of the lung crop the answer came "
                               "from. The model weighs the lungs more than the space between and around them.")

with left:
    boxes = result.boxes_above(threshold)
    annotated = result.annotated(image.pixels, threshold, attention=show_heat)
    caption = f"{len(boxes)} opacity box(es) at score ≥ {threshold:.2f} · dashed frame: the lung field both models read"
    if show_heat:
        caption += " · colours: model attention, not a finding"
    st.image(annotated, caption=caption, width="stretch")
    reliability = model.attention_reliability() if show_heat else None
    if reliability:
        st.caption(reliability)

with st.expander("What was done to the image"):
    st.write(f"Format: **{image.source_format}**, {image.size[0]} × {image.size[1]} px")
    for step in image.steps or ("no conversion needed",):
        st.write(f"- {step}")
    st.write(f"- {model.input_description()}")
    safe = {k: v for k, v in image.info.items() if k not in ("width", "height")}
    if safe:
        st.json(safe)

d1, d2 = st.columns(2)
# PNG-encoding the picture takes longer than the model: done only on the visitor's click
d1.download_button("Download annotated PNG", lambda: png_bytes(annotated), file_name="xray_annotated.png",
                   mime="image/png", on_click="ignore")
d2.download_button("Download result (JSON)", json.dumps(result.to_dict(), indent=2), file_name="xray_result.json",
                   on_click="ignore",
                   mime="application/json")
st.caption("Limits: " + " ".join(card.get("limitations", [])))
