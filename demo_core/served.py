"""Networks served through LiteRT (``ai-edge-litert``): a trained Keras graph exported to a ``.tflite`` file.

The interpreter imports in a fraction of a second and a MobileNetV2 runs in a few milliseconds, so a demo served
this way answers on a fresh server long before TensorFlow has finished importing. The export
(``training/export_xray_litert.py``) checks that every output matches the Keras graph it came from.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .errors import ModelUnavailable


class ServedNet:
    """One exported network behind a lock: a LiteRT interpreter must not be invoked from two threads at once,
    and the app shares one model between every session. (A pool of two interpreters per network made no
    difference under a crowd of 50 sessions and cost 80 MB: bench/load.py.)"""

    def __init__(self, path: Path, outputs: dict[str, str]):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - requirements.txt installs it
            raise ModelUnavailable("The LiteRT runtime (ai-edge-litert) is not installed.") from None
        # Two threads at most, and no more than the cores this process may use: one reading takes 18 ms instead
        # of 23 on two cores; under a crowd of 50 sessions one thread and two did the same (bench/load.py).
        self._interpreter = Interpreter(model_path=str(path), num_threads=min(2, _usable_cores()))
        signature = self._interpreter.get_signature_list()["serving_default"]
        self._input = signature["inputs"][0]
        missing = set(outputs) - set(signature["outputs"])
        if not outputs:
            raise ModelUnavailable(f"The card names no outputs for {Path(path).name}: the model is not installed "
                                   "as its export wrote it.")
        if missing:
            raise ModelUnavailable(f"{Path(path).name} lacks the outputs its card names ({', '.join(sorted(missing))}).")
        self._names = outputs  # the file's output name -> the name the code uses
        self._run = self._interpreter.get_signature_runner()
        self._lock = threading.Lock()
        self.input_shape = tuple(int(v) for v in self._interpreter.get_input_details()[0]["shape"])

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One image (a batch of one, float32): every output by its name, copied out of the interpreter."""
        with self._lock:
            out = self._run(**{self._input: np.ascontiguousarray(x, np.float32)})
            return {self._names[k]: np.array(v) for k, v in out.items() if k in self._names}


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))  # honours taskset / cpusets
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
