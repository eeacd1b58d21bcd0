"""Executor semantics: bind forms, grad_req write/add/null, outputs, reshape."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError


def _fc_tanh():
    data = mx.sym.Variable("data")
    fc = mx.sym.FullyConnected(data, num_hidden=3, name="fc")
    return mx.sym.Activation(fc, act_type="tanh", name="act")


def _reference(x, w, b, og):
    h = x @ w.T + b
    y = np.tanh(h)
    dh = og * (1 - y * y)
    return y, {"data": dh @ w, "fc_weight": dh.T @ x, "fc_bias": dh.sum(0)}


@pytest.fixture
def arrays():
    rs = np.random.RandomState(0)
    return {"data": rs.uniform(-1, 1, (4, 5)).astype(np.float32),
            "fc_weight": rs.uniform(-1, 1, (3, 5)).astype(np.float32),
            "fc_bias": rs.uniform(-1, 1, (3,)).astype(np.float32),
            "og": rs.uniform(-1, 1, (4, 3)).astype(np.float32)}


@pytest.mark.parametrize("req", ["write", "add", "null"])
def test_grad_req(arrays, req):
    sym = _fc_tanh()
    args = {k: mx.nd.array(v) for k, v in arrays.items() if k != "og"}
    start = {k: np.full(v.shape, 0.5, np.float32) for k, v in args.items()}
    grads = {k: mx.nd.array(v) for k, v in start.items()}
    ex = sym.bind(mx.cpu(), args, args_grad=grads, grad_req=req)
    ex.forward(is_train=True)
    ex.backward(mx.nd.array(arrays["og"]))
    y, want = _reference(arrays["data"], arrays["fc_weight"], arrays["fc_bias"], arrays["og"])
    np.testing.assert_allclose(ex.outputs[0].asnumpy(), y, rtol=1e-5, atol=1e-6)
    for k in args:
        got = grads[k].asnumpy()
        expect = {"write": want[k], "add": start[k] + want[k], "null": start[k]}[req]
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)


def test_grad_req_add_accumulates_over_calls(arrays):
    sym = _fc_tanh()
    args = {k: mx.nd.array(v) for k, v in arrays.items() if k != "og"}
    grads = {k: mx.nd.zeros(v.shape) for k, v in args.items()}
    ex = sym.bind(mx.cpu(), args, args_grad=grads, grad_req="add")
    for _ in range(3):
        ex.forward(is_train=True)
        ex.backward(mx.nd.array(arrays["og"]))
    _, want = _reference(arrays["data"], arrays["fc_weight"], arrays["fc_bias"], arrays["og"])
    np.testing.assert_allclose(grads["fc_weight"].asnumpy(), 3 * want["fc_weight"], rtol=1e-5, atol=1e-5)


def test_grad_req_per_argument(arrays):
    sym = _fc_tanh()
    args = {k: mx.nd.array(v) for k, v in arrays.items() if k != "og"}
    grads = {k: mx.nd.ones(v.shape) for k, v in args.items()}
    ex = sym.bind(mx.cpu(), args, args_grad=grads, grad_req={"data": "null", "fc_weight": "write", "fc_bias": "add"})
    ex.forward(is_train=True)
    ex.backward(mx.nd.array(arrays["og"]))
    _, want = _reference(arrays["data"], arrays["fc_weight"], arrays["fc_bias"], arrays["og"])
    np.testing.assert_array_equal(grads["data"].asnumpy(), np.ones((4, 5), np.float32))
    np.testing.assert_allclose(grads["fc_weight"].asnumpy(), want["fc_weight"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["fc_bias"].asnumpy(), 1 + want["fc_bias"], rtol=1e-5, atol=1e-5)


def test_simple_bind_dicts_and_forward_kwargs(arrays):
    ex = _fc_tanh().simple_bind(mx.cpu(), data=(4, 5))
    assert {k: v.shape for k, v in ex.arg_dict.items()} == {"data": (4, 5), "fc_weight": (3, 5), "fc_bias": (3,)}
    assert sorted(ex.grad_dict) == ["data", "fc_bias", "fc_weight"]
    assert ex.outputs[0].shape == (4, 3)
    ex.copy_params_from({"fc_weight": mx.nd.array(arrays["fc_weight"]), "fc_bias": mx.nd.array(arrays["fc_bias"])})
    out = ex.forward(data=mx.nd.array(arrays["data"]))[0]
    y, _ = _reference(arrays["data"], arrays["fc_weight"], arrays["fc_bias"], arrays["og"])
    np.testing.assert_allclose(out.asnumpy(), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ex.arg_dict["data"].asnumpy(), arrays["data"])
    assert list(ex.output_dict) == ["act_output"]


def test_bind_positional_list(arrays):
    sym = _fc_tanh()
    ex = sym.bind(mx.cpu(), [mx.nd.array(arrays[k]) for k in ("data", "fc_weight", "fc_bias")])
    y, _ = _reference(arrays["data"], arrays["fc_weight"], arrays["fc_bias"], arrays["og"])
    np.testing.assert_allclose(ex.forward()[0].asnumpy(), y, rtol=1e-5, atol=1e-6)


def test_group_outputs_and_variable_head(arrays):
    data = mx.sym.Variable("data")
    sq = mx.sym.square(data)
    g = mx.sym.Group([sq, data, sq])
    outs = g.eval(data=mx.nd.array(arrays["data"]))
    assert len(outs) == 3
    np.testing.assert_allclose(outs[0].asnumpy(), arrays["data"] ** 2, rtol=1e-6)
    np.testing.assert_array_equal(outs[1].asnumpy(), arrays["data"])
    np.testing.assert_allclose(outs[2].asnumpy(), arrays["data"] ** 2, rtol=1e-6)


def test_shared_subexpression_gradient():
    y = mx.sym.Variable("y")
    s = mx.sym.sum((y * y) + (y * y))
    g = mx.nd.zeros((3,))
    ex = s.bind(mx.cpu(), {"y": mx.nd.array([1.0, 2.0, 3.0])}, args_grad={"y": g})
    ex.forward(is_train=True)
    ex.backward()
    np.testing.assert_allclose(g.asnumpy(), [4.0, 8.0, 12.0])


def test_reshape_executor(arrays):
    ex = _fc_tanh().simple_bind(mx.cpu(), data=(4, 5))
    ex.arg_dict["fc_weight"][:] = arrays["fc_weight"]
    ex2 = ex.reshape(data=(2, 5))
    assert ex2.outputs[0].shape == (2, 3)
    np.testing.assert_array_equal(ex2.arg_dict["fc_weight"].asnumpy(), arrays["fc_weight"])
    with pytest.raises(MXNetError):
        ex.reshape(data=(8, 5))
    assert ex.reshape(data=(8, 5), allow_up_sizing=True).outputs[0].shape == (8, 3)


def test_unused_argument_gets_zero_gradient():
    a, b = mx.sym.Variable("a"), mx.sym.Variable("b")
    s = mx.sym.Group([a * 2, mx.sym.BlockGrad(b)])
    ga, gb = mx.nd.ones((2,)), mx.nd.ones((2,))
    ex = s.bind(mx.cpu(), {"a": mx.nd.ones((2,)), "b": mx.nd.ones((2,))}, args_grad={"a": ga, "b": gb})
    ex.forward(is_train=True)
    ex.backward([mx.nd.ones((2,)), mx.nd.ones((2,))])
    np.testing.assert_array_equal(ga.asnumpy(), [2, 2])
    np.testing.assert_array_equal(gb.asnumpy(), [0, 0])


def test_mlp_training_step_matches_numpy():
    rs = np.random.RandomState(1)
    data = mx.sym.Variable("data")
    fc1 = mx.sym.FullyConnected(data, num_hidden=6, name="fc1")
    act = mx.sym.Activation(fc1, act_type="relu")
    out = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(act, num_hidden=4, name="fc2"), name="softmax")
    ex = out.simple_bind(mx.cpu(), data=(5, 7))
    vals = {k: rs.uniform(-1, 1, v.shape).astype(np.float32) for k, v in ex.arg_dict.items()}
    vals["softmax_label"] = np.array([0, 3, 1, 2, 3], np.float32)
    for k, v in vals.items():
        ex.arg_dict[k][:] = v
    ex.forward(is_train=True)
    ex.backward()
    h = vals["data"] @ vals["fc1_weight"].T + vals["fc1_bias"]
    r = np.maximum(h, 0)
    z = r @ vals["fc2_weight"].T + vals["fc2_bias"]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(ex.outputs[0].asnumpy(), p, rtol=1e-5, atol=1e-6)
    dz = p.copy()
    dz[np.arange(5), vals["softmax_label"].astype(int)] -= 1
    dr = dz @ vals["fc2_weight"]
    dh = dr * (h > 0)
    np.testing.assert_allclose(ex.grad_dict["fc2_weight"].asnumpy(), dz.T @ r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ex.grad_dict["fc1_weight"].asnumpy(), dh.T @ vals["data"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ex.grad_dict["fc1_bias"].asnumpy(), dh.sum(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(ex.grad_dict["softmax_label"].asnumpy(), np.zeros(5))


def test_dropout_is_identity_for_inference_and_samples_in_training():
    x = mx.sym.Variable("x")
    d = mx.sym.Dropout(x, p=0.5)
    ex = d.simple_bind(mx.cpu(), x=(2, 3), grad_req="null")
    ex.arg_dict["x"][:] = 1.5
    np.testing.assert_array_equal(ex.forward(is_train=False)[0].asnumpy(), np.full((2, 3), 1.5))
    out = ex.forward(is_train=True)[0].asnumpy()  # tests/frontend/test_random.py checks the statistics
    assert set(np.unique(out)) <= {0.0, 3.0}


def test_simple_bind_shares_arrays_as_mxnet():
    """shared_arg_names + shared_exec share parameters and gradients (bucketing); auxiliary
    states are shared when shapes agree; shared_buffer hands data arrays between executors."""
    data = mx.sym.Variable("data")
    net = mx.sym.BatchNorm(mx.sym.FullyConnected(data, num_hidden=4, name="fc"), name="bn")
    buf = {}
    a = net.simple_bind(mx.cpu(), data=(2, 3), shared_buffer=buf)
    assert buf["data"] is a.arg_dict["data"]
    params = ["fc_weight", "fc_bias", "bn_gamma", "bn_beta"]
    b = net.simple_bind(mx.cpu(), data=(5, 3), shared_arg_names=params, shared_exec=a, shared_buffer=buf)
    for n in params:
        assert b.arg_dict[n] is a.arg_dict[n] and b.grad_dict[n] is a.grad_dict[n]
    for n in ("bn_moving_mean", "bn_moving_var"):
        assert b.aux_dict[n] is a.aux_dict[n]
    assert b.arg_dict["data"] is not a.arg_dict["data"] and buf["data"] is b.arg_dict["data"]
    c = net.simple_bind(mx.cpu(), data=(2, 3))  # nothing shared without the arguments
    assert c.arg_dict["fc_weight"] is not a.arg_dict["fc_weight"]
    a.arg_dict["fc_weight"][:] = 1.0
    assert (b.arg_dict["fc_weight"].asnumpy() == 1.0).all()
