"""BatchNorm with its auxiliary moving statistics.

Inference (and ``use_global_stats``) normalises with the moving statistics,
as a composite of broadcast operators. Training with batch statistics and
the moving-average update of the auxiliary states is not implemented yet;
executors refuse ``is_train=True`` for such nodes with a clear message.
"""
from __future__ import annotations

import numpy as np

from ..kernel import compute
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, norm_axis, unify

BN_SCHEMA = {"eps": P.Float(1e-3), "momentum": P.Float(0.9), "fix_gamma": P.Bool(True),
             "use_global_stats": P.Bool(False), "output_mean_var": P.Bool(False), "axis": P.Int(1),
             "cudnn_off": P.Bool(False), "min_calib_range": P.OptFloat(None), "max_calib_range": P.OptFloat(None)}
BN_INPUTS = ("data", "gamma", "beta", "moving_mean", "moving_var")


def _bn_shape(params, ins, outs):
    x = unify(ins[0], outs[0])
    if not known(x):
        return [x] + list(ins[1:]), [x, outs[1], outs[2]]
    c = (x[norm_axis(params["axis"], len(x))],)
    return [x] + [unify(s, c) for s in ins[1:]], [x, unify(outs[1], c), unify(outs[2], c)]


def _bn_type(params, ins, outs):
    from .shapes import unify_all_types
    t = unify_all_types(list(ins) + list(outs))
    return [t] * 5, [t] * 3


def _bn_expand(b, inputs, params):
    x, gamma, beta, mean, var = inputs
    axis = params["axis"]

    def along(v):
        return b.op("_broadcast_axis_like", v, x, axis=axis)
    scale = b.op("rsqrt", b.scalar("_plus_scalar", var, params["eps"]))
    if not params["fix_gamma"]:
        scale = b.mul(scale, gamma)
    y = b.op("elemwise_add", b.mul(b.op("elemwise_sub", x, along(mean)), along(scale)), along(beta))
    return [y, b.op("identity", mean), b.op("identity", var)]


def _bn_gap(params):
    if params["use_global_stats"]:
        return None
    return "BatchNorm training (batch statistics and the moving-average update of its auxiliary states)"


def _np_bn(params, x, gamma, beta, mean, var):
    axis = norm_axis(params["axis"], x.ndim)
    shape = [1] * x.ndim
    shape[axis] = -1
    g = np.ones_like(gamma) if params["fix_gamma"] else gamma
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + params["eps"]) * g.reshape(shape) + beta.reshape(shape)
    return y.astype(x.dtype), mean.copy(), var.copy()


register(OpDef("BatchNorm", kind="composite", inputs=BN_INPUTS, schema=BN_SCHEMA, outputs=3,
               visible=lambda params: 3 if params["output_mean_var"] else 1,
               output_names=lambda params: ["output", "mean", "var"] if params["output_mean_var"] else None,
               aux=(3, 4), shape=_bn_shape, dtype=_bn_type, expand=_bn_expand, reference=_np_bn,
               training_gap=_bn_gap))


def _axis_like_shape(params, ins, outs):
    v, like = ins
    out = unify(like, outs[0])
    if known(out):
        c = (out[norm_axis(params["axis"], len(out))],)
        if v is not None and known(v) and tuple(v) != c:
            raise InferError("vector %s does not match axis %d of %s" % (v, params["axis"], out))
        v = unify(v, c)
    return [v, out], [out]


def _axis_like_lower(params, ins, outs):
    v, _ = ins
    out = outs[0]
    axis = norm_axis(params["axis"], out.ndim)
    return [compute(out, lambda *i: v.load(i[axis]))]


def _axis_like_type(params, ins, outs):
    from .shapes import unify_type
    t = unify_type(ins[0], outs[0])
    return [t, ins[1]], [t]


register(OpDef("_broadcast_axis_like", kind="broadcast", inputs=("data", "like"), schema={"axis": P.Int(1)},
               shape=_axis_like_shape, dtype=_axis_like_type, lower=_axis_like_lower,
               gradient=lambda b, node, ogs: [b.op("sum", ogs[0], axis=(node.params["axis"],), exclude=True), None]))
