"""Where an NDArray's elements live: a numpy buffer on CPU contexts, a runtime
``DeviceArray`` on GPU contexts. Allocating, filling, copying, viewing and reading
storage goes through these functions so the NDArray code is one for both; numpy
buffers take the same fast paths as before GPUs existed.
"""
from __future__ import annotations

import numpy as np

from ..base import MXNetError
from ..runtime.cuda_program import DeviceArray


def device_of(ctx):
    """The runtime device object behind a GPU context; None for CPU contexts."""
    if ctx.device_type != "gpu":
        return None
    from ..runtime import cuda
    try:
        return cuda.device(ctx.device_id)
    except MXNetError:
        count = cuda.device_count()
        raise MXNetError("cannot place an array on %s: this process sees %d GPU(s) (mx.context.num_gpus())%s"
                         % (ctx, count, "" if count else "; use mx.cpu()")) from None


def on_device(data):
    return isinstance(data, DeviceArray)


def empty(shape, dtype, ctx):
    device = device_of(ctx)
    if device is None:
        return np.empty(shape, dtype=dtype)
    return DeviceArray.empty(device, shape, dtype)


def zeros(shape, dtype, ctx):
    device = device_of(ctx)
    if device is None:
        return np.zeros(shape, dtype=dtype)
    out = DeviceArray.empty(device, shape, dtype)
    if out.nbytes:
        device.memset(out.ptr, 0, out.nbytes)
    return out


def place(array, ctx):
    """A numpy array as the storage of ``ctx`` (itself on CPU, a device copy on a GPU)."""
    device = device_of(ctx)
    return array if device is None else DeviceArray.from_numpy(device, array)


def host(data):
    """The elements as a numpy array: the buffer itself on CPU, a fresh copy from a device."""
    return data if isinstance(data, np.ndarray) else data.numpy()


def like(data):
    """Uninitialised storage of the same shape, dtype and place."""
    if isinstance(data, np.ndarray):
        return np.empty_like(data)
    return DeviceArray.empty(data.device, data.shape, data.dtype)


def write(dst, value):
    """``dst[...] = value`` for a numpy array or scalar ``value`` (broadcast, cast)."""
    if isinstance(dst, np.ndarray):
        dst[...] = value
        return
    src = np.require(np.broadcast_to(np.asarray(value, dtype=dst.dtype), dst.shape), requirements="C")
    if src.nbytes:
        dst.device.copy_in(dst.ptr, src)


def copy(dst, src):
    """Copy equal-shaped, equal-dtype storage, wherever each lives."""
    if isinstance(dst, np.ndarray):
        if isinstance(src, np.ndarray):
            dst[...] = src
        elif dst.nbytes:
            src.device.copy_out(dst, src.ptr)
    elif isinstance(src, np.ndarray):
        write(dst, src)
    elif src.device is dst.device:
        if dst.nbytes:
            dst.device.copy(dst.ptr, src.ptr, dst.nbytes)
    else:
        write(dst, src.numpy())


def may_share(a, b):
    """Whether two storages may overlap (kernels must not write what they read)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.may_share_memory(a, b)
    if isinstance(a, DeviceArray) and isinstance(b, DeviceArray) and a.device is b.device:
        return a.ptr < b.ptr + b.nbytes and b.ptr < a.ptr + a.nbytes
    return False


def is_basic(key):
    """Whether ``key`` is basic indexing (integers, slices, Ellipsis, None): no index arrays."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, (int, np.integer, slice)) or k is Ellipsis or k is None for k in parts)


def basic_view(data, key):
    """Storage sharing ``data``'s memory for a basic index ``key`` (``is_basic``) when the result
    is a contiguous array of rank >= 1 (MXNet's view rule), else None (the caller copies)."""
    if isinstance(data, np.ndarray):
        out = data[key]
        if np.ndim(out) > 0 and out.flags.c_contiguous and np.shares_memory(out, data):
            return out
        return None
    view = _device_view(data, key)
    return view if view is not None and view.shape else None


def _device_view(data, key):
    """The contiguous part of a device array a basic ``key`` selects (rank 0 included), or None.
    Numpy indexes a probe with the device array's shape and strides over a single element, so
    it computes the offset and contiguity without touching any memory."""
    strides, step = [], data.dtype.itemsize
    for d in reversed(data.shape):
        strides.insert(0, step)
        step *= max(d, 1)
    probe = np.lib.stride_tricks.as_strided(np.zeros(1, dtype=data.dtype), data.shape, strides)
    parts = key if isinstance(key, tuple) else (key,)
    sub = probe[parts if any(k is Ellipsis for k in parts) else parts + (Ellipsis,)]  # 0-d: a view, not a scalar
    if sub.size == 0 or not sub.flags.c_contiguous:
        return None
    offset = sub.__array_interface__["data"][0] - probe.__array_interface__["data"][0]
    return data.view(offset, sub.shape)


def read_index(data, key):
    """``data[key]`` as numpy (a device array copies back only the contiguous part a basic key
    selects, else everything)."""
    if isinstance(data, np.ndarray):
        return data[key]
    view = _device_view(data, key) if is_basic(key) else None
    return view.numpy() if view is not None else data.numpy()[key]


def setitem(data, key, value):
    """``data[key] = value`` (on a device: contiguous basic selections are written directly,
    anything else through a host copy of the whole array)."""
    if isinstance(data, np.ndarray):
        data[key] = value
        return
    if is_basic(key):  # x[:] = v, x[1:3] = v: write the contiguous part without reading it
        view = data if key is Ellipsis or key == slice(None) or key == () else basic_view(data, key)
        if view is not None:
            write(view, value)
            return
    staged = data.numpy()
    staged[key] = value
    write(data, staged)

