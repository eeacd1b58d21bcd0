"""Channel-last layouts (NWC/NHWC/NDHWC) of Convolution, Deconvolution and Pooling: equal to
the channel-first operator on transposed data and weights (forward and every gradient),
finite differences, MXNet 1.9.1's shapes, and errors."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from tests.op_harness import check_forward, check_gradient

RS = np.random.RandomState(0)
LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


def _last(a):
    """Channel-first array -> channel-last (data, weights and outputs alike)."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _run(op, arrays, kw, last=False):
    """Forward and the gradient of every input, float64, for the head gradient cos(index) of
    the channel-first output (transposed for a channel-last one)."""
    names = ["x%d" % i for i in range(len(arrays))]
    sym = getattr(mx.sym, op)(*[mx.sym.Variable(n) for n in names], name="op", **kw)
    args = {n: mx.nd.array(a, dtype="float64") for n, a in zip(names, arrays)}
    grads = {n: mx.nd.zeros(a.shape, dtype="float64") for n, a in zip(names, arrays)}
    ex = sym.bind(mx.cpu(), args, args_grad=grads)
    out = ex.forward(is_train=True)[0]
    shape = (out.shape[0], out.shape[-1]) + out.shape[1:-1] if last else out.shape
    head = np.cos(np.arange(out.size)).reshape(shape)
    ex.backward(mx.nd.array(_last(head) if last else head, dtype="float64"))
    return out.asnumpy(), [grads[n].asnumpy() for n in names]


def _check_channel_last(op, arrays, kw):
    """``op`` with layout channel-last on transposed inputs == channel-first, transposed."""
    nsp = arrays[0].ndim - 2
    out_cf, grads_cf = _run(op, arrays, kw)
    lasts = [_last(a) if a.ndim > 1 else a for a in arrays]
    out, grads = _run(op, lasts, dict(kw, layout=LAST[nsp]), last=True)
    np.testing.assert_allclose(out, _last(out_cf), rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, grads_cf):
        np.testing.assert_allclose(got, _last(want) if want.ndim > 1 else want, rtol=1e-11, atol=1e-11)


CONV_CASES = [
    ("conv1d_stride_pad", (2, 3, 9), dict(kernel=(3,), stride=(2,), pad=(1,), num_filter=4)),
    ("conv2d_basic", (2, 3, 5, 6), dict(kernel=(3, 3), num_filter=4)),
    ("conv2d_group_dilate", (1, 4, 7, 7), dict(kernel=(2, 3), dilate=(2, 1), pad=(1, 1), num_group=2,
                                               num_filter=6)),
    ("conv2d_depthwise_stride_nobias", (2, 4, 6, 5), dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), num_group=4,
                                                          num_filter=4, no_bias=True)),
    ("conv2d_pointwise", (2, 5, 4, 3), dict(kernel=(1, 1), num_filter=3)),
    ("conv3d", (1, 2, 4, 5, 3), dict(kernel=(2, 3, 2), stride=(1, 2, 1), pad=(1, 0, 1), num_filter=3)),
]


def _conv_arrays(op, shape, kw):
    """Channel-first data, weight and (unless no_bias) bias of Convolution or Deconvolution."""
    c, f, g = shape[1], kw["num_filter"], kw.get("num_group", 1)
    wshape = (f, c // g) if op == "Convolution" else (c, f // g)
    arrays = [RS.uniform(-1, 1, shape), RS.uniform(-1, 1, wshape + tuple(kw["kernel"]))]
    if not kw.get("no_bias", op == "Deconvolution"):  # Deconvolution's no_bias defaults to True
        arrays.append(RS.uniform(-1, 1, (f,)))
    return arrays


@pytest.mark.parametrize("name,shape,kw", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_convolution_channel_last_equals_channel_first(name, shape, kw):
    _check_channel_last("Convolution", _conv_arrays("Convolution", shape, kw), kw)


DECONV_CASES = [
    ("deconv1d", (2, 3, 5), dict(kernel=(4,), stride=(2,), pad=(1,), num_filter=2)),
    ("deconv2d_adj_bias", (2, 4, 3, 4), dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), adj=(1, 1), num_filter=3,
                                             no_bias=False)),
    ("deconv2d_target_shape", (1, 2, 3, 3), dict(kernel=(3, 3), stride=(2, 2), target_shape=(6, 7),
                                                 num_filter=2)),
    ("deconv2d_group_dilate", (1, 4, 3, 3), dict(kernel=(2, 2), stride=(1, 2), dilate=(2, 1), num_group=2,
                                                 num_filter=4)),
    ("deconv3d", (1, 2, 2, 3, 2), dict(kernel=(2, 2, 2), stride=(2, 1, 2), num_filter=2, no_bias=False)),
]


@pytest.mark.parametrize("name,shape,kw", DECONV_CASES, ids=[c[0] for c in DECONV_CASES])
def test_deconvolution_channel_last_equals_channel_first(name, shape, kw):
    _check_channel_last("Deconvolution", _conv_arrays("Deconvolution", shape, kw), kw)


POOL_CASES = [
    ("max1d", (2, 3, 7), dict(kernel=(3,), stride=(2,), pool_type="max")),
    ("avg1d_global", (2, 3, 5), dict(kernel=(1,), global_pool=True, pool_type="avg")),
    ("max2d_pad", (2, 3, 5, 6), dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")),
    ("avg2d_full_exclude", (1, 2, 6, 7), dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg",
                                               pooling_convention="full", count_include_pad=False)),
    ("avg2d_include_pad", (1, 2, 5, 5), dict(kernel=(3, 2), stride=(1, 2), pad=(1, 1), pool_type="avg")),
    ("sum2d", (2, 2, 4, 5), dict(kernel=(2, 2), stride=(1, 1), pool_type="sum")),
    ("max2d_full", (1, 3, 6, 7), dict(kernel=(3, 3), stride=(2, 2), pool_type="max", pooling_convention="full")),
    ("max2d_global", (2, 3, 4, 5), dict(kernel=(1, 1), global_pool=True, pool_type="max")),
    ("avg3d", (1, 2, 4, 5, 3), dict(kernel=(2, 2, 2), stride=(2, 2, 1), pool_type="avg")),
    ("max3d_global", (1, 2, 3, 4, 2), dict(kernel=(1, 1, 1), global_pool=True, pool_type="max")),
]


@pytest.mark.parametrize("name,shape,kw", POOL_CASES, ids=[c[0] for c in POOL_CASES])
def test_pooling_channel_last_equals_channel_first(name, shape, kw):
    _check_channel_last("Pooling", [RS.uniform(-1, 1, shape)], kw)


def test_channel_last_finite_differences_and_reference():
    conv = dict(kernel=(2, 2), stride=(2, 1), pad=(1, 0), num_group=2, num_filter=4, layout="NHWC")
    ins = [RS.uniform(-1, 1, s) for s in [(1, 3, 4, 4), (4, 2, 2, 2), (4,)]]
    check_forward("Convolution", [a.astype(np.float32) for a in ins], conv)
    check_gradient("Convolution", ins, conv)
    deconv = dict(kernel=(3,), stride=(2,), pad=(1,), adj=(1,), num_filter=2, layout="NWC")
    ins = [RS.uniform(-1, 1, (2, 3, 3)), RS.uniform(-1, 1, (3, 3, 2))]
    check_forward("Deconvolution", ins, deconv)
    check_gradient("Deconvolution", ins, deconv)
    pool = dict(kernel=(2, 2), stride=(1, 1), pad=(1, 1), pool_type="avg", count_include_pad=False, layout="NHWC")
    x = RS.uniform(-1, 1, (1, 3, 4, 2))
    check_forward("Pooling", [x], pool)
    check_gradient("Pooling", [x], pool)


def test_channel_last_imperative_autograd():
    """nd calls recorded by autograd differentiate the channel-last operators too."""
    x = mx.nd.array(RS.uniform(-1, 1, (2, 5, 4, 3)))
    w = mx.nd.array(RS.uniform(-1, 1, (2, 3, 3, 3)))
    for v in (x, w):
        v.attach_grad()
    with mx.autograd.record():
        y = mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=2, no_bias=True, layout="NHWC")
        z = mx.nd.Pooling(y, kernel=(2, 2), stride=(2, 2), layout="NHWC")
    z.backward(mx.nd.ones(z.shape))
    assert y.shape == (2, 5, 4, 2) and z.shape == (2, 2, 2, 2)
    data, weight = mx.sym.Variable("x"), mx.sym.Variable("w")
    sym = mx.sym.Pooling(mx.sym.Convolution(data, weight, kernel=(3, 3), pad=(1, 1), num_filter=2, no_bias=True,
                                            layout="NHWC"), kernel=(2, 2), stride=(2, 2), layout="NHWC")
    grads = {"x": mx.nd.zeros(x.shape), "w": mx.nd.zeros(w.shape)}
    ex = sym.bind(mx.cpu(), {"x": x, "w": w}, args_grad=grads)
    np.testing.assert_allclose(ex.forward(is_train=True)[0].asnumpy(), z.asnumpy(), rtol=1e-6, atol=1e-6)
    ex.backward(mx.nd.ones(z.shape))
    np.testing.assert_allclose(x.grad.asnumpy(), grads["x"].asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.grad.asnumpy(), grads["w"].asnumpy(), rtol=1e-5, atol=1e-6)


# Shapes MXNet 1.9.1 infers (its CPU operators refuse to compute channel-last convolutions,
# but its shape inference and channel-last Pooling run).
MXNET_SHAPES = [
    ("Convolution", dict(kernel=(3, 3), num_filter=4, num_group=2, layout="NHWC"), (2, 7, 6, 6),
     [(4, 3, 3, 3), (4,)], (2, 5, 4, 4)),
    ("Convolution", dict(kernel=(3, 2, 2), num_filter=4, layout="NDHWC"), (2, 7, 6, 5, 3),
     [(4, 3, 2, 2, 3), (4,)], (2, 5, 5, 4, 4)),
    ("Deconvolution", dict(kernel=(3, 3), num_filter=4, num_group=2, stride=(2, 2), adj=(1, 1), layout="NHWC"),
     (2, 7, 6, 6), [(6, 3, 3, 2)], (2, 16, 14, 4)),
    ("Pooling", dict(kernel=(3, 3), stride=(2, 2), layout="NHWC", pooling_convention="full"), (2, 7, 6, 5), [],
     (2, 3, 3, 5)),
    ("Pooling", dict(kernel=(1, 1), global_pool=True, layout="NHWC"), (2, 7, 6, 5), [], (2, 1, 1, 5)),
    ("Pooling", dict(kernel=(2,), layout="NWC"), (2, 7, 6), [], (2, 6, 6)),
    ("Pooling", dict(kernel=(2, 2, 2), layout="NDHWC"), (2, 7, 6, 5, 3), [], (2, 6, 5, 4, 3)),
]


@pytest.mark.parametrize("op,kw,data,params,out", MXNET_SHAPES)
def test_channel_last_shapes_match_mxnet(op, kw, data, params, out):
    sym = getattr(mx.sym, op)(mx.sym.Variable("data"), name="x", **kw)
    args, outs, _ = sym.infer_shape(data=data)
    assert args == [data] + params and outs == [out]


def test_channel_last_errors_name_operator_node_and_shapes():
    x, w = mx.sym.Variable("x"), mx.sym.Variable("w")
    conv = mx.sym.Convolution(x, w, kernel=(3, 3), num_filter=4, no_bias=True, layout="NHWC", name="c")
    with pytest.raises(MXNetError, match=r"Convolution.*'c'.*weight \(4, 5, 3, 3\) must have shape \(4, 3, 3, 5\)"):
        conv.infer_shape(x=(1, 6, 6, 5), w=(4, 5, 3, 3))  # a channel-first weight
    with pytest.raises(MXNetError, match=r"Convolution.*'c'.*layout NWC does not fit 4-d data"):
        mx.sym.Convolution(x, kernel=(3, 3), num_filter=4, layout="NWC", name="c").infer_shape(x=(1, 6, 6, 5))
    with pytest.raises(MXNetError, match=r"Pooling.*'p'.*layout NWC.*4-d"):
        mx.sym.Pooling(x, kernel=(2, 2), layout="NWC", name="p").infer_shape(x=(1, 4, 4, 2))
    with pytest.raises(MXNetError, match=r"Deconvolution.*'d'.*num_group"):
        mx.sym.Deconvolution(x, kernel=(2, 2), num_filter=4, num_group=3, layout="NHWC", name="d") \
            .infer_shape(x=(1, 4, 4, 6))
    with pytest.raises(MXNetError, match="layout"):
        mx.sym.Convolution(x, kernel=(3, 3), num_filter=4, layout="NCWH", name="c")
    with pytest.raises(MXNetError, match="layout"):  # the direct reference kernel is channel-first only
        mx.sym._convolution_direct(x, kernel=(3, 3), num_filter=4, layout="NHWC", name="c")
