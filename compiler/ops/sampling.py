"""Spatial-transformer sampling (MXNet 1.x): GridGenerator, BilinearSampler, SpatialTransformer.

A grid holds, per output pixel, the source position as (x, y) normalised to
[-1, 1]; -1 and 1 are the centres of the first and last input pixels, so a
source coordinate is ``(g + 1) * (size - 1) / 2`` (computed in the data
dtype, as MXNet's CPU kernels do).

* GridGenerator ``affine``: (N, 6) matrices applied to the target pixels'
  normalised (x, y, 1); ``warp``: (N, 2, H, W) flow in pixels added to the
  pixel coordinates, then normalised. Its hidden ``grid_dst`` output is
  MXNet's: the target coordinates, (3, H*W) normalised rows x, y, 1 for
  affine, (2, H, W) pixel coordinates for warp.
* BilinearSampler: each output reads the 4 input pixels around its source
  position; a corner outside the image reads 0 (so a sample fades to 0 over
  the one pixel beyond the border), exactly MXNet's CPU kernel. Its hidden
  ``tmp`` output is the grid in (N, H, W, 2) layout (what MXNet's cuDNN path
  stores there).
* SpatialTransformer (affine, bilinear): a composite of the two, with
  MXNet's hidden ``grid_dst`` and ``grid_src`` (N, 2, H*W) outputs.

Gradients: the data gradient of the sampler scatter-adds each output
gradient into its 4 corners (``ScatterAdd`` with a corner axis; its
accumulation loop is serial, so samples hitting one pixel never race);
the grid gradient sums over channels per output pixel (a gather). The
GridGenerator gradient is a reduction over the target pixels (affine) or a
division (warp).
"""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import ScatterAdd, compute
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, unify

I64 = "int64"


class _OptBool(P.Bool):
    """MXNet's ``dmlc::optional<bool>`` (cudnn_off): a bool or None."""

    kind = "bool or None"

    def convert(self, value):
        if value is None or (isinstance(value, str) and value.strip() in ("None", "")):
            return None
        return super().convert(value)


TRANSFORMS = ("affine", "warp")
GRID_SCHEMA = {"transform_type": P.Str(choices=TRANSFORMS), "target_shape": P.Tuple((0, 0))}
SAMPLER_SCHEMA = {"cudnn_off": _OptBool(None)}
ST_SCHEMA = {"target_shape": P.Tuple((0, 0)), "transform_type": P.Str(choices=("affine",)),
             "sampler_type": P.Str(choices=("bilinear",)), "cudnn_off": _OptBool(None)}


def _i(v):
    return E.const(v, I64)


def _f(x, dtype):
    """An int64 index or size as a value of ``dtype``."""
    return E.cast(x, dtype) if isinstance(x, E.Expr) else E.const(float(x), dtype)


def _target(params):
    """(H, W) of an affine grid; MXNet requires both positive."""
    ts = tuple(params["target_shape"])
    if len(ts) != 2 or min(ts) <= 0:
        raise InferError("target_shape must be two positive sizes (H, W) for an affine transform, got %s" % (ts,))
    return ts


def _step(n):
    """MXNet's spacing of n normalised target coordinates, ``2.0 / (n - 1)`` (inf for n == 1,
    which makes that coordinate NaN there, as in MXNet)."""
    return 2.0 / (n - 1) if n > 1 else float("inf")


# ---- GridGenerator ----
def _grid_shape(params, ins, outs):
    x = ins[0]
    if params["transform_type"] == "affine":
        h, w = _target(params)
        if x is None:
            return [x], list(outs)
        if len(x) != 2 or x[1] not in (0, 6):
            raise InferError("GridGenerator (affine) needs data of shape (batch, 6), got %s" % (x,))
        return [x], [unify((x[0], 2, h, w), outs[0]), unify((3, h * w), outs[1])]
    x = unify(x, outs[0])
    if x is None:
        return [x], list(outs)
    if len(x) != 4 or x[1] not in (0, 2):
        raise InferError("GridGenerator (warp) needs a flow field of shape (batch, 2, height, width), got %s" % (x,))
    return [x], [x, unify((2, x[2], x[3]), outs[1])]


def _affine_basis(params, dtype):
    """The normalised target coordinates as functions of (h, w): x, y (MXNet's grid_dst rows)."""
    h, w = _target(params)
    sx, sy = E.const(_step(w), dtype), E.const(_step(h), dtype)
    return (lambda hh, ww: _f(ww, dtype) * sx - 1.0), (lambda hh, ww: _f(hh, dtype) * sy - 1.0)


def _grid_lower(params, ins, outs):
    data = ins[0]
    out, dst = outs
    dt = out.dtype
    if params["transform_type"] == "affine":
        bx, by = _affine_basis(params, dt)
        w = params["target_shape"][1]

        def affine(n, k, hh, ww):
            row = k * _i(3)
            return (data.load(n, row) * bx(hh, ww) + data.load(n, row + _i(1)) * by(hh, ww)
                    + data.load(n, row + _i(2)))

        def basis(r, p):
            hh, ww = p // _i(w), p % _i(w)
            return E.select(E.cmp("eq", r, _i(0)), bx(hh, ww),
                            E.select(E.cmp("eq", r, _i(1)), by(hh, ww), E.const(1.0, dt)))
        return [compute(out, affine), compute(dst, basis)]

    half_w, half_h = _warp_scales(data.shape, dt)

    def pixel(k, hh, ww):
        return E.select(E.cmp("eq", k, _i(0)), _f(ww, dt), _f(hh, dt))

    def warp(n, k, hh, ww):
        return (data.load(n, k, hh, ww) + pixel(k, hh, ww)) / E.select(E.cmp("eq", k, _i(0)), half_w, half_h) - 1.0
    return [compute(out, warp), compute(dst, pixel)]


def _warp_scales(shape, dtype):
    """MXNet's ``(size - 1) / 2`` per axis of a (batch, 2, H, W) flow: the pixels per unit."""
    return tuple((_f(shape[a], dtype) - 1.0) / 2.0 for a in (3, 2))


def _grid_grad(b, node, ogs):
    p = node.params
    return [b.op("_backward_GridGenerator", ogs[0], transform_type=p["transform_type"],
                 target_shape=p["target_shape"])]


def _np_grid(params, data):
    dt = data.dtype
    if params["transform_type"] == "affine":
        h, w = _target(params)
        with np.errstate(invalid="ignore"):
            xs = np.arange(w, dtype=dt) * dt.type(_step(w)) - dt.type(1)
            ys = np.arange(h, dtype=dt) * dt.type(_step(h)) - dt.type(1)
        dst = np.stack([np.tile(xs, h), np.repeat(ys, w), np.ones(h * w, dt)])
        theta = data.reshape(-1, 2, 3).astype(np.float64)
        return np.einsum("nkj,jp->nkp", theta, dst).reshape(-1, 2, h, w).astype(dt)
    _, _, h, w = data.shape
    pix = np.stack(np.meshgrid(np.arange(w), np.arange(h))).astype(np.float64)  # x, then y
    scale = np.array([(w - 1) / 2.0, (h - 1) / 2.0]).reshape(2, 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((data + pix) / scale - 1).astype(dt)


register(OpDef("GridGenerator", kind="injective", schema=GRID_SCHEMA, outputs=2, visible=1,
               output_names=lambda params: ["output", "grid_dst"], shape=_grid_shape, lower=_grid_lower,
               gradient=_grid_grad, reference=_np_grid,
               doc="Sampling grid in [-1, 1] from (N, 6) affine matrices or an (N, 2, H, W) flow field."))


def _bgrid_shape(params, ins, outs):
    og = ins[0]
    if not known(og):
        return list(ins), list(outs)
    if len(og) != 4 or og[1] != 2:
        raise InferError("_backward_GridGenerator needs a (batch, 2, H, W) gradient, got %s" % (og,))
    if params["transform_type"] == "affine":
        if tuple(og[2:]) != _target(params):
            raise InferError("gradient %s does not match target_shape %s" % (og, tuple(params["target_shape"])))
        return [og], [unify((og[0], 6), outs[0])]
    return [og], [unify(og, outs[0])]


def _bgrid_lower(params, ins, outs):
    """affine: d theta[n, 3k + j] = sum over target pixels of og[n, k] * (x, y, 1)[j];
    warp: og / ((size - 1) / 2) per channel."""
    og = ins[0]
    out = outs[0]
    dt = out.dtype
    if params["transform_type"] == "warp":
        half_w, half_h = _warp_scales(og.shape, dt)
        return [compute(out, lambda n, k, hh, ww: og.load(n, k, hh, ww)
                        / E.select(E.cmp("eq", k, _i(0)), half_w, half_h))]
    bx, by = _affine_basis(params, dt)
    rv = E.fresh_vars(2, "p")

    def body(n, q):
        k, j = q // _i(3), q % _i(3)
        term = E.select(E.cmp("eq", j, _i(0)), bx(*rv), E.select(E.cmp("eq", j, _i(1)), by(*rv), E.const(1.0, dt)))
        return E.Reduce("sum", rv, og.shape[2:], og.load(n, k, rv[0], rv[1]) * term)
    return [compute(out, body)]


register(OpDef("_backward_GridGenerator", kind="injective", inputs=("ograd",), schema=GRID_SCHEMA,
               shape=_bgrid_shape, lower=_bgrid_lower))


# ---- BilinearSampler ----
def _sampler_shape(params, ins, outs):
    data, grid = ins
    if not (known(data) and known(grid)):
        return list(ins), list(outs)
    if len(data) != 4:
        raise InferError("BilinearSampler needs 4-d data (batch, channel, height, width), got %s" % (data,))
    if len(grid) != 4 or grid[1] != 2:
        raise InferError("BilinearSampler needs a grid of shape (batch, 2, height, width), got %s" % (grid,))
    if grid[0] != data[0]:
        raise InferError("BilinearSampler: data batch %d and grid batch %d differ" % (data[0], grid[0]))
    n, _, h, w = grid
    return list(ins), [unify((n, data[1], h, w), outs[0]), unify((n, h, w, 2), outs[1])]


class _Corners:
    """The bilinear footprint of output pixel (n, h, w): MXNet's top-left corner, its weights
    and which of the 4 corners lie inside the image. Corner (dy, dx) is (y0 + dy, x0 + dx)."""

    def __init__(self, data_shape, grid, n, h, w, dtype):
        ih, iw = data_shape[2], data_shape[3]
        self.size = (ih, iw)
        x = (grid.load(n, 0, h, w) + 1.0) * E.const(float(iw - 1), dtype) / E.const(2.0, dtype)
        y = (grid.load(n, 1, h, w) + 1.0) * E.const(float(ih - 1), dtype) / E.const(2.0, dtype)
        fx, fy = E.call("floor", x), E.call("floor", y)
        self.wx, self.wy = 1.0 - (x - fx), 1.0 - (y - fy)  # weights of the left column, top row
        # clamped before the integer conversion (the clamp keeps every corner of a far sample
        # outside, and NaN becomes an outside index), so no value converts out of range
        self.x0, self.y0 = (E.cast(E.maximum(E.minimum(f, float(s + 1)), -2.0), I64)
                            for f, s in ((fx, iw), (fy, ih)))

    def _axis(self, base, d, size):
        i = base + (_i(d) if isinstance(d, int) else d)
        inside = E.call("and", E.cmp("ge", i, _i(0)), E.cmp("lt", i, _i(size)))
        return E.clamp_index(i, size), inside

    def at(self, dy, dx):
        """(clamped y, clamped x, inside) of corner (dy, dx); offsets are ints or int64 exprs."""
        cy, iny = self._axis(self.y0, dy, self.size[0])
        cx, inx = self._axis(self.x0, dx, self.size[1])
        return cy, cx, E.call("and", iny, inx)

    def values(self, data, n, c):
        """The 4 corner values (0 outside), top-left, top-right, bottom-left, bottom-right."""
        out = []
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            cy, cx, inside = self.at(dy, dx)
            out.append(E.select(inside, data.load(n, c, cy, cx), E.const(0.0, data.dtype)))
        return out


def _sampler_lower(params, ins, outs):
    data, grid = ins
    out, tmp = outs

    def body(n, c, h, w):
        cr = _Corners(data.shape, grid, n, h, w, out.dtype)
        tl, tr, bl, br = cr.values(data, n, c)
        wx, wy = cr.wx, cr.wy
        return tl * wy * wx + tr * wy * (1.0 - wx) + bl * (1.0 - wy) * wx + br * (1.0 - wy) * (1.0 - wx)
    return [compute(out, body), compute(tmp, lambda n, h, w, k: grid.load(n, k, h, w))]


def _sampler_grad(b, node, ogs):
    data, grid = node.inputs
    return [b.op("_backward_BilinearSampler_data", ogs[0], grid, data),
            b.op("_backward_BilinearSampler_grid", ogs[0], data, grid)]


def _np_corners(data, grid):
    """numpy twin of ``_Corners``: per (n, h, w) the top-left corner and its weights."""
    _, _, ih, iw = data.shape
    dt = data.dtype.type
    x = (grid[:, 0] + dt(1)) * dt(iw - 1) / dt(2)
    y = (grid[:, 1] + dt(1)) * dt(ih - 1) / dt(2)
    with np.errstate(invalid="ignore"):
        fx, fy = np.floor(x), np.floor(y)
        x0 = np.clip(np.nan_to_num(fx, nan=iw + 1), -2, iw + 1).astype(np.int64)
        y0 = np.clip(np.nan_to_num(fy, nan=ih + 1), -2, ih + 1).astype(np.int64)
        return x0, y0, dt(1) - (x - fx), dt(1) - (y - fy)


def _np_corner(data, x0, y0, dy, dx):
    """data[n, :, y0 + dy, x0 + dx] as (N, C, H, W), 0 outside the image."""
    _, _, ih, iw = data.shape
    yy, xx = y0 + dy, x0 + dx
    inside = (yy >= 0) & (yy < ih) & (xx >= 0) & (xx < iw)
    n = np.arange(data.shape[0]).reshape(-1, 1, 1)
    v = data[n, :, np.clip(yy, 0, ih - 1), np.clip(xx, 0, iw - 1)]  # (N, H, W, C)
    return np.where(inside[..., None], v, 0).transpose(0, 3, 1, 2)


def _np_sampler(params, data, grid):
    x0, y0, wx, wy = _np_corners(data, grid)
    wx, wy = wx[:, None].astype(np.float64), wy[:, None].astype(np.float64)
    v = [_np_corner(data, x0, y0, dy, dx) for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1))]
    out = v[0] * wy * wx + v[1] * wy * (1 - wx) + v[2] * (1 - wy) * wx + v[3] * (1 - wy) * (1 - wx)
    return out.astype(data.dtype)


register(OpDef("BilinearSampler", kind="opaque", inputs=("data", "grid"), schema=SAMPLER_SCHEMA, outputs=2,
               visible=1, output_names=lambda params: ["output", "tmp"], shape=_sampler_shape,
               lower=_sampler_lower, gradient=_sampler_grad, reference=_np_sampler,
               doc="Bilinear sampling of NCHW data at a (N, 2, H, W) grid in [-1, 1]; zero outside."))


def _bs_data_shape(params, ins, outs):
    og, grid, data = ins
    return list(ins), [unify(data, outs[0])]


def _bs_data_lower(params, ins, outs):
    """d data: each output gradient times its 4 bilinear weights, added at the corners inside
    the image (axis 4 enumerates the corners; corners outside add 0 at a clamped position)."""
    og, grid, _ = ins
    out = outs[0]
    dt = out.dtype

    def parts(n, h, w, c, k):
        cr = _Corners(out.shape, grid, n, h, w, dt)
        dy, dx = k // _i(2), k % _i(2)
        cy, cx, inside = cr.at(dy, dx)
        wy = E.select(E.cmp("eq", dy, _i(0)), cr.wy, 1.0 - cr.wy)
        wx = E.select(E.cmp("eq", dx, _i(0)), cr.wx, 1.0 - cr.wx)
        return (n, c, cy, cx), E.select(inside, og.load(n, c, h, w) * wy * wx, E.const(0.0, dt))
    axes = E.fresh_vars(5, "s")
    target, value = parts(*axes)  # one footprint shared by the target and the value
    nb, ch, oh, ow = og.shape
    return [ScatterAdd(out, axes, (nb, oh, ow, ch, 4), target, value)]


register(OpDef("_backward_BilinearSampler_data", kind="opaque", inputs=("ograd", "grid", "data"),
               shape=_bs_data_shape, lower=_bs_data_lower))


def _bs_grid_shape(params, ins, outs):
    og, data, grid = ins
    return list(ins), [unify(grid, outs[0])]


def _bs_grid_lower(params, ins, outs):
    """d grid[n, 0] = (W - 1) / 2 * sum over channels of og * d out / d x (and y for channel 1),
    with MXNet's zero-padded corner values."""
    og, data, grid = ins
    out = outs[0]
    dt = out.dtype
    ih, iw = data.shape[2], data.shape[3]
    rc = E.fresh_vars(1, "c")[0]

    def body(n, k, h, w):
        cr = _Corners(data.shape, grid, n, h, w, dt)
        tl, tr, bl, br = cr.values(data, n, rc)
        is_x = E.cmp("eq", k, _i(0))
        # -d out / d x = bl - br + (tl - tr - bl + br) * wy; -d out / d y = tr - br + (...) * wx
        slope = E.select(is_x, bl - br, tr - br) + (tl - tr - bl + br) * E.select(is_x, cr.wy, cr.wx)
        total = E.Reduce("sum", [rc], [og.shape[1]], og.load(n, rc, h, w) * slope)
        half = E.select(is_x, E.const(float(iw - 1), dt), E.const(float(ih - 1), dt))
        return -total * half / E.const(2.0, dt)
    return [compute(out, body)]


register(OpDef("_backward_BilinearSampler_grid", kind="opaque", inputs=("ograd", "data", "grid"),
               shape=_bs_grid_shape, lower=_bs_grid_lower))


# ---- SpatialTransformer ----
def _st_shape(params, ins, outs):
    data, loc = ins
    h, w = _target(params)
    if loc is not None and (len(loc) != 2 or loc[1] not in (0, 6)):
        raise InferError("SpatialTransformer needs loc of shape (batch, 6) for an affine transform, got %s" % (loc,))
    if not known(data):
        return list(ins), list(outs)
    if len(data) != 4:
        raise InferError("SpatialTransformer needs 4-d data (batch, channel, height, width), got %s" % (data,))
    loc = unify(loc, (data[0], 6))
    n = data[0]
    return [data, loc], [unify((n, data[1], h, w), outs[0]), unify((3, h * w), outs[1]),
                         unify((n, 2, h * w), outs[2])]


def _st_expand(b, inputs, params):
    data, loc = inputs
    grid, dst = b.outputs("GridGenerator", loc, transform_type="affine", target_shape=params["target_shape"])
    out = b.op("BilinearSampler", data, grid)
    return [out, dst, b.op("Reshape", grid, shape=(0, 2, -1))]


def _np_st(params, data, loc):
    grid = _np_grid({"transform_type": "affine", "target_shape": params["target_shape"]}, loc)
    return _np_sampler({}, data, grid)


register(OpDef("SpatialTransformer", kind="composite", inputs=("data", "loc"), schema=ST_SCHEMA, outputs=3,
               visible=1, output_names=lambda params: ["output", "grid_dst", "grid_src"], shape=_st_shape,
               expand=_st_expand, reference=_np_st,
               doc="GridGenerator(loc, affine) followed by BilinearSampler (MXNet's spatial transformer)."))
