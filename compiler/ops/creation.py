"""Array-creation operators with no inputs (MXNet's ``_zeros``, ``_ones``, ``_full``,
``_arange``, ``_eye``, ``_linspace``): ``F.zeros(...)`` or ``F.arange(...)`` inside a
hybridized block become graph nodes, computed by a kernel instead of stored constants.

Values are computed in float64 and cast to the output dtype, as MXNet does.
"""
from __future__ import annotations

import math

import numpy as np

from .. import expr as E
from ..kernel import compute
from . import params as P
from .registry import OpDef, register
from .shapes import InferError

F64 = "float64"


def _f(v):
    return E.const(float(v), F64)


def _source(name, schema, shape_fn, value_fn, reference, doc, aliases=()):
    """``value_fn(params, shape, axes) -> float64 expression`` of the element at ``axes``."""
    def shape(params, ins, outs):
        s = tuple(shape_fn(params))
        if any(d < 0 for d in s):
            raise InferError("output shape %s has a negative dimension" % (s,))
        return [], [s]

    def dtype(params, ins, outs):
        return [], [params.get("dtype") or "float32"]

    def lower(params, ins, outs):
        out = outs[0]
        return [compute(out, lambda *i: E.cast(value_fn(params, out.shape, i), out.dtype))]

    def ref(params):
        return reference(params).astype(params.get("dtype") or "float32")

    register(OpDef(name, kind="opaque", inputs=(), schema=dict(schema, ctx=P.Str(""), dtype=P.DType("float32")),
                   shape=shape, dtype=dtype, lower=lower, reference=ref, gradient=lambda b, node, ogs: [],
                   aliases=aliases, doc=doc))


def _given_shape(params):
    return params["shape"]


SHAPED = {"shape": P.Tuple(())}
_source("_zeros", SHAPED, _given_shape, lambda p, s, i: _f(0.0), lambda p: np.zeros(p["shape"]),
        "Zeros of shape= and dtype=.")
_source("_ones", SHAPED, _given_shape, lambda p, s, i: _f(1.0), lambda p: np.ones(p["shape"]),
        "Ones of shape= and dtype=.")
_source("_full", dict(SHAPED, value=P.Float()), _given_shape, lambda p, s, i: _f(p["value"]),
        lambda p: np.full(p["shape"], p["value"]), "value= everywhere, of shape= and dtype=.")


def _arange_bounds(params):
    if params["infer_range"]:
        raise NotImplementedError("operator _arange: infer_range=True (length from the consumer's shape)")
    start, stop = params["start"], params["stop"]
    if stop is None:
        start, stop = 0.0, start
    step, repeat = params["step"], params["repeat"]
    if (step > 0 and start >= stop) or (step < 0 and start <= stop) or step == 0:
        raise InferError("invalid range (start, stop, step) = (%g, %g, %g)" % (start, stop, step))
    if repeat < 1:
        raise InferError("repeat must be positive, got %d" % repeat)
    return start, step, repeat, max(0, int(math.ceil((stop - start) / step)))


def _arange_shape(params):
    _, _, repeat, n = _arange_bounds(params)
    return (n * repeat,)


def _arange_value(params, shape, axes):
    start, step, repeat, _ = _arange_bounds(params)
    k = axes[0] // E.const(repeat, "int64") if repeat > 1 else axes[0]
    return _f(start) + E.cast(k, F64) * _f(step)


def _arange_ref(params):
    start, step, repeat, n = _arange_bounds(params)
    return np.repeat(start + np.arange(n, dtype=np.float64) * step, repeat)


_source("_arange", {"start": P.Float(), "stop": P.OptFloat(None), "step": P.Float(1.0), "repeat": P.Int(1),
                    "infer_range": P.Bool(False)},
        _arange_shape, _arange_value, _arange_ref,
        "start, start+step, ... below stop (or 0..start without stop), each repeated repeat times.")


def _eye_shape(params):
    n, m = params["N"], params["M"] or params["N"]
    return (n, m)


def _eye_value(params, shape, axes):
    diag = E.cmp("eq", axes[1] - axes[0], E.const(int(params["k"]), "int64"))
    return E.select(diag, _f(1.0), _f(0.0))


_source("_eye", {"N": P.Int(), "M": P.Int(0), "k": P.Int(0)}, _eye_shape, _eye_value,
        lambda p: np.eye(p["N"], p["M"] or p["N"], p["k"]), "Ones on the k-th diagonal of an N x M matrix.")


def _linspace_step(params):
    num = params["num"]
    if num < 0:
        raise InferError("num must be non-negative, got %d" % num)
    div = num - 1 if params["endpoint"] else num
    return (params["stop"] - params["start"]) / div if div > 0 else 0.0


_source("_linspace", {"start": P.Float(), "stop": P.Float(), "num": P.Int(), "endpoint": P.Bool(True)},
        lambda p: (p["num"],),
        lambda p, s, i: _f(p["start"]) + E.cast(i[0], F64) * _f(_linspace_step(p)),
        lambda p: p["start"] + np.arange(p["num"], dtype=np.float64) * _linspace_step(p),
        "num evenly spaced values from start to stop (stop included when endpoint).")
