"""Entry point: `streamlit run streamlit_app.py`."""

import streamlit as st

from ui import models

st.set_page_config(page_title="ML showcase: X-ray, poems, cars", page_icon="🔬", layout="wide")
models.show_warmup_progress()  # the first page on a fresh server starts loading every model

pages = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/xray.py", title="Chest X-ray", icon="🩻", url_path="xray"),
    st.Page("pages/poem.py", title="Poem analyzer", icon="📜", url_path="poem"),
    st.Page("pages/car.py", title="Car price", icon="🚗", url_path="car"),
    st.Page("pages/models.py", title="Models", icon="📊", url_path="models"),
    st.Page("pages/about.py", title="About & privacy", icon="🔒", url_path="about"),
]
st.navigation(pages).run()
