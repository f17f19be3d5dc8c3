"""One model per demo per process, shared by every session (the models are read-only), warmed early.

The first page any visitor opens on a fresh server starts one background thread that loads all three
models, the chest X-ray's first, while the visitor is still choosing a file. ``st.cache_resource`` holds
that warm-up, so nothing loads twice, and ``st.cache_resource.clear()`` starts afresh. A page whose
model is still loading shows a spinner with the time so far; the sidebar shows the warm-up's progress.
Loading competes with inference for the CPU, so a result asked for during the warm-up is slower.
"""

from __future__ import annotations

import gc
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

import streamlit as st

from demo_core.errors import ModelUnavailable
from demo_core.tasks import TASKS

log = logging.getLogger("demo_app")


def _load(task: str):
    """The plain loader."""
    return TASKS[task].load()


class Warmup:
    """Loads every demo's model in one background thread, in the registry's order; thread-safe."""

    def __init__(self, loader=_load):
        self.started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-warmup")
        self._futures: dict[str, Future] = {task: pool.submit(loader, task) for task in TASKS}
        # The models' millions of objects live as long as the process: out of the garbage collector's sight,
        # a full collection (Streamlit runs one after every script run) costs milliseconds, not 0.3 s.
        pool.submit(gc.freeze)
        pool.shutdown(wait=False)

    def ready(self, task: str) -> bool:
        return self._futures[task].done()

    def all_ready(self) -> bool:
        return all(f.done() for f in self._futures.values())

    def result(self, task: str):
        """The loaded model (waits for it); raises what loading raised."""
        return self._futures[task].result()

    def progress(self) -> tuple[float, str]:
        """(share of demos ready, a line for the visitor)."""
        done = [t for t in TASKS if self.ready(t)]
        parts = [f"{TASKS[t].title} {'✓' if t in done else '…'}" for t in TASKS]
        return len(done) / len(TASKS), f"Warming up the models ({time.monotonic() - self.started:.0f} s): " + \
            " · ".join(parts)


def _keep_keras_state_between_runs() -> None:
    """Stop Streamlit's ``keras.backend.clear_session()`` after every script run.

    Streamlit calls it (``script_runner._clean_problem_modules``, pinned version) for apps that build
    models in the script. Ours are loaded once and shared by every session, so it only costs: it clears
    TensorFlow's kernel cache and runs a full garbage collection after each run of each session (36 % of
    a warm page run's CPU, measured with py-spy), and it does so while other sessions may be predicting.
    """
    from streamlit.runtime.scriptrunner import script_runner
    script_runner._clean_problem_modules = lambda: None


@st.cache_resource(show_spinner=False)
def warmup() -> Warmup:
    """The process's one warm-up, started by the first page that runs."""
    _keep_keras_state_between_runs()
    return Warmup()


def get(task: str):
    """The loaded model, or None after showing why this demo is unavailable."""
    w = warmup()
    try:
        if w.ready(task):
            return w.result(task)
        with st.spinner(f"Loading the {TASKS[task].title} model (once, after the server starts)...", show_time=True):
            return w.result(task)
    except ModelUnavailable as exc:
        st.error(f"This demo is unavailable: {exc}")
    except Exception as exc:  # a broken install disables one demo, never the app
        log.error("loading %s failed: %s", task, type(exc).__name__)
        st.error(f"This demo is unavailable: the model could not be loaded ({type(exc).__name__}).")
    return None


def show_warmup_progress() -> None:
    """In the sidebar while any model is still loading (redrawn with each run of the page, never on a timer:
    a timed rerun would interrupt a visitor's own run)."""
    w = warmup()
    if not w.all_ready():
        share, line = w.progress()
        st.sidebar.progress(share, text=line)
