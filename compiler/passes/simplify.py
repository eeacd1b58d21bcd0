"""Graph simplification passes: constant_fold, simplify, cse, dce.

Each pass is a ``Graph -> Graph`` function built on ``rewrite``, so user
graphs are never mutated. They run after composite expansion and before
shapes are re-inferred, so no rule may need a shape or a dtype: every rule is
justified by the operators' declarations alone.

Exactness: every rule preserves values exactly, up to the sign of zero
(``x + 0.0`` turns ``-0.0`` into ``+0.0`` in IEEE arithmetic, so ``x + 0 -> x``
may change ``+0.0`` back to ``-0.0``; codegen's default ``nsz`` fast-math flag
already makes the sign of zero unspecified). NaN stays NaN. Rules that would
be inexact in floating point (reassociating ``(x * a) * b``, ``x * 0``,
``0 * x``) are deliberately absent.
"""
from __future__ import annotations

import math

import numpy as np

from ..graph import Entry, Node, rewrite
from ..ops import registry

# Operators that copy their input unchanged; the gradient pass (BlockGrad's only
# purpose) runs before these passes.
PASS_THROUGH = frozenset({"identity", "BlockGrad"})

# Unary operators with f(0) == 0 (up to the sign of zero) and their input's shape and dtype.
ZERO_PRESERVING = frozenset({
    "negative", "abs", "sign", "square", "sqrt", "relu", "sin", "tan", "arcsin", "arctan", "sinh",
    "tanh", "expm1", "log1p", "floor", "ceil", "round", "rint", "trunc", "fix", "erf", "softsign",
    "identity", "BlockGrad"})

# Reshape-like operators whose result depends only on their first input's elements.
RESHAPES = frozenset({"Reshape", "Flatten", "reshape_like", "expand_dims"})

# Same-shape operators with a == b commutative in IEEE arithmetic (bitwise, for finite and inf).
COMMUTATIVE = frozenset({"elemwise_add", "elemwise_mul", "broadcast_add", "broadcast_mul"})

# A scalar outside [2**-24, 65504] may round to 0 or inf in float16 and turn 0 * s or 0 / s into NaN.
_SCALAR_MIN, _SCALAR_MAX = 2.0 ** -24, 65504.0


def _name(entry):
    op = entry.node.op
    return None if op is None else op.name


def _make(opname, name, inputs, **attrs):
    """A new one-output node keeping the replaced node's name (reports stay readable)."""
    op = registry.get(opname)
    return Entry(Node(op, name, op.format_attrs(attrs, name), inputs), 0)


def _same_shape_and_type(op):
    """True when the operator's declared rules force every input and output to one shape and dtype."""
    return op.infer_shape is registry._same_shape and op.infer_type is registry._same_type


# ---- constant folding -----------------------------------------------------------------------

def _fold_shape_source(entry):
    """The earliest entry with the same shape and dtype as ``entry``, walking through
    operators whose declared rules make output and first input alike."""
    while entry.node.op is not None and entry.node.inputs and (
            entry.node.op.name in ("zeros_like", "ones_like") or _same_shape_and_type(entry.node.op)):
        entry = entry.node.inputs[0]
    return entry


def _zero_scalar_rule(opname, s):
    """Whether ``op(0, s) == 0`` exactly for every dtype the scalar may be cast to."""
    if not math.isfinite(s) or abs(s) > _SCALAR_MAX:
        return False
    if opname == "_mul_scalar" or opname == "_mod_scalar":
        return True
    if opname == "_div_scalar":
        return abs(s) >= _SCALAR_MIN
    if opname == "_power_scalar":
        return s >= 1  # an integer dtype truncates s: 0 ** int(0.5) == 1
    return opname in ("_plus_scalar", "_minus_scalar") and s == 0


def _fold(node, inputs):
    op = node.op.name
    names = [_name(e) for e in inputs]
    zero = [n == "zeros_like" for n in names]
    one = [n == "ones_like" for n in names]
    if op in ("zeros_like", "ones_like"):
        src = _fold_shape_source(inputs[0])
        return None if src == inputs[0] else [_make(op, node.name, [src])]
    if op in ZERO_PRESERVING and zero[0]:
        return [inputs[0]]
    if "scalar" in node.params and len(inputs) == 1 and zero[0] and _zero_scalar_rule(op, node.params["scalar"]):
        return [inputs[0]]
    if op == "elemwise_add" and (zero[0] or zero[1]):
        return [inputs[1] if zero[0] else inputs[0]]
    if op == "elemwise_sub" and zero[1]:
        return [inputs[0]]
    if op == "elemwise_sub" and zero[0]:
        return [_make("negative", node.name, [inputs[1]])]
    if op == "elemwise_mul" and (one[0] or one[1]):
        return [inputs[1] if one[0] else inputs[0]]
    if op == "elemwise_mul" and zero[0] and zero[1]:
        return [inputs[0]]
    if op == "elemwise_div" and one[1]:
        return [inputs[0]]
    if op == "add_n" and any(zero):
        kept = [e for e, z in zip(inputs, zero) if not z] or inputs[:1]
        if len(kept) == 1:
            return kept
        return [_make("add_n", node.name, kept, num_args=len(kept))]
    return None


def constant_fold(graph):
    """Fold what depends only on shapes: ``zeros_like``/``ones_like`` read the earliest
    same-shaped entry (so the work in between can die), zero-preserving operators
    applied to ``zeros_like`` become it, and ``x + zeros``, ``x - zeros``,
    ``x * ones``, ``x / ones`` become ``x``. No array is evaluated."""
    return rewrite(graph, _fold)[0]


# ---- algebraic simplification ---------------------------------------------------------------

def _simple_reshape_spec(params):
    """True when a Reshape's result shape does not depend on its input's shape, only its size."""
    spec = params["shape"]
    return bool(spec) and all(d > 0 or d == -1 for d in spec) and list(spec).count(-1) <= 1


def _perm(axes, ndim):
    return tuple(reversed(range(ndim))) if not axes else tuple(a % ndim for a in axes)


def _simplify(node, inputs):
    op, params = node.op.name, node.params
    x = inputs[0] if inputs else None
    inner = _name(x) if x is not None else None
    if op in ("_mul_scalar", "_div_scalar") and params["scalar"] == 1.0:
        return [x]
    if op in ("_plus_scalar", "_minus_scalar") and params["scalar"] == 0.0:
        return [x]
    if _sign_flip(node) and _sign_flip(x.node):
        return [x.node.inputs[0]]
    if op == "add_n" and len(inputs) == 1:
        return [x]
    if op == "transpose":
        return _simplify_transpose(node, x)
    if op == "Flatten" and inner == "Flatten":
        return [x]
    if inner in RESHAPES and (op == "reshape_like" or (op == "Reshape" and _simple_reshape_spec(params))):
        while _name(x) in RESHAPES:
            x = x.node.inputs[0]
        return [Entry(Node(node.op, node.name, node.attrs, [x] + inputs[1:], params=params), 0)]
    return None


def _sign_flip(node):
    """``negative`` or its Symbol spelling ``x * -1`` (``-x`` on a Symbol)."""
    name = None if node.op is None else node.op.name
    return name == "negative" or (name == "_mul_scalar" and node.params["scalar"] == -1.0)


def _simplify_transpose(node, x):
    q = node.params["axes"]
    if _name(x) != "transpose":
        if q and _perm(q, len(q)) == tuple(range(len(q))):
            return [x]
        return None
    p = x.node.params["axes"]
    if not p and not q:
        return [x.node.inputs[0]]
    ndim = len(p or q)
    p, q = _perm(p, ndim), _perm(q, ndim)
    axes = tuple(p[i] for i in q)
    if axes == tuple(range(ndim)):
        return [x.node.inputs[0]]
    return [_make("transpose", node.name, [x.node.inputs[0]], axes=axes)]


def simplify(graph):
    """Exact algebraic rewrites: ``x*1``, ``x/1``, ``x+0``, ``x-0`` scalar forms -> x;
    ``-(-x)`` -> x (``negative`` or ``x * -1``, as Symbol's ``-x`` spells it);
    ``add_n(x)`` -> x; transpose chains compose (identity -> x);
    ``Flatten(Flatten(x))`` -> ``Flatten(x)``; a reshape of a reshape reads the
    original data when the outer target does not copy input dimensions (codes
    0, -2, -3, -4). Rules on ``zeros_like``/``ones_like`` live in ``constant_fold``."""
    return rewrite(graph, _simplify)[0]


# ---- common-subexpression elimination -------------------------------------------------------

def _freeze(value):
    """A hashable, exact key for a typed attribute value (-0.0 and 0.0 stay distinct)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(_freeze(v) for v in value)
    if isinstance(value, (float, np.floating)):
        return ("float", float(value).hex())
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(value))
    return (type(value).__name__, value)


def cse(graph):
    """Merge operator nodes with the same operator, typed params and input entries.

    Random operators, operators that mutate inputs (auxiliary states) and readers
    of auxiliary variables (their value depends on when they run) are never
    merged; variables are never merged. ``a+b``/``b+a`` and ``a*b``/``b*a``
    merge (IEEE addition and multiplication are commutative)."""
    aux_vars = graph.aux_variable_ids()
    seen = {}

    def fn(node, inputs):
        op = node.op
        if op.random or op.aux_inputs(node.params) or any(e.node.uid in aux_vars for e in inputs):
            return None
        args = [e.key() for e in inputs]
        if op.name in COMMUTATIVE:
            args.sort()
        key = (id(op), _freeze(node.params), tuple(args))
        hit = seen.get(key)
        if hit is None:
            copy = Node(op, node.name, node.attrs, inputs, params=node.params)
            hit = seen[key] = [Entry(copy, i) for i in range(node.num_outputs)]
        return hit

    return rewrite(graph, fn)[0]


# ---- dead-code elimination ------------------------------------------------------------------

def dce(graph):
    """Rebuild from the outputs (unreachable nodes vanish) and bypass pass-through
    nodes (``identity``, ``_copy``, ``BlockGrad``) that are not program outputs."""
    heads = {e.node.uid for e in graph.outputs}

    def fn(node, inputs):
        if node.op.name in PASS_THROUGH and node.uid not in heads:
            return [inputs[0]]
        return None

    return rewrite(graph, fn)[0]


# ---- shape-aware no-ops ---------------------------------------------------------------------

# Operators that return their first input unchanged when shapes and dtypes agree.
SHAPE_NOOPS = ("Reshape", "Flatten", "reshape_like", "_reduce_sum_like", "broadcast_to", "broadcast_like",
               "_broadcast_axis_like", "_cast_like", "Cast", "squeeze", "transpose")


def drop_shape_noops(graph, shapes, dtypes):
    """Bypass reshapes, broadcasts, casts and sums-to-shape whose output has the input's
    shape and dtype (gradients and FullyConnected make many), given inferred shapes.
    transpose counts only with the identity permutation."""
    def fn(node, inputs):
        if node.op.name not in SHAPE_NOOPS or node.num_outputs != 1:
            return None
        src, out = node.inputs[0].key(), (node.uid, 0)
        if shapes.get(src) is None or shapes.get(src) != shapes.get(out) or dtypes.get(src) != dtypes.get(out):
            return None
        if node.op.name == "transpose":
            axes = node.params["axes"]
            ndim = len(shapes[src])
            if ndim > 1 and tuple(a % ndim for a in axes) != tuple(range(ndim)):
                return None
        return [inputs[0]]

    return rewrite(graph, fn)[0]


# In pipeline order: folding and algebra expose duplicates for cse; dce removes what they orphaned.
PASSES = (("constant_fold", constant_fold), ("simplify", simplify), ("cse", cse), ("dce", dce))
