"""Reductions (sum, mean, prod, max, min, norm, argmax, argmin) and their gradients."""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import compute, numel
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, norm_axis, unify

AXIS_SCHEMA = {"axis": P.Tuple(None, scalar_ok=True), "keepdims": P.Bool(False), "exclude": P.Bool(False)}


def reduced_axes(params, ndim):
    axis = params.get("axis")
    given = {norm_axis(a, ndim) for a in axis} if axis else set()
    if params.get("exclude"):
        return tuple(sorted(set(range(ndim)) - given))
    return tuple(sorted(given)) if axis else tuple(range(ndim))


def reduced_shape(params, shape):
    axes = reduced_axes(params, len(shape))
    if params.get("keepdims"):
        return tuple(1 if k in axes else d for k, d in enumerate(shape))
    out = tuple(d for k, d in enumerate(shape) if k not in axes)
    return out if out else (1,)


def _reduce_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    return [x], [unify(reduced_shape(params, x), outs[0])]


def reduce_lower(kind, finish=None, out_dtype=None):
    """Lowering for ``out[kept] = fold(x[kept + reduced])``; ``finish`` post-processes."""
    def lower(params, ins, outs):
        x, out = ins[0], outs[0]
        axes = reduced_axes(params, x.ndim)
        keep = params.get("keepdims")
        rvars = E.fresh_vars(len(axes))
        extents = [x.shape[a] for a in axes]

        def body(*i):
            idx, kept, r = [], 0, 0
            for k in range(x.ndim):
                if k in axes:
                    idx.append(rvars[r])
                    r += 1
                    if keep:
                        kept += 1
                else:
                    idx.append(i[kept])
                    kept += 1
            load = x.load(idx)
            acc_dtype = out.dtype if kind in ("argmax", "argmin") else x.dtype
            red = E.Reduce(kind, rvars, extents, load, dtype=acc_dtype)
            val = finish(params, red, numel(extents)) if finish else red
            return E.cast(val, out.dtype)
        return [compute(out, body)]
    return lower


def _count(count, dtype):
    """An element count as a ``dtype`` constant (a cast value when the count is symbolic)."""
    if isinstance(count, E.Expr):  # shape-generic kernels: counted at run time
        return E.cast(count, dtype)
    return E.const(float(count) if E.is_float(dtype) else count, dtype)


def _mean_finish(params, red, count):
    return red / _count(count, red.dtype)


def _norm_finish(params, red, count):
    return E.call("sqrt", red) if params.get("ord", 2) == 2 else red


def _norm_lower(params, ins, outs):
    """norm: sum of |x| (ord 1) or sqrt of sum of x*x (ord 2) over the axes."""
    x = ins[0]
    square = params["ord"] == 2

    class _Mapped:
        shape, ndim, dtype = x.shape, x.ndim, x.dtype

        def load(self, idx):
            v = x.load(idx)
            return v * v if square else E.call("abs", v)
    return reduce_lower("sum", _norm_finish)(params, [_Mapped()], outs)


def _np_axes(params, ndim):
    return reduced_axes(params, ndim)


def _np_reduce(fn):
    def reference(params, x):
        axes = _np_axes(params, x.ndim)
        r = fn(x, axis=axes, keepdims=True)
        return np.asarray(r).reshape(reduced_shape(params, x.shape)).astype(x.dtype)
    return reference


def _np_norm(params, x):
    axes = _np_axes(params, x.ndim)
    if params["ord"] == 2:
        r = np.sqrt(np.sum(x.astype(np.float64) ** 2, axis=axes, keepdims=True))
    else:
        r = np.sum(np.abs(x), axis=axes, keepdims=True)
    return r.reshape(reduced_shape(params, x.shape)).astype(x.dtype)


# ---- gradients ----
def _bcast(b, node, value):
    """Broadcast a reduced-shape entry back over the reduction's input."""
    p = node.params
    return b.op("_broadcast_reduce_like", value, node.inputs[0], axis=p.get("axis"),
                keepdims=p.get("keepdims", False), exclude=p.get("exclude", False))


def _sum_grad(b, node, ogs):
    return [_bcast(b, node, ogs[0])]


def _mean_grad(b, node, ogs):
    return [b.op("_div_by_reduced_count", _bcast(b, node, ogs[0]), node.inputs[0], **_axis_attrs(node))]


def _axis_attrs(node):
    p = node.params
    return {"axis": p.get("axis"), "exclude": p.get("exclude", False)}


def _prod_grad(b, node, ogs):
    x = node.inputs[0]
    return [b.div(_bcast(b, node, b.mul(ogs[0], node.out(0))), x)]


def _extreme_grad(b, node, ogs):
    x = node.inputs[0]
    mask = b.op("_equal", x, _bcast(b, node, node.out(0)))
    return [b.mul(_bcast(b, node, ogs[0]), mask)]


def _norm_grad(b, node, ogs):
    x = node.inputs[0]
    g = _bcast(b, node, ogs[0])
    if node.params["ord"] == 1:
        return [b.mul(g, b.op("sign", x))]
    return [b.mul(g, b.div(x, _bcast(b, node, node.out(0))))]


def _zero_grad(b, node, ogs):
    return [b.zeros_like(node.inputs[0])]


register(OpDef("sum", kind="reduce", schema=AXIS_SCHEMA, shape=_reduce_shape, lower=reduce_lower("sum"),
               gradient=_sum_grad, reference=_np_reduce(np.sum), aliases=("sum_axis",)))
register(OpDef("mean", kind="reduce", schema=AXIS_SCHEMA, shape=_reduce_shape,
               lower=reduce_lower("sum", _mean_finish), gradient=_mean_grad, reference=_np_reduce(np.mean)))
register(OpDef("prod", kind="reduce", schema=AXIS_SCHEMA, shape=_reduce_shape, lower=reduce_lower("prod"),
               gradient=_prod_grad, reference=_np_reduce(np.prod)))
register(OpDef("max", kind="reduce", schema=AXIS_SCHEMA, shape=_reduce_shape, lower=reduce_lower("max"),
               gradient=_extreme_grad, reference=_np_reduce(np.max), aliases=("max_axis",)))
register(OpDef("min", kind="reduce", schema=AXIS_SCHEMA, shape=_reduce_shape, lower=reduce_lower("min"),
               gradient=_extreme_grad, reference=_np_reduce(np.min), aliases=("min_axis",)))
register(OpDef("norm", kind="reduce", schema=dict(AXIS_SCHEMA, ord=P.Int(2)), shape=_reduce_shape,
               lower=_norm_lower, gradient=_norm_grad, reference=_np_norm))


# argmax / argmin: one axis (or all, flattened), result in the input dtype as MXNet.
ARG_SCHEMA = {"axis": P.OptInt(None), "keepdims": P.Bool(False)}


def _arg_params(params, ndim):
    axis = params["axis"]
    return {"axis": None if axis is None else (axis,), "keepdims": params["keepdims"] and axis is not None}


def _arg_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    if params["axis"] is not None:
        norm_axis(params["axis"], len(x))
    return [x], [unify(reduced_shape(_arg_params(params, len(x)), x), outs[0])]


def _arg_lower(kind):
    def lower(params, ins, outs):
        return reduce_lower(kind)(_arg_params(params, ins[0].ndim), ins, outs)
    return lower


def _np_arg(fn):
    def reference(params, x):
        p = _arg_params(params, x.ndim)
        if params["axis"] is None:
            return np.asarray([fn(x)]).astype(x.dtype)
        r = fn(x, axis=params["axis"])
        if params["keepdims"]:
            r = np.expand_dims(r, params["axis"])
        return np.asarray(r).reshape(reduced_shape(p, x.shape)).astype(x.dtype)
    return reference


register(OpDef("argmax", kind="reduce", schema=ARG_SCHEMA, shape=_arg_shape, lower=_arg_lower("argmax"),
               gradient=_zero_grad, reference=_np_arg(np.argmax)))
register(OpDef("argmin", kind="reduce", schema=ARG_SCHEMA, shape=_arg_shape, lower=_arg_lower("argmin"),
               gradient=_zero_grad, reference=_np_arg(np.argmin)))


# ---- helpers of gradients ----
def _like_second(params, ins, outs):
    return [ins[0], ins[1]], [unify(ins[1], outs[0])]


def _like_second_type(params, ins, outs):
    from .shapes import unify_type
    t = unify_type(ins[0], outs[0])
    return [t, ins[1]], [t]


def _broadcast_reduce_like_lower(params, ins, outs):
    g, like = ins
    out = outs[0]
    axes = reduced_axes(params, like.ndim)
    keep = params["keepdims"]

    def body(*i):
        if keep:
            idx = [E.const(0, "int64") if k in axes else i[k] for k in range(out.ndim)]
        else:
            idx = [i[k] for k in range(out.ndim) if k not in axes]
            if not idx:
                idx = [E.const(0, "int64")]
        return g.load(idx)
    return [compute(out, body)]


register(OpDef("_broadcast_reduce_like", kind="broadcast", inputs=("data", "like"), schema=AXIS_SCHEMA,
               shape=_like_second, dtype=_like_second_type, lower=_broadcast_reduce_like_lower,
               gradient=lambda b, node, ogs: [b.op("sum", ogs[0], axis=node.params["axis"],
                                                   keepdims=node.params["keepdims"],
                                                   exclude=node.params["exclude"]), None]))


def _div_count_lower(params, ins, outs):
    g, like = ins
    count = numel([like.shape[a] for a in reduced_axes(params, like.ndim)])
    return [compute(outs[0], lambda *i: g.load(i) / _count(count, g.dtype))]


def _same_as_first(params, ins, outs):
    s = unify(ins[0], outs[0])
    return [s, ins[1]], [s]


register(OpDef("_div_by_reduced_count", kind="elementwise", inputs=("data", "like"),
               schema={"axis": P.Tuple(None), "exclude": P.Bool(False)},
               shape=_same_as_first, dtype=_like_second_type, lower=_div_count_lower,
               gradient=lambda b, node, ogs: [b.op("_div_by_reduced_count", ogs[0], node.inputs[1],
                                                   axis=node.params["axis"], exclude=node.params["exclude"]),
                                              None]))


def _sum_like_lower(params, ins, outs):
    """out (shape of like) = sum of g over the axes where like was broadcast."""
    g, like = ins
    out = outs[0]
    lead = g.ndim - out.ndim
    if lead < 0:
        raise InferError("cannot reduce %s to %s" % (g.shape, out.shape))
    red = [k for k in range(g.ndim) if k < lead or (out.shape[k - lead] == 1 and g.shape[k] != 1)]
    rvars = E.fresh_vars(len(red))
    extents = [g.shape[k] for k in red]

    def body(*i):
        idx = []
        for k in range(g.ndim):
            if k in red:
                idx.append(rvars[red.index(k)])
            else:
                idx.append(i[k - lead])
        if not red:
            return g.load(idx)
        return E.Reduce("sum", rvars, extents, g.load(idx))
    return [compute(out, body)]


def _np_sum_like(params, g, like):
    lead = g.ndim - like.ndim
    r = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(k for k, d in enumerate(like.shape) if d == 1 and r.shape[k] != 1)
    return r.sum(axis=axes, keepdims=True).astype(g.dtype) if axes else r


register(OpDef("_reduce_sum_like", kind="reduce", inputs=("data", "like"), shape=_like_second,
               dtype=_like_second_type, lower=_sum_like_lower, reference=_np_sum_like,
               # og has like's shape, possibly of lower rank than data (numpy-style leading axes):
               # broadcast_like needs equal ranks, so broadcast through an add with zeros.
               gradient=lambda b, node, ogs: [b.op("broadcast_add", b.zeros_like(node.inputs[0]), ogs[0]),
                                              None]))
