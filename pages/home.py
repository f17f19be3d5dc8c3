"""Home: what each demo does, with one-click examples."""

import streamlit as st

from demo_core import examples
from ui import poem_input, xray_input
from ui.navigation import run_inside_app_navigation

run_inside_app_navigation()

st.title("Three student ML projects, made into a demo")
st.write("Each project started as a course notebook. Here each one runs in your browser, with models "
         "retrained and measured on held-out data. The **Models** page has every number.")

xray_ex, poem_ex, car_ex = examples.xray_examples(), examples.poem_examples(), examples.car_photo_examples()
c1, c2, c3 = st.columns(3)
with c1:
    st.subheader("🩻 Chest X-ray")
    st.write("Upload a chest radiograph (PNG, JPEG or **DICOM**). You get the four SIIM-FISABIO-RSNA study "
             "classes as probabilities, with boxes over suspected opacities.")
    if xray_ex and st.button("Try an example X-ray", type="primary", width="stretch"):
        ex = next((e for e in xray_ex if e.label.startswith("Typical") and "QU-Ex" in e.label), xray_ex[0])
        xray_input.show_example(ex)
        st.session_state[xray_input.CHOICE] = ex.label  # the page's chooser names what is on screen
        st.switch_page("pages/xray.py")
    st.page_link("pages/xray.py", label="Open the X-ray demo", icon="➡️")
with c2:
    st.subheader("📜 Poem analyzer")
    st.write("Type a title and a poem. You get its **topics** and the **year** it was likely written, and you "
             "can watch NLTK turn the words into numbers.")
    if poem_ex and st.button("Try an example poem", type="primary", width="stretch"):
        poem_input.fill_in(poem_ex, 0)
        st.session_state[poem_input.ANALYZED] = True
        st.switch_page("pages/poem.py")
    st.page_link("pages/poem.py", label="Open the poem analyzer", icon="➡️")
with c3:
    st.subheader("🚗 Car price")
    st.write("Enter a car's details, drop in a photo, or both. You get a **price** with an interval. Photos "
             "that don't show a car's exterior are flagged.")
    if car_ex and st.button("Try an example car photo", type="primary", width="stretch"):
        st.session_state["car_photo"] = (car_ex[0].path.name, car_ex[0].path.read_bytes())
        st.switch_page("pages/car.py")
    st.page_link("pages/car.py", label="Open the car price demo", icon="➡️")

if not (xray_ex or poem_ex or car_ex):
    st.info("Example inputs appear when the data directory is available (set DEMO_DATA_DIR). You can still "
            "use every demo with your own inputs.")
st.divider()
st.caption("Not a medical device. Uploads are processed in memory and never stored. See **About & privacy**.")
