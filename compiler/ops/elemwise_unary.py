"""Elementwise unary operators: math, rounding, activations as plain functions."""
from __future__ import annotations

import math

import numpy as np

from .. import expr as E
from . import params as P
from .common import map_lower
from .registry import OpDef, register

LN2, LN10 = math.log(2.0), math.log(10.0)


def _f(name):
    return lambda x: E.call(name, x)


def _c(x, v):
    return E.const(v if E.is_float(x.dtype) else int(v), x.dtype)


def _sign(x):
    return E.select(E.cmp("gt", x, _c(x, 0)), _c(x, 1), E.select(E.cmp("lt", x, _c(x, 0)), _c(x, -1), _c(x, 0)))


def _asinh(x):
    """sign(x) * log1p(|x| + x^2 / (1 + sqrt(x^2 + 1))): accurate near 0 and for negative x."""
    one = _c(x, 1.0)
    a = E.call("abs", x)
    sq = a * a
    return _sign(x) * E.call("log1p", a + sq / (one + E.call("sqrt", sq + one)))


def _acosh(x):
    one = _c(x, 1.0)
    return E.call("log", x + E.call("sqrt", x * x - one))


def _atanh(x):
    return _c(x, 0.5) * E.call("log1p", _c(x, 2.0) * x / (_c(x, 1.0) - x))


def _cbrt(x):
    return _sign(x) * E.call("pow", E.call("abs", x), _c(x, 1.0 / 3.0))


def _sigmoid(x):
    one = _c(x, 1.0)
    return one / (one + E.call("exp", -x))


def _erfinv(x):
    """Giles' single-precision approximation, then two Newton steps on erf (float64)."""
    xd = E.cast(x, "float64")
    one = E.const(1.0, "float64")
    w = -E.call("log", (one - xd) * (one + xd))
    small = E.cmp("lt", w, E.const(5.0, "float64"))

    def poly(t, coeffs):
        acc = E.const(coeffs[0], "float64")
        for c in coeffs[1:]:
            acc = acc * t + E.const(c, "float64")
        return acc
    ws = w - E.const(2.5, "float64")
    wl = E.call("sqrt", w) - E.const(3.0, "float64")
    p_small = poly(ws, [2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                        -0.00125372503, -0.00417768164, 0.246640727, 1.50140941])
    p_large = poly(wl, [-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                        -0.0076224613, 0.00943887047, 1.00167406, 2.83297682])
    y = E.select(small, p_small, p_large) * xd
    two_over_sqrtpi = E.const(2.0 / math.sqrt(math.pi), "float64")
    for _ in range(2):
        err = E.call("erf", y) - xd
        y = y - err / (two_over_sqrtpi * E.call("exp", -(y * y)))
    inf = E.const(float("inf"), "float64")
    ax = E.call("abs", xd)
    y = E.select(E.cmp("eq", ax, one), E.select(E.cmp("gt", xd, E.const(0.0, "float64")), inf, -inf), y)
    return E.cast(y, x.dtype)


def digamma(x):
    """psi(x): reflection below 0.5, recurrence up to 6, then the asymptotic series (float64)."""
    xd = E.cast(x, "float64")
    half = E.const(0.5, "float64")
    one = E.const(1.0, "float64")
    pi = E.const(math.pi, "float64")
    reflect = E.cmp("lt", xd, half)
    z = E.select(reflect, one - xd, xd)
    acc = E.const(0.0, "float64")
    for _ in range(6):
        acc = acc - one / z
        z = z + one
    inv = one / z
    inv2 = inv * inv
    series = E.call("log", z) - half * inv - inv2 * (
        E.const(1 / 12, "float64") - inv2 * (E.const(1 / 120, "float64") - inv2 * (
            E.const(1 / 252, "float64") - inv2 * E.const(1 / 240, "float64"))))
    val = acc + series
    val = E.select(reflect, val - pi * E.call("cos", pi * xd) / E.call("sin", pi * xd), val)
    return E.cast(val, x.dtype)


# ---- numpy references (tests only) ----
def _vec(fn):
    return lambda x: np.vectorize(fn, otypes=[np.float64])(np.asarray(x, np.float64)).astype(np.asarray(x).dtype)


def _np_erfinv(x):
    def one(v):
        if v >= 1.0:
            return math.inf
        if v <= -1.0:
            return -math.inf
        lo, hi = -10.0, 10.0
        for _ in range(200):
            mid = (lo + hi) / 2
            if math.erf(mid) < v:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2
    return _vec(one)(x)


def _np_round(x):
    return np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5)).astype(x.dtype)


def _np_sign(x):
    return np.sign(x)


# ---- gradients: graphs of other operators ----
def _g(fn):
    """Gradient from ``fn(b, x, y, og) -> dx``."""
    def grad(b, node, ogs):
        x = node.inputs[0]
        return [fn(b, x, node.out(0), ogs[0])]
    return grad


def _zero(b, x, y, og):
    return b.zeros_like(x)


def _sq(b, e):
    return b.op("square", e)


GRADS = {
    "negative": lambda b, x, y, og: b.neg(og),
    "abs": lambda b, x, y, og: b.mul(og, b.op("sign", x)),
    "sign": _zero,
    "square": lambda b, x, y, og: b.mul(og, b.scalar("_mul_scalar", x, 2.0)),
    "sqrt": lambda b, x, y, og: b.div(og, b.scalar("_mul_scalar", y, 2.0)),
    "rsqrt": lambda b, x, y, og: b.mul(og, b.scalar("_mul_scalar", b.mul(y, _sq(b, y)), -0.5)),
    "exp": lambda b, x, y, og: b.mul(og, y),
    "expm1": lambda b, x, y, og: b.mul(og, b.scalar("_plus_scalar", y, 1.0)),
    "log": lambda b, x, y, og: b.div(og, x),
    "log1p": lambda b, x, y, og: b.div(og, b.scalar("_plus_scalar", x, 1.0)),
    "log2": lambda b, x, y, og: b.div(og, b.scalar("_mul_scalar", x, LN2)),
    "log10": lambda b, x, y, og: b.div(og, b.scalar("_mul_scalar", x, LN10)),
    "sin": lambda b, x, y, og: b.mul(og, b.op("cos", x)),
    "cos": lambda b, x, y, og: b.neg(b.mul(og, b.op("sin", x))),
    "tan": lambda b, x, y, og: b.mul(og, b.scalar("_plus_scalar", _sq(b, y), 1.0)),
    "arcsin": lambda b, x, y, og: b.mul(og, b.op("rsqrt", b.scalar("_rminus_scalar", _sq(b, x), 1.0))),
    "arccos": lambda b, x, y, og: b.neg(b.mul(og, b.op("rsqrt", b.scalar("_rminus_scalar", _sq(b, x), 1.0)))),
    "arctan": lambda b, x, y, og: b.div(og, b.scalar("_plus_scalar", _sq(b, x), 1.0)),
    "sinh": lambda b, x, y, og: b.mul(og, b.op("cosh", x)),
    "cosh": lambda b, x, y, og: b.mul(og, b.op("sinh", x)),
    "tanh": lambda b, x, y, og: b.mul(og, b.scalar("_rminus_scalar", _sq(b, y), 1.0)),
    "sigmoid": lambda b, x, y, og: b.mul(og, b.mul(y, b.scalar("_rminus_scalar", y, 1.0))),
    # reads the output, not the input (x > 0 iff relu(x) > 0): the pre-activation need not be kept
    "relu": lambda b, x, y, og: b.mul(og, b.scalar("_greater_scalar", y, 0.0)),
    "softsign": lambda b, x, y, og: b.div(og, _sq(b, b.scalar("_plus_scalar", b.op("abs", x), 1.0))),
    "reciprocal": lambda b, x, y, og: b.neg(b.mul(og, _sq(b, y))),
    "floor": _zero, "ceil": _zero, "round": _zero, "rint": _zero, "trunc": _zero, "fix": _zero,
    "logical_not": _zero,
    "erf": lambda b, x, y, og: b.mul(og, b.scalar("_mul_scalar", b.op("exp", b.neg(_sq(b, x))),
                                                 2.0 / math.sqrt(math.pi))),
    "erfinv": lambda b, x, y, og: b.mul(og, b.scalar("_mul_scalar", b.op("exp", _sq(b, y)),
                                                    math.sqrt(math.pi) / 2.0)),
    "gamma": lambda b, x, y, og: b.mul(og, b.mul(y, b.op("_digamma", x))),
    "gammaln": lambda b, x, y, og: b.mul(og, b.op("_digamma", x)),
    "_digamma": None,
    "arcsinh": lambda b, x, y, og: b.mul(og, b.op("rsqrt", b.scalar("_plus_scalar", _sq(b, x), 1.0))),
    "arccosh": lambda b, x, y, og: b.mul(og, b.op("rsqrt", b.scalar("_minus_scalar", _sq(b, x), 1.0))),
    "arctanh": lambda b, x, y, og: b.div(og, b.scalar("_rminus_scalar", _sq(b, x), 1.0)),
    "degrees": lambda b, x, y, og: b.scalar("_mul_scalar", og, 180.0 / math.pi),
    "radians": lambda b, x, y, og: b.scalar("_mul_scalar", og, math.pi / 180.0),
    "cbrt": lambda b, x, y, og: b.div(og, b.scalar("_mul_scalar", _sq(b, y), 3.0)),
    "rcbrt": lambda b, x, y, og: b.div(b.scalar("_mul_scalar", og, -1.0 / 3.0), b.mul(x, b.op("cbrt", x))),
}

# name -> (expression, numpy reference, accepts integer dtypes)
UNARY = {
    "negative": (lambda x: -x, np.negative, True),
    "abs": (_f("abs"), np.abs, True),
    "sign": (_sign, _np_sign, True),
    "square": (lambda x: x * x, np.square, True),
    "sqrt": (_f("sqrt"), np.sqrt, False),
    "rsqrt": (lambda x: _c(x, 1.0) / E.call("sqrt", x), lambda x: 1.0 / np.sqrt(x), False),
    "exp": (_f("exp"), np.exp, False),
    "expm1": (_f("expm1"), np.expm1, False),
    "log": (_f("log"), np.log, False),
    "log1p": (_f("log1p"), np.log1p, False),
    "log2": (_f("log2"), np.log2, False),
    "log10": (_f("log10"), np.log10, False),
    "sin": (_f("sin"), np.sin, False),
    "cos": (_f("cos"), np.cos, False),
    "tan": (_f("tan"), np.tan, False),
    "arcsin": (_f("asin"), np.arcsin, False),
    "arccos": (_f("acos"), np.arccos, False),
    "arctan": (_f("atan"), np.arctan, False),
    "sinh": (_f("sinh"), np.sinh, False),
    "cosh": (_f("cosh"), np.cosh, False),
    "tanh": (_f("tanh"), np.tanh, False),
    "sigmoid": (_sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x)), False),
    "relu": (lambda x: E.maximum(x, _c(x, 0)), lambda x: np.maximum(x, 0), True),
    "softsign": (lambda x: x / (_c(x, 1.0) + E.call("abs", x)), lambda x: x / (1 + np.abs(x)), False),
    "reciprocal": (lambda x: _c(x, 1.0) / x, np.reciprocal, False),
    "floor": (_f("floor"), np.floor, False),
    "ceil": (_f("ceil"), np.ceil, False),
    "round": (_f("round"), _np_round, False),
    "rint": (lambda x: E.call("ceil", x - _c(x, 0.5)), lambda x: np.ceil(x - 0.5), False),
    "trunc": (_f("trunc"), np.trunc, False),
    "fix": (_f("trunc"), np.fix, False),
    "logical_not": (lambda x: E.select(E.cmp("eq", x, _c(x, 0)), _c(x, 1), _c(x, 0)),
                    lambda x: (x == 0).astype(x.dtype), True),
    "erf": (_f("erf"), _vec(math.erf), False),
    "erfinv": (_erfinv, _np_erfinv, False),
    "gamma": (_f("tgamma"), _vec(math.gamma), False),
    "gammaln": (_f("lgamma"), _vec(math.lgamma), False),
    "_digamma": (digamma, None, False),
    "arcsinh": (_asinh, np.arcsinh, False),
    "arccosh": (_acosh, np.arccosh, False),
    "arctanh": (_atanh, np.arctanh, False),
    "degrees": (lambda x: x * _c(x, 180.0 / math.pi), np.degrees, False),
    "radians": (lambda x: x * _c(x, math.pi / 180.0), np.radians, False),
    "cbrt": (_cbrt, np.cbrt, False),
    "rcbrt": (lambda x: _c(x, 1.0) / _cbrt(x), lambda x: 1.0 / np.cbrt(x), False),
}


def _register_unary(name, fn, ref, ok_int):
    grad = GRADS[name]

    def reference(params, x):
        return np.asarray(ref(x)).astype(x.dtype)
    register(OpDef(
        name, kind="elementwise", inputs=("data",),
        lower=map_lower(lambda params, x, _fn=fn: _fn(x)),
        gradient=_g(grad) if grad else None,
        reference=reference if ref else None,
        doc="int dtypes %s" % ("allowed" if ok_int else "computed through float64"),
    ))


for _name, (_fn, _ref, _ok) in UNARY.items():
    _register_unary(_name, _fn, _ref, _ok)


def _identity_grad(b, node, ogs):
    return [ogs[0]]


register(OpDef("identity", kind="elementwise", aliases=("_copy",),
               lower=map_lower(lambda params, x: x), gradient=_identity_grad,
               reference=lambda params, x: x.copy()))


def _block_grad(b, node, ogs):
    return [b.zeros_like(node.inputs[0])]


register(OpDef("BlockGrad", kind="elementwise", aliases=("stop_gradient",), hint="blockgrad",
               lower=map_lower(lambda params, x: x), gradient=_block_grad,
               reference=lambda params, x: x.copy()))


def _fill(value):
    return map_lower(lambda params, x: _c(x, value))


def _like_shape(params, ins, outs):
    from .shapes import unify
    s = unify(ins[0], outs[0])
    return [s], [s]


register(OpDef("zeros_like", kind="elementwise", lower=_fill(0), gradient=lambda b, n, og: [b.zeros_like(n.inputs[0])],
               reference=lambda params, x: np.zeros_like(x), shape=_like_shape))
register(OpDef("ones_like", kind="elementwise", lower=_fill(1), gradient=lambda b, n, og: [b.zeros_like(n.inputs[0])],
               reference=lambda params, x: np.ones_like(x), shape=_like_shape))


def _cast_type(params, ins, outs):
    return [ins[0]], [params["dtype"]]


register(OpDef("Cast", kind="elementwise", aliases=("cast",), schema={"dtype": P.DType()},
               lower=map_lower(lambda params, x: x), dtype=_cast_type,
               gradient=lambda b, n, og: [b.op("_cast_like", og[0], n.inputs[0])],
               reference=lambda params, x: x.astype(params["dtype"])))


def _cast_like_type(params, ins, outs):
    return [ins[0], ins[1]], [ins[1]]


def _cast_like_shape(params, ins, outs):
    from .shapes import unify
    s = unify(ins[0], outs[0])
    return [s, ins[1]], [s]


register(OpDef("_cast_like", kind="elementwise", inputs=("data", "like"),
               lower=lambda params, ins, outs: map_lower(lambda p, x: x)(params, ins[:1], outs),
               dtype=_cast_like_type, shape=_cast_like_shape,
               gradient=lambda b, n, og: [b.op("_cast_like", og[0], n.inputs[0]), None]))


# smooth_l1(x, sigma=scalar): 0.5 (sigma x)^2 where |x| < 1/sigma^2, else |x| - 0.5/sigma^2
def _smooth_l1(params, x):
    s2 = float(params["scalar"]) ** 2
    a = E.call("abs", x)
    return E.select(E.cmp("lt", a, _c(x, 1.0 / s2)), _c(x, 0.5 * s2) * x * x, a - _c(x, 0.5 / s2))


def _np_smooth_l1(params, x):
    s2 = float(params["scalar"]) ** 2
    a = np.abs(x)
    return np.where(a < 1.0 / s2, 0.5 * s2 * x * x, a - 0.5 / s2).astype(x.dtype)


def _smooth_l1_grad(b, node, ogs):
    x = node.inputs[0]
    s2 = float(node.params["scalar"]) ** 2
    inside = b.scalar("_lesser_scalar", b.op("abs", x), 1.0 / s2)
    return [b.mul(ogs[0], b.op("where", inside, b.scalar("_mul_scalar", x, s2), b.op("sign", x)))]


register(OpDef("smooth_l1", kind="elementwise", schema={"scalar": P.Float(1.0)},
               lower=map_lower(_smooth_l1), gradient=_smooth_l1_grad, reference=_np_smooth_l1))
