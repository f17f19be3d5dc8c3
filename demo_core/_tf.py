"""Import TensorFlow/Keras lazily and quietly, once.

TensorFlow keeps its default thread pools: on 2 cores they ran the X-ray request fastest (30 ms median,
against 33 ms with one thread per op and 34-47 ms with one op at a time).
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_keras = None


def keras():
    """Keras 3 on the TensorFlow backend; importing demo_core alone never pulls it in."""
    global _keras
    with _lock:
        if _keras is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            import keras as _k  # noqa: PLC0415
            _keras = _k
    return _keras


def tf():
    keras()
    import tensorflow as _tf  # noqa: PLC0415
    return _tf
