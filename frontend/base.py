"""MXNet's base names: the error type and the numeric type tuples."""
import numbers

import numpy as np

from .runtime.errors import MXNetError, MXNetTypeError  # noqa: F401

numeric_types = (float, int, np.generic, numbers.Number)
integer_types = (int, np.integer)
string_types = (str,)

# Operators that NDArray and Symbol also offer as methods (``x.sum(axis=1)``), as MXNet does.
OPERATOR_METHODS = (
    "broadcast_axes", "repeat", "pad", "swapaxes", "split", "slice", "slice_axis", "slice_like",
    "take", "one_hot", "pick", "sort", "topk", "argsort", "argmax", "argmax_channel", "argmin",
    "clip", "abs", "sign", "shape_array", "size_array", "expand_dims", "tile", "transpose", "flip",
    "diag", "sum", "nansum", "prod", "nanprod", "mean", "max", "min", "norm", "round", "rint", "fix",
    "floor", "ceil", "trunc", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "degrees",
    "radians", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "exp", "expm1", "log",
    "log10", "log2", "log1p", "sqrt", "rsqrt", "cbrt", "rcbrt", "square", "reciprocal", "relu",
    "sigmoid", "softmax", "log_softmax", "softmin", "squeeze",
)


class NotImplementedForSymbol(MXNetError):
    def __init__(self, function, alias=None, *args):
        super().__init__("Function %s (%s) is not implemented for Symbol and only available in NDArray."
                         % (getattr(function, "__name__", function), alias))
