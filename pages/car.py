"""Car price: a photo and/or details -> a price with an 80 % interval."""

import plotly.graph_objects as go
import streamlit as st

from demo_core import examples
from demo_core.car.model import CAR_THRESHOLD
from demo_core.errors import InputError
from demo_core.intake import load_image
from ui import models
from ui.charts import CHART_CONFIG
from ui.links import example_from_link
from ui.navigation import run_inside_app_navigation

run_inside_app_navigation()

st.title("🚗 Car price")
st.write("Give the car's details, a photo, or both. Prices are 2020 UK asking prices (GBP) from about 88,000 "
         "listings of nine brands.")

model = models.get("car")
if model is None:
    st.stop()
catalog = model.catalog
# The price first: on a phone the photo and form columns stack, and the result below them is screens away.
answer = st.container()
UNSURE = "— not sure —"



def _fill_in(details: dict) -> None:
    """An example car's details into the form (its own engine and fuel, not the model's commonest)."""
    keys = {"brand": "car_brand", "model": "car_model", "year": "car_year", "mileage": "car_mileage",
            "fuel": "car_fuel", "transmission": "car_transmission", "engine_size": "car_engine"}
    st.session_state.update({keys[k]: v for k, v in details.items() if k in keys})
    st.session_state["car_defaults_for"] = (details["brand"], details["model"])
    st.session_state["car_unsure"] = []
    st.session_state["car_use_details"] = True


def what_if_mileages(chosen: float | None) -> list[int]:
    """The what-if chart's mileages: up to 120,000, or a little past the visitor's own, which is among them."""
    top = max(120_000, int(chosen or 0) * 5 // 4)
    steps = [0, 10_000, 20_000, 40_000, 60_000, 90_000, 120_000] + list(range(150_000, top + 1, 30_000))
    return sorted(set(steps + ([int(chosen)] if chosen is not None else [])))


def what_if_years(chosen: int | None, newest: int) -> list[int]:
    """The what-if chart's years: the newest and three older ones, and the visitor's year among them."""
    return sorted({newest - a for a in (0, 2, 4, 6)} | ({int(chosen)} if chosen is not None else set()))


def _use_brand(brand_name: str) -> None:
    st.session_state["car_brand"] = brand_name
    st.session_state.pop("car_model", None)


# ---- 1. inputs: photo first, then the form
photo_col, form_col = st.columns([2, 3])
with photo_col:
    uploaded = st.file_uploader("Photo of the car (optional)", type=["png", "jpg", "jpeg", "webp"])
    if uploaded is not None:
        st.session_state["car_photo"] = (uploaded.name, uploaded.getvalue())
    photo_examples = examples.car_photo_examples()
    if photo_examples:
        pick = st.selectbox("...or an example photo", [e.label for e in photo_examples], index=None,
                            placeholder="Choose an example")
        if pick and st.button("Use this photo"):
            ex = next(e for e in photo_examples if e.label == pick)
            st.session_state["car_photo"] = (ex.path.name, ex.path.read_bytes())
    if st.session_state.get("car_photo") and st.button("Remove photo"):
        del st.session_state["car_photo"]
    photo = st.session_state.get("car_photo")
    photo_image = None
    if photo:
        try:
            photo_image = load_image(photo[1], name=photo[0])
            st.image(photo_image.pixels, width="stretch")
        except InputError as exc:
            st.error(f"Cannot use this photo: {exc}")
            photo = None
    # The photo's make is a suggestion: one click takes it, and a brand the visitor set is never replaced.
    if photo_image is not None:
        if st.session_state.get("car_suggestion_for") != hash(photo[1]):
            st.session_state["car_suggestion_for"] = hash(photo[1])
            st.session_state["car_suggestion"] = model.suggested_brand(photo_image)
        suggestion = st.session_state.get("car_suggestion")
        if suggestion and suggestion[0] != st.session_state.get("car_brand"):
            st.button(f"The photo looks like a {suggestion[0]} ({suggestion[1]:.0%}): use it?",
                      on_click=_use_brand, args=(suggestion[0],), key="car_use_suggestion")

car_examples = examples.car_details_examples()
linked = example_from_link(len(car_examples))
if linked is not None:
    _fill_in(car_examples[linked].details)
with form_col:
    if car_examples:
        pick_car = st.selectbox("Fill in an example car", [c.label for c in car_examples], index=None,
                                placeholder="Choose an example car")
        if pick_car:
            chosen = next(c for c in car_examples if c.label == pick_car)
            st.button("Fill in", on_click=_fill_in, args=(chosen.details,), key="car_fill_example")
    brands = catalog["brands"]
    if st.session_state.get("car_brand") not in [UNSURE] + brands:
        st.session_state["car_brand"] = "Ford"
    brand = st.selectbox("Brand", [UNSURE] + brands, key="car_brand")
    models_of = sorted(catalog["models"].get(brand, {}), key=lambda m: -catalog["models"][brand][m]) if brand != UNSURE else []
    if st.session_state.get("car_model") not in [UNSURE] + models_of:  # a new brand: its most common model
        st.session_state["car_model"] = models_of[0] if models_of else UNSURE
    model_name = st.selectbox("Model", [UNSURE] + models_of, key="car_model")
    # A newly chosen model brings its own commonest fuel, gearbox, engine and year; the visitor can change them.
    if st.session_state.get("car_defaults_for") != (brand, model_name):
        st.session_state["car_defaults_for"] = (brand, model_name)
        typical = model.typical_details(brand, model_name) if UNSURE not in (brand, model_name) else {}
        for field, key in (("fuel", "car_fuel"), ("transmission", "car_transmission"),
                           ("engine_size", "car_engine"), ("year", "car_year")):
            if field in typical:
                st.session_state[key] = typical[field]
        if typical:  # an engine size the listings lack for this model is "not sure", not the last model's
            unsure_now = [f for f in st.session_state.get("car_unsure", []) if f != "engine size"]
            st.session_state["car_unsure"] = unsure_now + ([] if "engine_size" in typical else ["engine size"])
    st.session_state.setdefault("car_year", 2017)
    st.session_state.setdefault("car_mileage", 30_000)
    st.session_state.setdefault("car_fuel", "Petrol")
    st.session_state.setdefault("car_transmission", "Manual")
    st.session_state.setdefault("car_engine", 1.0)
    c1, c2 = st.columns(2)
    year = c1.number_input("Year", min_value=1900, max_value=2100, step=1, key="car_year")
    mileage = c2.number_input("Mileage (miles)", min_value=-1_000_000, max_value=10_000_000, step=1000,
                              key="car_mileage")
    c3, c4, c5 = st.columns(3)
    fuel = c3.selectbox("Fuel", [UNSURE] + catalog["categories"]["fuel"], key="car_fuel")
    transmission = c4.selectbox("Transmission", [UNSURE] + catalog["categories"]["transmission"],
                                key="car_transmission")
    engine = c5.number_input("Engine size (litres)", min_value=0.0, max_value=20.0, step=0.1, format="%.1f",
                             key="car_engine")
    unsure = st.multiselect("Fields I don't know", ["year", "mileage", "engine size"], key="car_unsure")
    with st.expander("From the advert or papers (optional): mpg and road tax sharpen the price"):
        p1, p2 = st.columns(2)
        mpg = p1.number_input("Fuel economy (mpg)", min_value=0.0, max_value=500.0, value=None, step=1.0,
                              key="car_mpg", placeholder="e.g. 55.4")
        tax = p2.number_input("Road tax (£ a year)", min_value=0.0, max_value=1000.0, value=None, step=5.0,
                              key="car_tax", placeholder="e.g. 145")
        both = next((t for t in model.card.get("metrics", {}).get("with_papers", {}).get("test", [])
                     if t["given"] == ["mpg", "tax"]), None)
        if both:
            st.caption(f"On held-out listings the typical error falls from "
                       f"{model.card['metrics']['test']['mape']:.1%} to {both['mape']:.1%} with both given.")
    st.session_state.setdefault("car_use_details", True)
    use_details = st.toggle("Use these details", key="car_use_details",
                            help="Switch off to price from the photo alone.")

details = {}
if use_details:
    details = {"brand": None if brand == UNSURE else brand, "model": None if model_name == UNSURE else model_name,
               "year": None if "year" in unsure else int(year),
               "mileage": None if "mileage" in unsure else float(mileage),
               "fuel": None if fuel == UNSURE else fuel, "transmission": None if transmission == UNSURE else transmission,
               "engine_size": None if "engine size" in unsure else float(engine), "mpg": mpg, "tax": tax}

# ---- 2. one call
try:
    result = model.predict(details, image=photo_image)
except InputError as exc:
    st.error(str(exc))
    st.stop()

# ---- 3. results
for w in result.warnings:
    st.warning(w)
if result.is_car is False and result.price is None:
    st.error("No price: the photo is not a car's exterior. Try another photo or fill in the details.")
    st.stop()

with answer:
    st.success(f"**£{result.price:,.0f}** for the car below · 80 % interval £{result.price_interval[0]:,.0f} – "
               f"£{result.price_interval[1]:,.0f}", icon="💷")
m1, m2, m3 = st.columns(3)
m1.metric("Estimated price", f"£{result.price:,.0f}")
m2.metric("80 % interval", f"£{result.price_interval[0]:,.0f} – £{result.price_interval[1]:,.0f}")
if result.is_car is not None:  # a verdict, not a gain: no arrow
    m3.metric("Car photo check", "car exterior ✔" if result.is_car else "not a car ✘",
              help=f"The photo model's car-exterior score: {result.car_score:.2f} (a car from {CAR_THRESHOLD:g}).")
if result.brand_from_image:
    top = sorted(result.brand_from_image.items(), key=lambda kv: -kv[1])
    st.caption("Make from the photo: " + ", ".join(f"{b} {p:.0%}" for b, p in top[:3]))

test = model.card.get("metrics", {}).get("test", {})
chart_left, chart_right = st.columns(2)
with chart_left:
    scatter = model.card.get("metrics", {}).get("test_scatter", {})
    if scatter:
        fig = go.Figure(go.Scattergl(x=scatter["real"], y=scatter["predicted"], mode="markers",
                                     marker=dict(size=4, opacity=0.35, color="#1f6feb"), name="test cars"))
        hi = max(scatter["real"] + scatter["predicted"])
        fig.add_scatter(x=[0, hi], y=[0, hi], mode="lines", line=dict(color="#d1242f", dash="dash"), name="perfect")
        # two short lines: a 390 px phone screen cuts one long title
        fig.update_layout(title=f"Predicted vs real price<br><sup>held-out listings, MAPE {test.get('mape', 0):.1%}</sup>",
                          xaxis_title="real (£)", yaxis_title="predicted (£)", height=380, margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)
with chart_right:
    if details.get("brand"):
        base = {k: v for k, v in details.items() if k not in ("year", "mileage")}
        grid = model.what_if(base, what_if_mileages(details.get("mileage")),
                             what_if_years(details.get("year"), catalog["year_max"]))
        fig = go.Figure()
        for y, g in grid.groupby("year"):
            fig.add_scatter(x=g.mileage, y=g.price, mode="lines+markers", name=str(y))
        fig.update_layout(title="What if<br><sup>price against mileage, by year</sup>", xaxis_title="mileage",
                          yaxis_title="price (£)", height=380, margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)
st.caption("The interval covers the real price for about 80 % of held-out listings. Fields you leave out are "
           "averaged over typical cars of that brand and model, which widens it.")
with st.expander("Limits of these models"):
    for limitation in model.card.get("limitations", []):
        st.markdown(f"- {limitation}")
