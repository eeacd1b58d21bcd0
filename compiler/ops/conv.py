"""Convolution and Pooling (NC + 1-3 spatial dims) as direct loop nests.

Forward and both gradients are reductions over the kernel window with
bounds masks; padding reads nothing out of range (indices are clamped and
the value masked). The Gluon work replaces the forward with im2col + GEMM;
these kernels stay as the reference lowering.
"""
from __future__ import annotations

import math

import numpy as np

from .. import expr as E
from ..kernel import compute
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


def _check_layout(params, nsp):
    layout = params.get("layout")
    if layout not in (None, "NCW", "NCHW", "NCDHW"):
        raise NotImplementedError("layout %s (only channel-first layouts NCW/NCHW/NCDHW are supported)" % layout)


def _masked_load(buf, lead, pos, extents):
    """buf[lead + pos] with positions outside [0, extent) reading as zero: (value, in_bounds)."""
    conds = [E.Call("and", (E.cmp("ge", p, _c(0)), E.cmp("lt", p, _c(n)))) for p, n in zip(pos, extents)]
    idx = list(lead) + [E.clamp_index(p, n) for p, n in zip(pos, extents)]
    return buf.load(idx), _and(*conds)


def _zero(dtype):
    return E.const(0.0 if E.is_float(dtype) else 0, dtype)


# ---------------------------------------------------------------- Convolution
CONV_SCHEMA = {
    "kernel": P.Tuple(), "stride": P.Tuple(()), "dilate": P.Tuple(()), "pad": P.Tuple(()),
    "num_filter": P.Int(), "num_group": P.Int(1), "workspace": P.Int(1024), "no_bias": P.Bool(False),
    "cudnn_tune": P.Str(None, choices=(None, "off", "limited_workspace", "fastest")),
    "cudnn_off": P.Bool(False), "layout": P.Str(None),
}


def conv_geometry(params, nsp):
    k = tuple(params["kernel"])
    return k, _spatial(params, nsp, "stride", 1), _spatial(params, nsp, "dilate", 1), _spatial(params, nsp, "pad", 0)


def conv_out_size(size, k, s, d, p):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_inputs(params):
    return ["data", "weight"] if params["no_bias"] else ["data", "weight", "bias"]


def _conv_shape(params, ins, outs):
    x = ins[0]
    new = list(ins)
    if not known(x):
        return new, [outs[0]]
    nsp = len(params["kernel"])
    if len(x) != nsp + 2:
        raise InferError("data %s must have %d dimensions for kernel %s" % (x, nsp + 2, tuple(params["kernel"])))
    _check_layout(params, nsp)
    k, s, d, p = conv_geometry(params, nsp)
    f, g = params["num_filter"], params["num_group"]
    if x[1] % g or f % g:
        raise InferError("channels %d and num_filter %d must be divisible by num_group %d" % (x[1], f, g))
    new[1] = unify(ins[1], (f, x[1] // g) + k)
    if len(ins) == 3:
        new[2] = unify(ins[2], (f,))
    sp = tuple(conv_out_size(n, kk, ss, dd, pp) for n, kk, ss, dd, pp in zip(x[2:], k, s, d, p))
    if any(o <= 0 for o in sp):
        raise InferError("kernel %s (dilate %s) is larger than padded input %s" % (k, d, x[2:]))
    return new, [unify((x[0], f) + sp, outs[0])]


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


register(OpDef("Convolution", kind="opaque", inputs=_conv_inputs, schema=CONV_SCHEMA, shape=_conv_shape,
               lower=_conv_lower, gradient=_conv_grad, reference=_np_conv))

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
    "count_include_pad": P.Bool(None), "layout": P.Str(None),
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
    _check_layout(params, len(x) - 2)
    if params["pool_type"] == "lp":
        raise NotImplementedError("Pooling with pool_type='lp'")
    if params["pooling_convention"] == "same":
        raise NotImplementedError("Pooling with pooling_convention='same'")
    _, _, _, osp = pool_geometry(params, x[2:])
    return [x], [unify(tuple(x[:2]) + osp, outs[0])]


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
    k, s, p, _ = pool_geometry(params, x.shape[2:])
    kind = params["pool_type"]
    rv = E.fresh_vars(len(k), "r")

    def body(n, c, *o):
        xv, ok = _masked_load(x, [n, c], _window(o, rv, s, p), x.shape[2:])
        if kind == "max":
            low = E.const(-np.inf if E.is_float(x.dtype) else np.iinfo(x.dtype).min, x.dtype)
            return E.Reduce("max", rv, k, E.select(ok, xv, low))
        total = E.Reduce("sum", rv, k, E.select(ok, xv, _zero(x.dtype)))
        if kind == "avg":
            return total / _pool_divisor(params, o, k, s, p, x.shape[2:], x.dtype)
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
               gradient=_pool_grad, reference=_np_pool))


def _pool_bwd_shape(params, ins, outs):
    return list(ins), [unify(ins[1], outs[0])]


def _pool_bwd_lower(params, ins, outs):
    """dx[i] = sum over windows o containing i: og[o] * (share of i in window o).

    max routes the gradient to the first maximum of the window (MXNet's rule);
    avg divides by the window's divisor; sum passes it through."""
    og, x, y = ins
    out = outs[0]
    k, s, p, osp = pool_geometry(params, x.shape[2:])
    kind = params["pool_type"]
    rv = E.fresh_vars(len(k), "r")

    def body(n, c, *i):
        conds, o = [], []
        for ii, ki, si, pi, on in zip(i, rv, s, p, osp):
            t = ii + _c(pi) - ki
            conds += [E.cmp("ge", t, _c(0)), E.cmp("eq", t % _c(si), _c(0)), E.cmp("lt", t // _c(si), _c(on))]
            o.append(E.clamp_index(t // _c(si), on))
        g = og.load([n, c] + o)
        if kind == "max":
            inner = E.fresh_vars(len(k), "w")
            xv, ok = _masked_load(x, [n, c], _window(o, inner, s, p), x.shape[2:])
            low = E.const(-np.inf if E.is_float(x.dtype) else np.iinfo(x.dtype).min, x.dtype)
            first = E.Reduce("argmax", inner, k, E.select(ok, xv, low), dtype=I64)
            mine = _c(0)
            for ki, kk in zip(rv, k):
                mine = mine * _c(kk) + ki
            g = E.select(E.cmp("eq", first, mine), g, _zero(og.dtype))
        elif kind == "avg":
            g = g / _pool_divisor(params, o, k, s, p, x.shape[2:], og.dtype)
        return E.Reduce("sum", rv, k, E.select(_and(*conds), g, _zero(og.dtype)))
    return [compute(out, body)]


register(OpDef("_pooling_backward", kind="opaque", inputs=("grad", "data", "output"), schema=POOL_SCHEMA,
               shape=_pool_bwd_shape, dtype=lambda params, ins, outs: (list(ins), [ins[0]]),
               lower=_pool_bwd_lower))
