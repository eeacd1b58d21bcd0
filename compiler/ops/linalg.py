"""dot, batch_dot and FullyConnected (a composite of dot and a broadcast bias add)."""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import Gemm, compute, numel
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, unify

DOT_SCHEMA = {"transpose_a": P.Bool(False), "transpose_b": P.Bool(False),
              "forward_stype": P.Str(None)}


def _split(shape, t, side):
    """MXNet's matrix view of a dot operand: (free dims in order, contracted extent, its position).

    lhs: (all but last, last), or (first, rest) when transposed; rhs: (first, rest), or
    (all but last, last) when transposed. Transposing an N-d operand swaps the two groups;
    it does not reverse every axis. A 1-d operand contributes no free dims.
    """
    shape = tuple(shape)
    if len(shape) == 1:
        return (), shape[0], 0
    last = (side == "lhs") != bool(t)
    if last:
        return shape[:-1], shape[-1], len(shape) - 1
    return shape[1:], shape[0], 0


def _insert(free, k, pos):
    free = list(free)
    return tuple(free[:pos]) + (k,) + tuple(free[pos:])


def _dot_shape(params, ins, outs):
    a, b = ins
    if not (known(a) and known(b)):
        return [a, b], [outs[0]]
    fa, ka, _ = _split(a, params["transpose_a"], "lhs")
    fb, kb, _ = _split(b, params["transpose_b"], "rhs")
    if ka != kb:
        raise InferError("dot: inner dimensions differ: %s (transpose_a=%s) and %s (transpose_b=%s)"
                         % (a, params["transpose_a"], b, params["transpose_b"]))
    out = tuple(fa) + tuple(fb)
    return [a, b], [unify(out or (1,), outs[0])]


GEMM_DTYPES = ("float32", "float64")


def _gemm(out, a, b, ta, tb, dims, batch=1):
    """A ``Gemm`` stage when the backend has a blocked kernel for this product, else None."""
    if not (a.dtype == b.dtype == out.dtype and out.dtype in GEMM_DTYPES) or 0 in [d for d in dims if E.is_static(d)]:
        return None
    return [Gemm(out, a, b, ta, tb, batch=batch, dims=dims)]


def _dot_lower(params, ins, outs):
    a, b = ins
    out = outs[0]
    fa, k_ext, pa = _split(a.shape, params["transpose_a"], "lhs")
    fb, _, pb = _split(b.shape, params["transpose_b"], "rhs")
    # Storage is row-major, so each operand already is its matrix view; a 1-d one is a row.
    gemm = _gemm(out, a, b, params["transpose_a"] and a.ndim > 1, params["transpose_b"] and b.ndim > 1,
                 (numel(fa), numel(fb), k_ext))
    if gemm:
        return gemm
    (k,) = E.fresh_vars(1, "k")
    na = len(fa)

    def body(*i):
        i = i if (fa or fb) else ()
        la = a.load(_insert(i[:na], k, pa))
        lb = b.load(_insert(i[na:], k, pb))
        return E.Reduce("sum", [k], [k_ext], la * lb)
    return [compute(out, body)]


def _dot_grad(b, node, ogs):
    x, y = node.inputs
    og = ogs[0]
    t = {"transpose_a": node.params["transpose_a"], "transpose_b": node.params["transpose_b"]}
    return [b.op("_dot_backward", og, y, x, which=0, **t), b.op("_dot_backward", og, x, y, which=1, **t)]


def _np_dot(params, a, b):
    fa, ka, pa = _split(a.shape, params["transpose_a"], "lhs")
    fb, kb, pb = _split(b.shape, params["transpose_b"], "rhs")
    a2 = np.moveaxis(a, pa, -1).reshape(-1, ka)
    b2 = np.moveaxis(b, pb, 0).reshape(kb, -1)
    return np.asarray(a2 @ b2).reshape(tuple(fa) + tuple(fb) or (1,)).astype(a.dtype)


register(OpDef("dot", kind="opaque", inputs=("lhs", "rhs"), schema=DOT_SCHEMA, shape=_dot_shape,
               lower=_dot_lower, gradient=_dot_grad, reference=_np_dot))


# ``_dot_backward(ograd, other, like, which)``: the gradient of dot for operand ``which``
# (0: lhs, 1: rhs), shaped like ``like`` (that operand); ``other`` is the other operand.
DOT_BWD_SCHEMA = dict(DOT_SCHEMA, which=P.Int(0))


def _dot_bwd_shape(params, ins, outs):
    return [ins[0], ins[1], ins[2]], [unify(ins[2], outs[0])]


def _dot_bwd_type(params, ins, outs):
    from .shapes import unify_all_types
    t = unify_all_types([ins[0], ins[1], outs[0]])
    return [t, t, ins[2]], [t]


def _dot_bwd_lower(params, ins, outs):
    og, other, _ = ins
    out = outs[0]
    which = params["which"]
    a_shape = out.shape if which == 0 else other.shape
    b_shape = other.shape if which == 0 else out.shape
    fa, k_ext, pa = _split(a_shape, params["transpose_a"], "lhs")
    fb, _, pb = _split(b_shape, params["transpose_b"], "rhs")
    ta = params["transpose_a"] and len(a_shape) > 1
    tb = params["transpose_b"] and len(b_shape) > 1
    m, n = numel(fa), numel(fb)
    # forward: C[m, n] = op(A)[m, k] . op(B)[k, n]; og is C's gradient
    if which == 0:  # gA = og . op(B)^T, or its transpose when A is stored transposed
        gemm = (_gemm(out, other, og, tb, True, (k_ext, m, n)) if ta
                else _gemm(out, og, other, False, not tb, (m, k_ext, n)))
    else:  # gB = op(A)^T . og, or its transpose when B is stored transposed
        gemm = (_gemm(out, og, other, True, ta, (n, k_ext, m)) if tb
                else _gemm(out, other, og, not ta, False, (k_ext, n, m)))
    if gemm:
        return gemm
    # summed over: the other operand's free dims
    f_sum = fb if which == 0 else fa
    p_out, p_other = (pa, pb) if which == 0 else (pb, pa)
    rv = E.fresh_vars(len(f_sum), "r")

    def body(*i):
        k = i[p_out]
        free = tuple(i[:p_out]) + tuple(i[p_out + 1:]) if len(out.shape) > 1 else ()
        rs = tuple(rv)
        og_idx = (free + rs) if which == 0 else (rs + free)
        if not og_idx:
            og_idx = (E.const(0, "int64"),)
        val = og.load(og_idx) * other.load(_insert(rs, k, p_other))
        return E.Reduce("sum", list(rv), list(f_sum), val) if rv else val
    return [compute(out, body)]


def _dot_bwd_ref(params, og, other, like):
    which = params["which"]
    a_shape = like.shape if which == 0 else other.shape
    b_shape = other.shape if which == 0 else like.shape
    fa, k, pa = _split(a_shape, params["transpose_a"], "lhs")
    fb, _, pb = _split(b_shape, params["transpose_b"], "rhs")
    g2 = og.reshape(int(np.prod(fa)), int(np.prod(fb)))
    if which == 0:
        b2 = np.moveaxis(other, pb, 0).reshape(k, -1)
        r = (g2 @ b2.T).reshape(tuple(fa) + (k,))
        return np.moveaxis(r, -1, pa).astype(og.dtype)
    a2 = np.moveaxis(other, pa, -1).reshape(-1, k)
    r = (a2.T @ g2).reshape((k,) + tuple(fb))
    return np.moveaxis(r, 0, pb).astype(og.dtype)


def _dot_bwd_grad(b, node, ogs):
    og, other, like = node.inputs
    g = ogs[0]
    p = node.params
    t = {"transpose_a": p["transpose_a"], "transpose_b": p["transpose_b"]}
    if p["which"] == 0:  # out = og . other^T  (lhs gradient)
        return [b.op("dot", g, other, **t), b.op("_dot_backward", og, g, other, which=1, **t), None]
    return [b.op("dot", other, g, **t), b.op("_dot_backward", og, g, other, which=0, **t), None]


register(OpDef("_dot_backward", kind="opaque", inputs=("ograd", "other", "like"), schema=DOT_BWD_SCHEMA,
               shape=_dot_bwd_shape, dtype=_dot_bwd_type, lower=_dot_bwd_lower, gradient=_dot_bwd_grad,
               reference=_dot_bwd_ref))


def _lead_shape(params, ins, outs):
    x, y = ins
    if not (known(x) and known(y)):
        return [x, y], [outs[0]]
    if x[:-1] != y[:-1]:
        raise InferError("leading dimensions differ: %s and %s" % (x, y))
    return [x, y], [unify((x[-1], y[-1]), outs[0])]


def _lead_lower(params, ins, outs):
    """out[m, n] = sum over leading index L of x[L, m] * y[L, n]."""
    x, y = ins
    lead = x.shape[:-1]
    gemm = _gemm(outs[0], x, y, True, False, (x.shape[-1], y.shape[-1], numel(lead)))
    if gemm:
        return gemm
    rv = E.fresh_vars(len(lead), "l")
    return [compute(outs[0], lambda m, n: E.Reduce("sum", rv, lead, x.load(tuple(rv) + (m,)) * y.load(tuple(rv) + (n,))))]


def _lead_ref(params, x, y):
    return np.tensordot(x, y, axes=(list(range(x.ndim - 1)), list(range(y.ndim - 1)))).astype(x.dtype)


def _lead_grad(b, node, ogs):
    x, y = node.inputs
    og = ogs[0]  # (M, N)
    return [b.op("dot", y, og, transpose_b=True), b.op("dot", x, og)]


register(OpDef("_tensordot_lead", kind="opaque", inputs=("lhs", "rhs"), shape=_lead_shape,
               lower=_lead_lower, reference=_lead_ref, gradient=_lead_grad))


def _bdot_shape(params, ins, outs):
    a, b = ins
    if not (known(a) and known(b)):
        return [a, b], [outs[0]]
    if len(a) != 3 or len(b) != 3:
        raise InferError("batch_dot needs 3-d inputs, got %s and %s" % (a, b))
    ea = (a[0], a[2], a[1]) if params["transpose_a"] else a
    eb = (b[0], b[2], b[1]) if params["transpose_b"] else b
    if ea[0] != eb[0] or ea[2] != eb[1]:
        raise InferError("batch_dot: shapes %s and %s do not match" % (a, b))
    return [a, b], [unify((ea[0], ea[1], eb[2]), outs[0])]


def _bdot_lower(params, ins, outs):
    a, b = ins
    ta, tb = params["transpose_a"], params["transpose_b"]
    kext = a.shape[1] if ta else a.shape[2]
    out = outs[0]
    gemm = _gemm(out, a, b, ta, tb, (out.shape[1], out.shape[2], kext), batch=a.shape[0])
    if gemm:
        return gemm
    (k,) = E.fresh_vars(1, "k")

    def body(n, i, j):
        la = a.load(n, k, i) if ta else a.load(n, i, k)
        lb = b.load(n, j, k) if tb else b.load(n, k, j)
        return E.Reduce("sum", [k], [kext], la * lb)
    return [compute(outs[0], body)]


def _bdot_grad(b, node, ogs):
    x, y = node.inputs
    og = ogs[0]
    ta, tb = node.params["transpose_a"], node.params["transpose_b"]
    if not ta and not tb:
        return [b.op("batch_dot", og, y, transpose_b=True), b.op("batch_dot", x, og, transpose_a=True)]
    if not ta and tb:
        return [b.op("batch_dot", og, y), b.op("batch_dot", og, x, transpose_a=True)]
    if ta and not tb:
        return [b.op("batch_dot", y, og, transpose_b=True), b.op("batch_dot", x, og)]
    return [b.op("batch_dot", y, og, transpose_a=True, transpose_b=True),
            b.op("batch_dot", og, x, transpose_a=True, transpose_b=True)]


def _np_bdot(params, a, b):
    ea = a.transpose(0, 2, 1) if params["transpose_a"] else a
    eb = b.transpose(0, 2, 1) if params["transpose_b"] else b
    return np.matmul(ea, eb).astype(a.dtype)


register(OpDef("batch_dot", kind="opaque", inputs=("lhs", "rhs"), schema=DOT_SCHEMA, shape=_bdot_shape,
               lower=_bdot_lower, gradient=_bdot_grad, reference=_np_bdot))


# ---- FullyConnected ----
FC_SCHEMA = {"num_hidden": P.Int(), "no_bias": P.Bool(False), "flatten": P.Bool(True)}


def _fc_inputs(params):
    return ["data", "weight"] if params["no_bias"] else ["data", "weight", "bias"]


def _fc_shape(params, ins, outs):
    x, w = ins[0], ins[1]
    h = params["num_hidden"]
    new_ins = list(ins)
    out = outs[0]
    if known(x):
        if params["flatten"]:
            k = int(np.prod(x[1:])) if len(x) > 1 else 1
            out = unify((x[0], h), out)
        else:
            k = x[-1]
            out = unify(tuple(x[:-1]) + (h,), out)
        new_ins[1] = unify(w, (h, k))
    else:  # MXNet infers nothing until the data shape is known
        return new_ins, [out]
    if len(ins) == 3:
        new_ins[2] = unify(ins[2], (h,))
    if new_ins[1] is not None and new_ins[1][0] != h:
        raise InferError("weight shape %s does not match num_hidden=%d" % (new_ins[1], h))
    return new_ins, [out]


def _fc_expand(b, inputs, params):
    x, w = inputs[0], inputs[1]
    if params["flatten"]:
        x = b.op("Flatten", x)
    y = b.op("dot", x, w, transpose_b=True)
    if not params["no_bias"]:
        y = b.op("broadcast_add", y, inputs[2])
    return [y]


def _np_fc(params, x, w, bias=None):
    if params["flatten"]:
        x = x.reshape(x.shape[0], -1)
    y = np.tensordot(x, w, axes=([x.ndim - 1], [1]))
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


register(OpDef("FullyConnected", kind="composite", inputs=_fc_inputs, schema=FC_SCHEMA, shape=_fc_shape,
               expand=_fc_expand, reference=_np_fc))
