"""MXNet's base names: the error type and the numeric type tuples."""
import numbers

import numpy as np

from .runtime.errors import MXNetError, MXNetTypeError  # noqa: F401

numeric_types = (float, int, np.generic, numbers.Number)
integer_types = (int, np.integer)
string_types = (str,)


class NotImplementedForSymbol(MXNetError):
    def __init__(self, function, alias=None, *args):
        super().__init__("Function %s (%s) is not implemented for Symbol and only available in NDArray."
                         % (getattr(function, "__name__", function), alias))
