"""Binary operators in three forms: same-shape, broadcasting, and with a scalar.

Each arithmetic rule is written once (``BINARY``) and registered as
``elemwise_*``/``_*``, ``broadcast_*`` and ``_*_scalar`` (+ reversed) variants.
Comparisons and logical operators give 1/0 in the input dtype, as MXNet does.
"""
from __future__ import annotations

import numpy as np

from .. import expr as E
from . import params as P
from .common import map_lower, scalar_of
from .registry import OpDef, register
from .shapes import InferError, broadcast, known, unify


def _one(x):
    return E.const(1.0 if E.is_float(x.dtype) else 1, x.dtype)


def _zero(x):
    return E.const(0.0 if E.is_float(x.dtype) else 0, x.dtype)


def _bool(c, like):
    return E.select(c, _one(like), _zero(like))


def _mod(a, b):
    """Python-style modulo (sign of the divisor); 0 where b == 0, as MXNet."""
    r = E.call("fmod", a, b)
    fix = E.Call("and", (E.cmp("ne", r, _zero(r)), E.Call("xor", (E.cmp("lt", r, _zero(r)),
                                                                   E.cmp("lt", b, _zero(b))))))
    return E.select(E.cmp("eq", b, _zero(b)), _zero(a), E.select(fix, r + b, r))


def _np_mod(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.mod(a, b)
    return np.where(b == 0, 0, r).astype(np.result_type(a, b))


def _truthy(x):
    return E.cmp("ne", x, _zero(x))


def _np_div(a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b == 0, 0, np.trunc(a / np.where(b == 0, 1, b))).astype(np.result_type(a, b))
    return a / b


# Gradient rules: fn(b, f, x, z, y, og) -> (dx, dz); ``f(key, a, c)`` applies binary rule ``key``
# in the node's own form (same-shape or broadcasting), so one rule serves both.
def _g_add(b, f, x, z, y, og):
    return og, og


def _g_sub(b, f, x, z, y, og):
    return og, b.neg(og)


def _g_mul(b, f, x, z, y, og):
    return f("mul", og, z), f("mul", og, x)


def _g_div(b, f, x, z, y, og):
    return f("div", og, z), b.neg(f("div", f("mul", og, y), z))


def _g_mod(b, f, x, z, y, og):
    return og, b.neg(f("mul", og, b.op("floor", f("div", x, z))))


def _g_pow(b, f, x, z, y, og):
    da = f("mul", og, f("mul", z, f("power", x, b.scalar("_minus_scalar", z, 1.0))))
    db = f("mul", og, f("mul", y, b.op("log", x)))
    return da, db


def _g_max(b, f, x, z, y, og):
    return f("mul", og, f("greater_equal", x, z)), f("mul", og, f("lesser", x, z))


def _g_min(b, f, x, z, y, og):
    return f("mul", og, f("lesser_equal", x, z)), f("mul", og, f("greater", x, z))


def _g_hypot(b, f, x, z, y, og):
    return f("mul", og, f("div", x, y)), f("mul", og, f("div", z, y))


def _g_none(b, f, x, z, y, og):
    return b.zeros_like(x), b.zeros_like(z)


BINARY = {
    "add": (lambda a, b: a + b, np.add, _g_add),
    "sub": (lambda a, b: a - b, np.subtract, _g_sub),
    "mul": (lambda a, b: a * b, np.multiply, _g_mul),
    "div": (lambda a, b: a / b, _np_div, _g_div),
    "mod": (_mod, _np_mod, _g_mod),
    "power": (lambda a, b: E.call("pow", a, b), np.power, _g_pow),
    "maximum": (E.maximum, np.maximum, _g_max),
    "minimum": (E.minimum, np.minimum, _g_min),
    "hypot": (lambda a, b: E.call("hypot", a, b), np.hypot, _g_hypot),
    "equal": (lambda a, b: _bool(E.cmp("eq", a, b), a), np.equal, _g_none),
    "not_equal": (lambda a, b: _bool(E.cmp("ne", a, b), a), np.not_equal, _g_none),
    "greater": (lambda a, b: _bool(E.cmp("gt", a, b), a), np.greater, _g_none),
    "greater_equal": (lambda a, b: _bool(E.cmp("ge", a, b), a), np.greater_equal, _g_none),
    "lesser": (lambda a, b: _bool(E.cmp("lt", a, b), a), np.less, _g_none),
    "lesser_equal": (lambda a, b: _bool(E.cmp("le", a, b), a), np.less_equal, _g_none),
    "logical_and": (lambda a, b: _bool(E.Call("and", (_truthy(a), _truthy(b))), a),
                    lambda a, b: np.logical_and(a, b), _g_none),
    "logical_or": (lambda a, b: _bool(E.Call("or", (_truthy(a), _truthy(b))), a),
                   lambda a, b: np.logical_or(a, b), _g_none),
    "logical_xor": (lambda a, b: _bool(E.Call("xor", (_truthy(a), _truthy(b))), a),
                    lambda a, b: np.logical_xor(a, b), _g_none),
}

# canonical same-shape names (MXNet's) and the aliases a user or file may spell
ELEMWISE_NAMES = {
    "add": ("elemwise_add", ("_add", "_plus", "_Plus")),
    "sub": ("elemwise_sub", ("_sub", "_minus", "_Minus")),
    "mul": ("elemwise_mul", ("_mul", "_Mul")),
    "div": ("elemwise_div", ("_div", "_Div")),
    "mod": ("_mod", ("_Mod",)),
    "power": ("_power", ("_Power",)),
    "maximum": ("_maximum", ("_Maximum",)),
    "minimum": ("_minimum", ("_Minimum",)),
    "hypot": ("_hypot", ("_Hypot",)),
    "equal": ("_equal", ("_Equal",)),
    "not_equal": ("_not_equal", ("_Not_Equal",)),
    "greater": ("_greater", ("_Greater",)),
    "greater_equal": ("_greater_equal", ("_Greater_Equal",)),
    "lesser": ("_lesser", ("_Lesser",)),
    "lesser_equal": ("_lesser_equal", ("_Lesser_Equal",)),
    "logical_and": ("_logical_and", ("_Logical_And",)),
    "logical_or": ("_logical_or", ("_Logical_Or",)),
    "logical_xor": ("_logical_xor", ("_Logical_Xor",)),
}
BROADCAST_ALIASES = {"add": ("broadcast_plus",), "sub": ("broadcast_minus",)}


def _ref(fn):
    def reference(params, a, b):
        return np.asarray(fn(a, b)).astype(a.dtype)
    return reference


def _same_shape_grad(grad):
    def gradient(b, node, ogs):
        x, z = node.inputs
        f = lambda key, u, v: b.op(ELEMWISE_NAMES[key][0], u, v)  # noqa: E731
        return list(grad(b, f, x, z, node.out(0), ogs[0]))
    return gradient


def _broadcast_shape(params, ins, outs):
    a, b = ins
    if known(a) and known(b):
        return [a, b], [unify(broadcast(a, b), outs[0])]
    return [a, b], [outs[0]]


def _broadcast_grad(grad):
    def gradient(b, node, ogs):
        x, z = node.inputs
        f = lambda key, u, v: b.op("broadcast_" + key, u, v)  # noqa: E731
        da, db = grad(b, f, x, z, node.out(0), ogs[0])
        return [b.sum_like(da, x), b.sum_like(db, z)]
    return gradient


for _key, (_fn, _npfn, _grad) in BINARY.items():
    _name, _aliases = ELEMWISE_NAMES[_key]
    _lower = map_lower(lambda params, a, b, _f=_fn: _f(a, b))
    register(OpDef(_name, kind="elementwise", inputs=("lhs", "rhs"), lower=_lower,
                   gradient=_same_shape_grad(_grad), reference=_ref(_npfn), aliases=_aliases))
    register(OpDef("broadcast_" + _key, kind="broadcast", inputs=("lhs", "rhs"), lower=_lower,
                   shape=_broadcast_shape, gradient=_broadcast_grad(_grad), reference=_ref(_npfn),
                   aliases=BROADCAST_ALIASES.get(_key, ())))


# ---- scalar forms ----
SCALAR_SCHEMA = {"scalar": P.Float(1.0), "is_int": P.Bool(True)}


def _scalar_ref(fn, reverse):
    def reference(params, x):
        s = np.asarray(params["scalar"], dtype=x.dtype)
        s = np.broadcast_to(s, x.shape)
        return np.asarray(fn(s, x) if reverse else fn(x, s)).astype(x.dtype)
    return reference


def _scalar_grad(key, reverse):
    """Gradient of a scalar op, from the binary rule with the scalar as a constant."""
    def gradient(b, node, ogs):
        x, y, og = node.inputs[0], node.out(0), ogs[0]
        s = node.params["scalar"]
        if key in ("add",):
            return [og]
        if key == "sub":
            return [b.neg(og) if reverse else og]
        if key == "mul":
            return [b.scalar("_mul_scalar", og, s)]
        if key == "div":
            return [b.neg(b.mul(og, b.div(y, x))) if reverse else b.scalar("_div_scalar", og, s)]
        if key == "mod":
            return [b.neg(b.mul(og, b.op("floor", b.scalar("_rdiv_scalar", x, s)))) if reverse else og]
        if key == "power":
            if reverse:
                return [b.scalar("_mul_scalar", b.mul(og, y), float(np.log(s)) if s > 0 else float("nan"))]
            return [b.mul(og, b.scalar("_mul_scalar", b.scalar("_power_scalar", x, s - 1.0), s))]
        if key == "maximum":
            return [b.mul(og, b.scalar("_greater_equal_scalar", x, s))]
        if key == "minimum":
            return [b.mul(og, b.scalar("_lesser_equal_scalar", x, s))]
        if key == "hypot":
            return [b.mul(og, b.div(x, y))]
        return [b.zeros_like(x)]
    return gradient


SCALAR_ALIASES = {
    "_plus_scalar": ("_PlusScalar",), "_minus_scalar": ("_MinusScalar",),
    "_rminus_scalar": ("_RMinusScalar",), "_mul_scalar": ("_MulScalar",),
    "_div_scalar": ("_DivScalar",), "_rdiv_scalar": ("_RDivScalar",),
    "_mod_scalar": ("_ModScalar",), "_rmod_scalar": ("_RModScalar",),
    "_power_scalar": ("_PowerScalar",), "_rpower_scalar": ("_RPowerScalar",),
    "_maximum_scalar": ("_MaximumScalar",), "_minimum_scalar": ("_MinimumScalar",),
    "_hypot_scalar": ("_HypotScalar",), "_equal_scalar": ("_EqualScalar",),
    "_not_equal_scalar": ("_NotEqualScalar",), "_greater_scalar": ("_GreaterScalar",),
    "_greater_equal_scalar": ("_GreaterEqualScalar",), "_lesser_scalar": ("_LesserScalar",),
    "_lesser_equal_scalar": ("_LesserEqualScalar",),
    "_logical_and_scalar": ("_LogicalAndScalar",), "_logical_or_scalar": ("_LogicalOrScalar",),
    "_logical_xor_scalar": ("_LogicalXorScalar",),
}
_SCALAR_KEYS = {"plus": "add", "minus": "sub", "mul": "mul", "div": "div", "mod": "mod",
                "power": "power", "maximum": "maximum", "minimum": "minimum", "hypot": "hypot",
                "equal": "equal", "not_equal": "not_equal", "greater": "greater",
                "greater_equal": "greater_equal", "lesser": "lesser", "lesser_equal": "lesser_equal",
                "logical_and": "logical_and", "logical_or": "logical_or", "logical_xor": "logical_xor"}
REVERSIBLE = ("minus", "div", "mod", "power")


def _register_scalar(stem, reverse):
    key = _SCALAR_KEYS[stem]
    fn, npfn, _ = BINARY[key]
    name = "_%s%s_scalar" % ("r" if reverse else "", stem)

    def lower_fn(params, x, _f=fn):
        s = scalar_of(params, x)
        return _f(s, x) if reverse else _f(x, s)
    aliases = SCALAR_ALIASES.get(name, ())
    hint = aliases[0].lower() if aliases else name
    register(OpDef(name, kind="elementwise", schema=SCALAR_SCHEMA, lower=map_lower(lower_fn),
                   gradient=_scalar_grad(key, reverse), reference=_scalar_ref(npfn, reverse),
                   aliases=aliases, hint=hint))


for _stem in _SCALAR_KEYS:
    _register_scalar(_stem, False)
    if _stem in REVERSIBLE:
        _register_scalar(_stem, True)


# ---- n-ary and selection ----
def _add_n_inputs(params):
    return ["arg%d" % i for i in range(params["num_args"])]


def _add_n_lower(params, ins, outs):
    return map_lower(lambda p, *xs: _sum(xs))(params, ins, outs)


def _sum(xs):
    acc = xs[0]
    for x in xs[1:]:
        acc = acc + x
    return acc


register(OpDef("add_n", kind="elementwise", inputs=_add_n_inputs, schema={"num_args": P.Int()},
               aliases=("ElementWiseSum", "_sparse_ElementWiseSum"), num_args_key="num_args",
               lower=_add_n_lower, gradient=lambda b, node, ogs: [ogs[0]] * len(node.inputs),
               reference=lambda params, *xs: np.sum(np.stack(xs), axis=0).astype(xs[0].dtype)))


def _clip_lower(params, x):
    lo = E.const(params["a_min"], x.dtype) if E.is_float(x.dtype) else E.const(int(params["a_min"]), x.dtype)
    hi = E.const(params["a_max"], x.dtype) if E.is_float(x.dtype) else E.const(int(params["a_max"]), x.dtype)
    return E.minimum(E.maximum(x, lo), hi)


def _clip_grad(b, node, ogs):
    x = node.inputs[0]
    p = node.params
    inside = b.mul(b.scalar("_greater_equal_scalar", x, p["a_min"]), b.scalar("_lesser_equal_scalar", x, p["a_max"]))
    return [b.mul(ogs[0], inside)]


register(OpDef("clip", kind="elementwise", schema={"a_min": P.Float(), "a_max": P.Float()},
               lower=map_lower(_clip_lower), gradient=_clip_grad,
               reference=lambda params, x: np.clip(x, params["a_min"], params["a_max"]).astype(x.dtype)))


def _where_shape(params, ins, outs):
    c, x, y = ins
    s = unify(unify(x, y), outs[0])
    if c is not None and s is not None and c != s and not (len(c) == 1 and c[0] == s[0]):
        raise InferError("condition shape %s must equal %s or be (%d,)" % (c, s, s[0]))
    return [c, s, s], [s]


def _where_type(params, ins, outs):
    from .shapes import unify_all_types
    t = unify_all_types([ins[1], ins[2], outs[0]])
    return [ins[0], t, t], [t]


def _where_lower(params, ins, outs):
    from ..kernel import compute
    c, x, y = ins
    out = outs[0]

    def body(*i):
        ci = c.load(i if c.ndim == out.ndim else (i[0],))
        return E.select(E.cmp("ne", ci, E.const(0 if not E.is_float(c.dtype) else 0.0, c.dtype)), x.load(i), y.load(i))
    return [compute(out, body)]


def _where_grad(b, node, ogs):
    c, x, y = node.inputs
    og = ogs[0]
    zeros = b.zeros_like(og)
    return [b.zeros_like(c), b.op("where", c, og, zeros), b.op("where", c, zeros, og)]


def _where_ref(params, c, x, y):
    if c.shape != x.shape:
        c = c.reshape((-1,) + (1,) * (x.ndim - 1))
    return np.where(c != 0, x, y)


register(OpDef("where", kind="elementwise", inputs=("condition", "x", "y"), lower=_where_lower,
               shape=_where_shape, dtype=_where_type, gradient=_where_grad, reference=_where_ref))
