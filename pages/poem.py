"""Poem analyzer: title + text (+ author) -> topics and the year it was likely written."""

import plotly.graph_objects as go
import streamlit as st

from demo_core import examples
from demo_core.errors import InputError
from ui import models, poem_input
from ui.charts import CHART_CONFIG
from ui.links import example_from_link
from ui.navigation import run_inside_app_navigation

run_inside_app_navigation()

st.title("📜 Poem analyzer")
st.write("Type or paste a poem. The model suggests its **topics** and **when it was likely written**, and shows "
         "how the text becomes numbers on the way.")

# The answer first once there is one: on a phone the form fills the screen and the results follow it.
answer = st.container()

# ---- 1. input
poems = examples.poem_examples()


linked = example_from_link(len(poems))
if linked is not None:
    poem_input.fill_in(poems, linked)
    st.session_state[poem_input.ANALYZED] = True
if poems and st.button("✨ Fill in a public-domain example"):
    poem_input.fill_in(poems, st.session_state.get(poem_input.INDEX, -1) + 1)

with st.form("poem"):
    title = st.text_input("Title", key="poem_title", max_chars=300)
    text = st.text_area("Poem", key="poem_text", height=260, max_chars=20_000)
    author = st.text_input("Author (optional: sharpens the year)", key="poem_author", max_chars=200)
    submitted = st.form_submit_button("Analyze", type="primary")

if not (submitted or st.session_state.get("poem_analyzed")):
    st.stop()
st.session_state["poem_analyzed"] = True

model = models.get("poem")
if model is None:
    st.stop()

# ---- 2. one call
try:
    result = model.predict(title or "", text or "", author or None)
except InputError as exc:
    st.error(str(exc))
    st.stop()

# ---- 3. results
with answer:
    st.success(f"**{' · '.join(result.predicted_topics)}**, written around **{result.year}** "
               f"({result.year_interval[0]}–{result.year_interval[1]}); details below the poem.", icon="📜")
for w in result.warnings:
    st.warning(w)
if poem_input.answer_key(title, text, author):
    st.caption(poem_input.answer_key(title, text, author))

left, right = st.columns(2)
with left:
    st.subheader("Topics")
    st.write(" · ".join(f"**{t}**" for t in result.predicted_topics))
    order = sorted(result.topics, key=result.topics.get)
    fig = go.Figure()
    fig.add_bar(x=[result.topics[t] for t in order], y=order, orientation="h", name="probability",
                marker_color=["#1f6feb" if t in result.predicted_topics else "#b8c7e0" for t in order])
    fig.add_scatter(x=[result.thresholds[t] for t in order], y=order, mode="markers", name="decision threshold",
                    marker=dict(symbol="line-ns-open", size=14, color="#d1242f", line=dict(width=3)))
    fig.update_layout(height=520, xaxis=dict(range=[0, 1], title="probability"), margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(orientation="h", y=-0.12))
    st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)
    st.caption("A topic is predicted when its bar passes its red threshold (each chosen on validation poems).")

with right:
    st.subheader(f"Written around {result.year}")
    lo, hi = result.year_interval
    st.write(f"80 % interval: **{lo} – {hi}**" + (" (author known)" if result.author_known else " (from the text alone)"))
    if result.style_match:
        st.caption(f"Dated by style: the wording reads most like the training poems of **{result.style_match.title()}**, "
                   "so the year is that poet's (estimated) year. A stylistic resemblance, not an attribution.")
    fig = go.Figure()
    fig.add_shape(type="rect", x0=lo, x1=hi, y0=-0.3, y1=0.3, fillcolor="rgba(31,111,235,0.25)", line_width=0)
    fig.add_scatter(x=[result.year], y=[0], mode="markers+text", text=[str(result.year)], textposition="top center",
                    marker=dict(size=16, color="#1f6feb"), showlegend=False)
    fig.update_layout(height=170, yaxis=dict(visible=False, range=[-1, 1]),
                      xaxis=dict(range=[min(1500, lo - 20), 2030], title="year"), margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)
    st.info("Where the year labels come from: most training poems have no date of their own, so their label is "
            "estimated from the author's life (midlife or birth + 30). The year is therefore an era guess, "
            "and the interval says how wide that guess is on held-out poems. The text-only year leans on poets "
            "seen in training; for a poet it has never seen, expect an error about twice as large.")

with st.expander("How the text became numbers (NLTK pipeline)", expanded=False):
    pre = result.preprocessing
    st.markdown("**1. Decontraction** (our own table: *can't → cannot*, *o'er → over*, ...)")
    st.text(pre.decontracted[:1200] + (" ..." if len(pre.decontracted) > 1200 else ""))
    st.markdown(f"**2. Tokens** (Punkt): {len(pre.tokens)}")
    st.code(" | ".join(pre.tokens[:80]) + (" ..." if len(pre.tokens) > 80 else ""), language=None)
    st.markdown(f"**3. Lowercase words without stop words**: {len(pre.words)} → {len(pre.without_stopwords)}")
    st.code(" ".join(pre.without_stopwords[:80]), language=None)
    st.markdown("**4. WordNet lemmas** (with part-of-speech tags)")
    st.code(" ".join(pre.lemmas[:80]), language=None)
    st.markdown(f"**5. Integer ids, padded to {len(pre.ids)}** (0 = padding, 1 = unknown word; "
                f"{pre.n_unknown} unknown)")
    st.code(str(list(pre.ids)), language=None)
    for w in pre.warnings:
        st.warning(w)
    st.caption(f"Shipped design: {model.design} (see the Models page for the comparison).")

with st.expander("Limits of this model"):
    for limitation in model.card.get("limitations", []):
        st.markdown(f"- {limitation}")
