"""Activations, softmax family, output (loss) layers, Dropout and MakeLoss."""
from __future__ import annotations

import math

import numpy as np

from .. import expr as E
from ..kernel import compute, numel
from . import params as P
from . import random as R
from .registry import TRAINING_VARIANTS, OpDef, register
from .shapes import InferError, known, norm_axis, unify

# ---- Activation: a composite over the unary operators ----
ACT_TYPES = ("relu", "sigmoid", "tanh", "softrelu", "softsign")


def _act_expand(b, inputs, params):
    x = inputs[0]
    t = params["act_type"]
    if t == "softrelu":  # log(1 + exp(x)) without overflow: relu(x) + log1p(exp(-|x|))
        return [b.add(b.op("relu", x), b.op("log1p", b.op("exp", b.neg(b.op("abs", x)))))]
    return [b.op(t, x)]


def _np_act(params, x):
    t = params["act_type"]
    if t == "relu":
        return np.maximum(x, 0)
    if t == "sigmoid":
        return (1 / (1 + np.exp(-x))).astype(x.dtype)
    if t == "tanh":
        return np.tanh(x)
    if t == "softrelu":
        return np.logaddexp(0, x).astype(x.dtype)
    return (x / (1 + np.abs(x))).astype(x.dtype)


register(OpDef("Activation", kind="composite", schema={"act_type": P.Str(choices=ACT_TYPES)},
               expand=_act_expand, reference=_np_act))

# ---- softmax / log_softmax ----
SOFTMAX_SCHEMA = {"axis": P.Int(-1), "temperature": P.OptFloat(None), "dtype": P.DType(None),
                  "use_length": P.Bool(False)}


def _softmax_parts(b, x, params):
    axis = params["axis"]
    if params.get("dtype"):  # compute in the requested output dtype
        x = b.op("Cast", x, dtype=params["dtype"])
    t = params.get("temperature")
    shifted = b.op("broadcast_sub", x, b.op("max", x, axis=axis, keepdims=True))
    if t is not None and t != 1.0:
        shifted = b.scalar("_div_scalar", shifted, t)
    return shifted, axis


def _softmax_expand(b, inputs, params):
    _check_no_length(params)
    shifted, axis = _softmax_parts(b, inputs[0], params)
    e = b.op("exp", shifted)
    return [b.op("broadcast_div", e, b.op("sum", e, axis=axis, keepdims=True))]


def _log_softmax_expand(b, inputs, params):
    _check_no_length(params)
    shifted, axis = _softmax_parts(b, inputs[0], params)
    lse = b.op("log", b.op("sum", b.op("exp", shifted), axis=axis, keepdims=True))
    return [b.op("broadcast_sub", shifted, lse)]


def _check_no_length(params):
    if params.get("use_length"):
        raise NotImplementedError("softmax with use_length=True is not supported yet")


def _temp(b, e, params):
    t = params.get("temperature")
    return b.scalar("_div_scalar", e, t) if t is not None and t != 1.0 else e


def _softmax_grad(b, node, ogs):
    y, og = node.out(0), ogs[0]
    axis = node.params["axis"]
    dot = b.op("sum", b.mul(og, y), axis=axis, keepdims=True)
    return [_to_input_dtype(b, node, _temp(b, b.mul(y, b.op("broadcast_sub", og, dot)), node.params))]


def _log_softmax_grad(b, node, ogs):
    y, og = node.out(0), ogs[0]
    axis = node.params["axis"]
    total = b.op("sum", og, axis=axis, keepdims=True)
    return [_to_input_dtype(b, node, _temp(b, b.sub(og, b.op("broadcast_mul", b.op("exp", y), total)), node.params))]


def _to_input_dtype(b, node, g):
    """With ``dtype`` given the output (and its gradient) may differ from the input's dtype."""
    return b.op("_cast_like", g, node.inputs[0]) if node.params.get("dtype") else g


def _np_softmax(params, x, log=False):
    t = params.get("temperature") or 1.0
    z = (x.astype(np.float64) - x.max(axis=params["axis"], keepdims=True)) / t
    if log:
        return (z - np.log(np.exp(z).sum(axis=params["axis"], keepdims=True))).astype(x.dtype)
    e = np.exp(z)
    return (e / e.sum(axis=params["axis"], keepdims=True)).astype(x.dtype)


def _softmax_shape(params, ins, outs):
    x = ins[0]
    if known(x):
        norm_axis(params["axis"], len(x))
    s = unify(x, outs[0])
    return [s], [s]


def _softmax_type(params, ins, outs):
    from .shapes import unify_type
    if params.get("dtype"):
        return [ins[0]], [params["dtype"]]
    t = unify_type(ins[0], outs[0])
    return [t], [t]


register(OpDef("softmax", kind="composite", schema=SOFTMAX_SCHEMA, shape=_softmax_shape, dtype=_softmax_type,
               expand=_softmax_expand, gradient=_softmax_grad, reference=_np_softmax))
register(OpDef("log_softmax", kind="composite", schema=SOFTMAX_SCHEMA, shape=_softmax_shape,
               dtype=_softmax_type, expand=_log_softmax_expand, gradient=_log_softmax_grad,
               reference=lambda params, x: _np_softmax(params, x, log=True)))


def _softmax_act_expand(b, inputs, params):
    axis = 1 if params["mode"] == "channel" else -1
    x = inputs[0]
    if params["mode"] == "instance":
        flat = b.op("Reshape", x, shape=(0, -1))
        return [b.op("reshape_like", b.op("softmax", flat, axis=-1), x)]
    return [b.op("softmax", x, axis=axis)]


def _np_softmax_act(params, x):
    if params["mode"] == "channel":
        return _np_softmax({"axis": 1}, x)
    return _np_softmax({"axis": -1}, x.reshape(x.shape[0], -1)).reshape(x.shape)


register(OpDef("SoftmaxActivation", kind="composite", schema={"mode": P.Str("instance", choices=("instance", "channel"))},
               expand=_softmax_act_expand, reference=_np_softmax_act))

# ---- SoftmaxOutput ----
SO_SCHEMA = {"grad_scale": P.Float(1.0), "ignore_label": P.Float(-1.0), "multi_output": P.Bool(False),
             "use_ignore": P.Bool(False), "preserve_shape": P.Bool(False),
             "normalization": P.Str("null", choices=("null", "batch", "valid")), "out_grad": P.Bool(False),
             "smooth_alpha": P.Float(0.0)}


def _so_label_shape(params, x):
    if params["multi_output"]:
        return (x[0],) + tuple(x[2:])
    if params["preserve_shape"]:
        return tuple(x[:-1])
    return (x[0],)


def _so_shape(params, ins, outs):
    x, label = ins
    x = unify(x, outs[0])
    if known(x):
        want = _so_label_shape(params, x)
        if label is not None and known(label) and label != want and numel(label) == numel(want):
            want = label  # MXNet accepts a label of the right size in another layout
        label = unify(label, want)
    return [x, label], [x]


def _so_type(params, ins, outs):
    from .shapes import unify_type
    t = unify_type(ins[0], outs[0])
    return [t, ins[1] or t], [t]


def _so_flat(b, x, params):
    """(data viewed with classes on the last axis, how to view the result back)."""
    if params["multi_output"]:
        return x, 1
    if params["preserve_shape"]:
        return x, -1
    return b.op("Reshape", x, shape=(0, -1)), -1


def _so_expand(b, inputs, params):
    x = inputs[0]
    flat, axis = _so_flat(b, x, params)
    y = b.op("softmax", flat, axis=axis)
    if flat is not x:
        y = b.op("reshape_like", y, x)
    return [y]


def _so_grad(b, node, ogs):
    x, label = node.inputs
    y = node.out(0)
    flat, _ = _so_flat(b, y, node.params)
    attrs = {k: node.params[k] for k in ("grad_scale", "ignore_label", "multi_output", "use_ignore",
                                          "normalization", "smooth_alpha")}
    g = b.op("_softmax_output_grad", flat, label, **attrs)
    if flat is not y:
        g = b.op("reshape_like", g, x)
    return [g, b.zeros_like(label)]


def _np_so(params, x, label):
    if params["multi_output"]:
        return _np_softmax({"axis": 1}, x)
    if params["preserve_shape"]:
        return _np_softmax({"axis": -1}, x)
    return _np_softmax({"axis": -1}, x.reshape(x.shape[0], -1)).reshape(x.shape)


register(OpDef("SoftmaxOutput", kind="composite", inputs=("data", "label"), schema=SO_SCHEMA, shape=_so_shape,
               dtype=_so_type, expand=_so_expand, gradient=_so_grad, reference=_np_so, aliases=("Softmax",)))


def _sog_lower(params, ins, outs):
    """grad[n, c, ...] = scale * (y - onehot(label)) masked and normalised as MXNet."""
    y, label = ins
    out = outs[0]
    axis = 1 if params["multi_output"] else y.ndim - 1
    classes = y.shape[axis]
    f = y.dtype
    alpha = params["smooth_alpha"]

    def lab_index(i):
        return [i[k] for k in range(y.ndim) if k != axis][:label.ndim] if label.ndim > 1 else [i[0]]

    def label_value_at(idx):
        return E.cast(label.load(idx), f)

    ignore = E.const(params["ignore_label"], f)
    use_ignore = params["use_ignore"]
    norm = params["normalization"]

    def valid_count():
        rv = E.fresh_vars(label.ndim)
        lv = E.cast(label.load(rv), f)
        is_valid = E.select(E.cmp("ne", lv, ignore), E.const(1.0, f), E.const(0.0, f))
        return E.Reduce("sum", rv, label.shape, is_valid)

    def body(*i):
        lv = label_value_at(lab_index(i))
        hit = E.cmp("eq", E.to_index(lv), i[axis])
        target = E.select(hit, E.const(1.0 - alpha, f), E.const(alpha / max(classes - 1, 1), f))
        g = (y.load(i) - target) * E.const(params["grad_scale"], f)
        if use_ignore:
            g = E.select(E.cmp("eq", lv, ignore), E.const(0.0, f), g)
        if norm == "batch":
            g = g / E.const(float(y.shape[0]), f)
        elif norm == "valid":
            # MXNet counts labels != ignore_label here whether or not use_ignore is set
            cnt = valid_count()
            g = g / E.maximum(cnt, E.const(1.0, f))
        return g
    return [compute(out, body)]


def _sog_shape(params, ins, outs):
    s = unify(ins[0], outs[0])
    return [s, ins[1]], [s]


def _sog_type(params, ins, outs):
    from .shapes import unify_type
    t = unify_type(ins[0], outs[0])
    return [t, ins[1]], [t]


register(OpDef("_softmax_output_grad", kind="elementwise", inputs=("prob", "label"),
               schema={k: v for k, v in SO_SCHEMA.items() if k not in ("preserve_shape", "out_grad")},
               shape=_sog_shape, dtype=_sog_type, lower=_sog_lower))

# ---- regression outputs ----
REG_SCHEMA = {"grad_scale": P.Float(1.0)}


def _reg_shape(params, ins, outs):
    x, label = ins
    x = unify(x, outs[0])
    if known(x) and (label is None or not known(label) or numel(label) != numel(x)):
        label = unify(label, x)
    return [x, label], [x]


def _reg_op(name, forward, grad_kind, ref):
    def expand(b, inputs, params):
        return [forward(b, inputs[0])]

    def gradient(b, node, ogs):
        x, label = node.inputs
        y = node.out(0)
        diff = b.sub(y, b.op("reshape_like", label, y))
        if grad_kind == "mae":
            diff = b.op("sign", diff)
        return [b.op("_scale_by_label_width", diff, label, scale=node.params["grad_scale"]), b.zeros_like(label)]
    register(OpDef(name, kind="composite", inputs=("data", "label"), schema=REG_SCHEMA, shape=_reg_shape,
                   dtype=_so_type, expand=expand, gradient=gradient, reference=lambda params, x, label: ref(x)))


_reg_op("LinearRegressionOutput", lambda b, x: b.op("identity", x), "linear", lambda x: x.copy())
_reg_op("LogisticRegressionOutput", lambda b, x: b.op("sigmoid", x), "logistic",
        lambda x: (1 / (1 + np.exp(-x))).astype(x.dtype))
_reg_op("MAERegressionOutput", lambda b, x: b.op("identity", x), "mae", lambda x: x.copy())


def _scale_width_lower(params, ins, outs):
    g, label = ins
    width = label.size // label.shape[0] if label.ndim > 1 else 1
    s = E.const(params["scale"] / width, g.dtype)
    return [compute(outs[0], lambda *i: g.load(i) * s)]


register(OpDef("_scale_by_label_width", kind="elementwise", inputs=("data", "label"),
               schema={"scale": P.Float(1.0)}, shape=_sog_shape, dtype=_sog_type, lower=_scale_width_lower))

# ---- MakeLoss / Dropout ----
ML_SCHEMA = {"grad_scale": P.Float(1.0), "valid_thresh": P.Float(0.0),
             "normalization": P.Str("null", choices=("null", "batch", "valid"))}


def _makeloss_grad(b, node, ogs):
    x = node.inputs[0]
    return [b.op("_make_loss_grad", x, **node.params)]


def _mlg_lower(params, ins, outs):
    x, out = ins[0], outs[0]
    f = x.dtype
    scale = params["grad_scale"]
    norm = params["normalization"]

    def body(*i):
        v = E.const(scale, f)
        if norm == "batch":
            v = v / E.const(float(x.shape[0]), f)
        elif norm == "valid":
            rv = E.fresh_vars(x.ndim)
            cnt = E.Reduce("sum", rv, x.shape, E.select(E.cmp("gt", x.load(rv), E.const(params["valid_thresh"], f)),
                                                          E.const(1.0, f), E.const(0.0, f)))
            v = v / E.maximum(cnt, E.const(1.0, f))
        return v
    return [compute(out, body)]


register(OpDef("MakeLoss", kind="elementwise", aliases=("make_loss",), schema=ML_SCHEMA,
               lower=lambda params, ins, outs: [compute(outs[0], lambda *i: ins[0].load(i))],
               gradient=_makeloss_grad, reference=lambda params, x: x.copy()))
register(OpDef("_make_loss_grad", kind="elementwise", schema=ML_SCHEMA, lower=_mlg_lower))

DROPOUT_SCHEMA = {"p": P.Float(0.5), "mode": P.Str("training", choices=("training", "always")),
                  "axes": P.Tuple(()), "cudnn_off": P.Bool(False)}


def _dropout_shape(params, ins, outs):
    if not 0.0 <= params["p"] <= 1.0:
        raise InferError("invalid parameter p=%r for Dropout: must be in [0, 1]" % params["p"])
    s = unify(unify(ins[0], outs[0]), outs[1])
    return [s], [s, s]


def _dropout_lower(params, ins, outs):
    """Sampling Dropout (training, or mode='always'): ``mask = keep ? 1/(1-p) : 0`` from one
    Philox word per element (shared along ``axes``), ``out = data * mask``."""
    x = ins[0]
    out, mask = outs
    key, stream = R.rng_inputs(params, ins, 1)
    p = params["p"]
    threshold = min(math.ceil(p * 2.0 ** 32), 2 ** 32)  # keep iff word >= threshold: P = 1 - p
    scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    shared = {a % x.ndim for a in params["axes"]} if x.ndim else set()

    def mbody(*i):
        s = R.Stream(key, stream, R.flat_index(i, mask.shape, shared))
        keep = E.cmp("ge", s.block(0)[0], E.const(threshold, "int64"))
        return E.select(keep, E.const(scale, mask.dtype), E.const(0.0, mask.dtype))
    return [compute(mask, mbody), compute(out, lambda *i: x.load(i) * mask.load(i))]


def _dropout_sensitive(params):
    return params["mode"] == "training" and params["p"] > 0


def _dropout_variant(node, inputs, is_train, in_shapes):
    """Identity (mask of ones) outside training or with p=0; the sampling node otherwise."""
    params = node.params
    if params["p"] > 0 and (is_train or params["mode"] == "always"):
        return None
    from ..builder import Builder  # the builder imports the registry this module belongs to
    return [inputs[0], Builder(node.name).ones_like(inputs[0])]


register(OpDef("Dropout", kind="elementwise", schema=DROPOUT_SCHEMA, random=True, outputs=2, visible=1,
               output_names=lambda params: ["output", "mask"], shape=_dropout_shape, lower=_dropout_lower,
               gradient=lambda b, node, ogs: [b.mul(ogs[0], node.out(1))], reference=lambda params, x: x.copy(),
               doc="Zeroes elements with probability p and scales the rest by 1/(1-p) in training "
                   "(autograd training mode, forward(is_train=True) or mode='always'); identity otherwise. "
                   "The hidden second output is the mask the gradient multiplies by."))
TRAINING_VARIANTS["Dropout"] = (_dropout_sensitive, _dropout_variant)
