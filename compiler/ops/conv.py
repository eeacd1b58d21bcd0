"""Convolution, Deconvolution and Pooling (NC + 1-3 spatial dims).

Convolution is a composite: ``_im2col`` gathers each image's receptive
fields into a column buffer (an internal value the memory planner places and
frees), ``_conv_fwd_gemm`` multiplies the weights of each group by it as one
``Gemm`` stage (the weight matrix shared by every image, ``a_batch``), and
the bias is a broadcast add that fusion turns, with a following activation,
into the GEMM's epilogue. Its gradient is built the same way: the data
gradient is W^T . grad (``_conv_dcols_gemm``) folded back by ``_col2im`` (a
gather over kernel taps, so no scatter and no atomics), the weight gradient
one GEMM per group over every image and output position. Deconvolution is
that data gradient as a forward operator, and its gradients are a
convolution and a weight GEMM. The direct masked loop nests
(``_convolution_direct``, ``_conv_backward_data``/``_weight``) are kept as
reference lowerings for tests and dtypes without a GEMM.

Channel-last layouts (NWC/NHWC/NDHWC, weights ``(F, *kernel, C/G)`` for
Convolution and ``(C, *kernel, F/G)`` for Deconvolution, as MXNet) are handled
by the same declarations: the expansion and the gradient transpose data,
weight and head gradient to channel-first, build the channel-first graph, and
transpose the results back (the transposes are ordinary injective operators
for fusion and memory planning). Pooling reads and writes channel-last
buffers directly: its loop nests only permute their indices.
"""
from __future__ import annotations

import math

import numpy as np

from .. import expr as E
from ..kernel import Gemm, compute, numel
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, unify

I64 = "int64"


def _c(v):
    return E.const(int(v), I64)


def _and(*conds):
    acc = conds[0]
    for c in conds[1:]:
        acc = E.Call("and", (acc, c))
    return acc


def _spatial(params, nsp, key, default):
    v = params.get(key) or ()
    if not v:
        return (default,) * nsp
    if len(v) != nsp:
        raise InferError("%s %s does not match kernel %s" % (key, tuple(v), tuple(params["kernel"])))
    return tuple(v)


CHANNEL_FIRST = ("NCW", "NCHW", "NCDHW")
CHANNEL_LAST = ("NWC", "NHWC", "NDHWC")


def channel_last(params, nsp):
    """Whether data (and weight) put channels last; the layout must have nsp spatial axes."""
    layout = params.get("layout")
    if layout is None:
        return False
    if len(layout) != nsp + 2:
        raise InferError("layout %s does not fit %d-d data (%d spatial dimensions)" % (layout, nsp + 2, nsp))
    return layout in CHANNEL_LAST


def _nc(n, c, spatial, last):
    """(n, c, *spatial) in the layout's axis order: shapes and loop indices alike."""
    return (n,) + tuple(spatial) + (c,) if last else (n, c) + tuple(spatial)


def _split_nc(values, last):
    """Inverse of ``_nc``: (n, c, spatial)."""
    return (values[0], values[-1], tuple(values[1:-1])) if last else (values[0], values[1], tuple(values[2:]))


def _masked_load(buf, lead, pos, extents, last=False):
    """buf at (n, c) = ``lead`` and spatial ``pos``, positions outside [0, extent) reading as zero:
    (value, in_bounds)."""
    conds = [E.Call("and", (E.cmp("ge", p, _c(0)), E.cmp("lt", p, _c(n)))) for p, n in zip(pos, extents)]
    idx = _nc(lead[0], lead[1], [E.clamp_index(p, n) for p, n in zip(pos, extents)], last)
    return buf.load(list(idx)), _and(*conds)


def _to_channel_first(b, v, ndim):
    return b.op("transpose", v, axes=(0, ndim - 1) + tuple(range(1, ndim - 1)))


def _to_channel_last(b, v, ndim):
    return b.op("transpose", v, axes=(0,) + tuple(range(2, ndim)) + (1,))


def _channel_first_reference(fn):
    """A channel-first numpy reference that also takes channel-last data and weight
    (tests only): both move their last axis to 1, the result moves it back."""
    def ref(params, x, w=None, *rest):
        last = params.get("layout") in CHANNEL_LAST
        if last:
            x = np.moveaxis(x, -1, 1)
            w = None if w is None else np.moveaxis(w, -1, 1)
        out = fn(params, *((x,) if w is None else (x, w) + rest))
        return np.ascontiguousarray(np.moveaxis(out, 1, -1)) if last else out
    return ref


def _zero(dtype):
    return E.const(0.0 if E.is_float(dtype) else 0, dtype)


# ---------------------------------------------------------------- Convolution
CONV_SCHEMA = {
    "kernel": P.Tuple(), "stride": P.Tuple(()), "dilate": P.Tuple(()), "pad": P.Tuple(()),
    "num_filter": P.Int(), "num_group": P.Int(1), "workspace": P.Int(1024), "no_bias": P.Bool(False),
    "cudnn_tune": P.Str(None, choices=(None, "off", "limited_workspace", "fastest")),
    "cudnn_off": P.Bool(False), "layout": P.Str(None, choices=(None,) + CHANNEL_FIRST + CHANNEL_LAST),
}


def conv_geometry(params, nsp):
    k = tuple(params["kernel"])
    return k, _spatial(params, nsp, "stride", 1), _spatial(params, nsp, "dilate", 1), _spatial(params, nsp, "pad", 0)


def conv_out_size(size, k, s, d, p):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_inputs(params):
    return ["data", "weight"] if params["no_bias"] else ["data", "weight", "bias"]


def _checked_inputs(params, ins, weight_channels):
    """Checks Convolution and Deconvolution share, and their weight and bias shapes
    (``weight_channels(channels, filters, groups)`` gives the weight's first two sizes, the
    second one last for channel-last layouts). Returns (input shapes, (k, s, d, p, filters,
    data spatial sizes, channel-last)), the geometry None while data is unknown."""
    x = ins[0]
    new = list(ins)
    if not known(x):
        return new, None
    nsp = len(params["kernel"])
    if len(x) != nsp + 2:
        raise InferError("data %s must have %d dimensions for kernel %s" % (x, nsp + 2, tuple(params["kernel"])))
    last = channel_last(params, nsp)
    _, c, sp = _split_nc(x, last)
    k, s, d, p = conv_geometry(params, nsp)
    f, g = params["num_filter"], params["num_group"]
    if c % g or f % g:
        raise InferError("channels %d and num_filter %d must be divisible by num_group %d" % (c, f, g))
    want = _nc(*weight_channels(c, f, g), k, last)
    try:
        new[1] = unify(ins[1], want)
    except InferError:
        raise InferError("weight %s must have shape %s for data %s (layout %s)"
                         % (ins[1], want, x, params.get("layout") or "NC" + "DHW"[3 - nsp:])) from None
    if len(ins) == 3:
        new[2] = unify(ins[2], (f,))
    return new, (k, s, d, p, f, sp, last)


def _conv_shape(params, ins, outs):
    new, geometry = _checked_inputs(params, ins, lambda c, f, g: (f, c // g))
    if geometry is None:
        return new, [outs[0]]
    k, s, d, p, f, isp, last = geometry
    sp = tuple(conv_out_size(n, kk, ss, dd, pp) for n, kk, ss, dd, pp in zip(isp, k, s, d, p))
    if any(o <= 0 for o in sp):
        raise InferError("kernel %s (dilate %s) is larger than padded input %s" % (k, d, isp))
    return new, [unify(_nc(ins[0][0], f, sp, last), outs[0])]


def _conv_setup(params, data_shape, filters):
    """Geometry, channels and filters per group, and reduction variables (channel + taps)."""
    nsp = len(data_shape) - 2
    k, s, d, p = conv_geometry(params, nsp)
    g = params["num_group"]
    return k, s, d, p, data_shape[1] // g, filters // g, E.fresh_vars(1 + nsp, "r")


def _input_positions(o, kk, s, p, d):
    """Input coordinates read by output position ``o`` through kernel tap ``kk``."""
    return [oi * _c(si) - _c(pi) + ki * _c(di) for oi, si, pi, ki, di in zip(o, s, p, kk, d)]


def _conv_lower(params, ins, outs):
    x, w = ins[0], ins[1]
    out = outs[0]
    k, s, d, p, cg, fg, rv = _conv_setup(params, x.shape, out.shape[1])

    def body(n, f, *o):
        c, kk = rv[0], rv[1:]
        pos = _input_positions(o, kk, s, p, d)
        xv, ok = _masked_load(x, [n, (f // _c(fg)) * _c(cg) + c], pos, x.shape[2:])
        term = E.select(ok, xv * w.load([f, c] + list(kk)), _zero(x.dtype))
        acc = E.Reduce("sum", rv, (cg,) + k, term)
        return acc + ins[2].load(f) if len(ins) == 3 else acc
    return [compute(out, body)]


def _conv_grad(b, node, ogs):
    x, w = node.inputs[0], node.inputs[1]
    og = ogs[0]
    attrs = {key: node.params[key] for key in ("kernel", "stride", "dilate", "pad", "num_group")}
    grads = [b.op("_conv_backward_data", og, w, x, **attrs), b.op("_conv_backward_weight", og, x, w, **attrs)]
    if len(node.inputs) == 3:
        nsp = len(node.params["kernel"])
        grads.append(b.op("sum", og, axis=(0,) + tuple(range(2, 2 + nsp))))
    return grads


def _np_conv(params, x, w, bias=None):
    nsp = x.ndim - 2
    k, s, d, p = conv_geometry(params, nsp)
    g = params["num_group"]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pp, pp) for pp in p])
    sp = tuple(conv_out_size(n, kk, ss, dd, pp) for n, kk, ss, dd, pp in zip(x.shape[2:], k, s, d, p))
    f = w.shape[0]
    cg, fg = x.shape[1] // g, f // g
    out = np.zeros((x.shape[0], f) + sp, np.float64)
    for o in np.ndindex(*sp):
        for kk in np.ndindex(*k):
            idx = tuple(oi * si + ki * di for oi, si, ki, di in zip(o, s, kk, d))
            patch = xp[(slice(None), slice(None)) + idx]  # (N, C)
            for gi in range(g):
                wk = w[(slice(gi * fg, (gi + 1) * fg), slice(None)) + kk]  # (fg, cg)
                out[(slice(None), slice(gi * fg, (gi + 1) * fg)) + o] += patch[:, gi * cg:(gi + 1) * cg] @ wk.T
    if bias is not None:
        out += bias.reshape((1, f) + (1,) * nsp)
    return out.astype(x.dtype)


# channel-first only: a reference lowering, so its schema has no layout
register(OpDef("_convolution_direct", kind="opaque", inputs=_conv_inputs,
               schema={key: v for key, v in CONV_SCHEMA.items() if key != "layout"}, shape=_conv_shape,
               lower=_conv_lower, gradient=_conv_grad, reference=_np_conv, hint="convolution"))

GEOM_SCHEMA = {"kernel": P.Tuple(), "stride": P.Tuple(()), "dilate": P.Tuple(()), "pad": P.Tuple(()),
               "num_group": P.Int(1)}


def _like_third(params, ins, outs):
    return list(ins), [unify(ins[2], outs[0])]


def _like_third_type(params, ins, outs):
    from .shapes import unify_type
    t = unify_type(unify_type(ins[0], ins[1]), outs[0])
    return [t, t, ins[2]], [t]


def _conv_bwd_data_lower(params, ins, outs):
    """dx[n, c, i] = sum over filters of c's group and kernel taps k with i = o*s - p + k*d."""
    og, w, _ = ins
    out = outs[0]
    k, s, d, p, cg, fg, rv = _conv_setup(params, out.shape, og.shape[1])

    def body(n, c, *i):
        fl, kk = rv[0], rv[1:]
        f = (c // _c(cg)) * _c(fg) + fl
        conds, opos = [], []
        for ii, ki, si, di, pi, on in zip(i, kk, s, d, p, og.shape[2:]):
            t = ii + _c(pi) - ki * _c(di)
            conds += [E.cmp("ge", t, _c(0)), E.cmp("eq", t % _c(si), _c(0)), E.cmp("lt", t // _c(si), _c(on))]
            opos.append(E.clamp_index(t // _c(si), on))
        term = og.load([n, f] + opos) * w.load([f, c % _c(cg)] + list(kk))
        return E.Reduce("sum", rv, (fg,) + k, E.select(_and(*conds), term, _zero(og.dtype)))
    return [compute(out, body)]


def _conv_bwd_weight_lower(params, ins, outs):
    """dw[f, c, k] = sum over n and output positions of og[n, f, o] * x[n, group(f) + c, o*s - p + k*d]."""
    og, x, _ = ins
    out = outs[0]
    k, s, d, p, cg, fg, rv = _conv_setup(params, x.shape, out.shape[0])
    osp = og.shape[2:]

    def body(f, c, *kk):
        n, o = rv[0], rv[1:]
        pos = _input_positions(o, kk, s, p, d)
        xv, ok = _masked_load(x, [n, (f // _c(fg)) * _c(cg) + c], pos, x.shape[2:])
        term = E.select(ok, xv * og.load([n, f] + list(o)), _zero(x.dtype))
        return E.Reduce("sum", rv, (x.shape[0],) + osp, term)
    return [compute(out, body)]


register(OpDef("_conv_backward_data", kind="opaque", inputs=("grad", "weight", "data"), schema=GEOM_SCHEMA,
               shape=_like_third, dtype=_like_third_type, lower=_conv_bwd_data_lower))
register(OpDef("_conv_backward_weight", kind="opaque", inputs=("grad", "data", "weight"), schema=GEOM_SCHEMA,
               shape=_like_third, dtype=_like_third_type, lower=_conv_bwd_weight_lower))

# ---------------------------------------------------------------- Pooling
POOL_SCHEMA = {
    "kernel": P.Tuple(()), "pool_type": P.Str("max", choices=("max", "avg", "sum", "lp")),
    "global_pool": P.Bool(False), "cudnn_off": P.Bool(False),
    "pooling_convention": P.Str("valid", choices=("valid", "full", "same")),
    "stride": P.Tuple(()), "pad": P.Tuple(()), "p_value": P.OptInt(None),
    "count_include_pad": P.Bool(None), "layout": P.Str(None, choices=(None,) + CHANNEL_FIRST + CHANNEL_LAST),
}


def pool_geometry(params, spatial):
    """(kernel, stride, pad, output sizes) for input spatial sizes."""
    nsp = len(spatial)
    if params["global_pool"]:
        return tuple(spatial), (1,) * nsp, (0,) * nsp, (1,) * nsp
    k = tuple(params["kernel"])
    if len(k) != nsp:
        raise InferError("kernel %s does not match %d spatial dimensions" % (k, nsp))
    s = _spatial(params, nsp, "stride", 1)
    p = _spatial(params, nsp, "pad", 0)
    conv = params["pooling_convention"]
    out = []
    for n, kk, ss, pp in zip(spatial, k, s, p):
        if conv == "valid":
            out.append((n + 2 * pp - kk) // ss + 1)
        elif conv == "full":
            out.append(int(math.ceil((n + 2 * pp - kk) / ss)) + 1)
        else:
            out.append(int(math.ceil(n / ss)))
    if any(o <= 0 for o in out):
        raise InferError("pooling kernel %s is larger than padded input %s" % (k, tuple(spatial)))
    return k, s, p, tuple(out)


def _pool_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    if len(x) < 3 or len(x) > 5:
        raise InferError("Pooling needs 3-d to 5-d data, got %s" % (x,))
    last = channel_last(params, len(x) - 2)
    if params["pool_type"] == "lp":
        raise NotImplementedError("Pooling with pool_type='lp'")
    if params["pooling_convention"] == "same":
        raise NotImplementedError("Pooling with pooling_convention='same'")
    n, c, sp = _split_nc(x, last)
    _, _, _, osp = pool_geometry(params, sp)
    return [x], [unify(_nc(n, c, osp, last), outs[0])]


def _window(o, kk, s, p):
    return [oi * _c(si) - _c(pi) + ki for oi, si, pi, ki in zip(o, s, p, kk)]


def _pool_divisor(params, o, k, s, p, spatial, dtype):
    """MXNet's avg divisor: the window clipped to the padded input, or to the input
    itself when count_include_pad is False."""
    include = params["count_include_pad"] is not False
    size = None
    for oi, ki, si, pi, n in zip(o, k, s, p, spatial):
        start = oi * _c(si) - _c(pi)
        end = E.minimum(start + _c(ki), _c(n + pi))
        if not include:
            start = E.maximum(start, _c(0))
            end = E.minimum(end, _c(n))
        extent = end - start
        size = extent if size is None else size * extent
    return E.cast(size, dtype)


def _pool_lower(params, ins, outs):
    x, out = ins[0], outs[0]
    last = channel_last(params, x.ndim - 2)
    sp = _split_nc(x.shape, last)[2]
    k, s, p, _ = pool_geometry(params, sp)
    kind = params["pool_type"]
    rv = E.fresh_vars(len(k), "r")

    def body(*idx):
        n, c, o = _split_nc(idx, last)
        xv, ok = _masked_load(x, [n, c], _window(o, rv, s, p), sp, last)
        if kind == "max":
            low = E.const(-np.inf if E.is_float(x.dtype) else np.iinfo(x.dtype).min, x.dtype)
            return E.Reduce("max", rv, k, E.select(ok, xv, low))
        total = E.Reduce("sum", rv, k, E.select(ok, xv, _zero(x.dtype)))
        if kind == "avg":
            return total / _pool_divisor(params, o, k, s, p, sp, x.dtype)
        return total
    return [compute(out, body)]


def _pool_grad(b, node, ogs):
    attrs = dict(node.params)
    return [b.op("_pooling_backward", ogs[0], node.inputs[0], node.out(0), **attrs)]


def _np_pool(params, x):
    k, s, p, osp = pool_geometry(params, x.shape[2:])
    kind = params["pool_type"]
    fill = -np.inf if kind == "max" else 0.0
    hi = [max(0, (o - 1) * ss + kk - n - pp) for o, ss, kk, n, pp in zip(osp, s, k, x.shape[2:], p)]
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pp, pp + h) for pp, h in zip(p, hi)],
                constant_values=fill)
    out = np.zeros(x.shape[:2] + osp)
    for o in np.ndindex(*osp):
        win = xp[(slice(None), slice(None)) + tuple(slice(oi * si, oi * si + ki) for oi, si, ki in zip(o, s, k))]
        win = win.reshape(x.shape[:2] + (-1,))
        if kind == "max":
            out[(slice(None), slice(None)) + o] = win.max(-1)
        else:
            total = win.sum(-1)
            if kind == "avg":
                size = 1
                for oi, ki, si, pi, n in zip(o, k, s, p, x.shape[2:]):
                    start, end = oi * si - pi, min(oi * si - pi + ki, n + pi)
                    if params["count_include_pad"] is False:
                        start, end = max(start, 0), min(end, n)
                    size *= end - start
                total = total / size
            out[(slice(None), slice(None)) + o] = total
    return out.astype(x.dtype)


register(OpDef("Pooling", kind="opaque", schema=POOL_SCHEMA, shape=_pool_shape, lower=_pool_lower,
               gradient=_pool_grad, reference=_channel_first_reference(_np_pool)))


def _pool_bwd_shape(params, ins, outs):
    return list(ins), [unify(ins[1], outs[0])]


def _pool_bwd_lower(params, ins, outs):
    """dx[i] = sum over windows o containing i: og[o] * (share of i in window o).

    max routes the gradient to the first maximum of the window (MXNet's rule);
    avg divides by the window's divisor; sum passes it through."""
    og, x, y = ins
    out = outs[0]
    last = channel_last(params, x.ndim - 2)
    sp = _split_nc(x.shape, last)[2]
    k, s, p, osp = pool_geometry(params, sp)
    kind = params["pool_type"]
    rv = E.fresh_vars(len(k), "r")

    def body(*idx):
        n, c, i = _split_nc(idx, last)
        conds, o = [], []
        for ii, ki, si, pi, on in zip(i, rv, s, p, osp):
            t = ii + _c(pi) - ki
            conds += [E.cmp("ge", t, _c(0)), E.cmp("eq", t % _c(si), _c(0)), E.cmp("lt", t // _c(si), _c(on))]
            o.append(E.clamp_index(t // _c(si), on))
        g = og.load(list(_nc(n, c, o, last)))
        if kind == "max":
            inner = E.fresh_vars(len(k), "w")
            xv, ok = _masked_load(x, [n, c], _window(o, inner, s, p), sp, last)
            low = E.const(-np.inf if E.is_float(x.dtype) else np.iinfo(x.dtype).min, x.dtype)
            first = E.Reduce("argmax", inner, k, E.select(ok, xv, low), dtype=I64)
            mine = _c(0)
            for ki, kk in zip(rv, k):
                mine = mine * _c(kk) + ki
            g = E.select(E.cmp("eq", first, mine), g, _zero(og.dtype))
        elif kind == "avg":
            g = g / _pool_divisor(params, o, k, s, p, sp, og.dtype)
        return E.Reduce("sum", rv, k, E.select(_and(*conds), g, _zero(og.dtype)))
    return [compute(out, body)]


register(OpDef("_pooling_backward", kind="opaque", inputs=("grad", "data", "output"), schema=POOL_SCHEMA,
               shape=_pool_bwd_shape, dtype=lambda params, ins, outs: (list(ins), [ins[0]]),
               lower=_pool_bwd_lower))


# ---------------------------------------------------------------- im2col + GEMM convolution
# Column layouts: batch-major (N, C, *kernel, *out) is, per image and group, the [C/G * K, P]
# matrix the forward GEMM reads; channel-major (C, *kernel, N, *out) is, per group, the
# [C/G * K, N * P] matrix the weight gradient reads. Both are plain row-major buffers.
GEO_KEYS = ("kernel", "stride", "dilate", "pad")
COL_SCHEMA = dict(GEOM_SCHEMA, batch_major=P.Bool(True), adj=P.Tuple(()), target_shape=P.Tuple(()))


def _geo(params):
    return {key: params[key] for key in GEO_KEYS}


def _deconv_pads(params, in_sp):
    """(pad, adj) of a transposed convolution whose input has spatial sizes ``in_sp``:
    MXNet derives both from ``target_shape`` when it is set (non-zero)."""
    nsp = len(in_sp)
    k, s, d, p = conv_geometry(params, nsp)
    adj = _spatial(params, nsp, "adj", 0)
    target = tuple(params.get("target_shape") or ())
    if target and any(target):
        if len(target) != nsp:
            raise InferError("target_shape %s does not match kernel %s" % (target, k))
        pads, adjs = [], []
        for n, kk, ss, dd, t in zip(in_sp, k, s, d, target):
            total = ss * (n - 1) + dd * (kk - 1) + 1 - t
            if total < 0:
                raise InferError("target_shape %s is too big for input %s" % (target, tuple(in_sp)))
            pads.append((total + 1) // 2)
            adjs.append(total % 2)
        return tuple(pads), tuple(adjs)
    for a, ss, dd in zip(adj, s, d):
        if a >= max(ss, dd):
            raise InferError("adj %s must be smaller than stride %s or dilate %s" % (adj, s, d))
    return p, adj


def deconv_out_size(n, k, s, d, p, a):
    return s * (n - 1) + d * (k - 1) + 1 - 2 * p + a


def _col_shape(params, x, osp):
    k = tuple(params["kernel"])
    if params["batch_major"]:
        return (x[0], x[1]) + k + tuple(osp)
    return (x[1],) + k + (x[0],) + tuple(osp)


def _im2col_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return list(ins), [outs[0]]
    nsp = len(params["kernel"])
    if len(x) != nsp + 2:
        raise InferError("data %s must have %d dimensions for kernel %s" % (x, nsp + 2, tuple(params["kernel"])))
    k, s, d, p = conv_geometry(params, nsp)
    if len(ins) == 2:  # the output positions are those of ``like`` (a transposed convolution's input)
        if not known(ins[1]):
            return list(ins), [outs[0]]
        osp = tuple(ins[1][2:])
    else:
        osp = tuple(conv_out_size(n, kk, ss, dd, pp) for n, kk, ss, dd, pp in zip(x[2:], k, s, d, p))
        if any(o <= 0 for o in osp):
            raise InferError("kernel %s (dilate %s) is larger than padded input %s" % (k, d, tuple(x[2:])))
    return list(ins), [unify(_col_shape(params, x, osp), outs[0])]


def _im2col_lower(params, ins, outs):
    """cols[n, c, k, o] = x[n, c, o*s - p + k*d] (zero outside); masks only on axes that can leave."""
    x, out = ins[0], outs[0]
    nsp = x.ndim - 2
    k, s, d, p = conv_geometry(params, nsp)
    if len(ins) == 2:
        p, _ = _deconv_pads(params, ins[1].shape[2:])
    osp = out.shape[-nsp:]
    major = params["batch_major"]

    def body(*i):
        if major:
            n, c, kk, o = i[0], i[1], i[2:2 + nsp], i[2 + nsp:]
        else:
            c, kk, n, o = i[0], i[1:1 + nsp], i[1 + nsp], i[2 + nsp:]
        pos = _input_positions(o, kk, s, p, d)
        conds, idx = [], [n, c]
        for q, pp, on, ss, kx, dd, ext in zip(pos, p, osp, s, k, d, x.shape[2:]):
            if pp == 0 and (on - 1) * ss + (kx - 1) * dd < ext:
                idx.append(q)  # never out of range: no mask
                continue
            conds.append(E.Call("and", (E.cmp("ge", q, _c(0)), E.cmp("lt", q, _c(ext)))))
            idx.append(E.clamp_index(q, ext))
        v = x.load(idx)
        return E.select(_and(*conds), v, _zero(x.dtype)) if conds else v
    return [compute(out, body)]


def _np_im2col(params, x, like=None):
    nsp = x.ndim - 2
    k, s, d, p = conv_geometry(params, nsp)
    if like is not None:
        p, _ = _deconv_pads(params, like.shape[2:])
        osp = like.shape[2:]
    else:
        osp = tuple(conv_out_size(n, kk, ss, dd, pp) for n, kk, ss, dd, pp in zip(x.shape[2:], k, s, d, p))
    hi = [max(0, (o - 1) * ss + (kk - 1) * dd + 1 - n - pp)
          for o, ss, kk, dd, n, pp in zip(osp, s, k, d, x.shape[2:], p)]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pp, pp + h) for pp, h in zip(p, hi)])
    out = np.zeros(x.shape[:2] + tuple(k) + tuple(osp), x.dtype)
    for kk in np.ndindex(*k):
        sl = tuple(slice(ki * di, ki * di + (o - 1) * si + 1, si) for ki, di, o, si in zip(kk, d, osp, s))
        out[(slice(None), slice(None)) + kk] = xp[(slice(None), slice(None)) + sl]
    if not params["batch_major"]:
        out = np.moveaxis(out, 0, 1 + nsp)
    return np.ascontiguousarray(out)


register(OpDef("_im2col", kind="opaque", inputs=("data",), schema=COL_SCHEMA, shape=_im2col_shape,
               lower=_im2col_lower, reference=_np_im2col,
               doc="Receptive fields of every output position as GEMM columns (Convolution's expansion)."))
register(OpDef("_im2col_like", kind="opaque", inputs=("data", "like"), schema=COL_SCHEMA, shape=_im2col_shape,
               dtype=lambda params, ins, outs: (list(ins), [ins[0]]), lower=_im2col_lower, reference=_np_im2col,
               doc="_im2col at the output positions of `like`, padding resolved as a Deconvolution's."))


def _col2im_shape(params, ins, outs):
    cols = ins[0]
    if len(ins) == 2:  # conv data gradient: shaped like the data
        return list(ins), [unify(ins[1], outs[0])]
    if not known(cols):
        return list(ins), [outs[0]]
    nsp = len(params["kernel"])
    k, s, d, _ = conv_geometry(params, nsp)
    osp = tuple(cols[2 + nsp:])
    p, a = _deconv_pads(params, osp)
    sp = tuple(deconv_out_size(n, kk, ss, dd, pp, aa) for n, kk, ss, dd, pp, aa in zip(osp, k, s, d, p, a))
    if any(v <= 0 for v in sp):
        raise InferError("output size %s is not positive (pad %s too large)" % (sp, p))
    return list(ins), [unify((cols[0], cols[1]) + sp, outs[0])]


def _col2im_lower(params, ins, outs):
    """x[n, c, i] = sum over taps k of cols[n, c, k, (i + p - k*d) / s] where that is a whole
    in-range position: the adjoint of ``_im2col`` as a gather (each output written once)."""
    cols, out = ins[0], outs[0]
    nsp = out.ndim - 2
    k, s, d, p = conv_geometry(params, nsp)
    osp = cols.shape[2 + nsp:]
    if len(ins) == 1:
        p, _ = _deconv_pads(params, osp)
    rv = E.fresh_vars(nsp, "r")

    def body(n, c, *i):
        conds, opos = [], []
        for ii, ki, si, di, pi, on in zip(i, rv, s, d, p, osp):
            t = ii + _c(pi) - ki * _c(di)
            q = t // _c(si) if si != 1 else t
            conds += [E.cmp("ge", t, _c(0)), E.cmp("lt", q, _c(on))]
            if si != 1:
                conds.append(E.cmp("eq", t % _c(si), _c(0)))
            opos.append(E.clamp_index(q, on))
        term = cols.load([n, c] + list(rv) + opos)
        tap = E.select(_and(*conds), term, _zero(cols.dtype))
        if not _unroll_taps(numel(k), out.shape[-1]):
            return E.Reduce("sum", rv, k, tap)
        # few taps: an explicit sum, so the loop over the last axis is innermost and vectorises
        acc = None
        for kk in np.ndindex(*k):
            v = E.substitute(tap, {r.name: _c(ki) for r, ki in zip(rv, kk)})
            acc = v if acc is None else acc + v
        return acc
    return [compute(out, body)]


def _unroll_taps(taps, row):
    """Whether col2im sums its taps as an unrolled expression (the output row loop innermost,
    vectorised) rather than a tap loop per element. Measured on Zen 5: 3x3 unrolled is 2-4x
    faster at rows of 12-56; 5x5 is 4x faster unrolled at rows of 56 but 2x slower at 12."""
    return taps <= 9 or (taps <= 49 and row >= 32)


def _np_col2im(params, cols, like=None):
    nsp = (cols.ndim - 2) // 2
    k, s, d, p = conv_geometry(params, nsp)
    osp = cols.shape[2 + nsp:]
    if like is None:
        p, a = _deconv_pads(params, osp)
        sp = tuple(deconv_out_size(n, kk, ss, dd, pp, aa) for n, kk, ss, dd, pp, aa in zip(osp, k, s, d, p, a))
    else:
        sp = like.shape[2:]
    hi = [max(0, (o - 1) * ss + (kk - 1) * dd + 1 - n - pp) for o, ss, kk, dd, n, pp in zip(osp, s, k, d, sp, p)]
    xp = np.zeros(cols.shape[:2] + tuple(n + pp + pp + h for n, pp, h in zip(sp, p, hi)), np.float64)
    for kk in np.ndindex(*k):
        sl = tuple(slice(ki * di, ki * di + (o - 1) * si + 1, si) for ki, di, o, si in zip(kk, d, osp, s))
        xp[(slice(None), slice(None)) + sl] += cols[(slice(None), slice(None)) + kk]
    return xp[(slice(None), slice(None)) + tuple(slice(pp, pp + n) for pp, n in zip(p, sp))].astype(cols.dtype)


register(OpDef("_col2im", kind="opaque", inputs=("cols", "like"), schema=COL_SCHEMA, shape=_col2im_shape,
               dtype=lambda params, ins, outs: (list(ins), [ins[0]]), lower=_col2im_lower, reference=_np_col2im,
               doc="Adjoint of _im2col (Convolution's data gradient), shaped like `like`."))
register(OpDef("_col2im_deconv", kind="opaque", inputs=("cols",), schema=COL_SCHEMA, shape=_col2im_shape,
               lower=_col2im_lower, reference=_np_col2im,
               doc="Adjoint of _im2col sized as a Deconvolution's output (pad, adj, target_shape)."))


def _gemm_ok(*bufs):
    return len({b.dtype for b in bufs}) == 1 and bufs[0].dtype in ("float32", "float64") \
        and all(not E.is_static(b.size) or b.size > 0 for b in bufs)


def _fwd_gemm_shape(params, ins, outs):
    w, cols = ins
    if not (known(w) and known(cols)):
        return list(ins), [outs[0]]
    nsp = len(w) - 2
    g = params["num_group"]
    if len(cols) != 2 + 2 * nsp or cols[1] != w[1] * g or tuple(cols[2:2 + nsp]) != tuple(w[2:]) or w[0] % g:
        raise InferError("weight %s and columns %s do not match (num_group %d)" % (w, cols, g))
    return list(ins), [unify((cols[0], w[0]) + tuple(cols[2 + nsp:]), outs[0])]


def _fwd_gemm_lower(params, ins, outs):
    """out[n, f] = W[f] . cols[n, group(f)]: N*G products [F/G, C/G*K] x [C/G*K, P], W shared."""
    w, cols = ins
    out = outs[0]
    g = params["num_group"]
    f, cg, kext = w.shape[0], w.shape[1], w.shape[2:]
    n, P_ = out.shape[0], numel(out.shape[2:])
    if _gemm_ok(w, cols, out):
        return [Gemm(out, w, cols, batch=n * g, dims=(f // g, P_, cg * numel(kext)), a_batch=g)]
    rv = E.fresh_vars(1 + len(kext), "r")

    def body(b, fi, *o):
        c, kk = rv[0], list(rv[1:])
        x = cols.load([b, (fi // _c(f // g)) * _c(cg) + c] + kk + list(o))
        return E.Reduce("sum", rv, (cg,) + tuple(kext), w.load([fi, c] + kk) * x)
    return [compute(out, body)]


def _np_fwd_gemm(params, w, cols):
    g = params["num_group"]
    nsp = w.ndim - 2
    n, f = cols.shape[0], w.shape[0]
    osp = cols.shape[2 + nsp:]
    wm = w.reshape(g, f // g, -1)
    cm = cols.reshape(n, g, wm.shape[2], -1)
    return np.einsum("gfk,ngkp->ngfp", wm, cm).reshape((n, f) + osp).astype(w.dtype)


register(OpDef("_conv_fwd_gemm", kind="opaque", inputs=("weight", "cols"), schema={"num_group": P.Int(1)},
               shape=_fwd_gemm_shape, lower=_fwd_gemm_lower, reference=_np_fwd_gemm,
               doc="Convolution's product of the weights by the batch-major columns (one Gemm stage)."))


def _dcols_shape(params, ins, outs):
    w, og = ins
    if not (known(w) and known(og)):
        return list(ins), [outs[0]]
    g = params["num_group"]
    if og[1] != w[0] or w[0] % g:
        raise InferError("gradient %s does not match weight %s (num_group %d)" % (og, w, g))
    return list(ins), [unify((og[0], w[1] * g) + tuple(w[2:]) + tuple(og[2:]), outs[0])]


def _dcols_lower(params, ins, outs):
    """dcols[n, group g] = W[g]^T . grad[n, g]: N*G products [C/G*K, F/G] x [F/G, P], W shared."""
    w, og = ins
    out = outs[0]
    g = params["num_group"]
    f, cg, kext = w.shape[0], w.shape[1], w.shape[2:]
    n, P_ = og.shape[0], numel(og.shape[2:])
    fg = f // g
    if _gemm_ok(w, og, out):
        return [Gemm(out, w, og, transpose_a=True, batch=n * g, dims=(cg * numel(kext), P_, fg), a_batch=g)]
    (r,) = E.fresh_vars(1, "r")
    nk = len(kext)

    def body(b, c, *rest):
        kk, o = list(rest[:nk]), list(rest[nk:])
        fi = (c // _c(cg)) * _c(fg) + r
        return E.Reduce("sum", [r], [fg], w.load([fi, c % _c(cg)] + kk) * og.load([b, fi] + o))
    return [compute(out, body)]


def _np_dcols(params, w, og):
    g = params["num_group"]
    n, f, cg = og.shape[0], w.shape[0], w.shape[1]
    wm = w.reshape(g, f // g, -1)
    gm = og.reshape(n, g, f // g, -1)
    out = np.einsum("gfk,ngfp->ngkp", wm, gm)
    return out.reshape((n, cg * g) + w.shape[2:] + og.shape[2:]).astype(w.dtype)


register(OpDef("_conv_dcols_gemm", kind="opaque", inputs=("weight", "grad"), schema={"num_group": P.Int(1)},
               shape=_dcols_shape, lower=_dcols_lower, reference=_np_dcols,
               doc="W^T . grad per image and group: the columns of Convolution's data gradient "
                   "(and of Deconvolution's output)."))


def _wgrad_shape(params, ins, outs):
    ogt, colst = ins
    if not (known(ogt) and known(colst)):
        return list(ins), [outs[0]]
    nsp = (len(colst) - 2) // 2
    g = params["num_group"]
    if ogt[0] % g or colst[0] % g or tuple(ogt[1:]) != tuple(colst[1 + nsp:]):
        raise InferError("gradient %s and columns %s do not match (num_group %d)" % (ogt, colst, g))
    return list(ins), [unify((ogt[0], colst[0] // g) + tuple(colst[1:1 + nsp]), outs[0])]


def _wgrad_lower(params, ins, outs):
    """dW[g] = gradT[g] . colsT[g]^T: G products [F/G, N*P] x [N*P, C/G*K]."""
    ogt, colst = ins
    out = outs[0]
    g = params["num_group"]
    f, cg = out.shape[0], out.shape[1]
    kext = out.shape[2:]
    if _gemm_ok(ogt, colst, out):
        return [Gemm(out, ogt, colst, transpose_b=True, batch=g, dims=(f // g, cg * numel(kext), numel(ogt.shape[1:])))]
    rv = E.fresh_vars(ogt.ndim - 1, "r")

    def body(fi, c, *kk):
        ch = (fi // _c(f // g)) * _c(cg) + c
        return E.Reduce("sum", rv, ogt.shape[1:], ogt.load([fi] + list(rv)) * colst.load([ch] + list(kk) + list(rv)))
    return [compute(out, body)]


def _np_wgrad(params, ogt, colst):
    g = params["num_group"]
    nsp = (colst.ndim - 2) // 2
    f, c = ogt.shape[0], colst.shape[0]
    a = ogt.reshape(g, f // g, -1)
    b = colst.reshape(g, -1, a.shape[2])
    return np.einsum("gfq,gkq->gfk", a, b).reshape((f, c // g) + colst.shape[1:1 + nsp]).astype(ogt.dtype)


register(OpDef("_conv_wgrad_gemm", kind="opaque", inputs=("grad_t", "cols_t"), schema={"num_group": P.Int(1)},
               shape=_wgrad_shape, lower=_wgrad_lower, reference=_np_wgrad,
               doc="Convolution's weight gradient from channel-major gradient and columns (one Gemm)."))


def _pointwise(params):
    """1x1 kernel, stride 1, no padding: the data already is the column matrix."""
    nsp = len(params["kernel"])
    k, s, _, p = conv_geometry(params, nsp)
    return all(v == 1 for v in k + s) and not any(p)


def _add_bias(b, y, bias):
    return b.op("elemwise_add", y, b.op("_broadcast_axis_like", bias, y, axis=1))


def _conv_expand(b, inputs, params):
    x, w = inputs[0], inputs[1]
    nsp = len(params["kernel"])
    last = channel_last(params, nsp)
    if last:
        x, w = _to_channel_first(b, x, nsp + 2), _to_channel_first(b, w, nsp + 2)
    if _pointwise(params):
        cols = x
        for _ in range(nsp):  # (N, C, 1.., *spatial): a view, the planner aliases it
            cols = b.op("expand_dims", cols, axis=2)
    else:
        cols = b.op("_im2col", x, **_geo(params))
    y = b.op("_conv_fwd_gemm", w, cols, num_group=params["num_group"])
    y = _add_bias(b, y, inputs[2]) if len(inputs) == 3 else y
    return [_to_channel_last(b, y, nsp + 2) if last else y]


def _transpose01(b, v, nsp):
    return b.op("transpose", v, axes=(1, 0) + tuple(range(2, 2 + nsp)))


def _channel_first_operands(b, node, og):
    """Data, weight and head gradient of a (De)Convolution node, transposed to channel-first
    when the node is channel-last: the gradients below are written for channel-first."""
    nsp = len(node.params["kernel"])
    vals = (node.inputs[0], node.inputs[1], og)
    if channel_last(node.params, nsp):
        vals = tuple(_to_channel_first(b, v, nsp + 2) for v in vals)
    return vals


def _layout_grads(b, node, og, dx, dw):
    """Channel-first data and weight gradients back in the node's layout, plus the bias
    gradient (the head gradient ``og`` summed over every axis but channels)."""
    nsp = len(node.params["kernel"])
    last = channel_last(node.params, nsp)
    grads = [_to_channel_last(b, v, nsp + 2) for v in (dx, dw)] if last else [dx, dw]
    if len(node.inputs) == 3:
        channel = nsp + 1 if last else 1
        grads.append(b.op("sum", og, axis=tuple(i for i in range(nsp + 2) if i != channel)))
    return grads


def _conv_gemm_grad(b, node, ogs):
    x, w, og = _channel_first_operands(b, node, ogs[0])
    p = node.params
    nsp = len(p["kernel"])
    g = p["num_group"]
    dx = b.op("_col2im", b.op("_conv_dcols_gemm", w, og, num_group=g), x, **_geo(p))
    cols_t = b.op("_im2col", x, batch_major=False, **_geo(p))
    dw = b.op("_conv_wgrad_gemm", _transpose01(b, og, nsp), cols_t, num_group=g)
    return _layout_grads(b, node, ogs[0], dx, dw)


register(OpDef("Convolution", kind="composite", inputs=_conv_inputs, schema=CONV_SCHEMA, shape=_conv_shape,
               expand=_conv_expand, gradient=_conv_gemm_grad, reference=_channel_first_reference(_np_conv),
               doc="im2col + GEMM per group (bias and activation fuse as the GEMM's epilogue)."))


# ---------------------------------------------------------------- Deconvolution
DECONV_SCHEMA = dict(CONV_SCHEMA, adj=P.Tuple(()), target_shape=P.Tuple(()), no_bias=P.Bool(True),
                     workspace=P.Int(512))


def _deconv_shape(params, ins, outs):
    new, geometry = _checked_inputs(params, ins, lambda c, f, g: (c, f // g))
    if geometry is None:
        return new, [outs[0]]
    x = ins[0]
    k, s, d, _, f, isp, last = geometry
    p, a = _deconv_pads(params, isp)
    sp = tuple(deconv_out_size(n, kk, ss, dd, pp, aa) for n, kk, ss, dd, pp, aa in zip(isp, k, s, d, p, a))
    if any(o <= 0 for o in sp):
        raise InferError("output size %s is not positive for input %s (pad %s)" % (sp, x, p))
    return new, [unify(_nc(x[0], f, sp, last), outs[0])]


def _deconv_attrs(params):
    return dict(_geo(params), adj=params["adj"], target_shape=params["target_shape"])


def _deconv_expand(b, inputs, params):
    x, w = inputs[0], inputs[1]
    nsp = len(params["kernel"])
    last = channel_last(params, nsp)
    if last:
        x, w = _to_channel_first(b, x, nsp + 2), _to_channel_first(b, w, nsp + 2)
    dcols = b.op("_conv_dcols_gemm", w, x, num_group=params["num_group"])
    y = b.op("_col2im_deconv", dcols, **_deconv_attrs(params))
    y = _add_bias(b, y, inputs[2]) if len(inputs) == 3 else y
    return [_to_channel_last(b, y, nsp + 2) if last else y]


def _deconv_grad(b, node, ogs):
    """dx = Convolution(grad, W) at x's positions; dW[c, f] = sum x[n, c, o] * cols(grad)[n, f, k, o]."""
    x, w, og = _channel_first_operands(b, node, ogs[0])
    p = node.params
    nsp = len(p["kernel"])
    g = p["num_group"]
    attrs = _deconv_attrs(p)
    dx = b.op("_conv_fwd_gemm", w, b.op("_im2col_like", og, x, **attrs), num_group=g)
    cols_t = b.op("_im2col_like", og, x, batch_major=False, **attrs)
    dw = b.op("_conv_wgrad_gemm", _transpose01(b, x, nsp), cols_t, num_group=g)
    return _layout_grads(b, node, ogs[0], dx, dw)


def _np_deconv(params, x, w, bias=None):
    """Scatter every input pixel's weighted kernel into the (padded) output, then crop."""
    nsp = x.ndim - 2
    k, s, d, _ = conv_geometry(params, nsp)
    p, a = _deconv_pads(params, x.shape[2:])
    g = params["num_group"]
    cg, f = x.shape[1] // g, w.shape[1] * g
    fg = f // g
    sp = tuple(deconv_out_size(n, kk, ss, dd, pp, aa) for n, kk, ss, dd, pp, aa in zip(x.shape[2:], k, s, d, p, a))
    full = tuple(n + 2 * pp + max(0, (o - 1) * ss + (kk - 1) * dd + 1 - n - 2 * pp)
                 for n, pp, o, ss, kk, dd in zip(sp, p, x.shape[2:], s, k, d))
    out = np.zeros((x.shape[0], f) + full, np.float64)
    for gi in range(g):
        xg = x[:, gi * cg:(gi + 1) * cg]
        for kk in np.ndindex(*k):
            wk = w[(slice(gi * cg, (gi + 1) * cg), slice(None)) + kk]  # (cg, fg)
            contrib = np.einsum("nc...,cf->nf...", xg, wk)
            sl = tuple(slice(ki * di, ki * di + (o - 1) * si + 1, si) for ki, di, o, si in zip(kk, d, x.shape[2:], s))
            out[(slice(None), slice(gi * fg, (gi + 1) * fg)) + sl] += contrib
    out = out[(slice(None), slice(None)) + tuple(slice(pp, pp + n) for pp, n in zip(p, sp))]
    if bias is not None:
        out = out + bias.reshape((1, f) + (1,) * nsp)
    return out.astype(x.dtype)


register(OpDef("Deconvolution", kind="composite", inputs=_conv_inputs, schema=DECONV_SCHEMA, shape=_deconv_shape,
               expand=_deconv_expand, gradient=_deconv_grad, reference=_channel_first_reference(_np_deconv),
               doc="Transposed convolution: Convolution's data gradient (W^T GEMM + col2im) as forward."))
