"""Links that open an example: /xray?example=2 (a QR code on a showcase poster, a shared link, the load bench)."""

from __future__ import annotations

import streamlit as st


def example_from_link(count: int) -> int | None:
    """The 0-based example asked for by ``?example=k`` (1-based), once: the parameter then leaves the URL,
    so the visitor's own inputs are never replaced by it again. None when absent; a link that names no example
    says why on the page."""
    raw = st.query_params.get("example")
    if raw is None:
        return None
    del st.query_params["example"]
    try:
        k = int(raw)
    except ValueError:
        k = None
    if k is not None and 1 <= k <= count:
        return k - 1
    st.warning(f"This link asks for example {raw!r}, but example links count from 1 to {count}: "
               f"`?example=1` opens the first.", icon="🔗")
    return None
