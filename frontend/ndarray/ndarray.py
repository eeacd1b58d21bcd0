"""A minimal NDArray: a CPU buffer with MXNet's printing, copying and operators.

Operators run through the compiler (``imperative.invoke_numpy``), never numpy
arithmetic, so NDArray and Symbol results agree. The full imperative API
(indexing, autograd, the async engine) builds on this class.
"""
from __future__ import annotations

import numpy as np

from ..base import MXNetError, numeric_types
from ..context import Context, current_context
from ..imperative import invoke_numpy


class NDArray:
    __array_priority__ = 1000.0

    def __init__(self, data, ctx=None):
        self._data = data
        self._ctx = ctx or current_context()

    # ---- attributes ----
    @property
    def shape(self):
        return tuple(self._data.shape)

    @property
    def dtype(self):
        return self._data.dtype.type

    @property
    def size(self):
        return int(self._data.size)

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def context(self):
        return self._ctx

    ctx = context

    @property
    def stype(self):
        return "default"

    @property
    def T(self):
        return _op("transpose", [self], {})

    # ---- conversion ----
    def asnumpy(self):
        return self._data.copy()

    def __array__(self, dtype=None, copy=None):
        return self._data.astype(dtype) if dtype is not None else self._data

    def asscalar(self):
        if self.size != 1:
            raise ValueError("The current array is not a scalar")
        return self._data.reshape(-1)[0]

    def astype(self, dtype, copy=True):
        dt = np.dtype(dtype)
        if not copy and dt == self._data.dtype:
            return self
        return _op("Cast", [self], {"dtype": dt.name})

    def copy(self):
        return NDArray(self._data.copy(), self._ctx)

    def copyto(self, other):
        if isinstance(other, Context):
            return NDArray(self._data.copy(), other)
        if isinstance(other, NDArray):
            if other is self:
                return other
            if other.shape != self.shape:
                raise MXNetError("copyto: shape mismatch %s vs %s" % (self.shape, other.shape))
            other._data[...] = self._data.astype(other._data.dtype, copy=False)
            return other
        raise TypeError("copyto does not support type %s" % type(other))

    def as_in_context(self, ctx):
        return self if ctx == self._ctx else self.copyto(ctx)

    def wait_to_read(self):
        return None

    def reshape(self, *shape, **kwargs):
        if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
            shape = tuple(shape[0])
        if not shape:
            shape = kwargs.pop("shape")
        return _op("Reshape", [self], dict(kwargs, shape=tuple(shape)))

    def tolist(self):
        return self._data.tolist()

    # ---- indexing ----
    def __getitem__(self, key):
        """MXNet 1.x: basic indexing that stays contiguous is a view (writes reach the
        parent); anything else copies; a scalar result has shape (1,)."""
        out = self._data[_index_key(key)]
        if np.ndim(out) == 0:
            return NDArray(np.array([out], dtype=self._data.dtype), self._ctx)
        if out.flags.c_contiguous and np.shares_memory(out, self._data):
            return NDArray(out, self._ctx)
        return NDArray(np.ascontiguousarray(out), self._ctx)

    def __setitem__(self, key, value):
        if isinstance(value, NDArray):
            value = value._data
        self._data[_index_key(key)] = value

    def __len__(self):
        return self.shape[0]

    def __iter__(self):
        for i in range(self.shape[0]):
            yield self[i]

    def __bool__(self):
        if self.size != 1:
            raise ValueError("The truth value of an NDArray with multiple elements is ambiguous.")
        return bool(self._data.reshape(-1)[0])

    # ---- printing ----
    def __repr__(self):
        shape = "x".join(str(d) for d in self.shape)
        return "\n%s\n<NDArray %s @%s>" % (np.array2string(self._data), shape, self._ctx)

    # ---- operators ----
    def _binary(self, other, bop, sop, reverse_sop=None):
        if isinstance(other, NDArray):
            return _op(bop, [other, self] if reverse_sop == "swap" else [self, other], {})
        if isinstance(other, numeric_types):
            return _op(sop, [self], {"scalar": float(other)})
        return NotImplemented

    def __add__(self, o):
        return self._binary(o, "broadcast_add", "_plus_scalar")

    __radd__ = __add__

    def __sub__(self, o):
        return self._binary(o, "broadcast_sub", "_minus_scalar")

    def __rsub__(self, o):
        return self._binary(o, "broadcast_sub", "_rminus_scalar", "swap")

    def __mul__(self, o):
        return self._binary(o, "broadcast_mul", "_mul_scalar")

    __rmul__ = __mul__

    def __truediv__(self, o):
        return self._binary(o, "broadcast_div", "_div_scalar")

    def __rtruediv__(self, o):
        return self._binary(o, "broadcast_div", "_rdiv_scalar", "swap")

    def __mod__(self, o):
        return self._binary(o, "broadcast_mod", "_mod_scalar")

    def __rmod__(self, o):
        return self._binary(o, "broadcast_mod", "_rmod_scalar", "swap")

    def __pow__(self, o):
        return self._binary(o, "broadcast_power", "_power_scalar")

    def __rpow__(self, o):
        return self._binary(o, "broadcast_power", "_rpower_scalar", "swap")

    def __neg__(self):
        return _op("negative", [self], {})

    def __eq__(self, o):
        return self._binary(o, "broadcast_equal", "_equal_scalar")

    def __ne__(self, o):
        return self._binary(o, "broadcast_not_equal", "_not_equal_scalar")

    def __gt__(self, o):
        return self._binary(o, "broadcast_greater", "_greater_scalar")

    def __ge__(self, o):
        return self._binary(o, "broadcast_greater_equal", "_greater_equal_scalar")

    def __lt__(self, o):
        return self._binary(o, "broadcast_lesser", "_lesser_scalar")

    def __le__(self, o):
        return self._binary(o, "broadcast_lesser_equal", "_lesser_equal_scalar")

    __hash__ = object.__hash__

    def _inplace(self, result):
        if result is NotImplemented:
            return result
        self._data[...] = result._data
        return self

    def __iadd__(self, o):
        return self._inplace(self.__add__(o))

    def __isub__(self, o):
        return self._inplace(self.__sub__(o))

    def __imul__(self, o):
        return self._inplace(self.__mul__(o))

    def __itruediv__(self, o):
        return self._inplace(self.__truediv__(o))

    def __imod__(self, o):
        return self._inplace(self.__mod__(o))

    def __ipow__(self, o):
        return self._inplace(self.__pow__(o))

    __div__, __rdiv__, __idiv__ = __truediv__, __rtruediv__, __itruediv__

    # ---- methods forwarding to kiln.nd operators, as MXNet's NDArray has them ----
    def zeros_like(self, *args, **kwargs):
        return _op("zeros_like", [self], kwargs)

    def ones_like(self, *args, **kwargs):
        return _op("ones_like", [self], kwargs)

    def broadcast_to(self, shape):
        return _op("broadcast_to", [self], {"shape": tuple(shape)})

    def broadcast_like(self, other):
        return _op("broadcast_like", [self, other], {})

    def reshape_like(self, *args, **kwargs):
        return _nd_call("reshape_like", self, args, kwargs)

    def flatten(self, inplace=False):
        if inplace:
            raise NotImplementedError("NDArray.flatten(inplace=True)")
        return _op("Flatten", [self], {})


def _index_key(key):
    """Index arrays given as NDArrays (any dtype) or lists become integer numpy arrays."""
    if isinstance(key, NDArray):
        return key._data.astype(np.int64)
    if isinstance(key, tuple):
        return tuple(_index_key(k) for k in key)
    if isinstance(key, list):
        return np.asarray(key, dtype=np.int64)
    return key


def _nd_call(name, self, args, kwargs):
    from .. import ndarray as nd
    fn = getattr(nd, name, None)
    if fn is None:
        raise NotImplementedError("NDArray.%s: operator %s is not available" % (name, name))
    return fn(self, *args, **kwargs)


def _forward(name):
    def method(self, *args, **kwargs):
        return _nd_call(name, self, args, kwargs)
    method.__name__ = name
    method.__doc__ = "Same as ``nd.%s(self, ...)``." % name
    return method


_METHODS = (
    "broadcast_axes", "repeat", "pad", "swapaxes", "split", "slice", "slice_axis", "slice_like",
    "take", "one_hot", "pick", "sort", "topk", "argsort", "argmax", "argmax_channel", "argmin",
    "clip", "abs", "sign", "shape_array", "size_array", "expand_dims", "tile", "transpose", "flip",
    "diag", "sum", "nansum", "prod", "nanprod", "mean", "max", "min", "norm", "round", "rint", "fix",
    "floor", "ceil", "trunc", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "degrees",
    "radians", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "exp", "expm1", "log",
    "log10", "log2", "log1p", "sqrt", "rsqrt", "cbrt", "rcbrt", "square", "reciprocal", "relu",
    "sigmoid", "softmax", "log_softmax", "softmin", "squeeze",
)
for _name in _METHODS:
    setattr(NDArray, _name, _forward(_name))


def _op(opname, inputs, attrs, out=None):
    outs = invoke(opname, inputs, attrs, out=out)
    return outs[0] if len(outs) == 1 else outs


def invoke(opname, inputs, attrs, out=None):
    """Run a registry operator on NDArrays; returns a list of NDArrays."""
    ctx = inputs[0].context if inputs else current_context()
    for x in inputs:
        if not isinstance(x, NDArray):
            raise TypeError("operator %s: inputs must be NDArrays, got %s" % (opname, type(x).__name__))
    if out is not None:
        outs = out if isinstance(out, (list, tuple)) else [out]
        invoke_numpy(opname, [x._data for x in inputs], attrs, outs=[o._data for o in outs])
        return list(outs)
    results = invoke_numpy(opname, [x._data for x in inputs], attrs)
    return [NDArray(r, ctx) for r in results]
