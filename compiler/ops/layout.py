"""Core layout operators the others build on: Reshape, Flatten, expand_dims,
transpose, broadcast_to, broadcast_like. All are ``injective``: each output
element reads one input element through index arithmetic."""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import compute, numel
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, broadcast, known, norm_axis, unify


def flat_index(shape, idx):
    """Row-major flat position of ``idx`` in ``shape`` (int64 expression)."""
    flat = E.const(0, "int64")
    for d, i in zip(shape, idx):
        flat = flat * E.const(d, "int64") + i
    return flat


def unflatten(shape, flat):
    """Index tuple of flat position ``flat`` in ``shape``."""
    idx = []
    for d in reversed(shape):
        idx.append(flat % E.const(d, "int64"))
        flat = flat // E.const(d, "int64")
    return list(reversed(idx))


def reshape_lower(params, ins, outs):
    x, out = ins[0], outs[0]
    return [compute(out, lambda *i: x.load(unflatten(x.shape, flat_index(out.shape, i))))]


def _reshape_grad(b, node, ogs):
    return [b.op("reshape_like", ogs[0], node.inputs[0])]


def infer_reshape(dshape, spec, reverse=False):
    """MXNet's Reshape codes: 0 copy, -1 infer, -2 copy rest, -3 merge two, -4 split one."""
    dshape, spec = list(dshape), list(spec)
    if reverse:
        dshape, spec = dshape[::-1], spec[::-1]
    out, src, inf = [], 0, -1
    i = 0
    while i < len(spec):
        p = spec[i]
        if p > 0:
            out.append(p)
            src += 1
        elif p == 0:
            if src >= len(dshape):
                raise InferError("code 0 at position %d has no input dimension to copy" % i)
            out.append(dshape[src])
            src += 1
        elif p == -1:
            if inf >= 0:
                raise InferError("only one -1 is allowed in shape %s" % (tuple(spec),))
            inf = len(out)
            out.append(1)
            src += 1
        elif p == -2:
            out.extend(dshape[src:])
            src = len(dshape)
        elif p == -3:
            if src + 1 >= len(dshape):
                raise InferError("code -3 needs two input dimensions")
            out.append(dshape[src] * dshape[src + 1])
            src += 2
        elif p == -4:
            if i + 2 >= len(spec) or src >= len(dshape):
                raise InferError("code -4 needs two following values and an input dimension")
            d0 = dshape[src]
            src += 1
            d1, d2 = spec[i + 1], spec[i + 2]
            if reverse:
                d1, d2 = d2, d1
            if d1 == -1:
                d1 = d0 // d2
            if d2 == -1:
                d2 = d0 // d1
            if d1 * d2 != d0:
                raise InferError("code -4 cannot split %d into %d x %d" % (d0, d1, d2))
            out.extend([d1, d2] if not reverse else [d2, d1])
            i += 2
        else:
            raise InferError("invalid code %d in shape %s" % (p, tuple(spec)))
        i += 1
    total = numel(dshape)
    if inf >= 0:
        rest = numel(out)
        if rest == 0 or total % rest:
            raise InferError("cannot infer -1: %d elements into %s" % (total, tuple(out)))
        out[inf] = total // rest
    if reverse:
        out = out[::-1]
    if numel(out) != total:
        raise InferError("cannot reshape %s (%d elements) into %s" % (tuple(dshape[::-1] if reverse else dshape),
                                                                       total, tuple(out)))
    return tuple(out)


RESHAPE_SCHEMA = {"shape": P.Tuple(()), "reverse": P.Bool(False), "target_shape": P.Tuple(()),
                  "keep_highest": P.Bool(False)}


def _reshape_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        # backwards: an input with one unknown dimension gets it from the output's size
        # (a deferred parameter flattened into a packed vector, as gluon.rnn layers do)
        if known(outs[0]) and x is not None and sum(d == 0 for d in x) == 1:
            rest = numel([d for d in x if d])
            if numel(outs[0]) % rest:
                raise InferError("cannot reshape %s to %s" % (x, outs[0]))
            x = tuple(numel(outs[0]) // rest if d == 0 else d for d in x)
        return [x], [outs[0]]
    spec = params["shape"] or params["target_shape"]
    if not spec:
        raise InferError("Reshape needs a shape")
    if not params["shape"] and params["target_shape"]:
        spec = tuple(d if d > 0 else -1 for d in spec)
        if params["keep_highest"]:
            spec = (x[0],) + tuple(spec[1:])
    return [x], [unify(infer_reshape(x, spec, params["reverse"]), outs[0])]


def _np_reshape(params, x):
    spec = params["shape"] or params["target_shape"]
    return x.reshape(infer_reshape(x.shape, spec, params["reverse"]))


register(OpDef("Reshape", kind="injective", aliases=("reshape",), schema=RESHAPE_SCHEMA, shape=_reshape_shape,
               lower=reshape_lower, gradient=_reshape_grad, reference=_np_reshape))


def _flatten_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    return [x], [unify((x[0], numel(x[1:])) if len(x) > 1 else (x[0], 1), outs[0])]


register(OpDef("Flatten", kind="injective", aliases=("flatten",), shape=_flatten_shape, lower=reshape_lower,
               gradient=_reshape_grad, reference=lambda params, x: x.reshape(x.shape[0], -1)))


def _reshape_like_shape(params, ins, outs):
    x, like = ins
    if known(x) and known(like) and numel(x) != numel(like):
        raise InferError("cannot reshape %s to the shape of %s" % (x, like))
    return [x, like], [unify(like, outs[0])]


def _second_free_type(params, ins, outs):
    from .shapes import unify_type
    t = unify_type(ins[0], outs[0])
    return [t, ins[1]], [t]


register(OpDef("reshape_like", kind="injective", inputs=("lhs", "rhs"), shape=_reshape_like_shape,
               dtype=_second_free_type,
               lower=lambda params, ins, outs: reshape_lower(params, ins[:1], outs),
               gradient=lambda b, node, ogs: [b.op("reshape_like", ogs[0], node.inputs[0]), None],
               reference=lambda params, x, like: x.reshape(like.shape)))


def _expand_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    ax = params["axis"]
    nd = len(x) + 1
    a = norm_axis(ax, nd)
    return [x], [unify(tuple(x[:a]) + (1,) + tuple(x[a:]), outs[0])]


register(OpDef("expand_dims", kind="injective", schema={"axis": P.Int()}, shape=_expand_shape,
               lower=reshape_lower, gradient=_reshape_grad,
               reference=lambda params, x: np.expand_dims(x, params["axis"])))


def _axes(params, ndim):
    axes = params["axes"]
    if not axes:
        return tuple(reversed(range(ndim)))
    if len(axes) != ndim:
        raise InferError("axes %s do not match %d dimensions" % (axes, ndim))
    axes = tuple(norm_axis(a, ndim) for a in axes)
    if sorted(axes) != list(range(ndim)):
        raise InferError("axes %s are not a permutation" % (axes,))
    return axes


def _transpose_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    axes = _axes(params, len(x))
    return [x], [unify(tuple(x[a] for a in axes), outs[0])]


def _transpose_lower(params, ins, outs):
    x, out = ins[0], outs[0]
    axes = _axes(params, x.ndim)

    def body(*i):
        idx = [None] * x.ndim
        for k, a in enumerate(axes):
            idx[a] = i[k]
        return x.load(idx)
    return [compute(out, body)]


def _transpose_grad(b, node, ogs):
    p = node.params
    if not p["axes"]:
        return [b.op("transpose", ogs[0])]
    inv = [0] * len(p["axes"])
    for k, a in enumerate(p["axes"]):
        inv[a if a >= 0 else a + len(inv)] = k
    return [b.op("transpose", ogs[0], axes=tuple(inv))]


register(OpDef("transpose", kind="injective", schema={"axes": P.Tuple(())}, shape=_transpose_shape,
               lower=_transpose_lower, gradient=_transpose_grad,
               reference=lambda params, x: np.transpose(x, _axes(params, x.ndim))))


def broadcast_lower(params, ins, outs):
    from .common import broadcast_index
    x, out = ins[0], outs[0]
    return [compute(out, lambda *i: x.load(broadcast_index(x, i, out.shape)))]


def _bto_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    target = params["shape"]
    if len(target) < len(x):
        raise InferError("cannot broadcast %s to %s" % (x, target))
    lead = len(target) - len(x)
    shape = []
    for k, t in enumerate(target):
        src = x[k - lead] if k >= lead else 1
        t = src if t == 0 else t
        if src != 1 and src != t:
            raise InferError("cannot broadcast %s to %s" % (x, target))
        shape.append(t)
    return [x], [unify(tuple(shape), outs[0])]


def _bto_grad(b, node, ogs):
    return [b.sum_like(ogs[0], node.inputs[0])]


register(OpDef("broadcast_to", kind="broadcast", schema={"shape": P.Tuple(())}, shape=_bto_shape,
               lower=broadcast_lower, gradient=_bto_grad,
               reference=lambda params, x: np.broadcast_to(
                   x, _bto_shape(params, [x.shape], [None])[1][0]).copy()))


def _blike_shape(params, ins, outs):
    x, like = ins
    if not (known(x) and known(like)):
        return [x, like], [outs[0]]
    if params["lhs_axes"] is not None:
        shape = list(x)
        for la, ra in zip(params["lhs_axes"], params["rhs_axes"]):
            shape[norm_axis(la, len(x))] = like[norm_axis(ra, len(like))]
        return [x, like], [unify(tuple(shape), outs[0])]
    if len(x) != len(like):
        raise InferError("broadcast_like needs equal ranks, got %s and %s" % (x, like))
    out = broadcast(x, like)
    if out != tuple(like):
        raise InferError("cannot broadcast %s like %s" % (x, like))
    return [x, like], [unify(out, outs[0])]


def _blike_grad(b, node, ogs):
    return [b.sum_like(ogs[0], node.inputs[0]), None]


register(OpDef("broadcast_like", kind="broadcast", inputs=("lhs", "rhs"),
               schema={"lhs_axes": P.Tuple(None), "rhs_axes": P.Tuple(None)},
               shape=_blike_shape, dtype=_second_free_type,
               lower=lambda params, ins, outs: broadcast_lower(params, ins[:1], outs),
               gradient=_blike_grad,
               reference=lambda params, x, like: np.broadcast_to(
                   x, _blike_shape(params, [x.shape, like.shape], [None])[1][0]).copy()))
