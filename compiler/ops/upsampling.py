"""UpSampling (MXNet 1.x): nearest-neighbour for 4-d inputs, or bilinear as a depthwise
Deconvolution with the caller's (bilinear-initialised) weight, as MXNet implements it.

Nearest: every input is scaled to the first input's size times ``scale`` (each by its
own integer factor), then concatenated along channels or summed
(``multi_input_mode``). Its gradient sums each output block back into its source pixel.
"""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import compute
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, unify

I64 = "int64"
UP_SCHEMA = {"scale": P.Int(), "num_filter": P.Int(0), "sample_type": P.Str(choices=("nearest", "bilinear")),
             "multi_input_mode": P.Str("concat", choices=("concat", "sum")), "workspace": P.Int(512),
             "num_args": P.Int(1)}


def _c(v):
    return E.const(int(v), I64)


def _inputs(params):
    if params["sample_type"] == "bilinear":
        return ["data", "weight"]
    return ["arg%d" % i for i in range(params.get("num_args") or 1)]


def _bilinear_geometry(s):
    return 2 * s - s % 2, -(-(s - 1) // 2)  # kernel, pad (MXNet's UpSampling -> Deconvolution)


def _factors(params, shapes):
    """Output (H, W) and each input's integer scale factor."""
    s = params["scale"]
    if s < 1:
        raise InferError("scale must be positive, got %d" % s)
    for x in shapes:
        if len(x) != 4:
            raise InferError("UpSampling (nearest) needs 4-d (batch, channel, y, x) inputs, got %s" % (x,))
    oh, ow = shapes[0][2] * s, shapes[0][3] * s
    factors = []
    for x in shapes:
        f = oh // x[2]
        if oh % x[2] or ow % x[3] or ow // x[3] != f or x[0] != shapes[0][0]:
            raise InferError("input %s cannot be scaled to (%d, %d) by an integer factor" % (x, oh, ow))
        factors.append(f)
    return (oh, ow), factors


def _up_shape(params, ins, outs):
    if params["sample_type"] == "bilinear":
        x = ins[0]
        if not known(x):
            return list(ins), [outs[0]]
        if len(x) != 4:
            raise InferError("UpSampling (bilinear) needs 4-d data, got %s" % (x,))
        s = params["scale"]
        k, _ = _bilinear_geometry(s)
        if params["num_filter"] != x[1]:
            raise InferError("bilinear num_filter %d must equal the channels %d" % (params["num_filter"], x[1]))
        return [x, unify(ins[1], (x[1], 1, k, k))], [unify((x[0], x[1], x[2] * s, x[3] * s), outs[0])]
    if not all(known(x) for x in ins):
        return list(ins), [outs[0]]
    (oh, ow), _ = _factors(params, ins)
    if params["multi_input_mode"] == "sum":
        if len({x[1] for x in ins}) != 1:
            raise InferError("multi_input_mode='sum' needs equal channels, got %s" % (list(ins),))
        c = ins[0][1]
    else:
        c = sum(x[1] for x in ins)
    return list(ins), [unify((ins[0][0], c, oh, ow), outs[0])]


def _up_expand(b, inputs, params):
    if params["sample_type"] == "bilinear":
        s = params["scale"]
        k, p = _bilinear_geometry(s)
        return [b.op("Deconvolution", inputs[0], inputs[1], kernel=(k, k), stride=(s, s), pad=(p, p),
                     num_filter=params["num_filter"], num_group=params["num_filter"], no_bias=True)]
    return [b.op("_upsampling_nearest", *inputs, scale=params["scale"], multi_input_mode=params["multi_input_mode"],
                 num_args=len(inputs), sample_type="nearest")]


def _nearest_lower(params, ins, outs):
    out = outs[0]
    _, factors = _factors(params, [x.shape for x in ins])

    def body(n, c, h, w):
        def at(x, f, ch):
            return x.load(n, ch, h // _c(f), w // _c(f)) if f != 1 else x.load(n, ch, h, w)
        if params["multi_input_mode"] == "sum":
            acc = at(ins[0], factors[0], c)
            for x, f in zip(ins[1:], factors[1:]):
                acc = acc + at(x, f, c)
            return acc
        # concat: the last input whose channel range starts at or before c
        offsets = np.cumsum([0] + [x.shape[1] for x in ins])
        val = None
        for x, f, off in zip(ins, factors, offsets):
            v = at(x, f, E.clamp_index(c - _c(off), x.shape[1]))
            val = v if val is None else E.select(E.cmp("ge", c, _c(off)), v, val)
        return val
    return [compute(out, body)]


def _nearest_grad(b, node, ogs):
    """Each input's gradient: its channels of the output gradient, block-summed (the other
    inputs give only channel offsets: shapes, never loaded)."""
    sum_mode = node.params["multi_input_mode"] == "sum"
    return [b.op("_upsampling_nearest_backward", ogs[0], *node.inputs, which=i, sum_mode=sum_mode,
                 num_args=len(node.inputs)) for i in range(len(node.inputs))]


def _np_up(params, *xs):
    if params["sample_type"] == "bilinear":
        from .conv import _np_deconv
        s = params["scale"]
        k, p = _bilinear_geometry(s)
        c = params["num_filter"]
        return _np_deconv({"kernel": (k, k), "stride": (s, s), "pad": (p, p), "dilate": (), "adj": (),
                           "target_shape": (), "num_group": c}, xs[0], xs[1])
    _, factors = _factors(params, [x.shape for x in xs])
    ups = [x.repeat(f, axis=2).repeat(f, axis=3) for x, f in zip(xs, factors)]
    if params["multi_input_mode"] == "sum":
        return sum(ups[1:], ups[0]).astype(xs[0].dtype)
    return np.concatenate(ups, axis=1)


register(OpDef("UpSampling", kind="composite", inputs=_inputs, schema=UP_SCHEMA, num_args_key="num_args",
               shape=_up_shape, expand=_up_expand, reference=_np_up,
               doc="Nearest-neighbour (concat or sum of inputs) or bilinear (depthwise Deconvolution) upsampling."))
register(OpDef("_upsampling_nearest", kind="injective", inputs=_inputs, schema=UP_SCHEMA, num_args_key="num_args",
               shape=_up_shape, lower=_nearest_lower, gradient=_nearest_grad, reference=_np_up))


BWD_SCHEMA = {"which": P.Int(0), "sum_mode": P.Bool(False), "num_args": P.Int(1)}


def _bwd_inputs(params):
    return ["grad"] + ["arg%d" % i for i in range(params.get("num_args") or 1)]


def _bwd_shape(params, ins, outs):
    return list(ins), [unify(ins[1 + params["which"]], outs[0])]


def _bwd_lower(params, ins, outs):
    """dx[n, c, h, w] = sum of the f x f output block of og that (h, w) was copied to."""
    og, xs = ins[0], ins[1:]
    out = outs[0]
    which = params["which"]
    f = og.shape[2] // out.shape[2]
    off = 0 if params["sum_mode"] else sum(x.shape[1] for x in xs[:which])
    rv = E.fresh_vars(2, "r")

    def body(n, c, h, w):
        ch = c + _c(off) if off else c
        if f == 1:
            return og.load(n, ch, h, w)
        return E.Reduce("sum", rv, (f, f), og.load(n, ch, h * _c(f) + rv[0], w * _c(f) + rv[1]))
    return [compute(out, body)]


register(OpDef("_upsampling_nearest_backward", kind="opaque", inputs=_bwd_inputs, schema=BWD_SCHEMA,
               num_args_key="num_args", shape=_bwd_shape,
               dtype=lambda params, ins, outs: (list(ins), [ins[0]]), lower=_bwd_lower))
