"""Every page runs inside the entry point's navigation, even on a cold server's first deep link."""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st

ENTRY_POINT = Path(__file__).resolve().parent.parent / "streamlit_app.py"


def run_inside_app_navigation() -> None:
    """Call first thing on every page.

    Until the entry point has called ``st.navigation`` once, Streamlit treats a ``pages/`` folder the old
    way: a visitor whose first request after a (re)start is a deep link such as ``/xray`` gets that file
    run on its own, with no page config and the folder's file names as navigation. Here the page hands
    over to ``streamlit_app.py`` instead, whose navigation opens this same page, and stops its own run.
    """
    # Internal flag of the pinned Streamlit (st.navigation clears it); tests/test_browser.py checks a
    # cold deep link end to end.
    from streamlit.runtime.pages_manager import PagesManager
    if PagesManager.uses_pages_directory:
        runpy.run_path(str(ENTRY_POINT), run_name="__main__")
        st.stop()
