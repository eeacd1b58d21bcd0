"""LeakyReLU and its variants (leaky, elu, selu, gelu, prelu, rrelu).

* leaky: ``x > 0 ? x : slope * x``
* elu: ``x > 0 ? x : slope * (exp(x) - 1)``
* selu: ``lambda * (x > 0 ? x : alpha * (exp(x) - 1))`` with SELU's constants
* gelu: ``0.5 * x * (1 + erf(x / sqrt(2)))`` (the erf form, as MXNet 1.9)
* prelu: ``x > 0 ? x : gamma * x`` with a learned ``gamma`` of shape ``(C,)``
  broadcast along axis 1 (a gamma of size 1 is broadcast everywhere)
* rrelu: inference behaviour only, i.e. leaky with slope
  ``(lower_bound + upper_bound) / 2``; kiln does not sample random slopes in
  training mode, and does not expose rrelu's hidden mask output.

Gradients are dedicated kernels: ``_backward_LeakyReLU`` for the data and
``_backward_LeakyReLU_gamma`` (a reduction over every axis but 1) for prelu's gamma.
"""
from __future__ import annotations

import math

import numpy as np

from .. import expr as E
from ..kernel import compute
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, unify, unify_all_types

ACT_TYPES = ("elu", "gelu", "leaky", "prelu", "rrelu", "selu")
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946

SCHEMA = {"act_type": P.Str("leaky", choices=ACT_TYPES), "slope": P.Float(0.25),
          "lower_bound": P.Float(0.125), "upper_bound": P.Float(0.334)}


def _inputs(params):
    return ["data", "gamma"] if params.get("act_type") == "prelu" else ["data"]


def _c(v, dtype):
    return E.const(float(v), dtype)


def _slope(params):
    if params["act_type"] == "rrelu":
        return (params["lower_bound"] + params["upper_bound"]) / 2.0
    return params["slope"]


def _gamma_load(gamma, i):
    """gamma for data index ``i``: per channel (axis 1) or a single value."""
    if gamma.size == 1 or len(i) < 2:
        return gamma.load([_zero()] * gamma.ndim)
    from .layout import unflatten
    return gamma.load(unflatten(gamma.shape, i[1]))


def _zero():
    return E.const(0, "int64")


def _forward(params, x, g=None):
    t = params["act_type"]
    f = x.dtype
    pos = E.cmp("gt", x, _c(0, f))
    if t in ("leaky", "rrelu"):
        return E.select(pos, x, x * _c(_slope(params), f))
    if t == "prelu":
        return E.select(pos, x, x * g)
    if t == "elu":
        return E.select(pos, x, _c(params["slope"], f) * E.call("expm1", x))
    if t == "selu":
        return _c(SELU_LAMBDA, f) * E.select(pos, x, _c(SELU_ALPHA, f) * E.call("expm1", x))
    # gelu
    return _c(0.5, f) * x * (_c(1.0, f) + E.call("erf", x * _c(1.0 / math.sqrt(2.0), f)))


def _derivative(params, x, g=None):
    t = params["act_type"]
    f = x.dtype
    pos = E.cmp("gt", x, _c(0, f))
    one = _c(1.0, f)
    if t in ("leaky", "rrelu"):
        return E.select(pos, one, _c(_slope(params), f))
    if t == "prelu":
        return E.select(pos, one, g)
    if t == "elu":
        return E.select(pos, one, _c(params["slope"], f) * E.call("exp", x))
    if t == "selu":
        return _c(SELU_LAMBDA, f) * E.select(pos, one, _c(SELU_ALPHA, f) * E.call("exp", x))
    cdf = _c(0.5, f) * (one + E.call("erf", x * _c(1.0 / math.sqrt(2.0), f)))
    pdf = E.call("exp", _c(-0.5, f) * x * x) * _c(1.0 / math.sqrt(2.0 * math.pi), f)
    return cdf + x * pdf


def _check_float(dtype):
    if dtype is not None and not E.is_float(dtype):
        raise InferError("LeakyReLU needs floating-point data, got %s" % dtype)


def _shape(params, ins, outs):
    x = unify(ins[0], outs[0])
    if params["act_type"] != "prelu":
        return [x], [x]
    gamma = ins[1]
    if known(x):
        gamma = _check_gamma(x, gamma)
    return [x, gamma], [x]


def _check_gamma(x, gamma):
    """gamma's shape for data ``x`` (per channel when not given): 1 or data.shape[1] elements;
    the kernels index it by channel, so any other size would be read out of bounds."""
    c = x[1] if len(x) >= 2 else 1
    if gamma is None:
        return (c,)
    if known(gamma) and int(np.prod(gamma)) not in (1, c):
        raise InferError("prelu gamma %s must have 1 or %d (= data.shape[1]) elements" % (gamma, c))
    return gamma


def _type(params, ins, outs):
    t = unify_all_types(list(ins) + list(outs))
    _check_float(t)
    return [t] * len(ins), [t]


def _lower(params, ins, outs):
    x, out = ins[0], outs[0]
    gamma = ins[1] if params["act_type"] == "prelu" else None
    return [compute(out, lambda *i: _forward(params, x.load(i), _gamma_load(gamma, i) if gamma else None))]


def _attrs(node):
    return {k: v for k, v in node.attrs.items() if k in SCHEMA}


def _grad(b, node, ogs):
    ins = node.inputs
    dx = b.op("_backward_LeakyReLU", ogs[0], *ins, **_attrs(node))
    if node.params["act_type"] != "prelu":
        return [dx]
    return [dx, b.op("_backward_LeakyReLU_gamma", ogs[0], ins[0], ins[1])]


def _np_forward(params, x, gamma=None):
    t = params["act_type"]
    xd = x.astype(np.float64)
    if t in ("leaky", "rrelu"):
        r = np.where(xd > 0, xd, xd * _slope(params))
    elif t == "prelu":
        g = gamma.astype(np.float64).reshape(-1)
        g = g.reshape((1, -1) + (1,) * (x.ndim - 2)) if g.size > 1 else g.reshape(())
        r = np.where(xd > 0, xd, xd * g)
    elif t == "elu":
        r = np.where(xd > 0, xd, params["slope"] * np.expm1(xd))
    elif t == "selu":
        r = SELU_LAMBDA * np.where(xd > 0, xd, SELU_ALPHA * np.expm1(xd))
    else:
        from math import erf
        r = 0.5 * xd * (1 + np.vectorize(erf)(xd / math.sqrt(2.0)))
    return r.astype(x.dtype)


register(OpDef("LeakyReLU", kind="elementwise", inputs=_inputs, schema=SCHEMA, shape=_shape, dtype=_type,
               lower=_lower, gradient=_grad, reference=_np_forward,
               doc="LeakyReLU(data, gamma=None, act_type='leaky', slope=0.25, lower_bound=0.125, "
                   "upper_bound=0.334); rrelu uses the mean slope (inference behaviour)."))


def _bwd_inputs(params):
    return ["ograd"] + _inputs(params)


def _bwd_shape(params, ins, outs):
    s = unify(unify(ins[0], ins[1]), outs[0])
    return [s, s] + list(ins[2:]), [s]


def _bwd_type(params, ins, outs):
    t = unify_all_types(list(ins) + list(outs))
    return [t] * len(ins), [t]


def _bwd_lower(params, ins, outs):
    og, x = ins[0], ins[1]
    gamma = ins[2] if len(ins) > 2 else None
    return [compute(outs[0], lambda *i: og.load(i) * _derivative(params, x.load(i),
                                                                 _gamma_load(gamma, i) if gamma else None))]


register(OpDef("_backward_LeakyReLU", kind="elementwise", inputs=_bwd_inputs, schema=SCHEMA, shape=_bwd_shape,
               dtype=_bwd_type, lower=_bwd_lower))


def _gbwd_shape(params, ins, outs):
    og, x, gamma = ins
    s = unify(og, x)
    g = unify(gamma, outs[0])
    if known(s):
        g = _check_gamma(s, g)
    return [s, s, g], [g]


def _gbwd_lower(params, ins, outs):
    """d gamma[c] = sum over every axis but 1 of og * min(x, 0) (all axes if gamma has one element)."""
    og, x, gamma = ins
    out = outs[0]
    f = x.dtype

    def term(idx):
        v = x.load(idx)
        return og.load(idx) * E.select(E.cmp("gt", v, _c(0, f)), _c(0, f), v)

    if out.size == 1 or x.ndim < 2:
        rv = E.fresh_vars(x.ndim)
        return [compute(out, lambda *i: E.Reduce("sum", rv, x.shape, term(rv)))]
    from .layout import flat_index
    rv = E.fresh_vars(x.ndim - 1)
    extents = [x.shape[0]] + list(x.shape[2:])

    def body(*i):
        c = flat_index(out.shape, i)
        return E.Reduce("sum", rv, extents, term([rv[0], c] + list(rv[1:])))
    return [compute(out, body)]


register(OpDef("_backward_LeakyReLU_gamma", kind="reduce", inputs=("ograd", "data", "gamma"),
               shape=_gbwd_shape, dtype=_bwd_type, lower=_gbwd_lower))
