"""GridGenerator, BilinearSampler and SpatialTransformer (compiler/ops/sampling.py): a loop-by-loop
numpy transcription of MXNet's CPU kernels, finite-difference gradients, values recorded from
MXNet 1.9.1, and shape errors; through bind and through mx.nd."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from kiln.test_utils import check_numeric_gradient
from tests.compiler.helpers import backward
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip


# ---- independent reference: MXNet's CPU loops (bilinear_sampler.cc), one output pixel at a time ----
def loop_sampler(data, grid, og=None):
    """(output, d data, d grid) as MXNet computes them, in float64."""
    n_, c_, ih, iw = data.shape
    _, _, oh, ow = grid.shape
    out = np.zeros((n_, c_, oh, ow))
    gdata, ggrid = np.zeros(data.shape), np.zeros(grid.shape)
    og = np.ones(out.shape) if og is None else og

    def at(n, c, y, x):
        return data[n, c, y, x] if 0 <= y < ih and 0 <= x < iw else 0.0

    def add(n, c, y, x, v):
        if 0 <= y < ih and 0 <= x < iw:
            gdata[n, c, y, x] += v
    for n in range(n_):
        for h in range(oh):
            for w in range(ow):
                xr = (grid[n, 0, h, w] + 1) * (iw - 1) / 2
                yr = (grid[n, 1, h, w] + 1) * (ih - 1) / 2
                x0, y0 = int(np.floor(xr)), int(np.floor(yr))
                wx, wy = 1 - (xr - x0), 1 - (yr - y0)
                for c in range(c_):
                    tl, tr = at(n, c, y0, x0), at(n, c, y0, x0 + 1)
                    bl, br = at(n, c, y0 + 1, x0), at(n, c, y0 + 1, x0 + 1)
                    out[n, c, h, w] = tl * wy * wx + tr * wy * (1 - wx) + bl * (1 - wy) * wx + br * (1 - wy) * (1 - wx)
                    g = og[n, c, h, w]
                    add(n, c, y0, x0, g * wy * wx)
                    add(n, c, y0, x0 + 1, g * wy * (1 - wx))
                    add(n, c, y0 + 1, x0, g * (1 - wy) * wx)
                    add(n, c, y0 + 1, x0 + 1, g * (1 - wy) * (1 - wx))
                    ggrid[n, 0, h, w] -= g * (bl - br + (tl - tr - bl + br) * wy) * (iw - 1) / 2
                    ggrid[n, 1, h, w] -= g * (tr - br + (tl - tr - bl + br) * wx) * (ih - 1) / 2
    return out, gdata, ggrid


def affine_grid(theta, h, w):
    """Target pixels on np.linspace(-1, 1) in x then y, mapped by each (2, 3) matrix."""
    ys, xs = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])
    return np.einsum("nkj,jp->nkp", theta.reshape(-1, 2, 3).astype(np.float64), pts).reshape(-1, 2, h, w)


def smooth_grid(shape, ih, iw, lo, hi, seed):
    """A grid whose source positions lie in pixels lo..hi-1 (which may be outside the image) with
    fractions in [0.15, 0.85]: away from the kinks of bilinear interpolation at whole pixels."""
    rng = np.random.RandomState(seed)
    n, _, oh, ow = shape
    pix = rng.randint(lo, hi, (n, 2, oh, ow)) + rng.uniform(0.15, 0.85, (n, 2, oh, ow))
    size = np.array([iw, ih]).reshape(1, 2, 1, 1)
    return pix * 2.0 / (size - 1) - 1


def run_sym(sym, inputs, og):
    outs, grads = backward(sym, inputs, head_grads=[og])
    return outs[0], grads


def sampler_sym():
    return mx.sym.BilinearSampler(mx.sym.var("data"), mx.sym.var("grid"), name="bs")


# ---- BilinearSampler ----
@pytest.mark.parametrize("dshape,gshape,spread", [((2, 3, 5, 6), (2, 2, 4, 7), 1.0), ((1, 2, 4, 4), (1, 2, 6, 5), 1.6),
                                                  ((2, 1, 1, 5), (2, 2, 2, 3), 2.5), ((1, 1, 3, 1), (1, 2, 3, 2), 1.3)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sampler_matches_mxnet_loops(dshape, gshape, spread, dtype):
    rng = np.random.RandomState(sum(dshape))
    x = rng.uniform(-1, 1, dshape).astype(dtype)
    grid = rng.uniform(-spread, spread, gshape).astype(dtype)  # spread > 1: partly outside
    og = rng.uniform(-1, 1, dshape[:2] + gshape[2:]).astype(dtype)
    want, want_dx, want_dg = loop_sampler(x.astype(np.float64), grid.astype(np.float64), og)
    tol = 1e-5 if dtype == "float32" else 1e-12
    out, grads = run_sym(sampler_sym(), {"data": x, "grid": grid}, og)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(grads["data"], want_dx, rtol=tol, atol=tol)
    np.testing.assert_allclose(grads["grid"], want_dg, rtol=10 * tol, atol=10 * tol)
    nd = mx.nd.BilinearSampler(mx.nd.array(x, dtype=dtype), mx.nd.array(grid, dtype=dtype))
    np.testing.assert_allclose(nd.asnumpy(), want, rtol=tol, atol=tol)
    check_forward("BilinearSampler", [x, grid])  # the registry's numpy reference agrees too


def test_imperative_gradients_through_autograd():
    rng = np.random.RandomState(11)
    x, grid = rng.uniform(-1, 1, (2, 2, 4, 5)), rng.uniform(-1.3, 1.3, (2, 2, 3, 3))
    og = rng.uniform(-1, 1, (2, 2, 3, 3))
    _, want_dx, want_dg = loop_sampler(x, grid, og)
    xd, gd = mx.nd.array(x, dtype="float64"), mx.nd.array(grid, dtype="float64")
    xd.attach_grad()
    gd.attach_grad()
    with mx.autograd.record():
        out = mx.nd.BilinearSampler(xd, gd)
    out.backward(mx.nd.array(og, dtype="float64"))
    np.testing.assert_allclose(xd.grad.asnumpy(), want_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gd.grad.asnumpy(), want_dg, rtol=1e-11, atol=1e-11)


def test_identity_affine_reproduces_the_input():
    x = np.random.RandomState(1).uniform(-1, 1, (2, 3, 5, 7)).astype("float32")
    theta = mx.nd.array(np.tile([[1, 0, 0, 0, 1, 0]], (2, 1)))
    grid = mx.nd.GridGenerator(theta, transform_type="affine", target_shape=(5, 7))
    np.testing.assert_allclose(mx.nd.BilinearSampler(mx.nd.array(x), grid).asnumpy(), x, rtol=1e-5, atol=1e-6)
    st = mx.nd.SpatialTransformer(mx.nd.array(x), theta, target_shape=(5, 7), transform_type="affine",
                                  sampler_type="bilinear")
    np.testing.assert_allclose(st.asnumpy(), x, rtol=1e-5, atol=1e-6)


def test_border_fades_to_zero_over_one_pixel():
    """grid +-1 is the centre of the edge pixels; half a pixel beyond keeps half the edge value;
    a whole pixel beyond and anything further is 0 (an infinite position gives NaN weights, as in
    MXNet)."""
    x = np.arange(1, 13, dtype="float64").reshape(1, 1, 3, 4)  # x pixel step = 2/3, y step = 1
    xs = np.array([-1.0, 1.0, 1 + 1 / 3, -1 - 1 / 3, 1 + 2 / 3, -5.0, 1e30, -1e30])
    grid = np.stack([xs, np.zeros_like(xs)]).reshape(1, 2, 1, -1)
    out = mx.nd.BilinearSampler(mx.nd.array(x, dtype="float64"), mx.nd.array(grid, dtype="float64")).asnumpy()
    np.testing.assert_allclose(out.ravel(), [5, 8, 4, 2.5, 0, 0, 0, 0], atol=1e-12)


def test_nan_grid_gives_nan_like_mxnet():
    x = mx.nd.ones((1, 1, 2, 2))
    out = mx.nd.BilinearSampler(x, mx.nd.array([[[[np.nan, 0.0]], [[0.0, 0.0]]]])).asnumpy()
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 0, 1] == 1.0


def test_data_gradient_accumulates_samples_sharing_a_pixel():
    """Every one of 4096 samples lands between the same 4 pixels: each of them must receive the
    sum of all contributions (a racing scatter would lose some)."""
    x = np.zeros((1, 2, 3, 3))
    grid = np.full((1, 2, 64, 64), 0.25)  # pixel (1.25, 1.25) in a 3x3 image
    og = np.random.RandomState(0).uniform(0, 1, (1, 2, 64, 64))
    _, grads = run_sym(sampler_sym(), {"data": x, "grid": grid}, og)
    total = og.sum(axis=(2, 3))
    want = np.zeros((1, 2, 3, 3))
    for (y, xx), wgt in {(1, 1): 0.5625, (1, 2): 0.1875, (2, 1): 0.1875, (2, 2): 0.0625}.items():
        want[0, :, y, xx] = total[0] * wgt
    np.testing.assert_allclose(grads["data"], want, rtol=1e-12)


def test_sampler_gradients_match_finite_differences():
    rng = np.random.RandomState(3)
    x = rng.uniform(-1, 1, (2, 2, 4, 5))
    grid = smooth_grid((2, 2, 3, 4), 4, 5, -1, 5, seed=4)  # includes corners outside the image
    check_gradient("BilinearSampler", [x, grid], eps=1e-6, rtol=1e-5, atol=1e-7)


def test_gradients_through_a_composed_graph():
    """A localisation layer feeding GridGenerator and a producer feeding the sampler, as in a
    spatial transformer network (fusion around the opaque sampler)."""
    d, w, v = mx.sym.var("data"), mx.sym.var("w"), mx.sym.var("v")
    theta = mx.sym.FullyConnected(mx.sym.Flatten(v), w, num_hidden=6, no_bias=True)
    grid = mx.sym.GridGenerator(theta, transform_type="affine", target_shape=(3, 4))
    out = mx.sym.BilinearSampler(mx.sym.tanh(d), grid) * 2
    rng = np.random.RandomState(0)
    loc = {"data": rng.uniform(-1, 1, (2, 2, 5, 6)), "w": rng.uniform(-0.3, 0.3, (6, 3)),
           "v": rng.uniform(-1, 1, (2, 3))}
    check_numeric_gradient(out, loc, numeric_eps=1e-6, rtol=1e-5, atol=1e-7, dtype=np.float64)


def test_sampler_golden_values_from_mxnet():
    # inputs and results recorded from MXNet 1.9.1 (mx.sym.BilinearSampler, CPU, float32)
    x = (np.arange(12).reshape(1, 1, 3, 4) * 0.5 - 1).astype("float32")
    grid = np.array([[[[-1.0, -0.3, 0.45, 1.2], [1.0, 0.1, -1.4, 0.7]],
                      [[-1.0, 0.35, 1.0, -0.2], [0.6, 1.3, -0.8, 0.05]]]], "float32")
    og = (np.arange(8).reshape(1, 1, 2, 4) * 0.25 + 0.5).astype("float32")
    out, grads = run_sym(sampler_sym(), {"data": x, "grid": grid}, og)
    np.testing.assert_allclose(out, [[[[-1.0, 2.2250001, 4.0875, 1.4699997],
                                       [3.7, 2.6775002, -0.24, 2.375]]]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads["data"], [[[[1.1400001, 0.0, 0.0, 0.1749999],
                                                 [0.16, 0.463125, 0.9862496, 2.475625],
                                                 [0.0, 0.678125, 1.685, 1.1368753]]]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads["grid"], [[[[0.375, 0.5625, 0.75, -3.9375],
                                                 [-8.325001, 0.9187501, -1.8000001, 1.6875]],
                                                [[1.0, 1.5, -4.0875, 1.7499995],
                                                 [3.0, -6.69375, 1.6000001, 4.5]]]], rtol=1e-6, atol=1e-6)


# ---- GridGenerator ----
def test_affine_grid_matches_numpy_and_mxnet():
    theta = np.random.RandomState(2).uniform(-1, 1, (3, 6)).astype("float32")
    want = affine_grid(theta, 4, 5)
    kw = {"transform_type": "affine", "target_shape": (4, 5)}
    check_forward("GridGenerator", [theta], kw, expected=want.astype("float32"))
    got = mx.nd.GridGenerator(mx.nd.array(theta), **kw).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # recorded from MXNet 1.9.1: output and data gradient for this matrix and head gradient
    theta = np.array([[0.9, -0.2, 0.1, 0.3, 1.1, -0.05]], "float32")
    og = (np.arange(12).reshape(1, 2, 2, 3) * 0.1 - 0.4).astype("float32")
    sym = mx.sym.GridGenerator(mx.sym.var("data"), transform_type="affine", target_shape=(2, 3))
    out, grads = run_sym(sym, {"data": theta}, og)
    np.testing.assert_allclose(out, [[[[-0.6, 0.3, 1.2], [-1.0, -0.1, 0.8]],
                                      [[-1.45, -1.15, -0.85], [0.75, 1.0500001, 1.3500001]]]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads["data"], [[0.4, 0.9, -0.9, 0.4, 0.9, 2.7]], rtol=1e-6, atol=1e-6)


def test_warp_grid_matches_numpy_and_mxnet():
    flow = np.random.RandomState(5).uniform(-2, 2, (2, 2, 3, 5)).astype("float32")
    ys, xs = np.mgrid[0:3, 0:5]
    want = np.stack([(flow[:, 0] + xs) / 2.0 - 1, (flow[:, 1] + ys) / 1.0 - 1], axis=1)
    check_forward("GridGenerator", [flow], {"transform_type": "warp"}, expected=want.astype("float32"))
    np.testing.assert_allclose(mx.nd.GridGenerator(mx.nd.array(flow), transform_type="warp").asnumpy(), want,
                               rtol=1e-5, atol=1e-6)
    # recorded from MXNet 1.9.1
    flow = (np.arange(12).reshape(1, 2, 2, 3) * 0.3 - 1.0).astype("float32")
    og = (np.arange(12).reshape(1, 2, 2, 3) * 0.1 - 0.4).astype("float32")
    out, grads = run_sym(mx.sym.GridGenerator(mx.sym.var("data"), transform_type="warp"), {"data": flow}, og)
    np.testing.assert_allclose(out, [[[[-2.0, -0.7, 0.6], [-1.1, 0.2, 1.5]],
                                      [[0.6, 1.2, 1.8], [4.4, 5.0, 5.6]]]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads["data"], [[[[-0.4, -0.3, -0.2], [-0.1, 0.0, 0.1]],
                                                [[0.4, 0.6, 0.8], [1.0, 1.2, 1.4]]]], rtol=1e-6, atol=1e-6)


def test_single_pixel_target_is_nan_like_mxnet():
    """MXNet spaces n target coordinates by 2 / (n - 1): infinite for n == 1, so 0 * inf = NaN."""
    out = mx.nd.GridGenerator(mx.nd.array([[1, 0, 0, 0, 1, 0]]), transform_type="affine", target_shape=(1, 3))
    assert np.isnan(out.asnumpy()).all()


@pytest.mark.parametrize("kw,shape", [({"transform_type": "affine", "target_shape": (3, 4)}, (2, 6)),
                                      ({"transform_type": "warp"}, (2, 2, 3, 4))])
def test_grid_gradients_match_finite_differences(kw, shape):
    x = np.random.RandomState(6).uniform(-1, 1, shape)
    check_gradient("GridGenerator", [x], kw, eps=1e-6, rtol=1e-6, atol=1e-8)
    check_json_roundtrip("GridGenerator", [x.astype("float32")], kw)


# ---- SpatialTransformer ----
def test_spatial_transformer_is_generator_then_sampler():
    rng = np.random.RandomState(7)
    x = rng.uniform(-1, 1, (2, 3, 6, 5)).astype("float32")
    loc = np.array([[1.07, 0.13, 0.21, -0.11, 0.93, 0.27], [0.8, -0.31, -0.1, 0.23, 1.17, 0.05]], "float32")
    kw = {"target_shape": (4, 5), "transform_type": "affine", "sampler_type": "bilinear"}
    want = loop_sampler(x.astype(np.float64), affine_grid(loc, 4, 5))[0]
    check_forward("SpatialTransformer", [x, loc], kw, expected=want.astype("float32"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mx.nd.SpatialTransformer(mx.nd.array(x), mx.nd.array(loc), **kw).asnumpy(), want,
                               rtol=1e-5, atol=1e-6)


def test_spatial_transformer_gradients():
    # loc chosen so that no sample sits on a whole pixel (where bilinear has kinks)
    x = np.random.RandomState(8).uniform(-1, 1, (1, 2, 5, 6))
    loc = np.array([[0.83, 0.11, 0.07, -0.09, 0.77, 0.13]])
    kw = {"target_shape": (3, 4), "transform_type": "affine", "sampler_type": "bilinear"}
    check_gradient("SpatialTransformer", [x, loc], kw, eps=1e-6, rtol=1e-5, atol=1e-7)


def test_spatial_transformer_golden_values_from_mxnet():
    # recorded from MXNet 1.9.1 (mx.sym.SpatialTransformer, CPU, float32)
    x = np.sin(np.arange(24)).reshape(1, 2, 3, 4).astype("float32")
    loc = np.array([[0.8, 0.15, 0.1, -0.1, 0.7, 0.12]], "float32")
    og = np.cos(np.arange(12)).reshape(1, 2, 2, 3).astype("float32")
    sym = mx.sym.SpatialTransformer(mx.sym.var("data"), mx.sym.var("loc"), target_shape=(2, 3),
                                    transform_type="affine", sampler_type="bilinear")
    out, grads = run_sym(sym, {"data": x, "loc": loc}, og)
    np.testing.assert_allclose(out, [[[[-0.3263067, 0.2233165, 0.3897143], [0.480285, -0.4136767, -0.4958339]],
                                      [[-0.3827356, 0.0180817, 0.4688342], [0.733133, -0.0605056, -0.5247645]]]],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["data"], [[[[0.372, 0.2881908, 0.0270671, -0.1768624],
                                                 [0.3772603, 0.1793165, -0.0564426, -0.0097609],
                                                 [-0.2960077, -0.6817839, -0.4689893, 0.188919]],
                                                [[0.3571833, 0.3551248, 0.1487344, -0.0618375],
                                                 [0.3632593, 0.2263272, -0.0150423, -0.0279538],
                                                 [-0.2724279, -0.6518168, -0.6020337, 0.0029475]]]],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["loc"], [[-1.2289513, 1.2186818, 4.1568737, 3.797488, -1.1700244, -6.974812]],
                               rtol=1e-5, atol=1e-5)


def test_graph_structure_matches_mxnet():
    """Hidden outputs as in MXNet 1.9.1: its JSON gives node_row_ptr [0, 1, 2, 4] for
    BilinearSampler (output, tmp) and [0, 1, 2, 5] for SpatialTransformer."""
    bs = sampler_sym()
    assert bs.list_outputs() == ["bs_output"]
    assert '"node_row_ptr": [0, 1, 2, 4]' in bs.tojson()
    st = mx.sym.SpatialTransformer(mx.sym.var("data"), mx.sym.var("loc"), target_shape=(3, 4),
                                   transform_type="affine", sampler_type="bilinear", name="st")
    assert '"node_row_ptr": [0, 1, 2, 5]' in st.tojson()
    assert st.infer_shape(data=(2, 3, 5, 6), loc=(2, 6))[1] == [(2, 3, 3, 4)]
    check_json_roundtrip("BilinearSampler", [np.ones((1, 1, 2, 2), "float32"), np.zeros((1, 2, 1, 1), "float32")],
                         {"cudnn_off": True})


# ---- shape errors ----
@pytest.mark.parametrize("make,shapes,message", [
    (lambda d, g: mx.sym.BilinearSampler(d, g), {"d": (1, 1, 4, 4), "g": (1, 3, 2, 2)}, "grid of shape (batch, 2"),
    (lambda d, g: mx.sym.BilinearSampler(d, g), {"d": (2, 1, 4, 4), "g": (3, 2, 2, 2)}, "batch 2 and grid batch 3"),
    (lambda d, g: mx.sym.BilinearSampler(d, g), {"d": (1, 4, 4), "g": (1, 2, 2, 2)}, "4-d data"),
    (lambda d, g: mx.sym.GridGenerator(d, transform_type="affine"), {"d": (1, 6)}, "target_shape must be two positive"),
    (lambda d, g: mx.sym.GridGenerator(d, transform_type="affine", target_shape=(2, 2)), {"d": (1, 5)},
     "shape (batch, 6)"),
    (lambda d, g: mx.sym.GridGenerator(d, transform_type="warp"), {"d": (1, 3, 2, 2)}, "flow field"),
    (lambda d, g: mx.sym.SpatialTransformer(d, g, target_shape=(2, 2), transform_type="affine",
                                            sampler_type="bilinear"), {"d": (1, 1, 3, 3), "g": (1, 4)}, "loc of shape"),
])
def test_shape_errors_name_operator_and_shapes(make, shapes, message):
    sym = make(mx.sym.var("d"), mx.sym.var("g"))
    with pytest.raises(MXNetError) as err:
        sym.infer_shape(**shapes)
    assert message in str(err.value)


def test_unknown_transform_is_refused():
    with pytest.raises(MXNetError):
        mx.sym.GridGenerator(mx.sym.var("d"), transform_type="perspective")
