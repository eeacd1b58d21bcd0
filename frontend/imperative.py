"""Prepare and run one registry operator on arrays: the imperative path.

``prepare`` does everything that can fail or that depends on the caller's
thread (attribute checks, shape and type inference, the training flag,
compilation) and returns a ``Call`` whose ``run`` only binds arrays and
calls native code, so the engine can run it later on a worker.

Most operators get a shape-generic program (``compiler/generic.py``): one per
operator, attributes, dtypes, rank and shape class, the sizes passed at run
time. The others (GEMM, convolution, sorting, random sampling, composites, and
calls in training mode) get one program per exact input shapes.

With a ``device`` (arrays on a GPU context) the same kernels run as CUDA programs
(``runtime.cuda_program.CudaProgram``) on ``DeviceArray``s; programs are cached per
device.
"""
from __future__ import annotations

import threading

import numpy as np

from . import autograd
from .base import MXNetError
from .compiler import generic
from .compiler.graph import Entry, Node
from .compiler.ops import registry
from .compiler.passes.training import op_training_sensitive, training_op
from .compiler.pipeline import compile_program
from .runtime.cuda_program import CudaProgram, DeviceArray
from .runtime.program import LoadedProgram

ATTR_MEMO_LIMIT = 8192
_lock = threading.Lock()
_attrs = {}  # (op name, raw attributes) -> _OpCall
_static = {}  # (op, attributes, input specs, all_outputs, is_train, device) -> Call
_generic = {}  # (generic plan key, device) -> (LoadedProgram or CudaProgram, lock)
_device_dims = {}  # (device, sizes) -> the dims array of a generic CUDA program, on that device


_names = {}


def dtype_name(dtype):
    """``dtype.name``, memoised: numpy builds that string on every access."""
    name = _names.get(dtype)
    if name is None:
        name = _names[dtype] = np.dtype(dtype).name
    return name


class _OpCall:
    """An operator with validated, formatted attributes (shared by calls with equal attributes)."""

    __slots__ = ("op", "attrs", "params", "sensitive", "inputs")

    def __init__(self, op, attrs):
        self.op = op
        self.attrs = op.format_attrs(attrs, op.hint)
        self.params = op.parse_attrs(self.attrs, op.hint)
        self.sensitive = op_training_sensitive(op, self.params)
        self.inputs = op.input_names(self.params)


def _op_call(opname, attrs):
    try:
        key = (opname, tuple(sorted(attrs.items())))
        hit = _attrs.get(key)
    except TypeError:  # an unhashable attribute value (a list): no memo
        key, hit = None, None
    if hit is None:
        hit = _OpCall(registry.get(opname), attrs)
        if key is not None:
            if len(_attrs) >= ATTR_MEMO_LIMIT:  # scalars can take many values
                _attrs.clear()
            _attrs[key] = hit
    return hit


class Call:
    """A compiled operator call: output shapes and dtypes, and ``run(inputs, outputs, rng_key)``.

    ``op`` is the operator applied (a training call of BatchNorm applies ``_batch_norm_train``,
    which is what autograd must record); ``writes`` lists the inputs ``run`` also updates in
    place (BatchNorm's moving statistics in training), which the engine must treat as written.
    """

    __slots__ = ("op", "attrs", "out_shapes", "out_dtypes", "run", "needs_key", "writes")

    def __init__(self, op, attrs, out_shapes, out_dtypes, run, needs_key, writes=()):
        self.op = op
        self.attrs = attrs
        self.out_shapes = [tuple(s) for s in out_shapes]
        self.out_dtypes = [np.dtype(t) for t in out_dtypes]
        self.run = run
        self.needs_key = needs_key
        self.writes = tuple(writes)


def prepare(opname, attrs, in_shapes, in_dtypes, all_outputs=False, device=None):
    """A ``Call`` for ``opname`` on inputs of these shapes and dtype names; raises on bad input.
    ``all_outputs`` also computes hidden outputs (what autograd keeps for backward);
    ``device``: the GPU device the arrays live on (None: CPU numpy arrays)."""
    oc = _op_call(opname, attrs)
    if len(in_shapes) != len(oc.inputs):
        raise MXNetError("%s takes %d inputs (%s) with these attributes, got %d"
                         % (oc.op.name, len(oc.inputs), ", ".join(oc.inputs), len(in_shapes)))
    is_train = oc.sensitive and autograd.is_training()
    if not is_train:
        p = generic.plan(oc.op.name, oc.attrs, in_shapes, in_dtypes, all_outputs)
        if p is not None:
            return _generic_call(oc, p, device)
    return _static_call(oc, tuple(zip(in_shapes, in_dtypes)), all_outputs, is_train, device)


def _generic_call(oc, p, device):
    hit = _generic.get((p.key, device))
    if hit is None:
        prog = LoadedProgram(generic.build(p)) if device is None else CudaProgram(generic.build_cuda(p), device)
        with _lock:
            hit = _generic.setdefault((p.key, device), (prog, threading.Lock()))
    prog, lock = hit
    host_dims = p.dims
    if device is None:
        def run(arrays, outs, rng_key=None):
            with lock:  # one binding table per program
                prog.call("forward", list(arrays) + list(outs) + [host_dims])
    else:
        dims = _dims_on(device, host_dims)

        def run(arrays, outs, rng_key=None):
            with lock:
                prog.call("forward", list(arrays) + list(outs) + [dims], host_dims)
    return Call(oc.op, oc.attrs, p.out_shapes, p.out_dtypes, run, False)


def _dims_on(device, host_dims):
    """The run-time sizes of a generic call as a device array (one per device and sizes)."""
    key = (device, host_dims.tobytes())
    dims = _device_dims.get(key)
    if dims is None:
        dims = DeviceArray.from_numpy(device, host_dims)
        with _lock:
            if len(_device_dims) >= ATTR_MEMO_LIMIT:
                _device_dims.clear()
            dims = _device_dims.setdefault(key, dims)
    return dims


def _static_call(oc, in_specs, all_outputs, is_train, device):
    key = (oc.op.name, tuple(sorted(oc.attrs.items())), in_specs, all_outputs, is_train, device)
    hit = _static.get(key)
    if hit is not None:
        return hit
    op = oc.op
    names = ["in%d" % i for i in range(len(in_specs))]
    variables = [Node(None, n) for n in names]
    node = Node(op, op.hint, oc.attrs, [Entry(v) for v in variables], params=oc.params)
    count = node.num_outputs if all_outputs else node.num_visible_outputs
    spec, info = compile_program([Entry(node, i) for i in range(count)],
                                 {n: s for n, (s, _) in zip(names, in_specs)},
                                 {n: t for n, (_, t) in zip(names, in_specs)},
                                 name="imperative_" + op.name, is_train=is_train,
                                 backend="llvm" if device is None else "cuda")
    prog = LoadedProgram(spec) if device is None else CudaProgram(spec, device)
    inputs = [(k, n) for k, n in enumerate(names) if prog.has_slot(n)]  # shape-only inputs have no slot
    outputs = info["outputs"]
    key_slot = info.get("rng_key")
    # new values of updated inputs land in buffers of their own, copied into the input after
    # the run (kernels may read the old value after another kernel produced the new one)
    updates = [(int(n[2:]), slot, _buffer(*in_specs[int(n[2:])], device))
               for n, slot in info.get("aux_updates", {}).items()]
    lock = threading.Lock()
    if device is None:
        def bind_key(rng_key):
            prog.bind(key_slot, rng_key)

        def write_back(array, buf):
            array[...] = buf
    else:
        def bind_key(rng_key):
            prog.bind(key_slot, DeviceArray.from_numpy(device, rng_key))

        def write_back(array, buf):
            device.copy(array.ptr, buf.ptr, buf.nbytes)

    def run(arrays, outs, rng_key=None):
        with lock:  # one binding table per program
            for k, n in inputs:
                prog.bind(n, arrays[k])
            for n, o in zip(outputs, outs):
                prog.bind(n, o)
            for _, slot, buf in updates:
                prog.bind(slot, buf)
            if key_slot:
                bind_key(rng_key)
            prog.run("forward")
            for k, _, buf in updates:
                write_back(arrays[k], buf)
    applied = training_op(op, oc.params) if is_train else op
    call = Call(applied, oc.attrs, info["out_shapes"], info["out_dtypes"], run, bool(key_slot),
                [k for k, _, _ in updates])
    with _lock:
        return _static.setdefault(key, call)


def _buffer(shape, dtype, device):
    return np.empty(shape, dtype) if device is None else DeviceArray.empty(device, shape, dtype)


def invoke_numpy(opname, arrays, attrs, all_outputs=False):
    """Run ``opname`` on numpy arrays now, in this thread; returns new numpy arrays."""
    from . import random
    arrays = [np.require(a, requirements="C") for a in arrays]  # keeps 0-d arrays 0-d
    call = prepare(opname, attrs, [a.shape for a in arrays], [dtype_name(a.dtype) for a in arrays], all_outputs)
    outs = [np.empty(s, dtype=t) for s, t in zip(call.out_shapes, call.out_dtypes)]
    call.run(arrays, outs, random.next_key() if call.needs_key else None)
    return outs
