"""Indexing operators: take, Embedding, one_hot, pick, batch_take, gather_nd,
scatter_nd, diag, SequenceMask.

Index inputs are float arrays in MXNet; a value becomes an index by
truncation towards zero (``expr.to_index``). Data-dependent indices are
always clamped or wrapped inside the kernel, so nothing reads out of bounds:

* take, pick: ``mode='clip'`` clamps into range, ``mode='wrap'`` wraps
  (Python-style modulo). take's ``mode='raise'`` is accepted and behaves like
  ``'clip'``: compiled kernels cannot raise.
* Embedding and batch_take clamp (MXNet clips too).
* one_hot: an index outside ``[0, depth)`` gives a row of ``off_value``.

Gradients: take and Embedding scatter-add the output gradient into the
gathered rows (``_backward_take``); pick's gradient is a mask; index inputs
get no gradient (zeros).
"""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import compute, scatter_add
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, norm_axis, unify, unify_type


def _i64(v):
    if isinstance(v, E.Expr):  # a symbolic size (shape-generic kernels): already int64
        return v
    return E.const(int(v), "int64")


def _fix_index(value, n, mode):
    """An index expression in [0, n) from a stored index value."""
    i = E.to_index(value)
    if mode == "wrap":
        m = _i64(n)
        return (i % m + m) % m
    return E.clamp_index(i, n)


def _np_fix(idx, n, mode):
    i = np.trunc(idx).astype(np.int64) if np.issubdtype(idx.dtype, np.floating) else idx.astype(np.int64)
    return np.mod(i, n) if mode == "wrap" else np.clip(i, 0, n - 1)


def _schema_attrs(node):
    return {k: v for k, v in node.attrs.items() if k in node.op.schema}


# ---- take ----
TAKE_SCHEMA = {"axis": P.Int(0), "mode": P.Str("clip", choices=("raise", "wrap", "clip"))}


def _take_out(params, a, idx):
    ax = norm_axis(params["axis"], len(a))
    return ax, tuple(a[:ax]) + tuple(idx) + tuple(a[ax + 1:])


def _take_shape(params, ins, outs):
    a, idx = ins
    if not (known(a) and known(idx)):
        return [a, idx], [outs[0]]
    return [a, idx], [unify(_take_out(params, a, idx)[1], outs[0])]


def _first_type(params, ins, outs):
    t = unify_type(ins[0], outs[0])
    return [t] + list(ins[1:]), [t]


def _take_source(params, a_shape, idx_buf, i):
    """Index into ``a`` read by output index ``i``."""
    ax = norm_axis(params["axis"], len(a_shape))
    k = idx_buf.ndim
    j = _fix_index(idx_buf.load(list(i[ax:ax + k])), a_shape[ax], params["mode"])
    return list(i[:ax]) + [j] + list(i[ax + k:])


def _take_lower(params, ins, outs):
    a, idx = ins
    return [compute(outs[0], lambda *i: a.load(_take_source(params, a.shape, idx, i)))]


def _take_grad(b, node, ogs):
    a, idx = node.inputs
    return [b.op("_backward_take", ogs[0], idx, a, **_schema_attrs(node)), None]


def _np_take(params, a, idx):
    ax = norm_axis(params["axis"], a.ndim)
    return np.take(a, _np_fix(idx, a.shape[ax], params["mode"]), axis=ax)


register(OpDef("take", kind="injective", inputs=("a", "indices"), schema=TAKE_SCHEMA, shape=_take_shape,
               dtype=_first_type, lower=_take_lower, gradient=_take_grad, reference=_np_take,
               doc="take(a, indices, axis=0, mode='clip'); mode='raise' behaves like 'clip'."))


def _btake_shape(params, ins, outs):
    og, idx, a = ins
    return [og, idx, unify(a, outs[0])], [unify(a, outs[0])]


def _btake_type(params, ins, outs):
    t = unify_type(ins[0], outs[0])
    return [t, ins[1], ins[2]], [t]


def _btake_lower(params, ins, outs):
    og, idx, _ = ins
    out = outs[0]
    return [scatter_add(out, og.shape, lambda *i: _take_source(params, out.shape, idx, i), lambda *i: og.load(i))]


register(OpDef("_backward_take", kind="injective", inputs=("ograd", "indices", "a"), schema=TAKE_SCHEMA,
               shape=_btake_shape, dtype=_btake_type, lower=_btake_lower,
               gradient=lambda b, node, ogs: [b.op("take", ogs[0], node.inputs[1], **_schema_attrs(node)),
                                              None, None]))


# ---- Embedding ----
EMB_SCHEMA = {"input_dim": P.Int(), "output_dim": P.Int(), "dtype": P.DType("float32"),
              "sparse_grad": P.Bool(False)}


def _emb_shape(params, ins, outs):
    data, weight = ins
    weight = unify(weight, (params["input_dim"], params["output_dim"]))
    out = outs[0]
    if known(data):
        out = unify(out, tuple(data) + (params["output_dim"],))
    elif known(out):
        data = unify(data, tuple(out[:-1]))
    return [data, weight], [out]


def _emb_type(params, ins, outs):
    t = unify_type(unify_type(ins[1], outs[0]), params["dtype"])
    return [ins[0] or t, t], [t]


def _emb_lower(params, ins, outs):
    data, weight = ins
    p = {"axis": 0, "mode": "clip"}
    return [compute(outs[0], lambda *i: weight.load(_take_source(p, weight.shape, data, i)))]


def _emb_grad(b, node, ogs):
    data, weight = node.inputs
    return [b.zeros_like(data), b.op("_backward_take", ogs[0], data, weight, axis=0, mode="clip")]


register(OpDef("Embedding", kind="injective", inputs=("data", "weight"), schema=EMB_SCHEMA, shape=_emb_shape,
               dtype=_emb_type, lower=_emb_lower, gradient=_emb_grad,
               reference=lambda params, data, weight: weight[_np_fix(data, weight.shape[0], "clip")],
               doc="Embedding lookup; out-of-range indices are clipped. sparse_grad is accepted, "
                   "the gradient is dense."))


# ---- one_hot ----
ONE_HOT_SCHEMA = {"depth": P.Int(), "on_value": P.Float(1.0), "off_value": P.Float(0.0),
                  "dtype": P.DType("float32")}


def _one_hot_shape(params, ins, outs):
    idx = ins[0]
    if params["depth"] <= 0:
        raise InferError("depth=%d must be positive" % params["depth"])
    out = outs[0]
    if known(idx):
        out = unify(out, tuple(idx) + (params["depth"],))
    elif known(out):
        idx = unify(idx, tuple(out[:-1]))
    return [idx], [out]


def _one_hot_lower(params, ins, outs):
    idx, out = ins[0], outs[0]
    on = _const(params["on_value"], out.dtype)
    off = _const(params["off_value"], out.dtype)

    def body(*i):
        j = E.to_index(idx.load(list(i[:-1])))
        return E.select(E.cmp("eq", j, i[-1]), on, off)
    return [compute(out, body)]


def _const(v, dtype):
    return E.const(float(v), dtype) if E.is_float(dtype) else E.const(int(v), dtype)


def _np_one_hot(params, idx):
    d = params["depth"]
    i = np.trunc(idx).astype(np.int64) if np.issubdtype(idx.dtype, np.floating) else idx.astype(np.int64)
    hit = i[..., None] == np.arange(d)
    out = np.where(hit, params["on_value"], params["off_value"])
    return out.astype(params["dtype"])


register(OpDef("one_hot", kind="injective", inputs=("indices",), schema=ONE_HOT_SCHEMA, shape=_one_hot_shape,
               dtype=lambda params, ins, outs: ([ins[0]], [unify_type(outs[0], params["dtype"])]),
               lower=_one_hot_lower, gradient=lambda b, node, ogs: [b.zeros_like(node.inputs[0])],
               reference=_np_one_hot))


# ---- pick ----
PICK_SCHEMA = {"axis": P.OptInt(-1), "keepdims": P.Bool(False), "mode": P.Str("clip", choices=("wrap", "clip"))}


def _pick_axis(params, ndim):
    if params["axis"] is None:
        raise InferError("axis=None is not supported by pick; give an axis")
    return norm_axis(params["axis"], ndim)


def _pick_out(params, x):
    a = _pick_axis(params, len(x))
    if params["keepdims"]:
        return tuple(1 if k == a else d for k, d in enumerate(x))
    return tuple(d for k, d in enumerate(x) if k != a) or (1,)


def _pick_shape(params, ins, outs):
    x, idx = ins
    if not known(x):
        return [x, idx], [outs[0]]
    o = unify(_pick_out(params, x), outs[0])
    reduced = _pick_out(dict(params, keepdims=False), x)
    if params["keepdims"] and known(idx) and tuple(idx) == o:
        return [x, idx], [o]
    try:
        idx = unify(idx, reduced)
    except InferError:
        raise InferError("index shape %s must be %s" % (idx, reduced)) from None
    return [x, idx], [o]


def _pick_index_pos(params, idx, x_ndim, pos):
    """Index-array position for output position ``pos``: with keepdims the index may
    have the reduced shape (MXNet's), which drops the picked axis."""
    if params["keepdims"] and idx.ndim != x_ndim:
        a = _pick_axis(params, x_ndim)
        return [p for k, p in enumerate(pos) if k != a] or [_i64(0)]
    return list(pos)


def _pick_reduced(params, ndim, i):
    """Output/index position of data index ``i``."""
    a = _pick_axis(params, ndim)
    if params["keepdims"]:
        return [_i64(0) if k == a else ik for k, ik in enumerate(i)]
    red = [ik for k, ik in enumerate(i) if k != a]
    return red or [_i64(0)]


def _pick_lower(params, ins, outs):
    x, idx = ins
    out = outs[0]
    a = _pick_axis(params, x.ndim)

    def body(*i):
        j = _fix_index(idx.load(_pick_index_pos(params, idx, x.ndim, i)), x.shape[a], params["mode"])
        if params["keepdims"]:
            src = [j if k == a else ik for k, ik in enumerate(i)]
        elif x.ndim == 1:
            src = [j]
        else:
            src = list(i[:a]) + [j] + list(i[a:])
        return x.load(src)
    return [compute(out, body)]


def _pick_grad(b, node, ogs):
    x, idx = node.inputs
    return [b.op("_backward_pick", ogs[0], x, idx, **_schema_attrs(node)), None]


def _np_pick(params, x, idx):
    a = _pick_axis(params, x.ndim)
    j = _np_fix(idx, x.shape[a], params["mode"]).reshape(_pick_out(dict(params, keepdims=True), x.shape))
    r = np.take_along_axis(x, j, axis=a)
    return r.reshape(_pick_out(params, x.shape))


register(OpDef("pick", kind="injective", inputs=("data", "index"), schema=PICK_SCHEMA, shape=_pick_shape,
               dtype=_first_type, lower=_pick_lower, gradient=_pick_grad, reference=_np_pick))


def _bpick_shape(params, ins, outs):
    og, x, idx = ins
    return [og, unify(x, outs[0]), idx], [unify(x, outs[0])]


def _bpick_lower(params, ins, outs):
    og, x, idx = ins
    out = outs[0]
    a = _pick_axis(params, x.ndim)

    def body(*i):
        pos = _pick_reduced(params, x.ndim, i)
        j = _fix_index(idx.load(_pick_index_pos(params, idx, x.ndim, pos)), x.shape[a], params["mode"])
        return E.select(E.cmp("eq", j, i[a]), og.load(pos), _const(0, og.dtype))
    return [compute(out, body)]


register(OpDef("_backward_pick", kind="injective", inputs=("ograd", "data", "index"), schema=PICK_SCHEMA,
               shape=_bpick_shape, dtype=_btake_type, lower=_bpick_lower,
               gradient=lambda b, node, ogs: [b.op("pick", ogs[0], node.inputs[2], **_schema_attrs(node)),
                                              None, None]))


# ---- batch_take ----
def _bt_shape(params, ins, outs):
    a, idx = ins
    out = unify(idx, outs[0])
    if known(a):
        if len(a) < 2:
            raise InferError("data must have at least 2 dimensions, got %s" % (a,))
        if known(out) and int(np.prod(a[:-1])) != int(np.prod(out)):
            raise InferError("index size %d must equal the data size without its last axis (%d)"
                             % (int(np.prod(out)), int(np.prod(a[:-1]))))
    return [a, out], [out]


def _bt_lower(params, ins, outs):
    from .layout import flat_index, unflatten
    a, idx = ins
    out = outs[0]
    m = a.shape[-1]

    def body(*i):
        row = unflatten(a.shape[:-1], flat_index(out.shape, i))
        return a.load(row + [_fix_index(idx.load(list(i)), m, "clip")])
    return [compute(out, body)]


def _np_bt(params, a, idx):
    flat = a.reshape(-1, a.shape[-1])
    j = _np_fix(idx.reshape(-1), a.shape[-1], "clip")
    return flat[np.arange(flat.shape[0]), j].reshape(idx.shape)


register(OpDef("batch_take", kind="injective", inputs=("a", "indices"), shape=_bt_shape, dtype=_first_type,
               lower=_bt_lower, reference=_np_bt, doc="out[i] = a[i, indices[i]] (clipped); deprecated, use pick."))


# ---- gather_nd / scatter_nd: indices of shape (M, Y...) address the first M axes ----
def _gnd_shape(params, ins, outs):
    data, idx = ins
    if not (known(data) and known(idx)):
        return [data, idx], [outs[0]]
    if idx[0] > len(data):
        raise InferError("gather_nd: indices.shape[0]=%d exceeds data.ndim=%d" % (idx[0], len(data)))
    return [data, idx], [unify(tuple(idx[1:]) + tuple(data[idx[0]:]), outs[0])]


def _nd_source(idx, shape, pos):
    """Clamped data position for the index column ``pos`` (loop indices over Y)."""
    m = idx.shape[0]
    return [E.clamp_index(E.to_index(idx.load([_i64(k)] + list(pos))), shape[k]) for k in range(m)]


def _gnd_lower(params, ins, outs):
    data, idx = ins
    ny = idx.ndim - 1
    return [compute(outs[0], lambda *i: data.load(_nd_source(idx, data.shape, i[:ny]) + list(i[ny:])))]


def _np_gnd(params, data, idx):
    m = idx.shape[0]
    i = [np.clip(np.trunc(idx[k]).astype(np.int64), 0, data.shape[k] - 1) for k in range(m)]
    return data[tuple(i)]


register(OpDef("gather_nd", kind="injective", inputs=("data", "indices"), shape=_gnd_shape, dtype=_first_type,
               lower=_gnd_lower, reference=_np_gnd,
               gradient=lambda b, node, ogs: [b.op("_backward_gather_nd", ogs[0], node.inputs[1], node.inputs[0]),
                                              None],
               doc="gather_nd(data, indices); out-of-range indices are clamped."))

SCATTER_SCHEMA = {"shape": P.Tuple(())}


def _snd_shape(params, ins, outs):
    return [ins[0], ins[1]], [unify(tuple(params["shape"]), outs[0])]


def _snd_lower(params, ins, outs):
    data, idx = ins
    out = outs[0]
    ny = idx.ndim - 1
    return [scatter_add(out, data.shape, lambda *i: _nd_source(idx, out.shape, i[:ny]) + list(i[ny:]),
                        lambda *i: data.load(i))]


def _np_snd(params, data, idx):
    out = np.zeros(params["shape"], data.dtype)
    m = idx.shape[0]
    i = [np.clip(np.trunc(idx[k]).astype(np.int64), 0, out.shape[k] - 1) for k in range(m)]
    np.add.at(out, tuple(i), data)
    return out


register(OpDef("scatter_nd", kind="injective", inputs=("data", "indices"), schema=SCATTER_SCHEMA,
               shape=_snd_shape, dtype=_first_type, lower=_snd_lower, reference=_np_snd,
               gradient=lambda b, node, ogs: [b.op("gather_nd", ogs[0], node.inputs[1]), None],
               doc="scatter_nd(data, indices, shape); repeated indices add up (MXNet leaves them undefined)."))


def _bgnd_shape(params, ins, outs):
    s = unify(ins[2], outs[0])
    return [ins[0], ins[1], s], [s]


register(OpDef("_backward_gather_nd", kind="injective", inputs=("ograd", "indices", "like"), shape=_bgnd_shape,
               dtype=_btake_type, lower=lambda params, ins, outs: _snd_lower(params, ins[:2], outs),
               gradient=lambda b, node, ogs: [b.op("gather_nd", ogs[0], node.inputs[1]), None, None]))


# ---- diag: a matrix's k-th diagonal, or a vector as a diagonal matrix ----
def _diag_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    k = params["k"]
    if len(x) == 1:
        n = x[0] + abs(k)
        return [x], [unify((n, n), outs[0])]
    if len(x) != 2:
        raise InferError("diag: only 1-D and 2-D inputs are supported, got %d-D" % len(x))
    n = min(x[0] + min(k, 0), x[1] - max(k, 0))
    return [x], [unify((n if n > 0 else 0,), outs[0])]


def _diag_lower(params, ins, outs):
    x, out = ins[0], outs[0]
    k = params["k"]
    if x.ndim == 2:
        return [compute(out, lambda i: x.load([i + _i64(max(-k, 0)), i + _i64(max(k, 0))]))]

    def body(r, c):
        on = E.cmp("eq", c - r, _i64(k))
        src = E.clamp_index(r - _i64(max(-k, 0)), x.shape[0])
        return E.select(on, x.load([src]), _const(0, out.dtype))
    return [compute(out, body)]


def _diag_grad(b, node, ogs):
    return [b.op("_backward_diag", ogs[0], node.inputs[0], k=node.params["k"])]


register(OpDef("diag", kind="injective", schema={"k": P.Int(0)}, shape=_diag_shape, lower=_diag_lower,
               gradient=_diag_grad, reference=lambda params, x: np.diag(x, params["k"]).copy()))


def _bdiag_shape(params, ins, outs):
    s = unify(ins[1], outs[0])
    return [ins[0], s], [s]


# diag's gradient is diag's own map read backwards, at the input's shape
register(OpDef("_backward_diag", kind="injective", inputs=("ograd", "data"), schema={"k": P.Int(0)},
               shape=_bdiag_shape, dtype=_first_type,
               lower=lambda params, ins, outs: _diag_lower(params, ins[:1], outs),
               gradient=lambda b, node, ogs: [b.op("diag", ogs[0], k=node.params["k"]), None]))


# ---- SequenceMask: steps at or past each sequence's length become ``value`` ----
SEQ_SCHEMA = {"use_sequence_length": P.Bool(False), "value": P.Float(0.0), "axis": P.Int(0)}


def _seq_inputs(params):
    return ["data", "sequence_length"] if params.get("use_sequence_length") else ["data"]


def _seq_shape(params, ins, outs):
    s = unify(ins[0], outs[0])
    return [s] + list(ins[1:]), [s]


def _seq_lower(params, ins, outs):
    data, out = ins[0], outs[0]
    if len(ins) == 1:
        return [compute(out, lambda *i: data.load(i))]
    lens = ins[1]
    t_axis = params["axis"]
    b_axis = 1 - t_axis

    def body(*i):
        keep = E.cmp("lt", i[t_axis], E.to_index(lens.load([i[b_axis]])))
        return E.select(keep, data.load(i), _const(params["value"], out.dtype))
    return [compute(out, body)]


def _np_seq(params, data, lens=None):
    if lens is None:
        return data.copy()
    t = np.arange(data.shape[params["axis"]])
    keep = t[:, None] < np.trunc(lens).astype(np.int64)[None, :]
    if params["axis"] == 1:
        keep = keep.T
    keep = keep.reshape(keep.shape + (1,) * (data.ndim - 2))
    return np.where(keep, data, params["value"]).astype(data.dtype)


def _seq_grad(b, node, ogs):
    attrs = dict(node.params, value=0.0)
    return [b.op("SequenceMask", ogs[0], *node.inputs[1:], **attrs)] + [None] * (len(node.inputs) - 1)


register(OpDef("SequenceMask", kind="injective", inputs=_seq_inputs, schema=SEQ_SCHEMA, shape=_seq_shape,
               dtype=_first_type, lower=_seq_lower, gradient=_seq_grad, reference=_np_seq))
