"""Inference for the three showcase demos; never imports streamlit or TensorFlow at import time.

Each demo has one loader and one ``predict``::

    from demo_core.xray import model as xray
    m = xray.load()                 # verifies weights/xray against its card
    m.predict(open("film.dcm", "rb").read()).to_dict()
"""

from .errors import InputError, ModelUnavailable

__version__ = "1.0.0"
__all__ = ["InputError", "ModelUnavailable", "__version__"]
