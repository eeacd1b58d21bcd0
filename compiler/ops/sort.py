"""Ordering operators: sort, argsort, topk (MXNet 1.x semantics) and their gradient.

Each lowers to one ``kernel.Sort`` stage (kind "opaque": nothing is fused
into or out of it). ``axis=None`` sorts the flattened array: sort/argsort
and topk's values/indices are 1-d, topk's mask keeps the data's shape.
topk's ``k <= 0`` means every element, ``k`` above the axis length is an
error (MXNet's ``ParseTopKParam`` rule), as is an axis out of range.

Order (a documented choice where MXNet's CPU kernel leaves it open: it uses
``std::sort``/``std::partial_sort``, which are not stable):

* stable in both directions: equal keys keep the order of their positions,
  descending included (what MXNet's GPU path, a stable radix sort with
  ``greater``, gives, and torch's ``stable=True``);
* NaN is the largest key: last when ascending, first when descending
  (numpy's ascending order; torch's descending one); -0.0 equals 0.0.

Hidden outputs, as in MXNet: ``sort`` and topk ``ret_typ='value'`` also
produce int32 positions (the gradient scatters through them). Every
operator here has one more hidden output, the sort's scratch ``workspace``
(uint8, see ``kernel.Sort``), so scratch memory is planned in the arena
like any value instead of being allocated at run time.

Gradients: sort and topk ``value``/``both`` scatter the values' output
gradient back to the source positions (``_backward_topk``, MXNet's name);
argsort, and topk ``indices``/``mask``, give zeros.
"""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..graph import Entry
from ..kernel import Sort, numel, scatter_add
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, unify, unify_type

RET_TYPES = ("value", "indices", "mask", "both")
INDEX_DTYPES = ("uint8", "int32", "int64", "float16", "float32", "float64")  # MXNet's enum
HIDDEN_INDEX_DTYPE = "int32"

SORT_SCHEMA = {"axis": P.OptInt(-1), "is_ascend": P.Bool(True)}
ARGSORT_SCHEMA = dict(SORT_SCHEMA, dtype=P.DType("float32"))
TOPK_SCHEMA = {"axis": P.OptInt(-1), "k": P.Int(1), "ret_typ": P.Str("indices", choices=RET_TYPES),
               "is_ascend": P.Bool(False), "dtype": P.DType("float32")}


def _roles(opname, params):
    """What each output of the operator holds, in order."""
    if opname == "sort":
        return ["values", "indices", "workspace"]
    if opname == "argsort":
        return ["indices", "workspace"]
    ret = params["ret_typ"]
    if ret in ("value", "both"):
        return ["values", "indices", "workspace"]
    return [ret, "workspace"]  # "indices" or "mask"


def _geometry(opname, params, shape):
    """(normalised axis or None, elements along it, k) for data of ``shape``."""
    axis = params["axis"]
    if axis is None:
        ax, n = None, numel(shape)
    else:
        if not -len(shape) <= axis < len(shape):
            raise InferError("%s: attribute axis=%d is out of range for data of shape %s (%d dimensions)"
                             % (opname, axis, tuple(shape), len(shape)))
        ax = axis % len(shape)
        n = shape[ax]
    k = n
    if opname == "topk":
        k = params["k"]
        if k <= 0:
            k = n
        elif k > n:
            raise InferError("topk: attribute k=%d is larger than the %d elements along axis %s of data of "
                             "shape %s (k must be at most %d, or <= 0 for all)"
                             % (params["k"], n, params["axis"], tuple(shape), n))
    return ax, n, k


def _cut(shape, ax, k):
    return (k,) if ax is None else tuple(shape[:ax]) + (k,) + tuple(shape[ax + 1:])


def _shape_rule(opname):
    def rule(params, ins, outs):
        data = ins[0]
        roles = _roles(opname, params)
        if opname != "topk" and params["axis"] is not None and not known(data) and outs[0] is not None:
            data = unify(data, outs[0])  # sort/argsort keep the shape along an axis
        if not known(data):
            return [data], list(outs)
        ax, n, k = _geometry(opname, params, data)
        want = {"values": _cut(data, ax, k), "indices": _cut(data, ax, k), "mask": tuple(data),
                "workspace": (Sort.workspace_bytes(numel(data), n),)}
        return [data], [unify(want[r], o) for r, o in zip(roles, outs)]
    return rule


def _index_dtype(opname, params):
    if opname == "sort" or (opname == "topk" and params["ret_typ"] == "value"):
        return HIDDEN_INDEX_DTYPE
    if params["dtype"] not in INDEX_DTYPES:
        raise InferError("%s: attribute dtype=%s is not an index dtype (one of %s)"
                         % (opname, params["dtype"], ", ".join(INDEX_DTYPES)))
    return params["dtype"]


def _type_rule(opname):
    def rule(params, ins, outs):
        roles = _roles(opname, params)
        t = ins[0]
        for r, o in zip(roles, outs):
            if r in ("values", "mask"):
                t = unify_type(t, o)
        want = {"values": t, "mask": t, "indices": _index_dtype(opname, params), "workspace": "uint8"}
        return [t], [unify_type(want[r], o) for r, o in zip(roles, outs)]
    return rule


def _lower_rule(opname):
    def lower(params, ins, outs):
        data = ins[0]
        ax, n, k = _geometry(opname, params, data.shape)
        bufs = dict(zip(_roles(opname, params), outs))
        return [Sort(data, ax, k, params["is_ascend"], values=bufs.get("values"), indices=bufs.get("indices"),
                     mask=bufs.get("mask"), workspace=bufs["workspace"])]
    return lower


def _scatter_grad(b, node, ogs):
    """d data = the values' gradient put back at the positions they came from."""
    return [b.op("_backward_topk", ogs[0], Entry(node, 1), node.inputs[0], axis=node.params["axis"])]


def _zero_grad(b, node, ogs):
    return [b.zeros_like(node.inputs[0])]


def _topk_grad(b, node, ogs):
    return (_scatter_grad if node.params["ret_typ"] in ("value", "both") else _zero_grad)(b, node, ogs)


# ---- numpy references (tests only) ----
def _np_order(x, axis, is_ascend):
    """(x, axis, positions) in the kernel's order: stable both ways, NaN the largest key."""
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = axis % x.ndim
    if is_ascend:
        order = np.argsort(x, axis=axis, kind="stable")  # numpy puts NaN last
    else:  # stable descending: reverse the stable ascending order of the reversed row
        rev = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        order = x.shape[axis] - 1 - np.flip(rev, axis)
    return x, axis, order


def _np_sort(params, x):
    x, axis, order = _np_order(x, params["axis"], params["is_ascend"])
    return np.take_along_axis(x, order, axis)


def _np_argsort(params, x):
    return _np_order(x, params["axis"], params["is_ascend"])[2].astype(params["dtype"])


def _np_topk(params, x):
    _, _, k = _geometry("topk", params, x.shape)
    flat, axis, order = _np_order(x, params["axis"], params["is_ascend"])
    idx = np.take(order, np.arange(k), axis=axis)
    ret = params["ret_typ"]
    if ret == "mask":
        mask = np.zeros(flat.shape, x.dtype)
        np.put_along_axis(mask, idx, 1, axis)
        return mask.reshape(x.shape)
    values = np.take_along_axis(flat, idx, axis)
    if ret == "value":
        return values
    if ret == "indices":
        return idx.astype(params["dtype"])
    return values, idx.astype(params["dtype"])


def _visible(params):
    return 2 if params["ret_typ"] == "both" else 1


register(OpDef("sort", kind="opaque", schema=SORT_SCHEMA, outputs=3, visible=1,
               shape=_shape_rule("sort"), dtype=_type_rule("sort"), lower=_lower_rule("sort"),
               gradient=_scatter_grad, reference=_np_sort,
               doc="sort(data, axis=-1, is_ascend=True): stable; NaN is the largest key."))
register(OpDef("argsort", kind="opaque", schema=ARGSORT_SCHEMA, outputs=2, visible=1,
               shape=_shape_rule("argsort"), dtype=_type_rule("argsort"), lower=_lower_rule("argsort"),
               gradient=_zero_grad, reference=_np_argsort,
               doc="argsort(data, axis=-1, is_ascend=True, dtype='float32'): stable; NaN is the largest key."))
register(OpDef("topk", kind="opaque", schema=TOPK_SCHEMA,
               outputs=lambda params: len(_roles("topk", params)), visible=_visible,
               shape=_shape_rule("topk"), dtype=_type_rule("topk"), lower=_lower_rule("topk"),
               gradient=_topk_grad, reference=_np_topk,
               doc="topk(data, axis=-1, k=1, ret_typ='indices', is_ascend=False, dtype='float32'); "
                   "k <= 0 selects every element; stable; NaN is the largest key."))


# ``_backward_topk(ograd, indices, data)``: ograd (shaped like the values) added at the
# positions ``indices`` name along ``axis`` of an array shaped like ``data``.
def _bwd_shape(params, ins, outs):
    og, idx, data = ins
    out = unify(data, outs[0])
    if known(og) or known(idx):
        og = idx = unify(og, idx)
    return [og, idx, out], [out]


def _bwd_type(params, ins, outs):
    t = unify_type(ins[0], outs[0])
    return [t, ins[1], ins[2] or t], [t]


def _unravel(flat, shape):
    """Row-major multi-index of int64 ``flat`` in ``shape``."""
    out, stride = [], 1
    for dim in reversed(shape):
        out.append((flat // E.const(stride, "int64")) % E.const(dim, "int64") if stride > 1
                   else flat % E.const(dim, "int64"))
        stride *= dim
    return out[::-1]


def _bwd_lower(params, ins, outs):
    og, idx, _ = ins
    out = outs[0]
    axis = params["axis"]

    def target(*i):
        if axis is None:  # positions in the flattened array; clamped, so no write leaves it
            return _unravel(E.clamp_index(E.to_index(idx.load(i)), out.size), out.shape)
        ax = axis % out.ndim
        j = E.clamp_index(E.to_index(idx.load(i)), out.shape[ax])
        return list(i[:ax]) + [j] + list(i[ax + 1:])
    return [scatter_add(out, og.shape, target, lambda *i: og.load(i))]


register(OpDef("_backward_topk", kind="injective", inputs=("ograd", "indices", "data"),
               schema={"axis": P.OptInt(-1)}, shape=_bwd_shape, dtype=_bwd_type, lower=_bwd_lower))
