"""NDArray: CPU or GPU storage with MXNet's printing, copying, indexing and operators.

Operators run through the compiler (``imperative.prepare``), never numpy
arithmetic, so NDArray and Symbol results agree. They are queued on the
dependency engine (``engine.py``): ``_var`` orders the operations on one
storage (views share their base's), and Python reads of ``_data`` wait for its
writers first. ``_data`` is a numpy buffer on CPU contexts and a runtime
``DeviceArray`` on GPU contexts (``storage.py``); operators on GPU arrays run CUDA
programs. ``_ag`` says where autograd finds the array: None, a variable
(``autograd.Leaf``) or a recorded operation's output ``(tape node, index)``.
"""
from __future__ import annotations

import numpy as np

from .. import autograd
from .. import engine as _engine
from ..base import OPERATOR_METHODS, MXNetError, numeric_types
from ..context import Context, current_context
from ..imperative import dtype_name, prepare
from . import storage


class NDArray:
    __array_priority__ = 1000.0

    def __init__(self, data, ctx=None, var=None):
        """``data``: storage for ``ctx``, or a numpy array (copied to the device on a GPU context)."""
        self._ctx = ctx or current_context()
        if self._ctx.device_type == "gpu" and isinstance(data, np.ndarray):
            data = storage.place(data, self._ctx)
        self._data = data
        self._var = var if var is not None else _engine.Var()
        self._ag = None

    def _read(self):
        """The elements as numpy (the CPU buffer itself, or a copy from the device), once
        every queued writer has finished."""
        _engine.get().wait(reads=[self._var])
        return storage.host(self._data)

    def _wait_write(self):
        """Wait until Python may overwrite the buffer (queued readers and writers done)."""
        _engine.get().wait(writes=[self._var])

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
        data = self._read()
        return data if storage.on_device(self._data) else data.copy()

    def __array__(self, dtype=None, copy=None):
        data = self._read()
        return data.astype(dtype) if dtype is not None else data

    def asscalar(self):
        if self.size != 1:
            raise ValueError("The current array is not a scalar")
        return self._read().reshape(-1)[0]

    def astype(self, dtype, copy=True):
        dt = np.dtype(dtype)
        if not copy and dt == self._data.dtype:
            return self
        return _op("Cast", [self], {"dtype": dt.name})

    def copy(self):
        return _op("_copy", [self], {})

    def copyto(self, other):
        """Copy into an array (casting to its dtype) or onto a context; crosses contexts. While
        recording, a copy onto another device is differentiable (the gradient is copied back)."""
        if isinstance(other, Context):
            if other != self._ctx and autograd.is_recording() and self._ag is not None \
                    and (other.device_type == "gpu" or storage.on_device(self._data)):
                return _DeviceCopy(other)(self)
            other = NDArray(storage.empty(self.shape, self._data.dtype, other), other)
        if isinstance(other, NDArray):
            if other is self:
                return other
            if other.shape != self.shape:
                raise MXNetError("copyto: shape mismatch %s vs %s" % (self.shape, other.shape))
            if other._ctx != self._ctx and (storage.on_device(self._data) or storage.on_device(other._data)):
                _transfer(self if other._data.dtype == self._data.dtype else self.astype(other._data.dtype), other)
            elif other._data.dtype == self._data.dtype:
                invoke("_copy", [self], {}, out=other, cross_context=True)
            else:
                invoke("Cast", [self], {"dtype": other._data.dtype.name}, out=other, cross_context=True)
            return other
        raise TypeError("copyto does not support type %s" % type(other))

    def as_in_context(self, ctx):
        return self if ctx == self._ctx else self.copyto(ctx)

    def wait_to_read(self):
        """Until every queued writer is done (on a GPU: until its kernels have finished)."""
        _engine.get().wait(reads=[self._var])
        if storage.on_device(self._data):
            self._data.device.synchronize()

    # ---- DLPack ----
    def to_dlpack_for_read(self):
        from .dlpack import export
        return export(self, for_write=False)

    def to_dlpack_for_write(self):
        from .dlpack import export
        return export(self, for_write=True)

    def __dlpack__(self, stream=None, **kwargs):
        return self.to_dlpack_for_write()

    def __dlpack_device__(self):
        return (2, self._ctx.device_id) if self._ctx.device_type == "gpu" else (1, 0)  # kDLCUDA / kDLCPU

    # ---- autograd ----
    def attach_grad(self, grad_req="write", stype=None):
        """Make this array a variable: gradients of recorded heads land in ``grad``."""
        if stype not in (None, "default"):
            raise NotImplementedError("attach_grad(stype=%r): sparse gradients" % (stype,))
        grad = NDArray(storage.zeros(self.shape, self._data.dtype, self._ctx), self._ctx)
        self._ag = autograd.Leaf(grad, grad_req)

    @property
    def grad(self):
        return self._ag.grad if isinstance(self._ag, autograd.Leaf) else None

    def detach(self):
        """The same storage, cut from the recorded graph."""
        return NDArray(self._data, self._ctx, self._var)

    def backward(self, out_grad=None, retain_graph=False, train_mode=True):
        autograd.backward([self], [out_grad], retain_graph=retain_graph, train_mode=train_mode)

    def reshape(self, *shape, **kwargs):
        if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
            shape = tuple(shape[0])
        if not shape:
            shape = kwargs.pop("shape")
        return _op("Reshape", [self], dict(kwargs, shape=tuple(shape)))

    def tolist(self):
        return self._read().tolist()

    # ---- indexing ----
    def __getitem__(self, key):
        """MXNet 1.x: basic indexing that stays contiguous is a view (writes reach the
        parent); anything else copies; a scalar result has shape (1,). While
        recording, indexing is the ``slice``/``take`` operators, so it is differentiable."""
        key = _index_key(key)
        if autograd.is_recording():
            return _recorded_index(self, key)
        if storage.is_basic(key):
            view = storage.basic_view(self._data, key)
            if view is not None:
                return NDArray(view, self._ctx, self._var)
        _engine.get().wait(reads=[self._var])
        out = storage.read_index(self._data, key)
        if np.ndim(out) == 0:
            return NDArray(np.array([out], dtype=self._data.dtype), self._ctx)
        return NDArray(np.ascontiguousarray(out), self._ctx)

    def __setitem__(self, key, value):
        if isinstance(value, NDArray):
            value = value._read()
        self._wait_write()
        storage.setitem(self._data, _index_key(key), value)

    def __len__(self):
        return self.shape[0]

    def __iter__(self):
        for i in range(self.shape[0]):
            yield self[i]

    def __bool__(self):
        if self.size != 1:
            raise ValueError("The truth value of an NDArray with multiple elements is ambiguous.")
        return bool(self._read().reshape(-1)[0])

    # ---- printing ----
    def __repr__(self):
        shape = "x".join(str(d) for d in self.shape)
        return "\n%s\n<NDArray %s @%s>" % (np.array2string(self._read()), shape, self._ctx)

    # ---- operators ----
    def _binary(self, other, bop, sop, reverse_sop=None, out=None):
        if isinstance(other, NDArray):
            return _op(bop, [other, self] if reverse_sop == "swap" else [self, other], {}, out=out)
        if isinstance(other, numeric_types):
            return _op(sop, [self], {"scalar": float(other)}, out=out)
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

    def _inplace(self, other, bop, sop):
        """``x op= y`` writes x's own buffer; y must broadcast to x's shape."""
        if isinstance(other, NDArray) and other.shape != self.shape:
            other = _op("broadcast_to", [other], {"shape": self.shape})
        return self._binary(other, bop, sop, out=self)

    def __iadd__(self, o):
        return self._inplace(o, "broadcast_add", "_plus_scalar")

    def __isub__(self, o):
        return self._inplace(o, "broadcast_sub", "_minus_scalar")

    def __imul__(self, o):
        return self._inplace(o, "broadcast_mul", "_mul_scalar")

    def __itruediv__(self, o):
        return self._inplace(o, "broadcast_div", "_div_scalar")

    def __imod__(self, o):
        return self._inplace(o, "broadcast_mod", "_mod_scalar")

    def __ipow__(self, o):
        return self._inplace(o, "broadcast_power", "_power_scalar")

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
        return key._read().astype(np.int64)
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


for _name in OPERATOR_METHODS:
    setattr(NDArray, _name, _forward(_name))


def _op(opname, inputs, attrs, out=None):
    outs = invoke(opname, inputs, attrs, out=out)
    return outs[0] if len(outs) == 1 else outs


def _context_of(opname, inputs, out):
    """MXNet refuses one operation over arrays on different devices."""
    ctx = inputs[0]._ctx if inputs else (out[0]._ctx if out else current_context())
    for x in list(inputs) + list(out or ()):
        if x._ctx != ctx:
            raise MXNetError("operator %s: all arrays must be on one context, got %s and %s "
                             "(use as_in_context or copyto to move one)" % (opname, ctx, x._ctx))
    return ctx


def invoke(opname, inputs, attrs, out=None, cross_context=False):
    """Queue a registry operator on NDArrays; returns a list of (visible) NDArrays.

    Attributes, shapes and dtypes are checked, the kernel compiled, the training
    flag and random key read here, in the caller's thread; only running it is
    asynchronous.
    """
    for x in inputs:
        if not isinstance(x, NDArray):
            raise TypeError("operator %s: inputs must be NDArrays, got %s" % (opname, type(x).__name__))
    outs = None if out is None else list(out) if isinstance(out, (list, tuple)) else [out]
    ctx = _context_of(opname, inputs, None if cross_context else outs)
    recording = autograd.is_recording()
    in_data = [x._data for x in inputs]
    device = storage.device_of(ctx) if ctx.device_type == "gpu" else None
    call = prepare(opname, attrs, [a.shape for a in in_data], [dtype_name(a.dtype) for a in in_data], recording,
                   device)
    n_visible = call.op.num_visible_outputs(call.op.parse_attrs(call.attrs, call.op.hint)) \
        if recording else len(call.out_shapes)
    overlap = False
    if outs is None:
        outs = [NDArray(storage.empty(s, t, ctx), ctx) for s, t in zip(call.out_shapes[:n_visible], call.out_dtypes)]
    else:
        _check_out(opname, outs, call, n_visible, recording)
        # kernels assume outputs do not overlap inputs (x += y, transpose(x, out=x))
        overlap = any(storage.may_share(o._data, a) for o in outs for a in in_data)
    hidden = [NDArray(storage.empty(s, t, ctx), ctx)
              for s, t in zip(call.out_shapes[n_visible:], call.out_dtypes[n_visible:])]
    everything = outs + hidden
    out_data = [o._data for o in everything]
    rng_key = _next_key() if call.needs_key else None
    run = call.run
    if overlap:
        def job():
            tmp = [storage.like(o) for o in out_data]
            run(in_data, tmp, rng_key)
            for o, t in zip(out_data, tmp):
                storage.copy(o, t)
    else:
        def job():
            run(in_data, out_data, rng_key)
    eng = _engine.get()
    writes = [o._var for o in everything] + [inputs[k]._var for k in call.writes]  # + inputs updated in place
    # a GPU job only queues launches on the device's stream: cheap to run here when the engine is idle
    eng.push(job, [x._var for x in inputs], writes, name=opname,
             inline=device is not None or sum(o.size for o in out_data) <= eng.inline_elements)
    if recording:
        autograd.record_op(call.op, call.attrs, inputs, everything)
    return outs


class _DeviceCopy(autograd.Function):
    """A recorded copy onto another device: the gradient goes back to the source's device."""

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx

    def forward(self, x):
        self.source = x.context
        return x.copyto(self.ctx)

    def backward(self, dy):
        return dy.copyto(self.source)


def _transfer(src, dst):
    """Queue a copy between contexts (equal shapes and dtypes)."""
    if autograd.is_recording() and src._ag is not None:
        raise NotImplementedError("copyto %s -> %s into an existing array while recording: use "
                                  "as_in_context(ctx) or copyto(ctx), which autograd differentiates"
                                  % (src._ctx, dst._ctx))
    src_data, dst_data = src._data, dst._data
    eng = _engine.get()
    eng.push(lambda: storage.copy(dst_data, src_data), [src._var], [dst._var], name="copyto",
             inline=dst.size <= eng.inline_elements)


def _next_key():
    from .. import random  # kiln.random imports the NDArray sampling functions
    return random.next_key()


def _check_out(opname, outs, call, n_visible, recording):
    if len(outs) != n_visible:
        raise MXNetError("operator %s: out= has %d arrays for %d outputs" % (opname, len(outs), n_visible))
    for k, (o, s, t) in enumerate(zip(outs, call.out_shapes, call.out_dtypes)):
        if not isinstance(o, NDArray) or o.shape != s or o._data.dtype != t:
            raise MXNetError("operator %s: out[%d] must be an NDArray of shape %s and dtype %s, got %s"
                             % (opname, k, s, t.name, _describe(o)))
    if recording and any(o._ag is not None for o in outs):
        raise MXNetError("operator %s: assigning to NDArrays that are already in a computational graph "
                         "while recording would corrupt their gradients; write outside autograd.record() "
                         "or into a fresh array" % opname)


def _describe(x):
    if isinstance(x, NDArray):
        return "shape %s dtype %s" % (x.shape, x._data.dtype.name)
    return type(x).__name__


def _recorded_index(x, key):
    """Indexing as operators (recorded): slices and integers -> ``slice`` + ``Reshape``;
    one integer array on the first axis -> ``take``."""
    parts = key if isinstance(key, tuple) else (key,)
    if not storage.is_basic(key):
        if isinstance(key, np.ndarray):
            idx = NDArray(key.astype(np.int64), x._ctx)
            return _op("take", [x, idx], {"axis": 0})
        raise NotImplementedError("indexing with %r while autograd is recording" % (key,))
    if Ellipsis in parts or None in parts:
        raise NotImplementedError("indexing with Ellipsis or None while autograd is recording")
    if len(parts) > x.ndim:
        raise IndexError("too many indices (%d) for an array of %d dimensions" % (len(parts), x.ndim))
    begin, end, step, keep = [], [], [], []
    for axis, k in enumerate(parts):
        if isinstance(k, slice):
            start, stop, stride = k.indices(x.shape[axis])
            begin.append(start)
            end.append(stop if stride > 0 or stop >= 0 else None)
            step.append(stride)
            keep.append(True)
        else:
            i = int(k) + (x.shape[axis] if k < 0 else 0)
            if not 0 <= i < x.shape[axis]:
                raise IndexError("index %d is out of bounds for axis %d with size %d" % (k, axis, x.shape[axis]))
            begin.append(i)
            end.append(i + 1)
            step.append(1)
            keep.append(False)
    out = _op("slice", [x], {"begin": tuple(begin), "end": tuple(end), "step": tuple(step)})
    if all(keep):
        return out
    shape = [d for d, k in zip(out.shape, keep + [True] * (x.ndim - len(keep))) if k]
    return _op("Reshape", [out], {"shape": tuple(shape) or (1,)})
