"""kiln.nd: NDArray creation functions and every registry operator."""
import numpy as np

from .. import engine as _engine
from ..context import Context, current_context
from ..compiler.ops import registry as _registry
from .ndarray import NDArray, invoke
from . import storage
from .serialization import load, load_frombuffer, save  # noqa: F401
from . import random  # noqa: F401,E402  (mx.nd.random)

_DEFAULT_DTYPE = np.float32


def _ctx(ctx):
    return ctx or current_context()


def array(source_array, ctx=None, dtype=None):
    """As MXNet: lists and numpy arrays become float32 unless ``dtype`` is given; a
    Python scalar gives shape ()."""
    if isinstance(source_array, NDArray):
        dtype = dtype or source_array.dtype
        source_array = source_array.asnumpy()
    data = np.array(source_array, dtype=np.dtype(dtype or _DEFAULT_DTYPE), order="C")
    return NDArray(data, _ctx(ctx))


def empty(shape, ctx=None, dtype=None):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    ctx = _ctx(ctx)
    return NDArray(storage.empty(shape, np.dtype(dtype or _DEFAULT_DTYPE), ctx), ctx)


def zeros(shape, ctx=None, dtype=None, **kwargs):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    ctx = _ctx(ctx)
    return NDArray(storage.zeros(shape, np.dtype(dtype or _DEFAULT_DTYPE), ctx), ctx)


def ones(shape, ctx=None, dtype=None, **kwargs):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return NDArray(np.ones(shape, dtype=np.dtype(dtype or _DEFAULT_DTYPE)), _ctx(ctx))


def full(shape, val, ctx=None, dtype=None):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return NDArray(np.full(shape, val, dtype=np.dtype(dtype or _DEFAULT_DTYPE)), _ctx(ctx))


def to_dlpack_for_read(data):
    return data.to_dlpack_for_read()


def to_dlpack_for_write(data):
    return data.to_dlpack_for_write()


def from_dlpack(dlpack):
    """An NDArray sharing the memory of a DLPack capsule or of an object with ``__dlpack__``."""
    from .dlpack import import_capsule
    if hasattr(dlpack, "__dlpack__"):
        dlpack = dlpack.__dlpack__()
    data, gpu_id = import_capsule(dlpack)
    return NDArray(data, Context("cpu", 0) if gpu_id is None else Context("gpu", gpu_id))


def waitall():
    """Wait for every queued operation, GPU kernels included; raises a failure no wait has
    reported yet."""
    _engine.get().waitall()
    from ..runtime.cuda import synchronize_all
    synchronize_all()


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


def _shape(shape):
    return (shape,) if isinstance(shape, int) else tuple(shape)


def arange(start, stop=None, step=1.0, repeat=1, infer_range=False, ctx=None, dtype=_DEFAULT_DTYPE):
    """MXNet's init op: ``start + step * (i // repeat)`` for ``ceil((stop - start) / step)`` values."""
    if infer_range:
        raise NotImplementedError("nd.arange(infer_range=True)")
    if stop is None:
        start, stop = 0.0, start
    n = int(np.ceil((stop - start) / step))
    n = n if n > 0 else 0
    dt = np.dtype(dtype)
    values = start + step * np.arange(n, dtype=np.float64)
    return NDArray(np.repeat(values.astype(dt), int(repeat)), _ctx(ctx))


def linspace(start, stop, num, endpoint=True, ctx=None, dtype=_DEFAULT_DTYPE):
    return NDArray(np.linspace(start, stop, int(num), endpoint=endpoint).astype(np.dtype(dtype)), _ctx(ctx))


def eye(N, M=0, k=0, ctx=None, dtype=_DEFAULT_DTYPE, **kwargs):
    return NDArray(np.eye(int(N), int(M) or None, int(k), dtype=np.dtype(dtype)), _ctx(ctx))


def full_like(other, fill_value, ctx=None, dtype=None):
    """Like MXNet's ``_full_like``: shape of ``other``, its dtype unless ``dtype`` is given."""
    return full(other.shape, fill_value, ctx=ctx or other.context, dtype=dtype or other.dtype)


def shape_array(data, **kwargs):
    return NDArray(np.array(data.shape, dtype=np.int64), data.context)


def size_array(data, **kwargs):
    return NDArray(np.array([data.size], dtype=np.int64), data.context)


def argmax_channel(data, out=None, **kwargs):
    """argmax over the last axis (MXNet's channel argmax)."""
    return invoke("argmax", [data], {"axis": -1}, out=out)[0]


def broadcast_axis(data, axis=(), size=(), out=None, **kwargs):
    """broadcast_axes: each (size-1) ``axis`` grows to its ``size``."""
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    size = (size,) if isinstance(size, int) else tuple(size)
    shape = list(data.shape)
    for a, n in zip(axis, size):
        shape[a % data.ndim] = n
    return invoke("broadcast_to", [data], {"shape": tuple(shape)}, out=out)[0]


broadcast_axes = broadcast_axis


def _nan_to(data, value):
    """``data`` with NaNs replaced by ``value`` (NaN is the only value unequal to itself)."""
    ok = invoke("broadcast_equal", [data, data], {})[0]
    fill = invoke("_plus_scalar", [invoke("zeros_like", [data], {})[0]], {"scalar": float(value)})[0]
    return invoke("where", [ok, data, fill], {})[0]


def nansum(data, axis=None, keepdims=False, exclude=False, out=None, **kwargs):
    """sum treating NaN as 0."""
    return invoke("sum", [_nan_to(data, 0)], {"axis": axis, "keepdims": keepdims, "exclude": exclude}, out=out)[0]


def nanprod(data, axis=None, keepdims=False, exclude=False, out=None, **kwargs):
    """prod treating NaN as 1."""
    return invoke("prod", [_nan_to(data, 1)], {"axis": axis, "keepdims": keepdims, "exclude": exclude}, out=out)[0]


def softmin(data, axis=-1, temperature=None, dtype=None, out=None, **kwargs):
    """softmax of ``-data``."""
    attrs = {"axis": axis}
    if temperature is not None:
        attrs["temperature"] = temperature
    if dtype is not None:
        attrs["dtype"] = dtype
    return invoke("softmax", [invoke("negative", [data], {})[0]], attrs, out=out)[0]


def _compare(array_op, scalar_op, rscalar_op):
    """nd.equal/greater/...: NDArrays (broadcasting) or a number on either side."""
    def fn(lhs, rhs, out=None):
        if isinstance(lhs, NDArray) and isinstance(rhs, NDArray):
            return invoke(array_op, [lhs, rhs], {}, out=out)[0]
        if isinstance(lhs, NDArray):
            return invoke(scalar_op, [lhs], {"scalar": float(rhs)}, out=out)[0]
        return invoke(rscalar_op, [rhs], {"scalar": float(lhs)}, out=out)[0]
    fn.__name__ = array_op[len("broadcast_"):]
    return fn


equal = _compare("broadcast_equal", "_equal_scalar", "_equal_scalar")
not_equal = _compare("broadcast_not_equal", "_not_equal_scalar", "_not_equal_scalar")
greater = _compare("broadcast_greater", "_greater_scalar", "_lesser_scalar")
greater_equal = _compare("broadcast_greater_equal", "_greater_equal_scalar", "_lesser_equal_scalar")
lesser = _compare("broadcast_lesser", "_lesser_scalar", "_greater_scalar")
lesser_equal = _compare("broadcast_lesser_equal", "_lesser_equal_scalar", "_greater_equal_scalar")


from . import contrib  # noqa: F401,E402  (mx.nd.contrib, built from the operators above)


def split_v2(ary, indices_or_sections=1, axis=0, squeeze_axis=False):
    """Split ``ary`` into equal sections or at the given indices along ``axis`` (numpy's split)."""
    from ..symbol import _split_v2_attrs
    return invoke("_split_v2", [ary], _split_v2_attrs(indices_or_sections, axis, squeeze_axis))
