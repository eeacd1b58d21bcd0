"""Gluon blocks: Block (imperative), HybridBlock (imperative or compiled), SymbolBlock.

A hybridized HybridBlock traces ``hybrid_forward`` once with ``F = kiln.sym``
into one Symbol, then runs it through compiled Executors cached per input
shapes/dtypes, training flag and which gradients are wanted. Inside
``autograd.record()`` the whole call is ONE tape node (an ``autograd.Function``)
whose inputs are the data arrays and the parameter arrays: its backward runs
the compiled backward program, and autograd itself writes or adds the
parameter gradients into the parameters' grad arrays according to their
grad_req, exactly as for imperative operators.
"""
from __future__ import annotations

import copy
import logging
import re
import threading
import warnings
import weakref
from collections import OrderedDict

import numpy as np

from .. import autograd
from ..base import MXNetError
from ..name import NameManager, Prefix
from .parameter import DeferredInitializationError, Parameter, ParameterDict, _indent, shape_is_known
from .utils import HookHandle

log = logging.getLogger(__name__)

_calls = threading.local()  # stack of blocks being called: error messages name the block path


class _BlockScope:
    """Name scope of a Block: children get ``<parent prefix><hint><n>_`` prefixes, ops traced
    inside get the block's prefix (MXNet's _BlockScope)."""

    _current = threading.local()

    def __init__(self, block):
        self._block = block
        self._counter = {}
        self._old_scope = None
        self._name_scope = None

    @staticmethod
    def create(prefix, params, hint):
        current = getattr(_BlockScope._current, "value", None)
        if current is None:
            if prefix is None:
                prefix = NameManager.current().get(None, hint) + "_"
            params = ParameterDict(prefix) if params is None else ParameterDict(params.prefix, params)
            return prefix, params
        if prefix is None:
            count = current._counter.get(hint, 0)
            prefix = "%s%d_" % (hint, count)
            current._counter[hint] = count + 1
        if params is None:
            parent = current._block.params
            params = ParameterDict(parent.prefix + prefix, parent._shared)
        else:
            params = ParameterDict(params.prefix, params)
        return current._block.prefix + prefix, params

    def __enter__(self):
        if self._block._empty_prefix:
            return self
        self._old_scope = getattr(_BlockScope._current, "value", None)
        _BlockScope._current.value = self
        self._name_scope = Prefix(self._block.prefix)
        self._name_scope.__enter__()
        return self

    def __exit__(self, ptype, value, trace):
        if self._block._empty_prefix:
            return
        self._name_scope.__exit__(ptype, value, trace)
        self._name_scope = None
        _BlockScope._current.value = self._old_scope


# ---- nested inputs and outputs ----
def _is_nd(x):
    from ..ndarray import NDArray
    return isinstance(x, NDArray)


def _is_sym(x):
    from ..symbol import Symbol
    return isinstance(x, Symbol)


def _flatten(args, inout_str):
    """Flatten nested lists/tuples of arrays or Symbols; ``fmt`` records the structure."""
    if _is_nd(args):
        return [args], 0
    if _is_sym(args):
        n = len(args.list_outputs())
        return [args], n if n > 1 else 0
    if args is None:
        return [None], -1
    if not isinstance(args, (list, tuple)):
        raise MXNetError("When hybridized, the %s of HybridBlock must be (nested) list of Symbol or NDArray, but "
                         "got %s of type %s" % (inout_str, args, type(args).__name__))
    flat, fmts = [], []
    for i in args:
        arg, fmt = _flatten(i, inout_str)
        flat.extend(arg)
        fmts.append(fmt)
    return flat, fmts


def _regroup(args, fmt):
    def merge(args, fmt):
        if isinstance(fmt, int):
            if fmt == 0:
                return args[0], args[1:]
            if fmt == -1:
                return None, args[1:]
            return args[:fmt], args[fmt:]
        ret = []
        for i in fmt:
            res, args = merge(args, i)
            ret.append(res)
        return ret, args
    return merge(args, fmt)[0]


def _block_path(stack):
    """``root.child.grandchild`` from the blocks being called (each name relative to its caller)."""
    parts = []
    prev = None
    for blk in stack:
        if prev is not None and blk is prev:
            continue
        name = blk.name
        if prev is not None and prev.prefix and blk.prefix.startswith(prev.prefix):
            name = blk.prefix[len(prev.prefix):].rstrip("_") or name
        parts.append(name or type(blk).__name__.lower())
        prev = blk
    return ".".join(parts)


def _param_paths(root):
    """Parameter name -> path of the block registering it, relative to ``root`` ('' for root's own,
    '.dense1' for a child's...)."""
    out = {}

    def walk(blk, path):
        for p in list(blk._reg_params.values()) + list(blk.params.values()):
            out.setdefault(p.name, path)
        for key, child in blk._children.items():
            if blk.prefix and child.prefix.startswith(blk.prefix) and len(child.prefix) > len(blk.prefix):
                name = child.prefix[len(blk.prefix):].rstrip("_")
            else:
                name = child.name or key
            walk(child, path + "." + name)
    walk(root, "")
    return out


# what reading an NDArray's data (or its runtime properties) looks like on a traced Symbol
_VALUE_ATTRS = {"asnumpy", "asscalar", "tolist", "item", "wait_to_read", "shape", "dtype", "context", "ctx", "size",
                "ndim", "grad", "attach_grad", "copyto", "as_in_context", "__array__", "_data"}


class Block:
    """Base class of layers and models: children, parameters, naming, saving, hooks."""

    def __init__(self, prefix=None, params=None):
        self._empty_prefix = prefix == ""
        self._prefix, self._params = _BlockScope.create(prefix, params, self._alias())
        self._name = self._prefix[:-1] if self._prefix.endswith("_") else self._prefix
        self._scope = _BlockScope(self)
        self._children = OrderedDict()
        self._reg_params = {}
        self._forward_hooks = OrderedDict()
        self._forward_pre_hooks = OrderedDict()

    def __repr__(self):
        modstr = "\n".join("  ({key}): {block}".format(key=key, block=_indent(block.__repr__(), 2))
                           for key, block in self.__dict__.items() if isinstance(block, Block))
        return "{name}(\n{modstr}\n)".format(name=self.__class__.__name__, modstr=modstr)

    def __setattr__(self, name, value):
        """Registers child blocks and parameters assigned as attributes."""
        if hasattr(self, name):
            existing = getattr(self, name)
            if isinstance(existing, (Parameter, Block)) and not isinstance(value, type(existing)):
                raise TypeError("Changing attribute type for {name} from {type1} to {type2} is not allowed."
                                .format(name=name, type1=type(existing), type2=type(value)))
        if isinstance(value, Block):
            self.register_child(value, name)
        elif isinstance(value, Parameter):
            if name in self._reg_params:
                raise MXNetError("Overriding Parameter attribute %s is not allowed. If you want to share parameters "
                                 "between blocks, please set 'params' at Block construction instead." % name)
            self._reg_params[name] = value
        super().__setattr__(name, value)

    def _alias(self):
        return self.__class__.__name__.lower()

    @property
    def prefix(self):
        return self._prefix

    @property
    def name(self):
        return self._name

    def name_scope(self):
        return self._scope

    @property
    def params(self):
        return self._params

    def collect_params(self, select=None):
        """This block's and all descendants' parameters, optionally those matching a regex."""
        ret = ParameterDict(self._params.prefix)
        if not select:
            ret.update(self.params)
        else:
            pattern = re.compile(select)
            ret.update({name: value for name, value in self.params.items() if pattern.match(name)})
        for cld in self._children.values():
            ret.update(cld.collect_params(select=select))
        return ret

    def _collect_params_with_prefix(self, prefix=""):
        if prefix:
            prefix += "."
        ret = OrderedDict((prefix + key, val) for key, val in self._reg_params.items())
        for name, child in self._children.items():
            ret.update(child._collect_params_with_prefix(prefix + name))
        return ret

    def save_parameters(self, filename, deduplicate=False):
        """Save parameters under structural names (``0.weight``, ``dense.bias``), as MXNet 1.x."""
        from .. import ndarray as nd
        params = self._collect_params_with_prefix()
        if deduplicate:
            reverse = {v: k for k, v in params.items()}
            params = OrderedDict((k, v) for k, v in params.items() if reverse[v] == k)
        nd.save(filename, OrderedDict((key, val._reduce()) for key, val in params.items()))

    def save_params(self, filename):
        warnings.warn("save_params is deprecated. Please use save_parameters.")
        self.collect_params().save(filename, strip_prefix=self.prefix)

    def load_parameters(self, filename, ctx=None, allow_missing=False, ignore_extra=False, cast_dtype=False,
                        dtype_source="current"):
        from .. import ndarray as nd
        loaded = nd.load(filename)
        if not isinstance(loaded, dict):
            raise MXNetError("load_parameters: file '%s' holds an unnamed list of arrays, not named parameters"
                             % filename)
        params = self._collect_params_with_prefix()
        if not loaded and not params:
            return
        if not any("." in k for k in loaded.keys()):
            # legacy files (save_params / collect_params().save) use full names
            self.collect_params().load(filename, ctx, allow_missing, ignore_extra, self.prefix,
                                       cast_dtype=cast_dtype, dtype_source=dtype_source)
            return
        if not allow_missing:
            by_param = {}
            for k, v in params.items():
                by_param.setdefault(id(v), []).append(k)
            for name, param in params.items():
                if not any(p in loaded for p in by_param[id(param)]):
                    raise MXNetError("Parameter '%s' is missing in file '%s', which contains parameters: %s. Set "
                                     "allow_missing=True to ignore missing parameters."
                                     % (name, filename, _brief(loaded.keys())))
        for name in loaded:
            if not ignore_extra and name not in params:
                raise MXNetError("Parameter '%s' loaded from file '%s' is not present in ParameterDict, which "
                                 "contains parameters %s. Set ignore_extra=True to ignore. "
                                 % (name, filename, _brief(params.keys())))
            if name in params:
                params[name]._load_init(loaded[name], ctx, cast_dtype=cast_dtype, dtype_source=dtype_source)

    def load_params(self, filename, ctx=None, allow_missing=False, ignore_extra=False):
        warnings.warn("load_params is deprecated. Please use load_parameters.")
        self.load_parameters(filename, ctx, allow_missing, ignore_extra)

    def register_child(self, block, name=None):
        if name is None:
            name = str(len(self._children))
        self._children[name] = block

    def register_forward_pre_hook(self, hook):
        """``hook(block, inputs)`` runs before ``forward``."""
        handle = HookHandle()
        handle.attach(self._forward_pre_hooks, hook)
        return handle

    def register_forward_hook(self, hook):
        """``hook(block, inputs, outputs)`` runs after ``forward``."""
        handle = HookHandle()
        handle.attach(self._forward_hooks, hook)
        return handle

    def apply(self, fn):
        for cld in self._children.values():
            cld.apply(fn)
        fn(self)
        return self

    def initialize(self, init=None, ctx=None, verbose=False, force_reinit=False):
        """Initialise every parameter (``init`` is the default; a parameter's own init wins)."""
        self.collect_params().initialize(init, ctx, verbose, force_reinit)

    def hybridize(self, active=True, **kwargs):
        for cld in self._children.values():
            cld.hybridize(active, **kwargs)

    def cast(self, dtype):
        for child in self._children.values():
            child.cast(dtype)
        for _, param in self.params.items():
            param.cast(dtype)

    def __call__(self, *args):
        for hook in self._forward_pre_hooks.values():
            hook(self, args)
        stack = getattr(_calls, "stack", None)
        if stack is None:
            stack = _calls.stack = []
        stack.append(self)
        try:
            out = self.forward(*args)
        finally:
            stack.pop()
        for hook in self._forward_hooks.values():
            hook(self, args, out)
        return out

    def forward(self, *args):
        raise NotImplementedError("%s must define forward" % type(self).__name__)

    def register_op_hook(self, callback, monitor_all=False):
        raise NotImplementedError("Block.register_op_hook: operator-level monitoring")

    def save(self, prefix):
        raise NotImplementedError("Block.save (MXNet 1.9's structure + cached-graph save); use save_parameters "
                                  "or HybridBlock.export")

    def load(self, prefix):
        raise NotImplementedError("Block.load (MXNet 1.9's structure + cached-graph load); use load_parameters "
                                  "or SymbolBlock.imports")

    def summary(self, *inputs):
        """Log a table of each block's output shapes and parameter counts (one forward pass)."""
        rows, seen, hooks = [], set(), []

        def hook(block, _, outputs):
            flat, _ = _flatten(outputs, "output")
            shapes = [tuple(o.shape) for o in flat if o is not None]
            n = 0
            for p in block._reg_params.values():
                if id(p) not in seen and p.shape is not None:
                    seen.add(id(p))
                    n += int(np.prod(p.shape))
            rows.append(("%s-%d" % (type(block).__name__, len(rows) + 1),
                         str(shapes[0] if len(shapes) == 1 else shapes), n))

        def reg(block):
            hooks.append(block.register_forward_hook(hook))
        self.apply(reg)
        try:
            self(*inputs)
        finally:
            for h in hooks:
                h.detach()
        lines = ["-" * 80, "%25s  %42s %10s" % ("Layer (type)", "Output Shape", "Param #"), "=" * 80]
        lines += ["%25s  %42s %10d" % r for r in rows]
        total = sum(r[2] for r in rows)
        lines += ["=" * 80, "Parameters in forward computation graph, duplicate included",
                  "   Total params: %d" % total, "-" * 80]
        text = "\n".join(lines)
        log.info("%s", text)
        return text


def _brief(names, limit=3):
    names = list(names)
    if len(names) > limit:
        return ", ".join("'%s'" % n for n in names[:limit - 1]) + ", ..., '%s'" % names[-1]
    return ", ".join("'%s'" % n for n in names)


# ---- hybridized execution ----
class _Compiled:
    """One compiled variant of a traced graph: an Executor for fixed input shapes/dtypes."""

    def __init__(self, executor, data_pos, param_pos, aux_params, n_out):
        self.executor = executor
        self.data_pos = data_pos      # argument index -> position of the data input
        self.param_pos = param_pos    # argument index -> Parameter
        self.aux_params = aux_params  # auxiliary states, in order
        self.n_out = n_out
        self.owner = None             # weakref to the _HybridCall whose backward may still run

    def busy(self):
        if self.owner is None:
            return False
        fn = self.owner()
        if fn is None:
            return False
        node = fn._node  # set by its first backward; freed (no retain_graph) -> reusable
        return not (node is not None and node.freed)


class _HybridCall(autograd.Function):
    """The hybridized call as one autograd tape node: forward/backward are the compiled programs."""

    def __init__(self, compiled, is_train, ctx):
        super().__init__()
        self._c = compiled
        self._train = is_train
        self._ctx = ctx
        self._node = None

    def forward(self, *arrays):
        from ..ndarray import NDArray, storage
        c = self._c
        ex = c.executor
        for idx, pos in c.data_pos.items():
            ex.arg_arrays[idx] = arrays[pos]
        for idx, pos in c.param_pos.items():
            ex.arg_arrays[idx] = arrays[pos]
        ex.aux_arrays = [p.data(self._ctx) for p in c.aux_params]
        ex.outputs = [NDArray(storage.like(o._data), self._ctx) for o in ex.outputs]
        return tuple(ex.forward(is_train=self._train))

    def backward(self, *ogs):
        from ..ndarray import NDArray, storage
        ex = self._c.executor
        ex.grad_arrays = [None if g is None else NDArray(storage.zeros(g.shape, g._data.dtype, self._ctx), self._ctx)
                          for g in ex.grad_arrays]
        ex.backward(list(ogs))
        grads = [None] * (self._c.n_data + len(self._c.param_pos))
        for idx, pos in list(self._c.data_pos.items()) + list(self._c.param_pos.items()):
            grads[pos] = ex.grad_arrays[idx]
        return grads

    def _run_backward(self, ogs, node):
        if autograd.is_recording():  # backward with create_graph=True
            raise NotImplementedError("higher-order gradients (create_graph=True) through a hybridized block: "
                                      "the compiled backward is not itself recorded; call hybridize(False)")
        self._node = node
        return super()._run_backward(ogs, node)


class HybridBlock(Block):
    """A block whose ``hybrid_forward(F, x, ...)`` runs on NDArrays (F = nd) or, once
    hybridized, is traced with Symbols (F = sym) and compiled."""

    def __init__(self, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self._cached_graph = ()
        self._cached = {}
        self._last_compiled = None
        self._in_format = None
        self._out_format = None
        self._active = False
        self._flags = []

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if isinstance(value, HybridBlock):
            self._clear_cached_op()

    def register_child(self, block, name=None):
        if not isinstance(block, HybridBlock):
            raise MXNetError("Children of HybridBlock must also be HybridBlock, but %s has type %s. If you are "
                             "using Sequential, please try HybridSequential instead." % (block, type(block)))
        super().register_child(block, name)
        self._clear_cached_op()

    def _clear_cached_op(self):
        self._cached_graph = ()
        self._cached = {}
        self._last_compiled = None

    def hybridize(self, active=True, backend=None, clear=True, static_alloc=False, static_shape=False,
                  inline_limit=2, forward_bulk_size=None, backward_bulk_size=None, **kwargs):
        """Compile the block on its next call. Every option but ``active`` is accepted for
        compatibility: kiln always compiles the whole graph statically per input shape."""
        if backend is not None:
            raise NotImplementedError("hybridize(backend=%r): subgraph backends" % (backend,))
        self._active = active
        self._flags = [("static_alloc", static_alloc), ("static_shape", static_shape),
                       ("inline_limit", inline_limit)]
        if clear:
            self._clear_cached_op()
        if active and (self._forward_hooks or self._forward_pre_hooks):
            warnings.warn('"{block}" is being hybridized while still having forward hook/pre-hook. If "{block}" '
                          'is a child of HybridBlock, the hooks will not take effect.'.format(block=self))
        super().hybridize(active, static_alloc=static_alloc, static_shape=static_shape, inline_limit=inline_limit)

    def cast(self, dtype):
        self._clear_cached_op()
        super().cast(dtype)

    def optimize_for(self, x, *args, backend=None, **kwargs):
        raise NotImplementedError("HybridBlock.optimize_for: subgraph backends")

    # ---- tracing ----
    def _trace(self, *args):
        """hybrid_forward with Symbols, in this block's name scope; a clear error if it reads values."""
        from .. import symbol
        params = {i: j.var() for i, j in self._reg_params.items()}
        try:
            with self.name_scope():
                return self.hybrid_forward(symbol, *args, **params)
        except (AttributeError, NotImplementedError) as e:
            text = str(e)
            m = re.search(r"'Symbol' object has no attribute '(\w+)'", text)
            if (m and m.group(1) in _VALUE_ATTRS) or "Symbol has no truth value" in text:
                raise MXNetError("%s: hybrid_forward reads values while it is being traced into a graph (%s). "
                                 "Hybridized code sees Symbols, which have no data: use F.* operators only, or do "
                                 "not hybridize this block" % (self.name, text)) from e
            raise

    def _get_graph(self, *args):
        if not self._cached_graph:
            from .. import symbol
            flat, self._in_format = _flatten(args, "input")
            real = sum(a is not None for a in flat)
            if real == 0:
                raise MXNetError("All args are None and we do not support such a case.")
            inputs, syms, cnt = [], [], 0
            for a in flat:
                if a is None:
                    inputs.append(None)
                    continue
                s = symbol.var("data%d" % cnt if real > 1 else "data")
                cnt += 1
                inputs.append(s)
                syms.append(s)
            out = self._trace(*_regroup(inputs, self._in_format))
            out, self._out_format = _flatten(out, "output")
            self._cached_graph = syms, symbol.Group(out)
        return self._cached_graph

    def _infer_attrs(self, infer_fn, attr, *args):
        inputs, out = self._get_graph(*args)
        flat, _ = _flatten(args, "input")
        flat = [a for a in flat if a is not None]
        used = set(out.list_inputs())  # an input the graph ignores has no variable to describe
        given = {i.name: getattr(a, attr) for i, a in zip(inputs, flat) if i.name in used}
        try:
            arg_attrs, _, aux_attrs = getattr(out, infer_fn)(**given)
        except MXNetError as e:
            self._diagnose(out, given, e)
            raise
        if arg_attrs is None:
            raise MXNetError("%s: cannot infer the %ss of %s from inputs %s"
                             % (self.name, attr, out.list_arguments(), given))
        sdict = dict(zip(out.list_arguments(), arg_attrs))
        sdict.update(zip(out.list_auxiliary_states(), aux_attrs))
        for p in self.collect_params().values():
            if p.name in sdict:
                setattr(p, attr, tuple(sdict[p.name]) if attr == "shape" else sdict[p.name])

    def infer_shape(self, *args):
        self._infer_attrs("infer_shape", "shape", *args)

    def infer_type(self, *args):
        self._infer_attrs("infer_type", "dtype", *args)

    def _deferred_infer_shape(self, *args):
        try:
            self.infer_shape(*args)
        except MXNetError as e:
            raise MXNetError("%s: deferred initialization failed because shape cannot be inferred. %s"
                             % (self.name, e)) from e

    def _diagnose(self, out, given, err):
        """After a shape error: infer each parameter's shape from the inputs alone and name the
        parameter whose actual shape disagrees (block path, parameter, both shapes)."""
        from .. import symbol
        params = {p.name: p for p in self.collect_params().values()}
        names = [n for n in out.list_inputs() if n in params]
        try:
            bare = out(**{n: symbol.var(n) for n in names})
            arg_shapes, _, aux_shapes = bare.infer_shape_partial(**given)
        except MXNetError:
            return
        inferred = dict(zip(bare.list_arguments(), arg_shapes))
        inferred.update(zip(bare.list_auxiliary_states(), aux_shapes))
        paths = _param_paths(self)
        stack = list(getattr(_calls, "stack", []))
        stack = stack[:len(stack) - stack[::-1].index(self)] if self in stack else [self]
        base = _block_path(stack)
        for n in names:
            p, want = params[n], inferred.get(n)
            if not want or p.shape is None or not shape_is_known(want):
                continue
            have = tuple(p.shape)
            if len(have) == len(want) and all(h in (0, w) for h, w in zip(have, want)):
                continue
            raise MXNetError("%s%s: parameter '%s' has shape %s, but inputs %s need shape %s for it"
                             % (base, paths.get(n, ""), n, have,
                                ", ".join("%s %s" % kv for kv in given.items()), tuple(want))) from err

    # ---- running ----
    def forward(self, x, *args):
        """NDArray inputs: run (imperatively, or compiled when hybridized); Symbols: build the graph."""
        flat, _ = _flatten([x] + list(args), "input")
        has_sym = any(_is_sym(a) for a in flat)
        has_nd = any(_is_nd(a) for a in flat)
        if has_sym and has_nd:
            raise MXNetError("In HybridBlock, we do not support mixed NDArrays and Symbols types for the input.")
        if not has_sym and not has_nd:
            raise MXNetError("In HybridBlock, there must be one NDArray or one Symbol in the input.")
        if has_sym:
            return self._trace(x, *args)
        ctx = next(a for a in flat if a is not None).context
        if self._active:
            return self._call_cached_op(x, *args)
        with ctx:
            try:
                params = {k: v.data(ctx) for k, v in self._reg_params.items()}
            except DeferredInitializationError:
                self._deferred_infer_shape(x, *args)
                for v in self.params.values():
                    v._finish_deferred_init()
                params = {k: v.data(ctx) for k, v in self._reg_params.items()}
            from .. import ndarray
            try:
                return self.hybrid_forward(ndarray, x, *args, **params)
            except MXNetError as e:
                if self._reg_params and not isinstance(e, DeferredInitializationError):
                    self._explain_imperative_error(e, x, *args)
                raise

    def _explain_imperative_error(self, err, *args):
        try:
            inputs, out = self._get_graph(*args)
        except Exception:  # the trace itself fails: keep the original error
            return
        flat = [a for a in _flatten(args, "input")[0] if a is not None]
        used = set(out.list_inputs())
        self._diagnose(out, {i.name: a.shape for i, a in zip(inputs, flat) if i.name in used}, err)

    def _compiled_for(self, args, flat_inputs, ctx, recording, is_train):
        inputs, out = self._cached_graph
        info = getattr(self, "_graph_info", None)
        if info is None or info[0] is not self._cached_graph:
            info = (self._cached_graph, {p.name: p for p in self.collect_params().values()},
                    [s.name for s in inputs], out.list_arguments(), out.list_auxiliary_states())
            object.__setattr__(self, "_graph_info", info)  # names and parameters of this trace
        _, params, in_names, arg_names, aux_names = info
        for n in arg_names + aux_names:
            if n not in params and n not in in_names:
                raise MXNetError("%s: the traced graph reads variable '%s', which is neither an input nor a "
                                 "parameter of the block" % (self.name, n))
        # deferred initialisation from the input shapes
        if any(params[n]._data is None and params[n]._deferred_init for n in arg_names + aux_names if n in params):
            self._deferred_infer_shape(*args)
            for n in arg_names + aux_names:
                if n in params:
                    params[n]._finish_deferred_init()
        wants = []
        for n in arg_names:
            if n in params:
                wants.append(recording and params[n].grad_req != "null")
            else:
                wants.append(recording and flat_inputs[in_names.index(n)]._ag is not None)
        key = (tuple((a.shape, np.dtype(a.dtype).name) for a in flat_inputs),
               tuple(np.dtype(params[n].dtype).name for n in arg_names + aux_names if n in params),
               tuple(wants), bool(is_train), ctx)
        pool = self._cached.setdefault(key, [])
        for c in pool:
            if not c.busy():
                return c, in_names, arg_names
        c = self._build(out, in_names, arg_names, aux_names, params, flat_inputs, wants, ctx, is_train)
        pool.append(c)
        return c, in_names, arg_names

    def _build(self, out, in_names, arg_names, aux_names, params, flat_inputs, wants, ctx, is_train):
        from ..executor import Executor
        from ..ndarray import NDArray, storage
        used = set(out.list_inputs())
        given = {n: a.shape for n, a in zip(in_names, flat_inputs) if n in used}
        try:
            out.infer_shape_partial(**given)
        except MXNetError as e:
            self._diagnose(out, given, e)
            raise
        args, grads, reqs, data_pos, param_pos = [], [], {}, {}, {}
        n_data = len(in_names)
        k = n_data
        for idx, (n, w) in enumerate(zip(arg_names, wants)):
            if n in params:
                a = params[n].data(ctx)
                param_pos[idx] = k
                k += 1
            else:
                a = flat_inputs[in_names.index(n)]
                data_pos[idx] = in_names.index(n)
            args.append(a)
            grads.append(NDArray(storage.zeros(a.shape, a._data.dtype, ctx), ctx) if w else None)
            reqs[n] = "write" if w else "null"
        aux_params = [params[n] for n in aux_names]
        aux = [p.data(ctx) for p in aux_params]
        log.debug("%s: compiling for inputs %s", self.name, given)
        ex = Executor(out, ctx, args, grads, reqs, aux)
        ex._infer_grads = any(wants) and not is_train  # recorded in predict mode: inference program differentiated
        c = _Compiled(ex, data_pos, param_pos, aux_params, len(out.list_outputs()))
        c.n_data = n_data
        c.param_list = [params[arg_names[idx]] for idx in sorted(param_pos, key=param_pos.get)]
        return c

    def _call_cached_op(self, *args):
        flat, fmt = _flatten(args, "input")
        if self._cached_graph and fmt != self._in_format:
            raise MXNetError("The argument structure of HybridBlock does not match the cached version. Stored "
                             "format = %s, input format = %s" % (self._in_format, fmt))
        self._get_graph(*args)
        data = [a for a in flat if a is not None]
        ctxs = {a.context for a in data}
        if len(ctxs) > 1:
            raise MXNetError("Find multiple contexts in the input, After hybridized, the HybridBlock only supports "
                             "one input context. Find all contexts = %s" % ctxs)
        ctx = data[0].context
        recording = autograd.is_recording()
        is_train = autograd.is_training()
        c, in_names, arg_names = self._compiled_for(args, data, ctx, recording, is_train)
        self._last_compiled = c  # what viz_compiled draws for this block
        # current parameter arrays (cast / reinitialisation may have replaced them)
        params_in_order = [p.data(ctx) for p in c.param_list]
        call = _HybridCall(c, is_train, ctx)
        outs = call(*(data + params_in_order))
        if recording:
            c.owner = weakref.ref(call)
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        return _regroup(outs, self._out_format)

    def export(self, path, epoch=0, remove_amp_cast=True):
        """Write ``path-symbol.json`` and ``path-%04d.params`` (``arg:``/``aux:`` names), as MXNet."""
        from .. import ndarray as nd
        if not self._cached_graph:
            raise RuntimeError("Please first call block.hybridize() and then run forward with this block at least "
                               "once before calling export.")
        sym = self._cached_graph[1]
        sym.save("%s-symbol.json" % path, remove_amp_cast=remove_amp_cast)
        arg_names = set(sym.list_arguments())
        aux_names = set(sym.list_auxiliary_states())
        params = {p.name: p for p in self.collect_params().values()}
        arg_dict = OrderedDict()
        for name in sym.list_inputs():
            if name not in params:
                continue
            if name in arg_names:
                arg_dict["arg:%s" % name] = params[name]._reduce()
            elif name in aux_names:
                arg_dict["aux:%s" % name] = params[name]._reduce()
        nd.save("%s-%04d.params" % (path, epoch), arg_dict)

    def hybrid_forward(self, F, x, *args, **kwargs):
        raise NotImplementedError("%s must define hybrid_forward" % type(self).__name__)


def _common_prefix(names):
    if not names:
        return ""
    prefix = names[0]
    for name in names:
        i = 0
        while i < len(prefix) and i < len(name) and prefix[i] == name[i]:
            i += 1
        prefix = prefix[:i]
    return prefix


class SymbolBlock(HybridBlock):
    """A block running a given Symbol; its free variables other than the inputs are parameters."""

    @staticmethod
    def imports(symbol_file, input_names, param_file=None, ctx=None, allow_missing=False, ignore_extra=False):
        from .. import symbol
        sym = symbol.load(symbol_file)
        if isinstance(input_names, str):
            input_names = [input_names]
        if param_file is None:
            inputs = [symbol.var(i, dtype=np.float32) for i in input_names]
        else:
            inputs = [symbol.var(i) for i in input_names]
        ret = SymbolBlock(sym, inputs)
        if param_file is not None:
            ret.collect_params().load(param_file, ctx, allow_missing, ignore_extra, cast_dtype=True,
                                      dtype_source="saved")
        return ret

    def __repr__(self):
        s = "{name}(\n{modstr}\n)"
        modstr = "\n".join(["{block} : {numinputs} -> {numoutputs}".format(
            block=self._cached_graph[1], numinputs=len(self._cached_graph[0]),
            numoutputs=len(self._cached_graph[1].list_outputs()))])
        return s.format(name=self.__class__.__name__, modstr=modstr)

    def __init__(self, outputs, inputs, params=None):
        from .. import symbol
        super().__init__(prefix=None, params=None)
        self._prefix = ""
        self._params = ParameterDict("", params)
        if _is_sym(inputs) and len(inputs.list_outputs()) == 1:
            inputs = [inputs]
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            outputs = outputs[0]
        syms, self._in_format = _flatten(inputs, "input")
        out, self._out_format = _flatten(outputs, "output")
        out = symbol.Group(out)
        input_names = set()
        for i in syms:
            if len(i.get_internals().list_outputs()) != 1:
                raise MXNetError("Input symbols must be variable, but %s is an output of operators" % i)
            input_names.add(i.name)
        for i in out.list_arguments():
            if i not in input_names:
                self.params.get(i, allow_deferred_init=True)
        for i in out.list_auxiliary_states():
            if i not in input_names:
                self.params.get(i, grad_req="null", allow_deferred_init=True)
        self._cached_graph = syms, out
        len_prefix = len(_common_prefix(list(self._params.keys())))
        self._reg_params = {key[len_prefix:]: val for key, val in self._params.items()}
        self._active = True

    def forward(self, x, *args):
        if _is_nd(x):
            return self._call_cached_op(x, *args)
        args, in_fmt = _flatten([x] + list(args), "input")
        if in_fmt != self._in_format:
            raise MXNetError("Invalid input format")
        ret = copy.copy(self._cached_graph[1])
        ret._compose(**{k.name: v for k, v in zip(self._cached_graph[0], args)})
        return _regroup(list(ret), self._out_format)

    def _clear_cached_op(self):
        graph = self._cached_graph
        super()._clear_cached_op()
        self._cached_graph = graph  # the graph is the block itself: only compiled variants go

    def hybridize(self, active=True, **kwargs):
        super().hybridize(True, **kwargs)

    def cast(self, dtype):
        self._clear_cached_op()
        Block.cast(self, dtype)

    def hybrid_forward(self, F, x, *args, **kwargs):
        raise NotImplementedError("SymbolBlock runs its Symbol; hybrid_forward is not used")
