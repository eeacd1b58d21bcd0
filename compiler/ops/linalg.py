"""dot, batch_dot and FullyConnected (a composite of dot and a broadcast bias add)."""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import compute
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, unify

DOT_SCHEMA = {"transpose_a": P.Bool(False), "transpose_b": P.Bool(False),
              "forward_stype": P.Str(None)}


def _eff(shape, t):
    return tuple(reversed(shape)) if t else tuple(shape)


def _dot_shape(params, ins, outs):
    a, b = ins
    if not (known(a) and known(b)):
        return [a, b], [outs[0]]
    ea, eb = _eff(a, params["transpose_a"]), _eff(b, params["transpose_b"])
    if ea[-1] != eb[0]:
        raise InferError("dot: inner dimensions differ: %s (transpose_a=%s) and %s (transpose_b=%s)"
                         % (a, params["transpose_a"], b, params["transpose_b"]))
    out = ea[:-1] + eb[1:]
    return [a, b], [unify(out or (1,), outs[0])]


def _dot_lower(params, ins, outs):
    a, b = ins
    out = outs[0]
    ta, tb = params["transpose_a"], params["transpose_b"]
    ea = _eff(a.shape, ta)
    k_ext = ea[-1]
    (k,) = E.fresh_vars(1, "k")
    na = len(ea) - 1

    def body(*i):
        i = i if (len(ea) - 1 + b.ndim - 1) > 0 else ()
        ia = tuple(i[:na]) + (k,)
        ib = (k,) + tuple(i[na:])
        la = a.load(tuple(reversed(ia)) if ta else ia)
        lb = b.load(tuple(reversed(ib)) if tb else ib)
        return E.Reduce("sum", [k], [k_ext], la * lb)
    return [compute(out, body)]


def _dot_grad(b, node, ogs):
    x, y = node.inputs
    og = ogs[0]
    ta, tb = node.params["transpose_a"], node.params["transpose_b"]
    if not ta and not tb:
        return [b.op("dot", og, y, transpose_b=True), b.op("_tensordot_lead", x, og)]
    if not ta and tb:
        return [b.op("dot", og, y), b.op("_tensordot_lead", og, x)]
    if ta and not tb:
        return [b.op("dot", y, og, transpose_b=True), b.op("dot", x, og)]
    return [b.op("dot", y, og, transpose_a=True, transpose_b=True),
            b.op("dot", og, x, transpose_a=True, transpose_b=True)]


def _np_dot(params, a, b):
    ea = a.T if params["transpose_a"] else a
    eb = b.T if params["transpose_b"] else b
    r = np.tensordot(ea, eb, axes=([ea.ndim - 1], [0]))
    return np.asarray(r).reshape(r.shape or (1,)).astype(a.dtype)


register(OpDef("dot", kind="reduce", inputs=("lhs", "rhs"), schema=DOT_SCHEMA, shape=_dot_shape,
               lower=_dot_lower, gradient=_dot_grad, reference=_np_dot))


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
    rv = E.fresh_vars(len(lead), "l")
    return [compute(outs[0], lambda m, n: E.Reduce("sum", rv, lead, x.load(tuple(rv) + (m,)) * y.load(tuple(rv) + (n,))))]


def _lead_ref(params, x, y):
    return np.tensordot(x, y, axes=(list(range(x.ndim - 1)), list(range(y.ndim - 1)))).astype(x.dtype)


def _lead_grad(b, node, ogs):
    x, y = node.inputs
    og = ogs[0]  # (M, N)
    return [b.op("dot", y, og, transpose_b=True), b.op("dot", x, og)]


register(OpDef("_tensordot_lead", kind="reduce", inputs=("lhs", "rhs"), shape=_lead_shape,
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


register(OpDef("batch_dot", kind="reduce", inputs=("lhs", "rhs"), schema=DOT_SCHEMA, shape=_bdot_shape,
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
