"""The two error types that may leave demo_core.

Everything a visitor can cause is an :class:`InputError` whose message is
written for that visitor; everything the deployment can cause (missing or
corrupted weights) is a :class:`ModelUnavailable`.
"""


class InputError(ValueError):
    """The input cannot be used; ``str(err)`` is fit to show to a user."""


class ModelUnavailable(RuntimeError):
    """A model's files are missing or fail their checksum; the demo is off."""
