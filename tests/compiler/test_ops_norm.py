"""LayerNorm, GroupNorm and InstanceNorm (MXNet 1.9.1 semantics) against numpy references,
finite differences and JSON round trips. Attribute defaults, output shapes and values were
compared with MXNet 1.9.1 while developing."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

RS = np.random.RandomState(0)


def _u(*shape, lo=-1.0, hi=1.0):
    return RS.uniform(lo, hi, shape).astype(np.float32)


LN_CASES = [
    ("last_axis", (2, 3, 5), dict()),
    ("axis1_mean_var", (2, 3, 4), dict(axis=1, eps=1e-3, output_mean_var=True)),
    ("neg_axis_2d", (4, 6), dict(axis=-1, output_mean_var=True)),
]


@pytest.mark.parametrize("name,shape,kw", LN_CASES, ids=[c[0] for c in LN_CASES])
def test_layernorm(name, shape, kw):
    c = shape[kw.get("axis", -1)]
    ins = [_u(*shape), _u(c, lo=0.5, hi=1.5), _u(c)]
    outs = check_forward("LayerNorm", ins, kw, rtol=1e-4, atol=1e-5)
    if kw.get("output_mean_var"):
        stat = list(shape)
        stat[kw["axis"]] = 1
        assert [o.shape for o in outs] == [shape, tuple(stat), tuple(stat)]  # MXNet keeps the axis
    check_forward("LayerNorm", [x.astype(np.float64) for x in ins], kw)
    # the mean/std outputs pass no gradient (MXNet), so differentiate the normalised output alone
    check_gradient("LayerNorm", ins, dict(kw, output_mean_var=False))


def test_layernorm_defaults_and_json():
    data = mx.sym.Variable("data")
    ln = mx.sym.LayerNorm(data, name="ln")
    assert ln.list_arguments() == ["data", "ln_gamma", "ln_beta"]
    assert ln.list_outputs() == ["ln_output"]
    assert mx.sym.LayerNorm(data, output_mean_var=True, name="ln").list_outputs() == \
        ["ln_output", "ln_mean", "ln_std"]
    args, outs, _ = ln.infer_shape(data=(2, 3, 4))
    assert args == [(2, 3, 4), (4,), (4,)] and outs == [(2, 3, 4)]
    check_json_roundtrip("LayerNorm", [_u(2, 5), _u(5), _u(5)], dict(eps=1e-3))


def test_layernorm_gradient_ignores_mean_std_heads():
    """MXNet's backward reads only the output's head gradient."""
    x, g, b = _u(2, 4).astype(np.float64), _u(4).astype(np.float64), _u(4).astype(np.float64)
    data = mx.sym.Variable("data")
    sym = mx.sym.LayerNorm(data, output_mean_var=True, name="ln")
    arrays = {"data": mx.nd.array(x, dtype="float64"), "ln_gamma": mx.nd.array(g, dtype="float64"),
              "ln_beta": mx.nd.array(b, dtype="float64")}
    grads = {k: mx.nd.zeros(v.shape, dtype="float64") for k, v in arrays.items()}
    ex = sym.bind(mx.cpu(), arrays, args_grad=grads)
    outs = ex.forward(is_train=True)
    head = mx.nd.array(np.ones((2, 4)), dtype="float64")
    ex.backward([head, mx.nd.ones(outs[1].shape, dtype="float64"), mx.nd.ones(outs[2].shape, dtype="float64")])
    with_stats = ex.grad_dict["data"].asnumpy().copy()
    ex.backward([head, mx.nd.zeros(outs[1].shape, dtype="float64"), mx.nd.zeros(outs[2].shape, dtype="float64")])
    np.testing.assert_allclose(with_stats, ex.grad_dict["data"].asnumpy())


GN_CASES = [
    ("g3_mean_var", (2, 6, 3, 3), dict(num_groups=3, output_mean_var=True)),
    ("g1_1d", (3, 4, 5), dict(num_groups=1, eps=1e-3)),
    ("g2_3d", (1, 4, 2, 3, 2), dict(num_groups=2)),
]


@pytest.mark.parametrize("name,shape,kw", GN_CASES, ids=[c[0] for c in GN_CASES])
def test_groupnorm(name, shape, kw):
    g = kw["num_groups"]
    ins = [_u(*shape), _u(g, lo=0.5, hi=1.5), _u(g)]  # MXNet 1.x: gamma/beta per group
    outs = check_forward("GroupNorm", ins, kw, rtol=1e-4, atol=1e-5)
    if kw.get("output_mean_var"):
        assert [o.shape for o in outs] == [shape, (shape[0], g), (shape[0], g)]
    check_gradient("GroupNorm", ins, dict(kw, output_mean_var=False))


def test_groupnorm_errors_and_json():
    data = mx.sym.Variable("data")
    with pytest.raises(MXNetError, match="GroupNorm.*'gn'.*num_groups"):
        mx.sym.GroupNorm(data, num_groups=4, name="gn").infer_shape(data=(2, 6, 3))
    args, _, _ = mx.sym.GroupNorm(data, num_groups=2, name="gn").infer_shape(data=(2, 6, 3))
    assert args == [(2, 6, 3), (2,), (2,)]
    check_json_roundtrip("GroupNorm", [_u(2, 4, 3), _u(2), _u(2)], dict(num_groups=2))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 6), (1, 2, 2, 3, 2)])
def test_instancenorm(shape):
    ins = [_u(*shape), _u(shape[1], lo=0.5, hi=1.5), _u(shape[1])]
    check_forward("InstanceNorm", ins, dict(eps=1e-2), rtol=1e-4, atol=1e-5)
    check_gradient("InstanceNorm", ins, {})


def test_instancenorm_defaults_and_errors():
    data = mx.sym.Variable("data")
    inorm = mx.sym.InstanceNorm(data, name="in")
    assert inorm.list_arguments() == ["data", "in_gamma", "in_beta"]
    assert inorm.infer_shape(data=(2, 3, 4))[0] == [(2, 3, 4), (3,), (3,)]
    with pytest.raises(MXNetError, match="InstanceNorm"):
        inorm.infer_shape(data=(2, 3))
    check_json_roundtrip("InstanceNorm", [_u(2, 3, 4), _u(3), _u(3)], dict(eps=1e-3))
    # eps defaults to 1e-3 (MXNet 1.9.1)
    x = _u(1, 2, 4)
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-3)
    check_forward("InstanceNorm", [x, np.ones(2, np.float32), np.zeros(2, np.float32)], {}, expected=want,
                  rtol=1e-5, atol=1e-5)
