"""Activations, softmax family, loss/output layers, MakeLoss, Dropout (compiler/ops/nn.py)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import kiln as mx
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .helpers import backward, forward

GOLDEN = "/work/shared/conformance/golden/010_sym_fc_act_softmax_output.json"


def _r(shape, lo=-2.0, hi=2.0, dtype="float64", seed=0):
    return np.random.RandomState(seed).uniform(lo, hi, shape).astype(dtype)


def np_softmax(x, axis=-1, t=1.0):
    z = (x.astype(np.float64) - x.max(axis=axis, keepdims=True)) / t
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


# ---- Activation ----
ACTS = ["relu", "sigmoid", "tanh", "softrelu", "softsign"]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("act", ACTS)
def test_activation_forward(act, dtype):
    x = _r((2, 3, 4), dtype=dtype)
    check_forward("Activation", [x], {"act_type": act})


@pytest.mark.parametrize("act", ACTS)
def test_activation_gradient_json(act):
    x = _r((3, 4), seed=1)
    x = np.where(np.abs(x) < 0.1, 0.3, x)
    check_gradient("Activation", [x], {"act_type": act})
    check_json_roundtrip("Activation", [x.astype("float32")], {"act_type": act})


def test_softrelu_large_inputs():
    x = np.array([-200.0, -50.0, 0.0, 50.0, 200.0], "float32")
    out = forward(mx.sym.Activation(mx.sym.Variable("x"), act_type="softrelu"), x=x)[0]
    np.testing.assert_allclose(out, np.logaddexp(0, x.astype(np.float64)), rtol=1e-6, atol=1e-30)


def test_activation_relu_int():
    x = np.array([[-3, 0, 4]], "int32")
    check_forward("Activation", [x], {"act_type": "relu"}, expected=np.array([[0, 0, 4]], "int32"))


# ---- softmax / log_softmax ----
SM_ATTRS = [{}, {"axis": 0}, {"axis": 1}, {"axis": -1, "temperature": 2.0}, {"axis": 1, "temperature": 0.5}]


@pytest.mark.parametrize("attrs", SM_ATTRS, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_forward(name, dtype, attrs):
    x = _r((2, 3, 4), dtype=dtype, seed=2)
    axis, t = attrs.get("axis", -1), attrs.get("temperature", 1.0)
    p = np_softmax(x, axis, t)
    want = (p if name == "softmax" else np.log(p)).astype(dtype)
    check_forward(name, [x], attrs, expected=want)
    check_forward(name, [x], attrs)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_large_inputs_stable(name):
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -1001.0]], "float32")
    out = forward(getattr(mx.sym, name)(mx.sym.Variable("x")), x=x)[0]
    assert np.all(np.isfinite(out))
    p = np_softmax(x.astype(np.float64))
    np.testing.assert_allclose(out, p if name == "softmax" else np.log(p), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs", SM_ATTRS, ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_gradient(name, attrs):
    check_gradient(name, [_r((2, 3, 4), seed=3)], attrs)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dtype_and_json(name):
    x = _r((2, 3), dtype="float32")
    out = check_forward(name, [x], {"dtype": "float64"},
                        expected=(np_softmax(x) if name == "softmax" else np.log(np_softmax(x))).astype("float64"))
    assert out[0].asnumpy().dtype == np.float64
    check_json_roundtrip(name, [x], {"axis": 0, "temperature": 2.0})


@pytest.mark.parametrize("mode", ["instance", "channel"])
def test_softmax_activation(mode):
    x = _r((2, 3, 2), dtype="float32", seed=4)
    want = np_softmax(x, 1) if mode == "channel" else np_softmax(x.reshape(2, -1)).reshape(x.shape)
    check_forward("SoftmaxActivation", [x], {"mode": mode}, expected=want.astype("float32"))
    check_gradient("SoftmaxActivation", [x.astype("float64")], {"mode": mode})
    check_json_roundtrip("SoftmaxActivation", [x], {"mode": mode})


# ---- SoftmaxOutput ----
def so_grad(x, label, axis=-1, grad_scale=1.0, normalization="null", use_ignore=False, ignore_label=-1.0,
            multi_output=False):
    """MXNet's SoftmaxOutput backward (ignores the head gradient)."""
    if multi_output:
        p = np_softmax(x, 1)
        onehot = (np.arange(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2)) == label[:, None]).astype(float)
        lab = label[:, None] * np.ones_like(p)
    else:
        p2 = np_softmax(x.reshape(x.shape[0], -1))
        onehot = (np.arange(p2.shape[1])[None, :] == label.reshape(-1, 1)).astype(float)
        p = p2.reshape(x.shape)
        onehot = onehot.reshape(x.shape)
        lab = np.broadcast_to(label.reshape(-1, 1), p2.shape).reshape(x.shape)
    g = (p - onehot) * grad_scale
    if use_ignore:
        g = np.where(lab == ignore_label, 0.0, g)
    if normalization == "batch":
        g = g / x.shape[0]
    elif normalization == "valid":
        g = g / max(int(np.sum(label != ignore_label)), 1)
    return g


SO_CASES = [
    {}, {"normalization": "batch"}, {"normalization": "valid"}, {"grad_scale": 2.5},
    {"use_ignore": True, "ignore_label": 2.0}, {"use_ignore": True, "ignore_label": 2.0, "normalization": "valid"},
    {"use_ignore": True, "ignore_label": 1.0, "normalization": "batch", "grad_scale": 0.5},
    {"normalization": "valid", "ignore_label": 2.0},  # valid counts labels != ignore_label even without use_ignore
]


@pytest.mark.parametrize("attrs", SO_CASES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_output(attrs, dtype):
    x = _r((4, 3), dtype=dtype, seed=5)
    label = np.array([0, 2, 1, 2], dtype)
    sym = mx.sym.SoftmaxOutput(mx.sym.Variable("data"), mx.sym.Variable("label"), **attrs)
    outs, g = backward(sym, {"data": x, "label": label}, wrt=["data"])
    np.testing.assert_allclose(outs[0], np_softmax(x), rtol=1e-5)
    kw = {k: v for k, v in attrs.items()}
    np.testing.assert_allclose(g["data"], so_grad(x.astype(np.float64), label, **kw), rtol=1e-5, atol=1e-7)
    assert g["data"].dtype == np.dtype(dtype)


@pytest.mark.parametrize("attrs", [{}, {"normalization": "batch"}, {"normalization": "valid", "use_ignore": True,
                                                                     "ignore_label": 0.0}], ids=str)
def test_softmax_output_multi_output(attrs):
    x = _r((2, 3, 4), seed=6)
    label = np.array([[0, 1, 2, 1], [2, 2, 0, 1]], "float64")
    sym = mx.sym.SoftmaxOutput(mx.sym.Variable("data"), mx.sym.Variable("label"), multi_output=True, **attrs)
    outs, g = backward(sym, {"data": x, "label": label}, wrt=["data"])
    np.testing.assert_allclose(outs[0], np_softmax(x, 1), rtol=1e-10)
    np.testing.assert_allclose(g["data"], so_grad(x, label, multi_output=True, **attrs), rtol=1e-8, atol=1e-12)


def test_softmax_output_nd_flattens():
    x = _r((2, 2, 3), seed=7)
    label = np.array([4, 1], "float64")
    sym = mx.sym.SoftmaxOutput(mx.sym.Variable("data"), mx.sym.Variable("label"))
    outs, g = backward(sym, {"data": x, "label": label}, wrt=["data"])
    np.testing.assert_allclose(outs[0], np_softmax(x.reshape(2, -1)).reshape(x.shape), rtol=1e-10)
    np.testing.assert_allclose(g["data"], so_grad(x, label), rtol=1e-8, atol=1e-12)


def test_softmax_output_label_untouched_and_alias():
    x = _r((3, 4), seed=8)
    label = np.array([1, 0, 3], "float64")
    sym = mx.sym.Softmax(mx.sym.Variable("data"), mx.sym.Variable("label"))
    outs, g = backward(sym, {"data": x, "label": label})
    np.testing.assert_array_equal(g["label"], 0)
    check_forward("SoftmaxOutput", [x.astype("float32"), label.astype("float32")])
    check_json_roundtrip("SoftmaxOutput", [x.astype("float32"), label.astype("float32")],
                         {"normalization": "valid", "use_ignore": True, "ignore_label": 1, "grad_scale": 2.0})


def test_softmax_output_golden():
    if not os.path.exists(GOLDEN):
        pytest.skip("no golden data")
    golden = {r["name"]: np.array(r["value"]["data"]) for r in json.load(open(GOLDEN))["results"]}
    rs = np.random.RandomState(0)
    rs.uniform(-2, 2, (4, 5)), rs.uniform(-1, 1, (3, 5)), rs.uniform(-1, 1, (3,)), rs.uniform(-1, 1, (2, 3, 4))
    rs.uniform(-1, 1, (2, 4))
    logits = rs.uniform(-2, 2, (4, 3)).astype(np.float32)
    lab = np.array([0, 2, 1, 2], dtype=np.float32)
    for norm in ["null", "batch", "valid"]:
        sym = mx.sym.SoftmaxOutput(mx.sym.Variable("data"), mx.sym.Variable("label"), normalization=norm)
        outs, g = backward(sym, {"data": logits, "label": lab}, wrt=["data"])
        np.testing.assert_allclose(outs[0], golden["softmax_output_%s_fwd" % norm], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g["data"], golden["softmax_output_%s_grad" % norm], rtol=1e-5, atol=1e-6)
    sym = mx.sym.SoftmaxOutput(mx.sym.Variable("data"), mx.sym.Variable("label"), grad_scale=2.0,
                               use_ignore=True, ignore_label=2)
    _, g = backward(sym, {"data": logits, "label": lab}, wrt=["data"])
    np.testing.assert_allclose(g["data"], golden["softmax_output_ignore_grad"], rtol=1e-5, atol=1e-6)


# ---- regression outputs ----
REG = {
    "LinearRegressionOutput": (lambda x: x, lambda y, lab: y - lab),
    "LogisticRegressionOutput": (lambda x: 1 / (1 + np.exp(-x)), lambda y, lab: y - lab),
    "MAERegressionOutput": (lambda x: x, lambda y, lab: np.sign(y - lab)),
}


@pytest.mark.parametrize("shapes", [((4, 2), (4, 2)), ((4, 1), (4,)), ((3, 2, 2), (3, 2, 2)), ((5,), (5,))], ids=str)
@pytest.mark.parametrize("grad_scale", [1.0, 3.0])
@pytest.mark.parametrize("name", sorted(REG))
def test_regression_output(name, grad_scale, shapes):
    xs, ls = shapes
    x = _r(xs, seed=9)
    label = _r(ls, -1, 1, seed=10)
    fwd, dfn = REG[name]
    sym = getattr(mx.sym, name)(mx.sym.Variable("data"), mx.sym.Variable("label"), grad_scale=grad_scale)
    outs, g = backward(sym, {"data": x, "label": label}, wrt=["data"])
    y = fwd(x)
    np.testing.assert_allclose(outs[0], y, rtol=1e-10)
    width = int(np.prod(ls[1:])) if len(ls) > 1 else 1
    want = dfn(y, label.reshape(y.shape)) * grad_scale / width
    np.testing.assert_allclose(g["data"], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(REG))
def test_regression_forward_json(name):
    x, label = _r((4, 2), dtype="float32"), _r((4, 2), dtype="float32", seed=1)
    check_forward(name, [x, label])
    check_json_roundtrip(name, [x, label], {"grad_scale": 2.0})


def test_regression_golden():
    if not os.path.exists(GOLDEN):
        pytest.skip("no golden data")
    golden = {r["name"]: np.array(r["value"]["data"]) for r in json.load(open(GOLDEN))["results"]}
    rs = np.random.RandomState(0)
    for shape in [(4, 5), (3, 5), (3,), (2, 3, 4), (2, 4), (4, 3)]:
        rs.uniform(-1, 1, shape)
    pred = rs.uniform(-1, 1, (4, 2)).astype(np.float32)
    target = rs.uniform(-1, 1, (4, 2)).astype(np.float32)
    for name, key in [("LinearRegressionOutput", "linear"), ("LogisticRegressionOutput", "logistic"),
                      ("MAERegressionOutput", "mae")]:
        sym = getattr(mx.sym, name)(mx.sym.Variable("data"), mx.sym.Variable("label"))
        outs, g = backward(sym, {"data": pred, "label": target}, wrt=["data"])
        np.testing.assert_allclose(outs[0], golden[key + "_fwd"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g["data"], golden[key + "_grad"], rtol=1e-5, atol=1e-6)


# ---- MakeLoss ----
@pytest.mark.parametrize("attrs", [{}, {"grad_scale": 2.0}, {"normalization": "batch"},
                                   {"normalization": "valid", "valid_thresh": 0.5, "grad_scale": 3.0}], ids=str)
def test_make_loss(attrs):
    x = _r((4, 3), 0, 1, seed=11)
    sym = mx.sym.MakeLoss(mx.sym.Variable("x"), **attrs)
    outs, g = backward(sym, {"x": x})
    np.testing.assert_array_equal(outs[0], x)
    scale = attrs.get("grad_scale", 1.0)
    if attrs.get("normalization") == "batch":
        scale /= x.shape[0]
    elif attrs.get("normalization") == "valid":
        scale /= max(int(np.sum(x > attrs["valid_thresh"])), 1)
    np.testing.assert_allclose(g["x"], np.full(x.shape, scale), rtol=1e-12)


def test_make_loss_composed_and_json():
    x = _r((2, 3), seed=12)
    X = mx.sym.Variable("x")
    sym = mx.sym.make_loss(mx.sym.sum(mx.sym.square(X)))
    _, g = backward(sym, {"x": x})
    np.testing.assert_allclose(g["x"], 2 * x, rtol=1e-12)
    check_forward("MakeLoss", [x.astype("float32")])
    check_json_roundtrip("MakeLoss", [x.astype("float32")], {"grad_scale": 2.0, "normalization": "batch"})


# ---- Dropout (inference: identity) ----
def test_dropout_inference_identity():
    x = _r((3, 4), dtype="float32")
    check_forward("Dropout", [x], {"p": 0.5})
    check_json_roundtrip("Dropout", [x], {"p": 0.3})


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dtype_gradient(name):
    x = _r((2, 3), dtype="float32", seed=13)
    head = _r((2, 3), seed=14)
    sym = getattr(mx.sym, name)(mx.sym.Variable("x"), dtype="float64")
    outs, g = backward(sym, {"x": x}, [head])
    assert outs[0].dtype == np.float64 and g["x"].dtype == np.float32
    p = np_softmax(x)
    if name == "softmax":
        want = p * (head - (head * p).sum(-1, keepdims=True))
    else:
        want = head - p * head.sum(-1, keepdims=True)
    np.testing.assert_allclose(g["x"], want, rtol=1e-5, atol=1e-6)
