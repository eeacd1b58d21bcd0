"""LeakyReLU (compiler/ops/activations.py): leaky, elu, selu, gelu, prelu, rrelu."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .helpers import away_from_zero, forward

ATTRS = [{}, {"act_type": "leaky", "slope": 0.1}, {"act_type": "elu", "slope": 0.7}, {"act_type": "selu"},
         {"act_type": "gelu"}, {"act_type": "rrelu"}, {"act_type": "rrelu", "lower_bound": 0.2, "upper_bound": 0.4}]
SHAPES = [(7,), (2, 3, 2)]


def _ids(a):
    return ",".join("%s=%s" % kv for kv in sorted(a.items())) or "default"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("attrs", ATTRS, ids=_ids)
def test_forward(attrs, dtype, shape):
    check_forward("LeakyReLU", [away_from_zero(shape, dtype=dtype, seed=1)], attrs)


@pytest.mark.parametrize("attrs", ATTRS, ids=_ids)
def test_gradient(attrs):
    check_gradient("LeakyReLU", [away_from_zero((2, 3, 2), seed=2)], attrs)


@pytest.mark.parametrize("gamma_shape", [(3,), (1,)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_prelu(dtype, gamma_shape):
    x = away_from_zero((2, 3, 2), dtype=dtype, seed=3)
    gamma = np.random.RandomState(4).uniform(0.1, 0.5, gamma_shape).astype(dtype)
    check_forward("LeakyReLU", [x, gamma], {"act_type": "prelu"})


@pytest.mark.parametrize("gamma_shape", [(3,), (1,)])
def test_prelu_gradient(gamma_shape):
    x = away_from_zero((2, 3, 2), seed=5)
    gamma = np.random.RandomState(6).uniform(0.1, 0.5, gamma_shape)
    check_gradient("LeakyReLU", [x, gamma], {"act_type": "prelu"})


def test_prelu_infers_gamma_and_names():
    s = mx.sym.LeakyReLU(mx.sym.Variable("data"), act_type="prelu", name="act")
    assert s.list_arguments() == ["data", "act_gamma"]
    args, outs, _ = s.infer_shape(data=(2, 4, 3, 3))
    assert args == [(2, 4, 3, 3), (4,)] and outs == [(2, 4, 3, 3)]
    assert mx.sym.LeakyReLU(mx.sym.Variable("data")).list_arguments() == ["data"]


def test_gelu_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0], "float32")
    got = forward(mx.sym.LeakyReLU(mx.sym.Variable("x"), act_type="gelu"), x=x)[0]
    np.testing.assert_allclose(got, [-0.04550026, -0.15426877, 0.0, 0.34573123, 1.9544997], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs", [{"act_type": "elu", "slope": 0.3}, {"act_type": "prelu"}], ids=_ids)
def test_json_roundtrip(attrs):
    inputs = [away_from_zero((2, 3), dtype="float32")]
    if attrs["act_type"] == "prelu":
        inputs.append(np.full((3,), 0.25, "float32"))
    check_json_roundtrip("LeakyReLU", inputs, attrs)


def test_bad_gamma_shape():
    s = mx.sym.LeakyReLU(mx.sym.Variable("x"), mx.sym.Variable("g"), act_type="prelu")
    with pytest.raises(MXNetError, match="LeakyReLU"):
        s.eval(ctx=mx.cpu(), x=mx.nd.ones((2, 3)), g=mx.nd.ones((2,)))


def test_bad_dtype():
    s = mx.sym.LeakyReLU(mx.sym.Variable("x"))
    with pytest.raises(MXNetError, match="LeakyReLU"):
        s.eval(ctx=mx.cpu(), x=mx.nd.array([1, -2], dtype="int32"))


def test_bad_act_type():
    with pytest.raises(MXNetError, match="LeakyReLU"):
        mx.sym.LeakyReLU(mx.sym.Variable("x"), act_type="swish")


def test_prelu_gamma_gradient_checks_gamma_size():
    """The gamma gradient indexes gamma by channel: a gamma of another size is refused at inference
    (it was read out of bounds)."""
    from kiln.compiler.ops import registry
    op = registry.get("_backward_LeakyReLU_gamma")
    params = op.parse_attrs({}, "g")
    ins, outs = op.infer_shape(params, [(3, 4, 2), (3, 4, 2), (4,)], [None])
    assert outs == [(4,)]
    with pytest.raises(Exception, match="must have 1 or 4"):
        op.infer_shape(params, [(3, 4, 2), (3, 4, 2), (3, 4, 2)], [None])
