"""BatchNorm with its auxiliary moving statistics, as MXNet 1.x's CPU operator.

Inference (and ``use_global_stats``) normalises with the moving statistics.
Training (a program compiled with ``is_train=True``, ``passes/training.py``)
replaces the node by ``_batch_norm_train``: a composite normalising with the
batch mean and biased batch variance over every axis but ``axis``, whose two
hidden extra outputs are the updated moving statistics
(``moving * momentum + batch * (1 - momentum)``) that the program writes back
into the auxiliary arrays. Both forms are composites, so gradients (through
the batch statistics in training) come from their parts. As in MXNet, the
second and third outputs are the mean and the inverse standard deviation
``1/sqrt(var + eps)``, and they pass no gradient back.
"""
from __future__ import annotations

import numpy as np

from ..kernel import compute
from . import params as P
from .registry import TRAINING_VARIANTS, OpDef, register
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
    invstd = b.op("rsqrt", b.scalar("_plus_scalar", var, params["eps"]))
    y = _normalise(b, x, b.op("elemwise_sub", x, along(mean)), invstd, gamma, beta, params)
    return [y, b.op("identity", mean), b.op("BlockGrad", invstd)]


def _normalise(b, x, centred, invstd, gamma, beta, params):
    """(x - mean) * invstd * gamma + beta, gamma = 1 under fix_gamma (as MXNet)."""
    scale = invstd if params["fix_gamma"] else b.mul(invstd, gamma)
    along = lambda v: b.op("_broadcast_axis_like", v, x, axis=params["axis"])  # noqa: E731
    return b.op("elemwise_add", b.mul(centred, along(scale)), along(beta))


def _bn_train_expand(b, inputs, params):
    """Batch statistics (biased variance, two passes as MXNet) and the moving-average update."""
    x, gamma, beta, moving_mean, moving_var = inputs
    axis = params["axis"]
    mean = b.op("mean", x, axis=(axis,), exclude=True)
    centred = b.op("elemwise_sub", x, b.op("_broadcast_axis_like", mean, x, axis=axis))
    var = b.op("mean", b.op("square", centred), axis=(axis,), exclude=True)
    invstd = b.op("rsqrt", b.scalar("_plus_scalar", var, params["eps"]))
    y = _normalise(b, x, centred, invstd, gamma, beta, params)
    m = params["momentum"]

    def update(moving, batch):
        return b.add(b.scalar("_mul_scalar", moving, m), b.scalar("_mul_scalar", b.op("BlockGrad", batch), 1.0 - m))
    return [y, b.op("BlockGrad", mean), b.op("BlockGrad", invstd),
            update(moving_mean, mean), update(moving_var, var)]


def _bn_sensitive(params):
    return not params["use_global_stats"]


def _bn_variant(node, inputs, is_train, in_shapes):
    """Training: the ``_batch_norm_train`` node; its outputs 3 and 4 update the moving statistics."""
    if not is_train or node.params["use_global_stats"]:
        return None
    from ..builder import Builder  # the builder imports the registry this module belongs to
    n = Builder(node.name).node("_batch_norm_train", inputs, dict(node.attrs), name=node.name)
    outs = [n.out(i) for i in range(5)]
    return outs[:3], {3: outs[3], 4: outs[4]}


def _bn_train_shape(params, ins, outs):
    ins, head = _bn_shape(params, ins, outs[:3])
    return ins, head + [unify(outs[3], head[1]), unify(outs[4], head[1])]


def _bn_train_type(params, ins, outs):
    from .shapes import unify_all_types
    t = unify_all_types(list(ins) + list(outs))
    return [t] * 5, [t] * 5


def _shape_along(params, x):
    shape = [1] * x.ndim
    shape[norm_axis(params["axis"], x.ndim)] = -1
    return shape


def _np_bn(params, x, gamma, beta, mean, var):
    shape = _shape_along(params, x)
    g = np.ones_like(gamma) if params["fix_gamma"] else gamma
    invstd = 1.0 / np.sqrt(var + params["eps"])
    y = (x - mean.reshape(shape)) * invstd.reshape(shape) * g.reshape(shape) + beta.reshape(shape)
    return y.astype(x.dtype), mean.copy(), invstd.astype(x.dtype)


def _np_bn_train(params, x, gamma, beta, moving_mean, moving_var):
    axes = tuple(a for a in range(x.ndim) if a != norm_axis(params["axis"], x.ndim))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    y, _, invstd = _np_bn(params, x, gamma, beta, mean, var)
    m = params["momentum"]
    return (y, mean.astype(x.dtype), invstd, (moving_mean * m + mean * (1 - m)).astype(x.dtype),
            (moving_var * m + var * (1 - m)).astype(x.dtype))


_OUTPUT_NAMES = lambda params: ["output", "mean", "var"] if params["output_mean_var"] else None  # noqa: E731
_VISIBLE = lambda params: 3 if params["output_mean_var"] else 1  # noqa: E731

register(OpDef("BatchNorm", kind="composite", inputs=BN_INPUTS, schema=BN_SCHEMA, outputs=3,
               visible=_VISIBLE, output_names=_OUTPUT_NAMES,
               aux=(3, 4), shape=_bn_shape, dtype=_bn_type, expand=_bn_expand, reference=_np_bn,
               var_attrs={"moving_mean": {"__init__": '["zero", {}]'}, "moving_var": {"__init__": '["one", {}]'}},
               doc="Normalises over every axis but `axis`: with the batch statistics in training "
                   "(updating moving_mean/moving_var in place) unless use_global_stats, with the "
                   "moving statistics otherwise. Outputs: output, mean, inverse std."))
TRAINING_VARIANTS["BatchNorm"] = (_bn_sensitive, _bn_variant, "_batch_norm_train")
# BatchNorm's training form (what training programs and autograd tapes contain): outputs
# 3 and 4 are the new moving statistics, hidden, written back by whoever runs it.
register(OpDef("_batch_norm_train", kind="composite", inputs=BN_INPUTS, schema=BN_SCHEMA, outputs=5,
               visible=_VISIBLE, output_names=_OUTPUT_NAMES, hint="batchnorm",
               aux=(3, 4), shape=_bn_train_shape, dtype=_bn_train_type, expand=_bn_train_expand,
               reference=_np_bn_train))


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


# ---------------------------------------------------------------- LayerNorm, GroupNorm, InstanceNorm
# Composites of mean/square/sqrt/broadcast operators, so their gradients (through the
# statistics) come from the parts. Variances are biased and computed from centred values
# (two passes, as MXNet's CPU kernels). The mean/std outputs pass no gradient back, as in MXNet.
def _stats(b, xr, axis, eps):
    """(centred, mean, std) of ``xr`` along ``axis`` (kept as size 1)."""
    mean = b.op("mean", xr, axis=(axis,), keepdims=True)
    centred = b.op("broadcast_sub", xr, mean)
    var = b.op("mean", b.op("square", centred), axis=(axis,), keepdims=True)
    return centred, mean, b.op("sqrt", b.scalar("_plus_scalar", var, eps))


def _affine(b, xhat, gamma, beta, axis):
    along = lambda v: b.op("_broadcast_axis_like", v, xhat, axis=axis)  # noqa: E731
    return b.op("elemwise_add", b.mul(xhat, along(gamma)), along(beta))


NORM_INPUTS = ("data", "gamma", "beta")
_MV_NAMES = lambda params: ["output", "mean", "std"] if params["output_mean_var"] else None  # noqa: E731
_MV_VISIBLE = lambda params: 3 if params["output_mean_var"] else 1  # noqa: E731
LN_SCHEMA = {"axis": P.Int(-1), "eps": P.Float(1e-5), "output_mean_var": P.Bool(False)}


def _ln_shape(params, ins, outs):
    x = unify(ins[0], outs[0])
    if not known(x):
        return [x] + list(ins[1:]), [x, outs[1], outs[2]]
    a = norm_axis(params["axis"], len(x))
    stat = tuple(1 if i == a else n for i, n in enumerate(x))
    c = (x[a],)
    return [x, unify(ins[1], c), unify(ins[2], c)], [x, unify(outs[1], stat), unify(outs[2], stat)]


def _all_same_type(nin, nout):
    def rule(params, ins, outs):
        from .shapes import unify_all_types
        t = unify_all_types(list(ins) + list(outs))
        return [t] * nin, [t] * nout
    return rule


def _ln_expand(b, inputs, params):
    x, gamma, beta = inputs
    axis = params["axis"]
    centred, mean, std = _stats(b, x, axis, params["eps"])
    y = _affine(b, b.op("broadcast_div", centred, std), gamma, beta, axis)
    return [y, b.op("BlockGrad", mean), b.op("BlockGrad", std)]


def _np_ln(params, x, gamma, beta):
    a = norm_axis(params["axis"], x.ndim)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=a, keepdims=True)
    std = np.sqrt(((x64 - mean) ** 2).mean(axis=a, keepdims=True) + params["eps"])
    shape = [1] * x.ndim
    shape[a] = -1
    y = (x64 - mean) / std * gamma.reshape(shape) + beta.reshape(shape)
    if not params["output_mean_var"]:
        return y.astype(x.dtype)
    return y.astype(x.dtype), mean.astype(x.dtype), std.astype(x.dtype)


register(OpDef("LayerNorm", kind="composite", inputs=NORM_INPUTS, schema=LN_SCHEMA, outputs=3, visible=_MV_VISIBLE,
               output_names=_MV_NAMES, shape=_ln_shape, dtype=_all_same_type(3, 3), expand=_ln_expand,
               reference=_np_ln, doc="(x - mean) / sqrt(var + eps) * gamma + beta along `axis`; "
                                     "outputs mean and std (keepdims) when output_mean_var."))

GN_SCHEMA = {"num_groups": P.Int(1), "eps": P.Float(1e-5), "output_mean_var": P.Bool(False)}


def _gn_shape(params, ins, outs):
    x = unify(ins[0], outs[0])
    g = params["num_groups"]
    if not known(x):
        return [x] + list(ins[1:]), [x, outs[1], outs[2]]
    if len(x) < 2 or g <= 0 or x[1] % g:
        raise InferError("GroupNorm: channels of %s must be divisible by num_groups %d" % (x, g))
    return [x, unify(ins[1], (g,)), unify(ins[2], (g,))], [x, unify(outs[1], (x[0], g)), unify(outs[2], (x[0], g))]


def _gn_expand(b, inputs, params):
    """Statistics over each (image, group of channels) on the (N, G, rest) view; gamma and beta
    have one value per group (MXNet 1.x's GroupNorm)."""
    x, gamma, beta = inputs
    xr = b.op("Reshape", x, shape=(0, params["num_groups"], -1))
    centred, mean, std = _stats(b, xr, 2, params["eps"])
    y = _affine(b, b.op("broadcast_div", centred, std), gamma, beta, 1)
    flat = lambda v: b.op("BlockGrad", b.op("Reshape", v, shape=(0, -1)))  # noqa: E731
    return [b.op("reshape_like", y, x), flat(mean), flat(std)]


def _np_gn(params, x, gamma, beta):
    g = params["num_groups"]
    xr = x.astype(np.float64).reshape(x.shape[0], g, -1)
    mean = xr.mean(-1, keepdims=True)
    std = np.sqrt(((xr - mean) ** 2).mean(-1, keepdims=True) + params["eps"])
    y = (xr - mean) / std * gamma.reshape(1, g, 1) + beta.reshape(1, g, 1)
    if not params["output_mean_var"]:
        return y.reshape(x.shape).astype(x.dtype)
    return y.reshape(x.shape).astype(x.dtype), mean[..., 0].astype(x.dtype), std[..., 0].astype(x.dtype)


register(OpDef("GroupNorm", kind="composite", inputs=NORM_INPUTS, schema=GN_SCHEMA, outputs=3, visible=_MV_VISIBLE,
               output_names=_MV_NAMES, shape=_gn_shape, dtype=_all_same_type(3, 3), expand=_gn_expand,
               reference=_np_gn, doc="Normalises each group of num_groups channels per image; "
                                     "gamma/beta per group, mean and std (N, num_groups) when output_mean_var."))


def _in_shape(params, ins, outs):
    x = unify(ins[0], outs[0])
    if not known(x):
        return [x] + list(ins[1:]), [x]
    if len(x) < 3:
        raise InferError("InstanceNorm needs (batch, channel, spatial...) data, got %s" % (x,))
    return [x, unify(ins[1], (x[1],)), unify(ins[2], (x[1],))], [x]


def _in_expand(b, inputs, params):
    x, gamma, beta = inputs
    xr = b.op("Reshape", x, shape=(0, 0, -1))
    centred, _, std = _stats(b, xr, 2, params["eps"])
    y = _affine(b, b.op("broadcast_div", centred, std), gamma, beta, 1)
    return [b.op("reshape_like", y, x)]


def _np_in(params, x, gamma, beta):
    xr = x.astype(np.float64).reshape(x.shape[0], x.shape[1], -1)
    mean = xr.mean(-1, keepdims=True)
    std = np.sqrt(((xr - mean) ** 2).mean(-1, keepdims=True) + params["eps"])
    y = (xr - mean) / std * gamma.reshape(1, -1, 1) + beta.reshape(1, -1, 1)
    return y.reshape(x.shape).astype(x.dtype)


register(OpDef("InstanceNorm", kind="composite", inputs=NORM_INPUTS, schema={"eps": P.Float(1e-3)},
               shape=_in_shape, dtype=_all_same_type(3, 1), expand=_in_expand, reference=_np_in,
               doc="Normalises each (image, channel) over its spatial positions, then gamma/beta per channel."))
