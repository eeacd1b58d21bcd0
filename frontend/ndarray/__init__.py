"""kiln.nd: NDArray creation functions and every registry operator."""
import numpy as np

from ..context import current_context
from ..compiler.ops import registry as _registry
from .ndarray import NDArray, invoke

_DEFAULT_DTYPE = np.float32


def _ctx(ctx):
    return ctx or current_context()


def array(source_array, ctx=None, dtype=None):
    """As MXNet: lists and numpy arrays become float32 unless ``dtype`` is given."""
    if isinstance(source_array, NDArray):
        dtype = dtype or source_array.dtype
        source_array = source_array.asnumpy()
    data = np.array(source_array, dtype=np.dtype(dtype or _DEFAULT_DTYPE))
    if data.ndim == 0:
        data = data.reshape((1,))
    return NDArray(np.ascontiguousarray(data), _ctx(ctx))


def empty(shape, ctx=None, dtype=None):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return NDArray(np.empty(shape, dtype=np.dtype(dtype or _DEFAULT_DTYPE)), _ctx(ctx))


def zeros(shape, ctx=None, dtype=None, **kwargs):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return NDArray(np.zeros(shape, dtype=np.dtype(dtype or _DEFAULT_DTYPE)), _ctx(ctx))


def ones(shape, ctx=None, dtype=None, **kwargs):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return NDArray(np.ones(shape, dtype=np.dtype(dtype or _DEFAULT_DTYPE)), _ctx(ctx))


def full(shape, val, ctx=None, dtype=None):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return NDArray(np.full(shape, val, dtype=np.dtype(dtype or _DEFAULT_DTYPE)), _ctx(ctx))


def waitall():
    return None


def _make_op(fname, op):
    from ..symbol.symbol import positional_attrs

    def fn(*args, out=None, name=None, **kwargs):
        inputs = [a for a in args if isinstance(a, NDArray)]
        values = [a for a in args if not isinstance(a, NDArray)]
        named = {k: kwargs.pop(k) for k in list(kwargs) if isinstance(kwargs[k], NDArray)}
        if op.num_args_key and op.num_args_key not in kwargs:
            kwargs[op.num_args_key] = len(inputs) + len(named)
        kwargs.update(positional_attrs(op, values, kwargs, fname))
        params = op.parse_attrs(op.format_attrs(kwargs, fname), fname)
        for k in op.input_names(params)[len(inputs):]:
            if k in named:
                inputs.append(named.pop(k))
        if named:
            raise TypeError("operator %s: unknown array arguments %s" % (fname, sorted(named)))
        outs = invoke(op.name, inputs, kwargs, out=out)
        return outs[0] if len(outs) == 1 else outs
    fn.__name__ = fname
    fn.__doc__ = op.doc or "Operator %s (from the kiln registry)." % op.name
    return fn


def _populate(namespace):
    for fname in _registry.all_names():
        if fname not in namespace:
            namespace[fname] = _make_op(fname, _registry.get(fname))


_populate(globals())


def _scalar_or_array(array_op, scalar_op, rscalar_op=None):
    """MXNet's nd.maximum/minimum/power: NDArrays (broadcasting) or numbers on either side."""
    def fn(lhs, rhs, out=None):
        if isinstance(lhs, NDArray) and isinstance(rhs, NDArray):
            outs = invoke(array_op, [lhs, rhs], {}, out=out)
        elif isinstance(lhs, NDArray):
            outs = invoke(scalar_op, [lhs], {"scalar": float(rhs)}, out=out)
        elif isinstance(rhs, NDArray):
            outs = invoke(rscalar_op or scalar_op, [rhs], {"scalar": float(lhs)}, out=out)
        else:
            raise TypeError("types (%s, %s) not supported" % (type(lhs).__name__, type(rhs).__name__))
        return outs[0]
    return fn


maximum = _scalar_or_array("broadcast_maximum", "_maximum_scalar")
minimum = _scalar_or_array("broadcast_minimum", "_minimum_scalar")
power = _scalar_or_array("broadcast_power", "_power_scalar", "_rpower_scalar")
hypot = _scalar_or_array("broadcast_hypot", "_hypot_scalar")
