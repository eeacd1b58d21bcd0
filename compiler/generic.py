"""Shape-generic kernels for imperative operators: compiled once per operator,
attributes, dtypes, rank and shape class, with the sizes passed at run time.

An imperative call (``kiln.nd.<op>``) would otherwise compile one program per
concrete input shape; a loop over 50 batch sizes would compile 50. Here the
registry's own ``lower`` runs on buffers whose sizes are ``expr.Dim`` symbols
read from an int64 ``__dims__`` array at run time. The *shape class* keeps what
lowering may legitimately branch on: sizes 0 and 1 stay literal (broadcasting
tests ``shape[k] == 1``) and equal sizes share one symbol, so every question a
lowering can ask about a ``Dim`` (``== 1``, ``== other dim``) has the same
answer for every shape of the class; any other question (``int()``, ``range``,
``<``) raises TypeError and the operator falls back to per-shape programs.

Use::

    p = plan(op_name, attrs, in_shapes, in_dtypes)   # None: use the per-shape path
    prog = cache.get(p.key) or LoadedProgram(build(p))
    outs = run(prog, p, arrays)

``plan`` runs on every imperative call and is memoised on the exact shapes;
``build`` is called once per ``plan.key`` (``build_cuda`` for GPU arrays: the same kernel
rendered to CUDA C).
"""
from __future__ import annotations

import logging
import os
import threading

import numpy as np

from ..runtime.cuda_program import CudaProgramSpec
from ..runtime.program import ProgramSpec, SlotSpec
from . import expr as E
from .codegen.llvm import emit_program, fastmath_flags
from .kernel import Buffer, Compute, Kernel, ScatterAdd
from .ops import registry
from .ops.shapes import InferError

log = logging.getLogger(__name__)

DIMS = "__dims__"
SKIP_KINDS = ("composite", "opaque")  # expansions and GEMM/convolution stay per-shape
MEMO_LIMIT = 8192  # exact (operator, attributes, shapes, dtypes) plans kept
_ENV = ("KILN_NUM_THREADS", "KILN_FASTMATH", "KILN_LIBM")  # options that change the code
# os.environ.get of a missing name costs ~1 us (a KeyError inside); plan() reads these on every
# call, so it reads os.environ's backing dict (which setenv/monkeypatch keep current) directly.
try:
    _ENV_DATA, _ENV_KEYS = os.environ._data, tuple(os.environ.encodekey(v) for v in _ENV)
except AttributeError:  # another Python: the public, slower way
    _ENV_DATA, _ENV_KEYS = None, _ENV


def _env():
    if _ENV_DATA is None:
        return tuple(os.environ.get(v) for v in _ENV)
    get = _ENV_DATA.get
    return get(_ENV_KEYS[0]), get(_ENV_KEYS[1]), get(_ENV_KEYS[2])


_lock = threading.Lock()
_memo = {}  # (op, attrs, shapes, dtypes, env) -> Plan, or False when not generic
_ops = {}  # (op, attrs) -> (OpDef, params, n_outputs), or a str saying why not generic
_specs = {}  # plan key -> ProgramSpec
_lowered = {}  # plan key -> (name, Kernel, slot of each kernel parameter, [SlotSpec])
_cuda_specs = {}  # plan key -> CudaProgramSpec
_stats = {"plans": 0, "memo_hits": 0, "builds": 0, "fallbacks": 0}


class Plan:
    """One imperative call's view of a shape-generic program.

    key: what the program depends on (operator, attributes, dtypes, shape
    class, options), never the sizes themselves. dims: the runtime sizes
    (np.int64; shared by calls with equal shapes, so read-only by convention).
    in_class/out_class: each shape with ``"$k"`` for size k and literal 0/1.
    """

    __slots__ = ("key", "op", "params", "in_class", "out_class", "in_dtypes", "out_shapes", "out_dtypes",
                 "dims")

    def __init__(self, key, op, params, in_class, out_class, in_dtypes, out_shapes, out_dtypes, dims):
        self.key, self.op, self.params = key, op, params
        self.in_class, self.out_class = in_class, out_class
        self.in_dtypes, self.out_shapes, self.out_dtypes = in_dtypes, out_shapes, out_dtypes
        self.dims = dims

    def __repr__(self):
        return "Plan(%s, %s -> %s, dims=%s)" % (self.op.name, self.in_class, self.out_class, self.dims.tolist())


def plan(op_name, attrs, in_shapes, in_dtypes, all_outputs=False):
    """The plan for running ``op_name`` on these shapes generically, or None (use the per-shape path).

    attrs: MXNet string attributes (as ``OpDef.format_attrs`` gives); shapes are
    tuples of ints; dtypes numpy names. all_outputs: the program also writes
    hidden outputs (else an operator with hidden outputs gets None). Cheap when
    the same shapes were seen.
    """
    akey = tuple(sorted(attrs.items())) if attrs else ()
    env = _env()
    mkey = (op_name, akey, tuple(in_shapes), tuple(in_dtypes), env, all_outputs)
    hit = _memo.get(mkey)
    if hit is not None:
        _stats["memo_hits"] += 1
        return hit or None
    p = _plan(op_name, akey, mkey[2], mkey[3], env, bool(all_outputs))
    if len(_memo) >= MEMO_LIMIT:
        _memo.clear()
    _memo[mkey] = p if p is not None else False
    if p is None:
        _stats["fallbacks"] += 1
    return p


def build(p):
    """The ProgramSpec (entry ``forward``) for ``p.key``; callers cache the loaded program by key."""
    spec = _specs.get(p.key)
    if spec is None:
        spec = _compile(p)
    return spec


def build_cuda(p):
    """The CudaProgramSpec (entry ``forward``) of the same kernel as ``build(p)``."""
    spec = _cuda_specs.get(p.key)
    if spec is None:
        from .codegen.cuda import render_kernels
        _compile(p)
        name, kernel, call_slots, slots = _lowered[p.key]
        source, (rendered,) = render_kernels([kernel])
        spec = CudaProgramSpec(name, source, {"forward": [(launch, call_slots) for launch in rendered.launches]},
                               slots, 0, {"generic": {"op": p.op.name}}, dims_slot=DIMS)
        with _lock:
            spec = _cuda_specs.setdefault(p.key, spec)
    return spec


def run(program, p, arrays, outs=None):
    """Run a loaded generic program on numpy ``arrays``; returns the outputs (``outs`` if given)."""
    if outs is None:
        outs = [np.empty(s, dtype=t) for s, t in zip(p.out_shapes, p.out_dtypes)]
    program.call("forward", list(arrays) + list(outs) + [p.dims])
    return outs


def stats():
    """Counters: plans made, memo hits, programs built, calls that fell back."""
    return dict(_stats, programs=len(_specs))


def clear():
    """Forget every plan, program and negative answer (tests)."""
    with _lock:
        _memo.clear()
        _ops.clear()
        _specs.clear()
        _lowered.clear()
        _cuda_specs.clear()
        for k in _stats:
            _stats[k] = 0


def why_not(op_name, attrs=None):
    """The reason recorded for an operator (and attributes) not running generically, or None."""
    akey = tuple(sorted((attrs or {}).items()))
    hit = _ops.get((op_name, akey))
    return hit if isinstance(hit, str) else None


# ---- planning ----
def _op_info(op_name, akey):
    info = _ops.get((op_name, akey))
    if info is not None:
        return info
    info = _op_info_uncached(op_name, akey)
    if len(_ops) >= MEMO_LIMIT:  # attributes such as scalars can take many values
        _ops.clear()
    _ops[(op_name, akey)] = info
    return info


def _op_info_uncached(op_name, akey):
    if not registry.exists(op_name):
        return "unknown operator"
    op = registry.get(op_name)
    if op.kind in SKIP_KINDS:
        return "kind %s" % op.kind
    if op.lower is None:
        return "no lowering"
    if op.random:
        return "random operator"
    try:
        params = op.parse_attrs(dict(akey), op.hint)
        n_out = op.num_outputs(params)
        n_visible = op.num_visible_outputs(params)
    except Exception as err:  # the per-shape path reports attribute errors with context
        return "attributes: %s" % err
    return op, params, n_out, n_visible


def _plan(op_name, akey, in_shapes, in_dtypes, env, all_outputs):
    info = _op_info(op_name, akey)
    if isinstance(info, str):
        return None
    op, params, n_out, n_visible = info
    if n_visible != n_out and not all_outputs:
        return None  # hidden outputs would need slots of their own
    in_dtypes = tuple(np.dtype(t).name for t in in_dtypes)  # np.dtype objects work too
    _stats["plans"] += 1
    try:
        ins, outs = op.infer_shape(params, list(in_shapes), [None] * n_out)
        tins, touts = op.infer_type(params, list(in_dtypes), [None] * n_out)
    except Exception:  # noqa: BLE001 - the per-shape path raises the user-facing error
        return None
    # inference must not change the given inputs (0 sizes are wildcards to it) and must
    # determine every output
    if [tuple(s) if s is not None else None for s in ins] != list(in_shapes) or list(tins) != list(in_dtypes):
        return None
    if any(s is None or any(d is None or d < 0 for d in s) for s in outs) or any(t is None for t in touts):
        return None
    symbols, dims = {}, []

    def classify(shape):
        out = []
        for d in shape:
            d = int(d)
            if d < 2:
                out.append(d)
                continue
            k = symbols.get(d)
            if k is None:
                k = symbols[d] = len(dims)
                dims.append(d)
            out.append("$%d" % k)
        return tuple(out)
    in_class = tuple(classify(s) for s in in_shapes)
    out_class = tuple(classify(s) for s in outs)
    key = (op.name, akey, in_dtypes, in_class, out_class, env)  # all_outputs is in out_class
    if key not in _specs:
        if isinstance(_ops.get((op_name, akey)), str):
            return None
        try:
            _compile_key(key, op, params, in_class, out_class, in_dtypes, tuple(touts), len(dims))
        except Exception as err:  # noqa: BLE001 - falling back is always safe
            reason = "%s: %s" % (type(err).__name__, err)
            # TypeError & co. are lowerings asking for concrete sizes; anything else is a bug here
            expected = isinstance(err, (TypeError, ValueError, NotImplementedError, InferError))
            level = logging.DEBUG if expected else logging.WARNING
            log.log(level, "operator %s (%s) does not run shape-generically: %s", op.name, dict(akey), reason)
            _ops[(op_name, akey)] = reason  # negative answers are per operator and attributes
            return None
    return Plan(key, op, params, in_class, out_class, in_dtypes, tuple(tuple(int(d) for d in s) for s in outs),
                tuple(touts), np.array(dims, dtype=np.int64))


def _compile(p):
    return _compile_key(p.key, p.op, p.params, p.in_class, p.out_class, p.in_dtypes, p.out_dtypes,
                        len(p.dims))


def _sym_shape(cls, table):
    return tuple(table[int(d[1:])] if isinstance(d, str) else d for d in cls)


def _compile_key(key, op, params, in_class, out_class, in_dtypes, out_dtypes, n_dims):
    """Lower ``op`` on symbolic buffers and emit its program (once per key)."""
    with _lock:
        spec = _specs.get(key)
        if spec is not None:
            return spec
        table = [E.Dim(k) for k in range(n_dims)]
        ins = [Buffer("in%d" % i, _sym_shape(c, table), t) for i, (c, t) in enumerate(zip(in_class, in_dtypes))]
        outs = [Buffer("out%d" % i, _sym_shape(c, table), t) for i, (c, t) in enumerate(zip(out_class, out_dtypes))]
        dims = Buffer(DIMS, (n_dims,), "int64")
        stages = op.lower(params, ins, outs)
        for st in stages:
            if not isinstance(st, (Compute, ScatterAdd)):
                raise TypeError("stage %s has no shape-generic code" % type(st).__name__)
        name = "generic_" + op.name.strip("_")
        kernel = Kernel(name, ins + [dims], outs, stages, dims=dims)
        n_in, n_out = len(ins), len(outs)
        call_slots = list(range(n_in)) + [n_in + n_out] + list(range(n_in, n_in + n_out))
        fastmath_env = os.environ.get("KILN_FASTMATH")  # the same value key[-1] holds, decoded
        from ..runtime.threads import parallel_threads
        ir_text = emit_program(name, [kernel], {"forward": [(name, call_slots)]}, parallel_threads(),
                               fastmath_flags(fastmath_env), None)
        slots = [SlotSpec("in%d" % i, c, t, True) for i, (c, t) in enumerate(zip(in_class, in_dtypes))]
        slots += [SlotSpec("out%d" % i, c, t, True) for i, (c, t) in enumerate(zip(out_class, out_dtypes))]
        slots.append(SlotSpec(DIMS, (n_dims,), "int64", True))
        _lowered[key] = (name, kernel, call_slots, slots)
        spec = ProgramSpec(name, ir_text, ["forward"], slots, 0,
                           {"generic": {"op": op.name, "inputs": list(in_class), "outputs": list(out_class)}},
                           dims_slot=DIMS)
        _specs[key] = spec
        _stats["builds"] += 1
        return spec

