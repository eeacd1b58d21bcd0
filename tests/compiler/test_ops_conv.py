"""Convolution, Pooling and BatchNorm (inference) against numpy, finite differences, JSON."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

RS = np.random.RandomState(0)

CONV_CASES = [
    ("basic", (2, 2, 5, 5), dict(kernel=(3, 3), num_filter=3)),
    ("pad_stride", (1, 2, 6, 5), dict(kernel=(3, 3), pad=(1, 1), stride=(2, 2), num_filter=2)),
    ("dilate_group", (1, 4, 6, 6), dict(kernel=(2, 2), dilate=(2, 2), num_group=2, num_filter=4)),
    ("rect_nobias", (2, 2, 4, 5), dict(kernel=(1, 3), pad=(0, 1), num_filter=2, no_bias=True)),
    ("conv1d", (2, 3, 7), dict(kernel=(3,), stride=(2,), pad=(1,), num_filter=2)),
    ("conv3d", (1, 2, 4, 4, 3), dict(kernel=(2, 2, 2), num_filter=2)),
]


def _conv_inputs(shape, kw, dtype=np.float32):
    nsp = len(kw["kernel"])
    f, g = kw["num_filter"], kw.get("num_group", 1)
    x = RS.uniform(-1, 1, shape).astype(dtype)
    w = RS.uniform(-1, 1, (f, shape[1] // g) + tuple(kw["kernel"])).astype(dtype)
    ins = [x, w]
    if not kw.get("no_bias"):
        ins.append(RS.uniform(-1, 1, (f,)).astype(dtype))
    assert len(shape) == nsp + 2
    return ins


@pytest.mark.parametrize("name,shape,kw", CONV_CASES, ids=[c[0] for c in CONV_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_convolution_forward(name, shape, kw, dtype):
    check_forward("Convolution", _conv_inputs(shape, kw, dtype), kw)


@pytest.mark.parametrize("name,shape,kw", CONV_CASES[:4] + CONV_CASES[4:5], ids=[c[0] for c in CONV_CASES[:5]])
def test_convolution_gradient(name, shape, kw):
    check_gradient("Convolution", _conv_inputs(shape, kw), kw)


def test_convolution_json_and_errors():
    kw = dict(kernel=(3, 3), pad=(1, 1), num_filter=2)
    check_json_roundtrip("Convolution", _conv_inputs((1, 2, 4, 4), kw), kw)
    x = mx.sym.Variable("x")
    with pytest.raises(MXNetError, match="Convolution.*'c'"):
        mx.sym.Convolution(x, kernel=(5, 5), num_filter=2, name="c").infer_shape(x=(1, 1, 3, 3))
    with pytest.raises(MXNetError, match="num_group"):
        mx.sym.Convolution(x, kernel=(1, 1), num_filter=3, num_group=2, name="c").infer_shape(x=(1, 4, 3, 3))


POOL_CASES = [
    ("max2", dict(kernel=(2, 2), stride=(2, 2), pool_type="max")),
    ("max3_pad", dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")),
    ("max2_full", dict(kernel=(2, 2), stride=(2, 2), pool_type="max", pooling_convention="full")),
    ("avg3_pad", dict(kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="avg")),
    ("avg3_exclude", dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg", count_include_pad=False)),
    ("sum2", dict(kernel=(2, 2), stride=(1, 1), pool_type="sum")),
    ("global_max", dict(kernel=(1, 1), global_pool=True, pool_type="max")),
    ("global_avg", dict(kernel=(1, 1), global_pool=True, pool_type="avg")),
]


@pytest.mark.parametrize("name,kw", POOL_CASES, ids=[c[0] for c in POOL_CASES])
def test_pooling_forward_and_gradient(name, kw):
    x = RS.uniform(-1, 1, (2, 2, 5, 5)).astype(np.float32)
    check_forward("Pooling", [x], kw)
    check_forward("Pooling", [x.astype(np.float64)], kw)
    check_gradient("Pooling", [x], kw)


def test_pooling_1d_and_json():
    x = RS.uniform(-1, 1, (2, 3, 7)).astype(np.float32)
    kw = dict(kernel=(3,), stride=(2,), pool_type="avg")
    check_forward("Pooling", [x], kw)
    check_json_roundtrip("Pooling", [x], kw)


def test_pooling_unsupported_modes_are_named():
    x = mx.sym.Variable("x")
    with pytest.raises(NotImplementedError, match="lp"):
        mx.sym.Pooling(x, kernel=(2, 2), pool_type="lp").infer_shape(x=(1, 1, 4, 4))


@pytest.mark.parametrize("fix_gamma", [True, False])
def test_batchnorm_inference(fix_gamma):
    x = RS.uniform(-1, 1, (2, 3, 4, 4)).astype(np.float32)
    gamma, beta = RS.uniform(0.5, 1.5, 3).astype(np.float32), RS.uniform(-1, 1, 3).astype(np.float32)
    mean, var = RS.uniform(-1, 1, 3).astype(np.float32), RS.uniform(0.5, 2, 3).astype(np.float32)
    data = mx.sym.Variable("data")
    bn = mx.sym.BatchNorm(data, fix_gamma=fix_gamma, eps=1e-3, name="bn")
    assert bn.list_arguments() == ["data", "bn_gamma", "bn_beta"]
    assert bn.list_auxiliary_states() == ["bn_moving_mean", "bn_moving_var"]
    ex = bn.bind(mx.cpu(), {"data": mx.nd.array(x), "bn_gamma": mx.nd.array(gamma), "bn_beta": mx.nd.array(beta)},
                 aux_states={"bn_moving_mean": mx.nd.array(mean), "bn_moving_var": mx.nd.array(var)})
    g = np.ones(3, np.float32) if fix_gamma else gamma
    want = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3) * g[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(ex.forward()[0].asnumpy(), want, rtol=1e-5, atol=1e-6)
    # training normalises with the batch statistics (tests/compiler/test_batchnorm_training.py)
    xhat = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-3)
    np.testing.assert_allclose(ex.forward(is_train=True)[0].asnumpy(), xhat * g[:, None, None] + beta[:, None, None],
                               rtol=1e-4, atol=1e-5)


def test_batchnorm_global_stats_gradient():
    x = RS.uniform(-1, 1, (2, 3, 2)).astype(np.float64)
    data = mx.sym.Variable("data")
    bn = mx.sym.BatchNorm(data, fix_gamma=False, use_global_stats=True, name="bn")
    aux = [RS.uniform(-1, 1, 3), RS.uniform(0.5, 2, 3)]
    loc = {"data": x, "bn_gamma": RS.uniform(0.5, 1.5, 3), "bn_beta": RS.uniform(-1, 1, 3)}
    mx.test_utils.check_numeric_gradient(bn, loc, aux_states=aux, numeric_eps=1e-6, rtol=1e-4, atol=1e-6)
