"""Executor: a compiled symbol bound to argument, gradient and auxiliary arrays.

Binding compiles the graph (forward and, where gradients are requested,
backward) into one native program; ``forward`` and ``backward`` are each a
single call into it. Arrays are checked against the compiled shapes before
any native code runs. On a GPU context the same program is compiled to CUDA and
every bound array must live on that GPU.
"""
from __future__ import annotations

import logging

import numpy as np

from .base import MXNetError
from .compiler.graph import Graph
from .compiler.passes.training import training_sensitive
from .compiler.pipeline import compile_program
from .compiler.report import CompileReport
from .ndarray import NDArray, storage, zeros
from .runtime.cuda_program import CudaProgram
from .runtime.nvrtc import NVRTCCompileError
from .runtime.program import LoadedProgram
from . import engine as _engine, random

log = logging.getLogger(__name__)

GRAD_REQS = ("write", "add", "null", "inplace")


def _as_list(values, names, what, allow_missing=False):
    if values is None:
        return [None] * len(names)
    if isinstance(values, dict):
        unknown = [k for k in values if k not in names]
        if unknown and what != "args_grad":
            raise MXNetError("%s: %s are not %s of the symbol %s" % (what, unknown, what, names))
        out = [values.get(n) for n in names]
        if not allow_missing:
            missing = [n for n, v in zip(names, out) if v is None]
            if missing:
                raise MXNetError("%s: no array given for %s" % (what, missing))
        return out
    values = list(values)
    if len(values) != len(names) and not (allow_missing and len(values) <= len(names)):
        raise MXNetError("%s: expected %d arrays (%s), got %d" % (what, len(names), names, len(values)))
    return values + [None] * (len(names) - len(values))


def _memory(ctx):
    """Contexts whose arrays share one memory (every CPU context is host memory)."""
    return ctx if ctx.device_type == "gpu" else "cpu"


def _grad_reqs(grad_req, names):
    if isinstance(grad_req, str):
        reqs = {n: grad_req for n in names}
    elif isinstance(grad_req, dict):
        reqs = {n: grad_req.get(n, "null") for n in names}
    else:
        reqs = dict(zip(names, grad_req))
    for n, r in reqs.items():
        if r not in GRAD_REQS:
            raise MXNetError("grad_req %r for %r is not one of %s" % (r, n, GRAD_REQS))
    return {n: ("write" if r == "inplace" else r) for n, r in reqs.items()}


class Executor:
    def __init__(self, symbol, ctx, args, args_grad=None, grad_req="write", aux_states=None, remat=False):
        self._symbol = symbol
        self._remat = remat
        self._ctx = ctx
        self.arg_names = symbol.list_arguments()
        self.aux_names = symbol.list_auxiliary_states()
        self.output_names = symbol.list_outputs()
        self.arg_arrays = _as_list(args, self.arg_names, "args")
        for n, a in zip(self.arg_names, self.arg_arrays):
            if not isinstance(a, NDArray):
                raise MXNetError("bind: argument %r needs an NDArray, got %s" % (n, type(a).__name__))
        self.grad_arrays = _as_list(args_grad, self.arg_names, "args_grad", allow_missing=True)
        reqs = _grad_reqs(grad_req, self.arg_names)
        self._grad_req = {n: (r if g is not None else "null")
                          for (n, r), g in zip(reqs.items(), self.grad_arrays)}
        for n, a, g in zip(self.arg_names, self.arg_arrays, self.grad_arrays):
            if g is not None and (g.shape != a.shape or g.dtype != a.dtype):
                raise MXNetError("bind: gradient array for %r has shape %s %s, argument has %s %s"
                                 % (n, g.shape, np.dtype(g.dtype).name, a.shape, np.dtype(a.dtype).name))
        self.aux_arrays = _as_list(aux_states, self.aux_names, "aux_states")
        self._device = storage.device_of(ctx)
        for kind, names, arrays in (("argument", self.arg_names, self.arg_arrays),
                                    ("gradient of", self.arg_names, self.grad_arrays),
                                    ("auxiliary state", self.aux_names, self.aux_arrays)):
            for n, a in zip(names, arrays):
                if a is not None and _memory(a.context) != _memory(ctx):
                    raise MXNetError("bind: %s %r is in %s while binding with ctx=%s; all arrays must be on the "
                                     "executor's device (copy it with as_in_context)" % (kind, n, a.context, ctx))
        # gluon records hybridized calls in predict mode too (autograd.record(train_mode=False)):
        # then the inference variant carries the gradients and backward may follow it
        self._infer_grads = False
        self._compile()

    def _compile(self):
        """Compile the program bind needs now; a graph with training-sensitive nodes (Dropout,
        BatchNorm) gets its other variant (training with gradients, or inference) on first use."""
        self._sensitive = training_sensitive(Graph(self._symbol._outputs))
        self._programs = {}  # is_train -> (LoadedProgram, info)
        self._rng_key = storage.zeros((2,), np.int64, self._ctx)
        self._aux_new = {}  # aux name -> buffer the training program writes its new value into
        self._last_train = None
        wants_grads = any(r != "null" for r in self._grad_req.values())
        self._program, self._info = self._variant(wants_grads)
        info = self._info
        self.outputs = [NDArray(storage.zeros(s, t, self._ctx), self._ctx)
                        for s, t in zip(info["out_shapes"], info["out_dtypes"])]
        self._head_grads = [storage.place(np.ones(s, dtype=t), self._ctx)
                            for s, t in zip(info["out_shapes"], info["out_dtypes"])]

    def _variant(self, is_train):
        """(program, info) for training or inference; one program serves both when the graph has
        no training-sensitive node. The inference variant of such a graph has no backward."""
        is_train = bool(is_train) and self._sensitive
        hit = self._programs.get(is_train)
        if hit is None:
            names = self.arg_names + self.aux_names
            arrays = self.arg_arrays + self.aux_arrays
            shapes = {n: a.shape for n, a in zip(names, arrays)}
            dtypes = {n: np.dtype(a.dtype).name for n, a in zip(names, arrays)}
            grad_req = self._grad_req if (is_train or not self._sensitive or self._infer_grads) else {}

            def build(disabled=()):
                return compile_program(self._symbol._outputs, shapes, dtypes, grad_req, name="executor",
                                       remat=self._remat, is_train=is_train, disabled_passes=disabled,
                                       backend="llvm" if self._device is None else "cuda")
            hit = self._programs[is_train] = self._load(build)
        return hit

    def _load(self, build):
        """(program, info) from ``build(disabled_passes)``: LLVM on the CPU; CUDA on a GPU, compiled
        again without fusion when NVRTC rejects the fused kernels (MXNet's lesson: a fused kernel
        that does not compile must not stop the model)."""
        spec, info = build()
        if self._device is None:
            return LoadedProgram(spec), info
        try:
            return CudaProgram(spec, self._device), info
        except NVRTCCompileError as err:
            log.warning("executor: NVRTC rejected the fused CUDA kernels, compiling without fusion: %s",
                        str(err).splitlines()[0])
            spec, info = build(("fuse",))
            return CudaProgram(spec, self._device), info

    def _aux_buffer(self, name):
        """Where the training program writes ``name``'s new value (copied back after forward)."""
        buf = self._aux_new.get(name)
        if buf is None:
            a = self.aux_arrays[self.aux_names.index(name)]._data
            buf = self._aux_new[name] = storage.like(a)
        return buf

    def _bind_all(self):
        prog = self._program
        for name, slot in self._info.get("aux_updates", {}).items():
            prog.bind(slot, self._aux_buffer(name))
        if self._info.get("rng_key"):
            prog.bind(self._info["rng_key"], self._rng_key)
        for n, a in zip(self.arg_names + self.aux_names, self.arg_arrays + self.aux_arrays):
            if prog.has_slot(n):
                prog.bind(n, a._data)
        for slot, out in zip(self._info["outputs"], self.outputs):
            prog.bind(slot, out._data)
        for slot, g in zip(self._info["head_grads"], self._head_grads):
            if prog.has_slot(slot):
                prog.bind(slot, g)
        for name, slot in self._info["grads"].items():
            garr = self.grad_arrays[self.arg_names.index(name)]._data
            prog.bind(slot, garr)
            if name in self._info["grad_in"]:
                prog.bind(self._info["grad_in"][name], garr)

    # ---- dictionaries ----
    @property
    def arg_dict(self):
        return dict(zip(self.arg_names, self.arg_arrays))

    @property
    def grad_dict(self):
        return {n: g for n, g in zip(self.arg_names, self.grad_arrays) if g is not None}

    @property
    def aux_dict(self):
        return dict(zip(self.aux_names, self.aux_arrays))

    @property
    def output_dict(self):
        return dict(zip(self.output_names, self.outputs))

    # ---- running ----
    def _sync(self):
        """Executors run synchronously: wait until queued imperative work on every bound
        array is done (readers too, since forward and backward write outputs and gradients)."""
        arrays = self.arg_arrays + self.aux_arrays + self.outputs + [g for g in self.grad_arrays if g is not None]
        _engine.get().wait(writes=[a._var for a in arrays])

    def forward(self, is_train=False, **kwargs):
        self._sync()
        for k, v in kwargs.items():
            if k not in self.arg_names:
                raise MXNetError("forward: unknown argument %r (arguments: %s)" % (k, self.arg_names))
            dst = self.arg_arrays[self.arg_names.index(k)]
            src = v if isinstance(v, NDArray) else np.asarray(v)
            if tuple(src.shape) != dst.shape:
                raise MXNetError("forward: argument %r has shape %s, the executor was bound with %s"
                                 % (k, tuple(src.shape), dst.shape))
            if isinstance(src, NDArray) and src.dtype == dst.dtype and src.context == dst.context:
                _engine.get().wait(reads=[src._var])
                if src._data is not dst._data:
                    storage.copy(dst._data, src._data)  # same device: no trip through the host
            else:
                storage.write(dst._data, src._read() if isinstance(src, NDArray) else src)
        self._program, self._info = self._variant(is_train)
        self._last_train = bool(is_train)
        if self._info.get("rng_key"):
            storage.write(self._rng_key, random.next_key())  # fresh numbers for every forward
        self._bind_all()
        self._program.run("forward")
        for name in self._info.get("aux_updates", {}):  # moving statistics, updated in place
            storage.copy(self.aux_arrays[self.aux_names.index(name)]._data, self._aux_new[name])
        return self.outputs

    def backward(self, out_grads=None, is_train=True):
        if self._sensitive:
            if self._last_train is False and not self._infer_grads:
                raise MXNetError("backward: the last forward ran in inference mode (is_train=False), but this "
                                 "graph has training-mode nodes (Dropout, BatchNorm); call forward(is_train=True) first")
            self._program, self._info = self._variant(self._last_train is not False)
        if not self._info["grads"]:
            return
        self._sync()
        if out_grads is not None:
            if isinstance(out_grads, NDArray):
                out_grads = [out_grads]
            if len(out_grads) != len(self.outputs):
                raise MXNetError("backward: %d head gradients given for %d outputs" % (len(out_grads), len(self.outputs)))
            for k, (g, want) in enumerate(zip(out_grads, self._head_grads)):
                src = g._read() if isinstance(g, NDArray) else np.asarray(g)
                if src.size != want.size:
                    raise MXNetError("backward: head gradient %d has shape %s, output has %s"
                                     % (k, tuple(src.shape), want.shape))
                storage.write(want, src.reshape(want.shape))
        self._bind_all()
        self._program.run("backward")

    # ---- helpers ----
    def copy_params_from(self, arg_params, aux_params=None, allow_extra_params=False):
        for name, array in (arg_params or {}).items():
            if name in self.arg_names:
                array.copyto(self.arg_arrays[self.arg_names.index(name)])
            elif not allow_extra_params:
                raise ValueError("Find name \"%s\" that is not in the arguments" % name)
        for name, array in (aux_params or {}).items():
            if name in self.aux_names:
                array.copyto(self.aux_arrays[self.aux_names.index(name)])
            elif not allow_extra_params:
                raise ValueError("Find name %s that is not in the auxiliary states" % name)

    def reshape(self, partial_shaping=False, allow_up_sizing=False, **kwargs):
        arg_shapes, _, aux_shapes = self._symbol.infer_shape(**kwargs)
        if arg_shapes is None:
            raise MXNetError("reshape: cannot infer every shape from %s" % kwargs)

        def resized(old, shape):
            if old is None:
                return None
            if old.shape == tuple(shape):
                return old
            if not partial_shaping and not allow_up_sizing and np.prod(shape) > old.size:
                raise MXNetError("reshape: new shape %s is larger than %s; pass allow_up_sizing=True"
                                 % (tuple(shape), old.shape))
            return zeros(shape, self._ctx, dtype=old.dtype)
        args = [resized(a, s) for a, s in zip(self.arg_arrays, arg_shapes)]
        grads = [resized(g, s) for g, s in zip(self.grad_arrays, arg_shapes)]
        aux = [resized(a, s) for a, s in zip(self.aux_arrays, aux_shapes)]
        return Executor(self._symbol, self._ctx, args, grads, self._grad_req, aux, remat=self._remat)

    def compile_report(self):
        """Passes, kernels and memory plan of this executor's program (a CompileReport)."""
        report = CompileReport.from_dict(self._program.spec.report)
        report.jit = dict(self._program.jit_stats)
        return report

    def debug_str(self):
        return self._symbol.debug_str()

    @classmethod
    def simple_bind(cls, symbol, ctx, grad_req="write", type_dict=None, shapes=None, remat=False,
                    shared_arg_names=None, shared_exec=None, shared_buffer=None):
        """MXNet's sharing rules: arguments named in ``shared_arg_names`` (and their gradients)
        and every auxiliary state use ``shared_exec``'s arrays when shapes and dtypes agree;
        other arguments reuse a ``shared_buffer`` entry of the same shape and dtype, and new
        arrays are put into ``shared_buffer`` (so bucketed executors share data buffers)."""
        arg_shapes, _, aux_shapes = symbol.infer_shape(**(shapes or {}))
        if arg_shapes is None:
            partial = symbol.infer_shape_partial(**(shapes or {}))[0]
            missing = [n for n, s in zip(symbol.list_arguments(), partial) if not s]
            raise MXNetError("simple_bind: cannot infer the shapes of %s from %s" % (missing, shapes))
        arg_types, _, aux_types = symbol.infer_type(**(type_dict or {}))
        if arg_types is None:
            arg_types = [np.float32] * len(arg_shapes)
            aux_types = [np.float32] * len(aux_shapes)
        names = symbol.list_arguments()
        shared_names = set(shared_arg_names or ())
        reqs = _grad_reqs(grad_req, names)

        def reuse(table, name, shape, dtype):
            arr = table.get(name) if table is not None else None
            if arr is not None and arr.shape == tuple(shape) and arr.dtype == np.dtype(dtype):
                return arr
            return None

        def new(name, shape, dtype):
            if name in shared_names and shared_exec is not None:
                hit = reuse(shared_exec.arg_dict, name, shape, dtype)
                if hit is not None:
                    return hit
            elif shared_buffer is not None:
                hit = reuse(shared_buffer, name, shape, dtype)
                if hit is not None:
                    return hit
                shared_buffer[name] = arr = zeros(shape, ctx, dtype=dtype)
                return arr
            return zeros(shape, ctx, dtype=dtype)

        def grad(name, shape, dtype):
            if reqs[name] == "null":
                return None
            if name in shared_names and shared_exec is not None:
                hit = reuse(shared_exec.grad_dict, name, shape, dtype)
                if hit is not None:
                    return hit
            return zeros(shape, ctx, dtype=dtype)
        args = [new(n, s, t) for n, s, t in zip(names, arg_shapes, arg_types)]
        grads = [grad(n, s, t) for n, s, t in zip(names, arg_shapes, arg_types)]
        def aux_state(name, shape, dtype):
            hit = reuse(shared_exec.aux_dict, name, shape, dtype) if shared_exec is not None else None
            return hit if hit is not None else zeros(shape, ctx, dtype=dtype)
        aux = [aux_state(n, s, t) for n, s, t in zip(symbol.list_auxiliary_states(), aux_shapes, aux_types)]
        return cls(symbol, ctx, args, grads, reqs, aux, remat=remat)
