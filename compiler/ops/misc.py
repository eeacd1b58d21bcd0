"""Small MXNet 1.x operators that exported models use: amp_cast, amp_multicast, hard_sigmoid,
softmin, _split_v2, moments, _contrib_div_sqrt_dim and _contrib_arange_like.

Casts and hard_sigmoid are elementwise loop nests with declared gradients; softmin, _split_v2,
moments and div_sqrt_dim are composites of existing operators; arange_like is a source-like
injective kernel that reads its input only for the shape.
"""
from __future__ import annotations

import math

import numpy as np

from .. import expr as E
from ..kernel import compute
from . import params as P
from .common import map_lower
from .registry import OpDef, register
from .shapes import InferError, known, norm_axes, norm_axis, unify

I64 = "int64"
AMP_FLOATS = ("float16", "float32")  # the only types AMP casts touch (MXNet 1.9.1)


class _OptBool(P.Bool):
    kind = "bool or None"

    def convert(self, value):
        if value is None or (isinstance(value, str) and value.strip() in ("None", "")):
            return None
        return super().convert(value)


# ---------------------------------------------------------------- amp_cast / amp_multicast
def _amp_target(params):
    t = params["dtype"]
    if t == "bfloat16":
        raise InferError("amp_cast to bfloat16 is not supported (kiln has no bfloat16 arrays)")
    return t


def _amp_cast_type(params, ins, outs):
    t = ins[0]
    if t is None:
        return list(ins), list(outs)
    return [t], [_amp_target(params) if t in AMP_FLOATS else t]


def _cast_lower(params, ins, outs):
    return [compute(o, lambda *i, x=x, o=o: E.cast(x.load(i), o.dtype)) for x, o in zip(ins, outs)]


register(OpDef("amp_cast", kind="elementwise",
               schema={"dtype": P.Str(choices=("bfloat16", "float16", "float32", "float64", "int32", "int64",
                                                "int8", "uint8"))},
               dtype=_amp_cast_type, lower=_cast_lower,
               gradient=lambda b, node, ogs: [b.op("_cast_like", ogs[0], node.inputs[0])],
               reference=lambda params, x: x.astype(_amp_target(params)) if x.dtype.name in AMP_FLOATS else x.copy(),
               doc="Casts float16/float32 data to dtype; other types pass unchanged (MXNet's AMP cast)."))


def _multicast_target(params, types):
    """float16/float32 inputs all become float32 (float16 with cast_narrow) when any input has
    that type; every other type passes unchanged."""
    amp = [t for t in types if t in AMP_FLOATS]
    if params["cast_narrow"]:
        return "float16" if "float16" in amp else "float32"
    return "float32" if "float32" in amp else "float16"


def _multicast_type(params, ins, outs):
    if any(t is None for t in ins):
        return list(ins), list(outs)
    target = _multicast_target(params, ins)
    return list(ins), [target if t in AMP_FLOATS else t for t in ins]


def _multicast_shape(params, ins, outs):
    shapes = [unify(a, b) for a, b in zip(ins, outs)]
    return shapes, list(shapes)


def _np_multicast(params, *xs):
    target = _multicast_target(params, [x.dtype.name for x in xs])
    return tuple(x.astype(target) if x.dtype.name in AMP_FLOATS else x.copy() for x in xs)


register(OpDef("amp_multicast", kind="injective",
               inputs=lambda params: ["data_%d" % k for k in range(params.get("num_outputs") or 1)],
               schema={"num_outputs": P.Int(), "cast_narrow": P.Bool(False)}, num_args_key="num_outputs",
               outputs=lambda params: params["num_outputs"], shape=_multicast_shape, dtype=_multicast_type,
               lower=_cast_lower, reference=_np_multicast,
               gradient=lambda b, node, ogs: [b.op("_cast_like", g, x) for g, x in zip(ogs, node.inputs)],
               doc="Casts float16/float32 inputs to their widest (narrowest with cast_narrow) common type."))


# ---------------------------------------------------------------- hard_sigmoid
HS_SCHEMA = {"alpha": P.Float(0.2), "beta": P.Float(0.5)}


def _hs_linear(params, x):
    return x * E.const(params["alpha"], x.dtype) + E.const(params["beta"], x.dtype)


def _hs(params, x):
    return E.maximum(E.minimum(_hs_linear(params, x), E.const(1.0, x.dtype)), E.const(0.0, x.dtype))


def _hs_bwd(params, og, x):
    """alpha where 0 < alpha * x + beta < 1 (strictly, as MXNet), else 0."""
    y = _hs_linear(params, x)
    inside = E.Call("and", (E.cmp("gt", y, 0.0), E.cmp("lt", y, 1.0)))
    return E.select(inside, og * E.const(params["alpha"], og.dtype), E.const(0.0, og.dtype))


def _np_hs_linear(params, x):
    return x * x.dtype.type(params["alpha"]) + x.dtype.type(params["beta"])


register(OpDef("hard_sigmoid", kind="elementwise", schema=HS_SCHEMA, lower=map_lower(_hs),
               gradient=lambda b, node, ogs: [b.op("_backward_hard_sigmoid", ogs[0], node.inputs[0], **node.params)],
               reference=lambda params, x: np.clip(_np_hs_linear(params, x), 0, 1).astype(x.dtype),
               doc="max(0, min(1, alpha * x + beta))."))
register(OpDef("_backward_hard_sigmoid", kind="elementwise", inputs=("grad", "data"), schema=HS_SCHEMA,
               lower=map_lower(_hs_bwd),
               reference=lambda params, og, x: np.where((_np_hs_linear(params, x) > 0) & (_np_hs_linear(params, x) < 1),
                                                        og * og.dtype.type(params["alpha"]), 0).astype(og.dtype)))


# ---------------------------------------------------------------- softmin
SOFTMIN_SCHEMA = {"axis": P.Int(-1), "temperature": P.OptFloat(None),
                  "dtype": P.Str(None, choices=(None, "float16", "float32", "float64")),
                  "use_length": _OptBool(False)}


def _softmin_expand(b, inputs, params):
    if params.get("use_length"):
        raise NotImplementedError("softmin with use_length=True is not supported")
    attrs = {k: params[k] for k in ("axis", "temperature", "dtype") if params[k] is not None}
    return [b.op("softmax", b.op("negative", inputs[0]), **attrs)]


def _softmin_type(params, ins, outs):
    if params.get("dtype"):
        return [ins[0]], [params["dtype"]]
    t = ins[0] or outs[0]
    return [t], [t]


def _np_softmin(params, x):
    t = params.get("temperature") or 1.0
    z = -x.astype(np.float64) / t
    e = np.exp(z - z.max(axis=params["axis"], keepdims=True))
    return (e / e.sum(axis=params["axis"], keepdims=True)).astype(params.get("dtype") or x.dtype)


register(OpDef("softmin", kind="composite", schema=SOFTMIN_SCHEMA, dtype=_softmin_type, expand=_softmin_expand,
               reference=_np_softmin, doc="softmax(-x / temperature) along axis."))


# ---------------------------------------------------------------- _split_v2
SPLIT_V2_SCHEMA = {"indices": P.Tuple(), "axis": P.Int(1), "squeeze_axis": P.Bool(False), "sections": P.Int(0)}


def _split_count(params):
    return params["sections"] if params["sections"] > 0 else len(params["indices"])


def _split_bounds(params, n):
    """[(begin, end)] of each piece along an axis of size n (MXNet: an index past the end gives
    an empty piece, which kiln's arrays cannot hold)."""
    if params["sections"] > 0:
        k = params["sections"]
        if n % k:
            raise InferError("_split_v2: axis size %d is not divisible into %d sections" % (n, k))
        starts = [i * (n // k) for i in range(k)]
    else:
        starts = list(params["indices"])
    bounds = [(min(s, n), min(e, n)) for s, e in zip(starts, starts[1:] + [n])]
    if any(e <= s for s, e in bounds):
        raise InferError("_split_v2: indices %s give an empty piece of an axis of size %d" % (tuple(starts), n))
    return bounds


def _split_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return list(ins), list(outs)
    a = norm_axis(params["axis"], len(x))
    res = []
    for (s, e), o in zip(_split_bounds(params, x[a]), outs):
        shape = list(x)
        shape[a] = e - s
        if params["squeeze_axis"]:
            if e - s != 1:
                raise InferError("_split_v2: squeeze_axis needs pieces of size 1, got %d" % (e - s))
            del shape[a]
        res.append(unify(o, tuple(shape)))
    return list(ins), res


def _split_expand(b, inputs, params, in_shapes):
    x = inputs[0]
    a = norm_axis(params["axis"], len(in_shapes[0]))
    outs = []
    for s, e in _split_bounds(params, in_shapes[0][a]):
        piece = b.op("slice_axis", x, axis=a, begin=s, end=e)
        outs.append(b.op("squeeze", piece, axis=(a,)) if params["squeeze_axis"] else piece)
    return outs


def _split_grad(b, node, ogs):
    """The output gradients concatenated back along the axis (one copy, not one sum per piece)."""
    a = node.params["axis"]
    if node.params["squeeze_axis"]:
        ogs = [b.op("expand_dims", g, axis=a) for g in ogs]
    if len(ogs) == 1:
        return [b.op("identity", ogs[0])]
    return [b.op("Concat", *ogs, num_args=len(ogs), dim=a)]


def _np_split(params, x):
    a = norm_axis(params["axis"], x.ndim)
    out = []
    for s, e in _split_bounds(params, x.shape[a]):
        piece = np.take(x, range(s, e), axis=a)
        out.append(np.squeeze(piece, axis=a) if params["squeeze_axis"] else piece)
    return tuple(out)


register(OpDef("_split_v2", kind="composite", schema=SPLIT_V2_SCHEMA, outputs=_split_count, shape=_split_shape,
               dtype=lambda params, ins, outs: (list(ins), [ins[0]] * _split_count(params)),
               expand=_split_expand, expand_shapes=True, gradient=_split_grad, reference=_np_split,
               hint="split_v2", doc="Splits along axis at indices (which start with 0) or into equal sections."))


# ---------------------------------------------------------------- moments
def _moments_axes(params, ndim):
    if not params["axes"]:
        raise InferError("moments needs axes (MXNet refuses empty axes)")
    return norm_axes(params["axes"], ndim)


def _moments_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return list(ins), list(outs)
    axes = _moments_axes(params, len(x))
    if params["keepdims"]:
        s = tuple(1 if k in axes else n for k, n in enumerate(x))
    else:
        s = tuple(n for k, n in enumerate(x) if k not in axes) or (1,)
    return list(ins), [unify(outs[0], s), unify(outs[1], s)]


def _moments_expand(b, inputs, params, in_shapes):
    """Mean and biased variance (from centred values, two passes)."""
    x = inputs[0]
    axes = _moments_axes(params, len(in_shapes[0]))
    keep = params["keepdims"]
    mean_k = b.op("mean", x, axis=axes, keepdims=True)
    var = b.op("mean", b.op("square", b.op("broadcast_sub", x, mean_k)), axis=axes, keepdims=keep)
    return [mean_k if keep else b.op("mean", x, axis=axes), var]


def _np_moments(params, x):
    axes = _moments_axes(params, x.ndim)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=axes, keepdims=params["keepdims"]), x64.var(axis=axes, keepdims=params["keepdims"])
    if mean.ndim == 0:
        mean, var = mean.reshape(1), var.reshape(1)
    return mean.astype(x.dtype), var.astype(x.dtype)


register(OpDef("moments", kind="composite", schema={"axes": P.Tuple(None), "keepdims": P.Bool(False)}, outputs=2,
               shape=_moments_shape, dtype=lambda params, ins, outs: ([ins[0]], [ins[0], ins[0]]),
               expand=_moments_expand, expand_shapes=True, reference=_np_moments,
               doc="Mean and (biased) variance over axes."))


# ---------------------------------------------------------------- _contrib_div_sqrt_dim
register(OpDef("_contrib_div_sqrt_dim", kind="composite",
               expand=lambda b, inputs, params, shapes: [b.scalar("_div_scalar", inputs[0],
                                                                  math.sqrt(shapes[0][-1]))],
               expand_shapes=True, hint="div_sqrt_dim",
               reference=lambda params, x: (x / x.dtype.type(math.sqrt(x.shape[-1]))).astype(x.dtype),
               doc="x / sqrt(size of the last axis) (scaled dot-product attention)."))


# ---------------------------------------------------------------- _contrib_arange_like
ARANGE_LIKE_SCHEMA = {"start": P.Float(0.0), "step": P.Float(1.0), "repeat": P.Int(1), "ctx": P.Str(""),
                      "axis": P.OptInt(None)}


def _arange_like_shape(params, ins, outs):
    x = ins[0]
    if x is None:
        return list(ins), list(outs)
    if params["axis"] is None:
        return [x], [unify(outs[0], x)]
    return [x], [unify(outs[0], (x[norm_axis(params["axis"], len(x))],))]


def _arange_like_lower(params, ins, outs):
    """start + (flat index // repeat) * step, computed in float64, then cast."""
    out = outs[0]
    if params["repeat"] < 1:
        raise InferError("arange_like: repeat must be positive, got %d" % params["repeat"])

    def body(*i):
        flat = E.const(0, I64)
        for k, idx in enumerate(i):
            flat = flat * E.const(out.shape[k], I64) + idx if k else idx
        q = flat // E.const(params["repeat"], I64) if params["repeat"] > 1 else flat
        v = E.const(params["start"], "float64") + E.cast(q, "float64") * E.const(params["step"], "float64")
        return E.cast(v, out.dtype)
    return [compute(out, body)]


def _np_arange_like(params, x):
    n = x.size if params["axis"] is None else x.shape[norm_axis(params["axis"], x.ndim)]
    shape = x.shape if params["axis"] is None else (n,)
    v = params["start"] + (np.arange(n) // params["repeat"]) * params["step"]
    return v.reshape(shape).astype(x.dtype)


register(OpDef("_contrib_arange_like", kind="injective", schema=ARANGE_LIKE_SCHEMA, shape=_arange_like_shape,
               dtype=lambda params, ins, outs: (list(ins), [ins[0] or outs[0]]), lower=_arange_like_lower,
               gradient=lambda b, node, ogs: [None], reference=_np_arange_like, hint="arange_like",
               doc="start, start + step... (each repeated) shaped like the input or its axis; "
                   "the input is read only for its shape."))
