"""One cached model per process, shared by every session (the models are read-only)."""

from __future__ import annotations

import logging

import streamlit as st

from demo_core.errors import ModelUnavailable

log = logging.getLogger("demo_app")


@st.cache_resource(show_spinner="Loading the chest X-ray model (first visit only)...")
def _xray():
    from demo_core.xray import model
    return model.load()


@st.cache_resource(show_spinner="Loading the poem models (first visit only)...")
def _poem():
    from demo_core.poem import model
    return model.load()


@st.cache_resource(show_spinner="Loading the car models (first visit only)...")
def _car():
    from demo_core.car import model
    return model.load()


_LOADERS = {"xray": _xray, "poem": _poem, "car": _car}


def get(task: str):
    """The loaded model, or None after showing why this demo is unavailable."""
    try:
        return _LOADERS[task]()
    except ModelUnavailable as exc:
        st.error(f"This demo is unavailable: {exc}")
    except Exception as exc:  # a broken install disables one demo, never the app
        log.error("loading %s failed: %s", task, type(exc).__name__)
        st.error(f"This demo is unavailable: the model could not be loaded ({type(exc).__name__}).")
    return None
