"""Error types shared by every layer.

They live in the runtime because it is the lowest layer: the compiler and the
frontend both import it, and it imports neither.
"""


class MXNetError(ValueError):
    """Raised for invalid graphs, shapes, attributes and inputs (MXNet's name)."""


class MXNetTypeError(MXNetError, TypeError):
    """An attribute or input of the wrong type."""
