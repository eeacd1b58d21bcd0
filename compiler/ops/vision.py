"""Vision operators of MXNet 1.x models: LRN, L2Normalization, Crop, Convolution_v1, Pooling_v1,
_contrib_BilinearResize2D, _contrib_AdaptiveAvgPooling2D, ROIPooling and _contrib_ROIAlign.

LRN, L2Normalization, Crop and the ``_v1`` operators are composites of existing operators, so
their gradients come from the parts. The resampling operators are direct loop nests (kind
opaque: each output reads several taps) with gathers or ``ScatterAdd`` stages as gradients.
"""
from __future__ import annotations

import math

import numpy as np

from ...runtime.errors import MXNetError
from .. import expr as E
from ..kernel import ScatterAdd, compute
from . import params as P
from .conv import CONV_SCHEMA, POOL_SCHEMA, _conv_inputs, _conv_shape, _np_conv, _np_pool, _pool_shape
from .registry import OpDef, register
from .shapes import InferError, known, unify

I64 = "int64"


def _i(v):
    return E.const(int(v), I64) if not isinstance(v, E.Expr) else v


def _and(*conds):
    acc = conds[0]
    for c in conds[1:]:
        acc = E.Call("and", (acc, c))
    return acc


def _inside(i, lo, hi):
    return E.Call("and", (E.cmp("ge", i, lo), E.cmp("lt", i, hi)))


def _zero(dtype):
    return E.const(0.0 if E.is_float(dtype) else 0, dtype)


def _need4(name, x):
    if len(x) != 4:
        raise InferError("%s needs 4-d (batch, channel, height, width) data, got %s" % (name, x))


# ---------------------------------------------------------------- LRN
def _lrn_check(params):
    n = params["nsize"]
    if n < 1 or n % 2 == 0:
        raise InferError("LRN nsize must be a positive odd number, got %d" % n)


def _lrn_shape(params, ins, outs):
    _lrn_check(params)
    x = unify(unify(ins[0], outs[0]), outs[1])
    if known(x):
        _need4("LRN", x)
    return [x], [x, x]


def _lrn_expand(b, inputs, params):
    """x * (knorm + alpha / nsize * (sum of x^2 over the nsize channels around c)) ** -beta;
    the hidden second output is that norm (MXNet's tmp_norm)."""
    x = inputs[0]
    window = b.op("_channel_window_sum", b.op("square", x), nsize=params["nsize"])
    norm = b.scalar("_plus_scalar", b.scalar("_mul_scalar", window, params["alpha"] / params["nsize"]),
                    params["knorm"])
    return [b.mul(x, b.scalar("_power_scalar", norm, -params["beta"])), b.op("BlockGrad", norm)]


def _np_window(x, n, axis=1):
    half = n // 2
    c = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    xp = np.pad(x, pad)
    return sum(np.take(xp, range(k, k + c), axis=axis) for k in range(n))


def _np_lrn(params, x):
    x64 = x.astype(np.float64)
    norm = params["knorm"] + params["alpha"] / params["nsize"] * _np_window(x64 * x64, params["nsize"])
    return (x64 * norm ** -params["beta"]).astype(x.dtype)


LRN_SCHEMA = {"alpha": P.Float(1e-4), "beta": P.Float(0.75), "knorm": P.Float(2.0), "nsize": P.Int()}
register(OpDef("LRN", kind="composite", schema=LRN_SCHEMA, outputs=2, visible=1,
               output_names=lambda params: ["output", "tmp_norm"], shape=_lrn_shape,
               dtype=lambda params, ins, outs: (lambda t: ([t], [t, t]))(ins[0] or outs[0]),
               expand=_lrn_expand, reference=_np_lrn,
               doc="Local response normalisation across channels (alpha is divided by nsize, as MXNet)."))


def _window_lower(params, ins, outs):
    """out[n, c, ...] = sum of x[n, c - nsize//2 .. c + nsize//2, ...] inside [0, C)."""
    x, out = ins[0], outs[0]
    nsize = params["nsize"]
    r = E.fresh_vars(1, "w")

    def body(*i):
        src = i[1] - _i(nsize // 2) + r[0]
        idx = [i[0], E.clamp_index(src, x.shape[1])] + list(i[2:])
        return E.Reduce("sum", r, (nsize,), E.select(_inside(src, _i(0), _i(x.shape[1])), x.load(idx),
                                                     _zero(x.dtype)))
    return [compute(out, body)]


def _window_shape(params, ins, outs):
    _lrn_check(params)
    x = unify(ins[0], outs[0])
    if x is not None and len(x) < 2:
        raise InferError("_channel_window_sum needs a channel axis, got %s" % (x,))
    return [x], [x]


# The window is symmetric, so the operator is its own adjoint.
register(OpDef("_channel_window_sum", kind="reduce", schema={"nsize": P.Int()}, shape=_window_shape,
               lower=_window_lower,
               gradient=lambda b, node, ogs: [b.op("_channel_window_sum", ogs[0], nsize=node.params["nsize"])],
               reference=lambda params, x: _np_window(x.astype(np.float64), params["nsize"]).astype(x.dtype)))


# ---------------------------------------------------------------- L2Normalization
def _l2_axes(mode, ndim):
    if mode == "instance":
        return tuple(range(1, ndim))
    if mode == "channel":
        return (1,)
    return tuple(range(2, ndim))


def _l2_shape(params, ins, outs):
    x = unify(ins[0], outs[0])
    if x is None:
        return [x], [x, outs[1]]
    if len(x) < 2 or (params["mode"] == "spatial" and len(x) < 3):
        raise InferError("L2Normalization (%s) needs more dimensions than %s" % (params["mode"], x))
    axes = _l2_axes(params["mode"], len(x))
    norm = tuple(n for k, n in enumerate(x) if k not in axes)
    return [x], [x, unify(outs[1], norm)]


def _l2_expand_shapes(b, inputs, params, in_shapes):
    x = inputs[0]
    axes = _l2_axes(params["mode"], len(in_shapes[0]))
    sq = b.op("square", x)

    def norm(keep):
        s = b.op("sum", sq, axis=axes, keepdims=keep)
        return b.op("sqrt", b.scalar("_plus_scalar", s, params["eps"]))
    return [b.op("broadcast_div", x, norm(True)), b.op("BlockGrad", norm(False))]


def _np_l2(params, x):
    axes = _l2_axes(params["mode"], x.ndim)
    x64 = x.astype(np.float64)
    norm = np.sqrt((x64 * x64).sum(axis=axes, keepdims=True) + params["eps"])
    return (x64 / norm).astype(x.dtype)


register(OpDef("L2Normalization", kind="composite",
               schema={"eps": P.Float(1e-10), "mode": P.Str("instance", choices=("instance", "channel", "spatial"))},
               outputs=2, visible=1, output_names=lambda params: ["output", "norm"], shape=_l2_shape,
               dtype=lambda params, ins, outs: (lambda t: ([t], [t, t]))(ins[0] or outs[0]),
               expand=_l2_expand_shapes, expand_shapes=True, reference=_np_l2,
               doc="x / sqrt(sum(x^2) + eps) per instance, per channel vector or per channel plane."))


# ---------------------------------------------------------------- Crop
CROP_SCHEMA = {"num_args": P.Int(), "offset": P.Tuple((0, 0)), "h_w": P.Tuple((0, 0)), "center_crop": P.Bool(False)}


def _crop_inputs(params):
    n = params.get("num_args") or 1
    if n not in (1, 2):
        raise MXNetError("Crop takes 1 or 2 inputs, got num_args=%d" % n)
    return ["arg%d" % k for k in range(n)]


def _crop_window(params, x, like):
    """(y0, x0, h, w) of the crop of 4-d ``x``."""
    _need4("Crop", x)
    if params["num_args"] == 2:
        if like is None or not known(like):
            return None
        h, w = like[2], like[3]
    else:
        h, w = tuple(params["h_w"])
    if params["center_crop"]:
        oy, ox = (x[2] - h) // 2, (x[3] - w) // 2
    else:
        oy, ox = tuple(params["offset"])
    if h <= 0 or w <= 0 or oy < 0 or ox < 0 or oy + h > x[2] or ox + w > x[3]:
        raise InferError("Crop window %s at offset %s does not fit in %s" % ((h, w), (oy, ox), x))
    return oy, ox, h, w


def _crop_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return list(ins), list(outs)
    win = _crop_window(params, x, ins[1] if len(ins) > 1 else None)
    if win is None:
        return list(ins), list(outs)
    return list(ins), [unify(outs[0], (x[0], x[1], win[2], win[3]))]


def _crop_expand(b, inputs, params, in_shapes):
    oy, ox, h, w = _crop_window(params, in_shapes[0], in_shapes[1] if len(in_shapes) > 1 else None)
    return [b.op("slice", inputs[0], begin=(None, None, oy, ox), end=(None, None, oy + h, ox + w))]


def _np_crop(params, x, like=None):
    oy, ox, h, w = _crop_window(params, x.shape, None if like is None else like.shape)
    return x[:, :, oy:oy + h, ox:ox + w].copy()


register(OpDef("Crop", kind="composite", inputs=_crop_inputs, schema=CROP_SCHEMA, num_args_key="num_args",
               shape=_crop_shape, dtype=lambda params, ins, outs: (list(ins), [ins[0] or outs[0]]),
               expand=_crop_expand, expand_shapes=True, reference=_np_crop,
               doc="Crops the spatial axes to h_w (or the second input's size) at offset, or centred."))


# ---------------------------------------------------------------- Convolution_v1, Pooling_v1
CONV_V1_SCHEMA = {k: CONV_SCHEMA[k] for k in ("kernel", "stride", "dilate", "pad", "num_filter", "num_group",
                                              "workspace", "no_bias", "cudnn_tune", "cudnn_off")}
CONV_V1_SCHEMA["layout"] = P.Str(None, choices=(None, "NCHW", "NCDHW", "NHWC", "NDHWC"))
POOL_V1_SCHEMA = {"kernel": P.Tuple(()), "pool_type": P.Str("max", choices=("max", "avg", "sum")),
                  "global_pool": P.Bool(False), "pooling_convention": P.Str("valid", choices=("valid", "full")),
                  "stride": P.Tuple(()), "pad": P.Tuple(())}


def _full(schema, params):
    """The v1 attributes completed with the current operator's defaults."""
    out = {k: f.default for k, f in schema.items()}
    out.update(params)
    return out


def _v1_attrs(params):
    return {k: v for k, v in params.items() if v is not None}


register(OpDef("Convolution_v1", kind="composite", inputs=_conv_inputs, schema=CONV_V1_SCHEMA,
               shape=lambda params, ins, outs: _conv_shape(_full(CONV_SCHEMA, params), ins, outs),
               expand=lambda b, inputs, params: [b.op("Convolution", *inputs, **_v1_attrs(params))],
               reference=lambda params, *xs: _np_conv(_full(CONV_SCHEMA, params), *xs), hint="convolution",
               doc="MXNet's old Convolution: the same math as Convolution for the attributes it has."))
def _v1_window(params, shape):
    """Pooling_v1's avg divisor: the whole kernel, even where it hangs over the padding."""
    return math.prod(shape[2:] if params["global_pool"] else params["kernel"])


def _pool_v1_expand(b, inputs, params, in_shapes):
    if params["pool_type"] != "avg":
        return [b.op("Pooling", *inputs, **_v1_attrs(params))]
    total = b.op("Pooling", *inputs, **dict(_v1_attrs(params), pool_type="sum"))
    return [b.scalar("_div_scalar", total, float(_v1_window(params, in_shapes[0])))]


def _np_pool_v1(params, x):
    if params["pool_type"] != "avg":
        return _np_pool(_full(POOL_SCHEMA, params), x)
    total = _np_pool(_full(POOL_SCHEMA, dict(params, pool_type="sum")), x)
    return (total / x.dtype.type(_v1_window(params, x.shape))).astype(x.dtype)


register(OpDef("Pooling_v1", kind="composite", schema=POOL_V1_SCHEMA,
               shape=lambda params, ins, outs: _pool_shape(_full(POOL_SCHEMA, params), ins, outs),
               expand=_pool_v1_expand, expand_shapes=True, reference=_np_pool_v1, hint="pooling",
               doc="MXNet's old Pooling: Pooling's math, except that avg always divides by the "
                   "kernel size (padding included, also past the padded edge with 'full')."))


# ---------------------------------------------------------------- BilinearResize2D
RESIZE_MODES = ("size", "odd_scale", "like", "to_even_down", "to_even_up", "to_odd_down", "to_odd_up")
RESIZE_SCHEMA = {"height": P.Int(1), "width": P.Int(1), "scale_height": P.OptFloat(None),
                 "scale_width": P.OptFloat(None), "mode": P.Str("size", choices=RESIZE_MODES),
                 "align_corners": P.Bool(True)}


def _resize_inputs(params):
    return ["data", "like"] if params.get("mode") == "like" else ["data"]


def _resize_size(params, x, like):
    """MXNet 1.9.1's output (height, width)."""
    mode, h, w = params["mode"], x[2], x[3]
    sh, sw = params["scale_height"], params["scale_width"]
    if mode == "like":
        return None if like is None or not known(like) else (like[2], like[3])
    if mode == "size":
        return (int(sh * h) if sh is not None else params["height"], int(sw * w) if sw is not None else params["width"])
    if mode == "odd_scale":
        if sh is None or sw is None:
            raise InferError("BilinearResize2D mode='odd_scale' needs scale_height and scale_width")
        return tuple(int(n * s) if n % 2 == 0 else int((n - 1) * s) + 1 for n, s in ((h, sh), (w, sw)))
    up, odd = mode.endswith("_up"), mode.startswith("to_odd")
    out = []
    for n in (h, w):
        if (n % 2 == 1) != odd:
            n = n + 1 if up else n - 1
        out.append(n)
    return tuple(out)


def _resize_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return list(ins), list(outs)
    _need4("BilinearResize2D", x)
    size = _resize_size(params, x, ins[1] if len(ins) > 1 else None)
    if size is None:
        return list(ins), list(outs)
    if min(size) <= 0:
        raise InferError("BilinearResize2D output size %s must be positive" % (size,))
    return list(ins), [unify(outs[0], (x[0], x[1]) + tuple(size))]


def _scale(n_in, n_out, align):
    if align:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return n_in / n_out


def _resize_taps(o, n_in, n_out, align, dt):
    """(low index, high index, weight of high) of output position ``o`` along one axis."""
    s = E.const(_scale(n_in, n_out, align), dt)
    of = E.cast(o, dt)
    src = of * s if align else E.maximum(s * (of + 0.5) - 0.5, E.const(0.0, dt))
    lo = E.minimum(E.cast(E.call("floor", src), I64), _i(n_in - 1))
    hi = E.select(E.cmp("lt", lo, _i(n_in - 1)), lo + _i(1), lo)
    return lo, hi, src - E.cast(lo, dt)


def _resize_lower(params, ins, outs):
    x, out = ins[0], outs[0]
    _, _, h, w = x.shape
    _, _, oh, ow = out.shape
    dt, align = out.dtype, params["align_corners"]

    def body(n, c, yy, xx):
        y0, y1, ly = _resize_taps(yy, h, oh, align, dt)
        x0, x1, lx = _resize_taps(xx, w, ow, align, dt)
        top = x.load(n, c, y0, x0) * (1.0 - lx) + x.load(n, c, y0, x1) * lx
        bottom = x.load(n, c, y1, x0) * (1.0 - lx) + x.load(n, c, y1, x1) * lx
        return top * (1.0 - ly) + bottom * ly
    return [compute(out, body)]


def _np_taps(n_in, n_out, align):
    o = np.arange(n_out, dtype=np.float64)
    s = _scale(n_in, n_out, align)
    src = o * s if align else np.maximum(s * (o + 0.5) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    return lo, np.where(lo < n_in - 1, lo + 1, lo), src - lo


def _np_resize(params, x, like=None):
    size = _resize_size(params, x.shape, None if like is None else like.shape)
    y0, y1, ly = _np_taps(x.shape[2], size[0], params["align_corners"])
    x0, x1, lx = _np_taps(x.shape[3], size[1], params["align_corners"])
    x64 = x.astype(np.float64)
    rows = x64[:, :, y0] * (1 - ly)[:, None] + x64[:, :, y1] * ly[:, None]
    return (rows[..., x0] * (1 - lx) + rows[..., x1] * lx).astype(x.dtype)


def _resize_grad(b, node, ogs):
    dx = b.op("_backward_BilinearResize2D", ogs[0], node.inputs[0], align_corners=node.params["align_corners"])
    return [dx] + [None] * (len(node.inputs) - 1)


register(OpDef("_contrib_BilinearResize2D", kind="opaque", inputs=_resize_inputs, schema=RESIZE_SCHEMA,
               shape=_resize_shape, dtype=lambda params, ins, outs: (list(ins), [ins[0] or outs[0]]),
               lower=_resize_lower, gradient=_resize_grad, reference=_np_resize, hint="bilinearresize2d",
               doc="Bilinear resize of (N, C, H, W) data to a size, a scale, another array's size or "
                   "an even/odd size; align_corners maps corner pixel centres onto each other."))


def _resize_bwd_lower(params, ins, outs):
    """Each output gradient added into its 4 taps (ScatterAdd; the corner axis is the last)."""
    og, out = ins[0], outs[0]
    _, _, h, w = out.shape
    n_, c_, oh, ow = og.shape
    dt, align = out.dtype, params["align_corners"]
    axes = E.fresh_vars(5, "s")
    n, c, yy, xx, k = axes
    y0, y1, ly = _resize_taps(yy, h, oh, align, dt)
    x0, x1, lx = _resize_taps(xx, w, ow, align, dt)
    dy, dx = k // _i(2), k % _i(2)
    ty = E.select(E.cmp("eq", dy, _i(0)), y0, y1)
    tx = E.select(E.cmp("eq", dx, _i(0)), x0, x1)
    wy = E.select(E.cmp("eq", dy, _i(0)), 1.0 - ly, ly)
    wx = E.select(E.cmp("eq", dx, _i(0)), 1.0 - lx, lx)
    return [ScatterAdd(out, axes, (n_, c_, oh, ow, 4), (n, c, ty, tx), og.load(n, c, yy, xx) * wy * wx)]


def _np_resize_bwd(params, og, x):
    y0, y1, ly = _np_taps(x.shape[2], og.shape[2], params["align_corners"])
    x0, x1, lx = _np_taps(x.shape[3], og.shape[3], params["align_corners"])
    g = og.astype(np.float64)
    out = np.zeros(x.shape)
    for yi, wy in ((y0, 1 - ly), (y1, ly)):
        for xi, wx in ((x0, 1 - lx), (x1, lx)):
            np.add.at(out, (slice(None), slice(None), yi[:, None], xi[None, :]), g * wy[:, None] * wx[None, :])
    return out.astype(x.dtype)


register(OpDef("_backward_BilinearResize2D", kind="opaque", inputs=("grad", "data"),
               schema={"align_corners": P.Bool(True)},
               shape=lambda params, ins, outs: (list(ins), [unify(ins[1], outs[0])]),
               dtype=lambda params, ins, outs: (list(ins), [ins[0]]), lower=_resize_bwd_lower,
               reference=_np_resize_bwd))


# ---------------------------------------------------------------- AdaptiveAvgPooling2D
def _adaptive_size(params):
    s = tuple(params["output_size"] or ())
    if len(s) == 0:
        return 1, 1
    if len(s) == 1:
        return s[0], s[0]
    if len(s) != 2 or min(s) <= 0:
        raise InferError("output_size must be (), (size,) or (height, width) with positive sizes, got %s" % (s,))
    return s


def _bin(o, n_in, n_out):
    """[start, end) of adaptive bin ``o``: floor(o * n / m), ceil((o + 1) * n / m) (ints or int64 exprs)."""
    if isinstance(o, E.Expr):
        return (o * _i(n_in)) // _i(n_out), ((o + _i(1)) * _i(n_in) + _i(n_out - 1)) // _i(n_out)
    return (o * n_in) // n_out, ((o + 1) * n_in + n_out - 1) // n_out


def _max_bin(n_in, n_out):
    return max(_bin(o, n_in, n_out)[1] - _bin(o, n_in, n_out)[0] for o in range(n_out))


def _adaptive_shape(params, ins, outs):
    x = ins[0]
    oh, ow = _adaptive_size(params)
    if not known(x):
        return [x], list(outs)
    _need4("AdaptiveAvgPooling2D", x)
    return [x], [unify(outs[0], (x[0], x[1], oh, ow))]


def _adaptive_lower(params, ins, outs):
    x, out = ins[0], outs[0]
    _, _, h, w = x.shape
    _, _, oh, ow = out.shape
    kh, kw = _max_bin(h, oh), _max_bin(w, ow)
    r = E.fresh_vars(2, "a")

    def body(n, c, yy, xx):
        (y0, y1), (x0, x1) = _bin(yy, h, oh), _bin(xx, w, ow)
        ok = _and(E.cmp("lt", r[0], y1 - y0), E.cmp("lt", r[1], x1 - x0))
        v = x.load(n, c, E.minimum(y0 + r[0], _i(h - 1)), E.minimum(x0 + r[1], _i(w - 1)))
        total = E.Reduce("sum", r, (kh, kw), E.select(ok, v, _zero(x.dtype)))
        return total / E.cast((y1 - y0) * (x1 - x0), out.dtype)
    return [compute(out, body)]


def _np_adaptive(params, x):
    oh, ow = _adaptive_size(params)
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        y0, y1 = _bin(i, x.shape[2], oh)
        for j in range(ow):
            x0, x1 = _bin(j, x.shape[3], ow)
            out[:, :, i, j] = x[:, :, y0:y1, x0:x1].astype(np.float64).mean(axis=(2, 3))
    return out.astype(x.dtype)


def _outputs_over(n_in, n_out):
    """For input position p, the bins containing it are o in [p*m // n, ((p+1)*m - 1) // n]."""
    return max(((p + 1) * n_out - 1) // n_in - (p * n_out) // n_in + 1 for p in range(n_in))


def _adaptive_bwd_lower(params, ins, outs):
    """A gather: each input pixel sums og / bin size over the (few) bins that contain it."""
    og, out = ins[0], outs[0]
    _, _, h, w = out.shape
    _, _, oh, ow = og.shape
    mh, mw = _outputs_over(h, oh), _outputs_over(w, ow)
    r = E.fresh_vars(2, "b")

    def body(n, c, yy, xx):
        oy = (yy * _i(oh)) // _i(h) + r[0]
        ox = (xx * _i(ow)) // _i(w) + r[1]
        (y0, y1), (x0, x1) = _bin(oy, h, oh), _bin(ox, w, ow)
        ok = _and(E.cmp("le", oy, ((yy + _i(1)) * _i(oh) - _i(1)) // _i(h)),
                  E.cmp("le", ox, ((xx + _i(1)) * _i(ow) - _i(1)) // _i(w)))
        v = og.load(n, c, E.minimum(oy, _i(oh - 1)), E.minimum(ox, _i(ow - 1))) / E.cast(
            (y1 - y0) * (x1 - x0), out.dtype)
        return E.Reduce("sum", r, (mh, mw), E.select(ok, v, _zero(out.dtype)))
    return [compute(out, body)]


register(OpDef("_contrib_AdaptiveAvgPooling2D", kind="opaque", schema={"output_size": P.Tuple(())},
               shape=_adaptive_shape, lower=_adaptive_lower,
               gradient=lambda b, node, ogs: [b.op("_backward_AdaptiveAvgPooling2D", ogs[0], node.inputs[0])],
               reference=_np_adaptive, hint="adaptiveavgpooling2d",
               doc="Average pooling to a fixed output size; bin o spans floor(o*H/h) .. ceil((o+1)*H/h)."))
register(OpDef("_backward_AdaptiveAvgPooling2D", kind="opaque", inputs=("grad", "data"),
               shape=lambda params, ins, outs: (list(ins), [unify(ins[1], outs[0])]),
               dtype=lambda params, ins, outs: (list(ins), [ins[0]]), lower=_adaptive_bwd_lower))


# ---------------------------------------------------------------- ROIPooling
def _rois_check(name, x, rois):
    _need4(name, x)
    if len(rois) != 2 or rois[1] != 5:
        raise InferError("%s needs rois of shape (num_rois, 5), got %s" % (name, rois))


def _pooled(params):
    p = tuple(params["pooled_size"])
    if len(p) == 1:
        p = p * 2
    if len(p) != 2 or min(p) <= 0:
        raise InferError("pooled_size must be (height, width) with positive sizes, got %s" % (p,))
    return p


def _roipool_shape(params, ins, outs):
    x, rois = ins
    ph, pw = _pooled(params)
    if not (known(x) and known(rois)):
        return list(ins), list(outs)
    _rois_check("ROIPooling", x, rois)
    o = (rois[0], x[1], ph, pw)
    return list(ins), [unify(outs[0], o), unify(outs[1], o)]


def _c_round(v):
    """C's round(): halves away from zero."""
    return E.select(E.cmp("ge", v, 0.0), E.call("floor", v + 0.5), -E.call("floor", -v + 0.5))


def _batch_index(rois, r, n):
    """The roi's image, clamped into [0, n) (MXNet asserts it is in range)."""
    return E.clamp_index(E.to_index(rois.load(r, _i(0))), _i(n))


def _roipool_window(params, rois, r, ph_i, pw_i, h, w, dt):
    """[hstart, hend) x [wstart, wend) of one bin, MXNet's integer arithmetic."""
    ph, pw = _pooled(params)
    scale = params["spatial_scale"]
    coords = [E.to_index(_c_round(rois.load(r, _i(k)) * E.const(scale, dt))) for k in (1, 2, 3, 4)]
    x1, y1, x2, y2 = coords
    rh = E.maximum(y2 - y1 + _i(1), _i(1))
    rw = E.maximum(x2 - x1 + _i(1), _i(1))
    bh = E.cast(rh, dt) / E.const(float(ph), dt)
    bw = E.cast(rw, dt) / E.const(float(pw), dt)

    def span(p, size, start, n):
        pf = E.cast(p, dt)
        lo = E.cast(E.call("floor", pf * size), I64)
        hi = E.cast(E.call("ceil", (pf + 1.0) * size), I64)
        return E.minimum(E.maximum(lo + start, _i(0)), _i(n)), E.minimum(E.maximum(hi + start, _i(0)), _i(n))
    return span(ph_i, bh, y1, h), span(pw_i, bw, x1, w)


def _roipool_lower(params, ins, outs):
    x, rois = ins
    out, idx = outs
    _, _, h, w = x.shape
    dt = x.dtype
    low = E.const(-np.inf if E.is_float(dt) else np.iinfo(dt).min, dt)

    def parts(r, c, p, q, rv):
        (hs, he), (ws, we) = _roipool_window(params, rois, r, p, q, h, w, dt)
        ok = _and(_inside(rv[0], hs, he), _inside(rv[1], ws, we))
        empty = E.Call("or", (E.cmp("le", he, hs), E.cmp("le", we, ws)))
        b = _batch_index(rois, r, x.shape[0])
        return E.select(ok, x.load(b, c, rv[0], rv[1]), low), empty

    def value(r, c, p, q):
        rv = E.fresh_vars(2, "m")
        v, empty = parts(r, c, p, q, rv)
        return E.select(empty, _zero(dt), E.Reduce("max", rv, (h, w), v))

    def where(r, c, p, q):
        rv = E.fresh_vars(2, "m")
        v, empty = parts(r, c, p, q, rv)
        pos = E.Reduce("argmax", rv, (h, w), v, dtype=I64)
        return E.cast(E.select(empty, _i(-1), pos), idx.dtype)
    return [compute(out, value), compute(idx, where)]


def _np_round(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _np_roipool(params, x, rois):
    ph, pw = _pooled(params)
    n, c, h, w = x.shape
    out = np.zeros((rois.shape[0], c, ph, pw))
    f = x.dtype.type
    for r, roi in enumerate(rois):
        b = min(max(int(roi[0]), 0), n - 1)
        x1, y1, x2, y2 = (int(_np_round(f(v) * f(params["spatial_scale"]))) for v in roi[1:])
        bh, bw = f(max(y2 - y1 + 1, 1)) / f(ph), f(max(x2 - x1 + 1, 1)) / f(pw)
        for i in range(ph):
            hs = min(max(int(np.floor(f(i) * bh)) + y1, 0), h)
            he = min(max(int(np.ceil(f(i + 1) * bh)) + y1, 0), h)
            for j in range(pw):
                ws = min(max(int(np.floor(f(j) * bw)) + x1, 0), w)
                we = min(max(int(np.ceil(f(j + 1) * bw)) + x1, 0), w)
                if he <= hs or we <= ws:
                    continue
                win = x[b, :, hs:he, ws:we].reshape(c, -1)
                out[r, :, i, j] = win.max(axis=1)
    return out.astype(x.dtype)


def _roipool_grad(b, node, ogs):
    return [b.op("_backward_ROIPooling", ogs[0], node.inputs[1], node.out(1), node.inputs[0]), None]


register(OpDef("ROIPooling", kind="opaque", inputs=("data", "rois"),
               schema={"pooled_size": P.Tuple(), "spatial_scale": P.Float()}, outputs=2, visible=1,
               output_names=lambda params: ["output", "maxidx"], shape=_roipool_shape,
               dtype=lambda params, ins, outs: (lambda t: ([t, ins[1] or t], [t, t]))(ins[0] or outs[0]),
               lower=_roipool_lower, gradient=_roipool_grad, reference=_np_roipool, hint="roipooling",
               doc="Max pooling of each region of interest (batch index, x1, y1, x2, y2) to pooled_size."))


def _roipool_bwd_lower(params, ins, outs):
    og, _, idx, _ = ins
    out = outs[0]
    r_, c_, ph, pw = og.shape
    w = out.shape[3]
    rois = ins[1]
    axes = E.fresh_vars(4, "s")
    r, c, p, q = axes
    k = E.to_index(idx.load(r, c, p, q))
    pos = E.maximum(k, _i(0))
    b = _batch_index(rois, r, out.shape[0])
    val = E.select(E.cmp("ge", k, _i(0)), og.load(r, c, p, q), _zero(out.dtype))
    return [ScatterAdd(out, axes, (r_, c_, ph, pw), (b, c, pos // _i(w), pos % _i(w)), val)]


register(OpDef("_backward_ROIPooling", kind="opaque", inputs=("grad", "rois", "maxidx", "data"),
               shape=lambda params, ins, outs: (list(ins), [unify(ins[3], outs[0])]),
               dtype=lambda params, ins, outs: (list(ins), [ins[0]]), lower=_roipool_bwd_lower))


# ---------------------------------------------------------------- ROIAlign
ALIGN_SCHEMA = {"pooled_size": P.Tuple(), "spatial_scale": P.Float(), "sample_ratio": P.Int(-1),
                "position_sensitive": P.Bool(False), "aligned": P.Bool(False)}


def _grid_cap(params, h, w):
    """Static sample counts per bin: sample_ratio, or (adaptive) the count of a bin of a roi as
    large as the feature map, which bounds ceil(roi_size / pooled) for rois inside it."""
    ph, pw = _pooled(params)
    s = params["sample_ratio"]
    if s > 0:
        return s, s
    return max(1, math.ceil(h / ph)), max(1, math.ceil(w / pw))


def _align_shape(params, ins, outs):
    x, rois = ins
    ph, pw = _pooled(params)
    if not (known(x) and known(rois)):
        return list(ins), list(outs)
    _rois_check("ROIAlign", x, rois)
    c = x[1]
    if params["position_sensitive"]:
        if c % (ph * pw):
            raise InferError("position-sensitive ROIAlign needs channels %d divisible by %d" % (c, ph * pw))
        c //= ph * pw
    return list(ins), [unify(outs[0], (rois[0], c, ph, pw))]


def _align_samples(params, rois, r, c, p, q, iy, ix, shape, dt):
    """(batch, input channel, [(y, x, weight) * 4], valid, count) of one sample point."""
    ph, pw = _pooled(params)
    n, cin, h, w = shape
    gh, gw = _grid_cap(params, h, w)
    scale = E.const(params["spatial_scale"], dt)
    off = E.const(0.5 if params["aligned"] else 0.0, dt)
    x1, y1, x2, y2 = (rois.load(r, _i(k)) * scale - off for k in (1, 2, 3, 4))
    rw, rh = x2 - x1, y2 - y1
    if not params["aligned"]:
        rw, rh = E.maximum(rw, E.const(1.0, dt)), E.maximum(rh, E.const(1.0, dt))
    bh, bw = rh / E.const(float(ph), dt), rw / E.const(float(pw), dt)
    if params["sample_ratio"] > 0:
        ny, nx = _i(gh), _i(gw)
    else:
        ny = E.minimum(E.maximum(E.cast(E.call("ceil", bh), I64), _i(1)), _i(gh))
        nx = E.minimum(E.maximum(E.cast(E.call("ceil", bw), I64), _i(1)), _i(gw))
    yv = y1 + E.cast(p, dt) * bh + (E.cast(iy, dt) + 0.5) * bh / E.cast(ny, dt)
    xv = x1 + E.cast(q, dt) * bw + (E.cast(ix, dt) + 0.5) * bw / E.cast(nx, dt)
    inside = _and(E.cmp("ge", yv, -1.0), E.cmp("le", yv, float(h)), E.cmp("ge", xv, -1.0), E.cmp("le", xv, float(w)))

    def axis(v, size):
        v = E.maximum(v, E.const(0.0, dt))
        lo = E.minimum(E.cast(E.call("floor", v), I64), _i(size - 1))
        edge = E.cmp("ge", lo, _i(size - 1))
        hi = E.select(edge, lo, lo + _i(1))
        frac = E.select(edge, E.const(0.0, dt), v - E.cast(lo, dt))
        return lo, hi, frac
    ylo, yhi, ly = axis(yv, h)
    xlo, xhi, lx = axis(xv, w)
    taps = [(ylo, xlo, (1.0 - ly) * (1.0 - lx)), (ylo, xhi, (1.0 - ly) * lx),
            (yhi, xlo, ly * (1.0 - lx)), (yhi, xhi, ly * lx)]
    ch = (c * _i(ph) + p) * _i(pw) + q if params["position_sensitive"] else c
    valid = _and(inside, E.cmp("lt", iy, ny), E.cmp("lt", ix, nx))
    b = E.to_index(rois.load(r, _i(0)))
    valid = _and(valid, E.cmp("ge", b, _i(0)))
    return E.clamp_index(b, _i(n)), ch, taps, valid, E.cast(ny * nx, dt)


def _align_lower(params, ins, outs):
    x, rois = ins
    out = outs[0]
    gh, gw = _grid_cap(params, x.shape[2], x.shape[3])
    dt = out.dtype

    def body(r, c, p, q):
        rv = E.fresh_vars(2, "g")
        b, ch, taps, valid, count = _align_samples(params, rois, r, c, p, q, rv[0], rv[1], x.shape, dt)
        v = None
        for yy, xx, wt in taps:
            t = x.load(b, ch, yy, xx) * wt
            v = t if v is None else v + t
        return E.Reduce("sum", rv, (gh, gw), E.select(valid, v, _zero(dt))) / count
    return [compute(out, body)]


def _align_bwd_lower(params, ins, outs):
    og, rois, _ = ins
    out = outs[0]
    gh, gw = _grid_cap(params, out.shape[2], out.shape[3])
    r_, c_, ph, pw = og.shape
    dt = out.dtype
    axes = E.fresh_vars(7, "s")
    r, c, p, q, iy, ix, k = axes
    b, ch, taps, valid, count = _align_samples(params, rois, r, c, p, q, iy, ix, out.shape, dt)

    def pick(j):
        v = taps[3][j]
        for t in (2, 1, 0):
            v = E.select(E.cmp("eq", k, _i(t)), taps[t][j], v)
        return v
    val = E.select(valid, og.load(r, c, p, q) * pick(2) / count, _zero(dt))
    return [ScatterAdd(out, axes, (r_, c_, ph, pw, gh, gw, 4), (b, ch, pick(0), pick(1)), val)]


def _np_align(params, x, rois):
    ph, pw = _pooled(params)
    n, cin, h, w = x.shape
    ps = params["position_sensitive"]
    cout = cin // (ph * pw) if ps else cin
    out = np.zeros((rois.shape[0], cout, ph, pw))
    gh_cap, gw_cap = _grid_cap(params, h, w)
    off = 0.5 if params["aligned"] else 0.0
    for r, roi in enumerate(rois.astype(np.float64)):
        b = int(roi[0])
        if b < 0:
            continue
        b = min(b, n - 1)
        x1, y1, x2, y2 = roi[1:] * params["spatial_scale"] - off
        rw, rh = x2 - x1, y2 - y1
        if not params["aligned"]:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        s = params["sample_ratio"]
        ny = s if s > 0 else min(max(int(np.ceil(bh)), 1), gh_cap)
        nx = s if s > 0 else min(max(int(np.ceil(bw)), 1), gw_cap)
        for i in range(ph):
            for j in range(pw):
                chans = [(k * ph + i) * pw + j for k in range(cout)] if ps else list(range(cin))
                acc = np.zeros(cout)
                for iy in range(ny):
                    yv = y1 + i * bh + (iy + 0.5) * bh / ny
                    for ix in range(nx):
                        xv = x1 + j * bw + (ix + 0.5) * bw / nx
                        if yv < -1 or yv > h or xv < -1 or xv > w:
                            continue
                        yv2, xv2 = max(yv, 0.0), max(xv, 0.0)
                        yl, xl = min(int(yv2), h - 1), min(int(xv2), w - 1)
                        yh, xh = min(yl + 1, h - 1), min(xl + 1, w - 1)
                        ly = 0.0 if yl >= h - 1 else yv2 - yl
                        lx = 0.0 if xl >= w - 1 else xv2 - xl
                        img = x[b, chans].astype(np.float64)
                        acc += (img[:, yl, xl] * (1 - ly) * (1 - lx) + img[:, yl, xh] * (1 - ly) * lx
                                + img[:, yh, xl] * ly * (1 - lx) + img[:, yh, xh] * ly * lx)
                out[r, :, i, j] = acc / (ny * nx)
    return out.astype(x.dtype)


register(OpDef("_contrib_ROIAlign", kind="opaque", inputs=("data", "rois"), schema=ALIGN_SCHEMA,
               shape=_align_shape, dtype=lambda params, ins, outs: (lambda t: ([t, ins[1] or t], [t]))(ins[0] or outs[0]),
               lower=_align_lower, reference=_np_align, hint="roialign",
               gradient=lambda b, node, ogs: [b.op("_backward_ROIAlign", ogs[0], node.inputs[1], node.inputs[0],
                                                   **node.params), None],
               doc="Bilinear average of sample points in each bin of each region of interest (Mask R-CNN)."))
register(OpDef("_backward_ROIAlign", kind="opaque", inputs=("grad", "rois", "data"), schema=ALIGN_SCHEMA,
               shape=lambda params, ins, outs: (list(ins), [unify(ins[2], outs[0])]),
               dtype=lambda params, ins, outs: (list(ins), [ins[0]]), lower=_align_bwd_lower))
