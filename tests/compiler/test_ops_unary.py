"""Elementwise unary operators (compiler/ops/elemwise_unary.py): forward vs numpy,
gradients vs finite differences, JSON round trip, MXNet-specific semantics."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln.compiler.ops import registry
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .helpers import backward, forward, rand

FLOATS = ["float32", "float64", "float16"]
INTS = ["int32", "int64", "uint8", "int8"]
SHAPES = [(5,), (2, 3), (2, 3, 4)]

# name -> (low, high) of a valid input domain; None means "sign * [0.5, 2]" (away from 0)
DOMAIN = {
    "negative": (-3, 3), "abs": (-3, 3), "sign": (-3, 3), "square": (-3, 3),
    "sqrt": (0.2, 4), "rsqrt": (0.2, 4), "exp": (-2, 2), "expm1": (-2, 2),
    "log": (0.2, 4), "log1p": (-0.5, 3), "log2": (0.2, 4), "log10": (0.2, 4),
    "sin": (-3, 3), "cos": (-3, 3), "tan": (-1.2, 1.2), "arcsin": (-0.9, 0.9),
    "arccos": (-0.9, 0.9), "arctan": (-3, 3), "sinh": (-2, 2), "cosh": (-2, 2),
    "tanh": (-3, 3), "sigmoid": (-4, 4), "relu": (-3, 3), "softsign": (-3, 3),
    "reciprocal": None, "floor": (-3, 3), "ceil": (-3, 3), "round": (-3, 3),
    "rint": (-3, 3), "trunc": (-3, 3), "fix": (-3, 3), "logical_not": (-2, 2),
    "erf": (-2, 2), "erfinv": (-0.9, 0.9), "gamma": (0.3, 4), "gammaln": (0.3, 4),
    "arcsinh": (-3, 3), "arccosh": (1.2, 4), "arctanh": (-0.9, 0.9), "degrees": (-3, 3),
    "radians": (-3, 3), "cbrt": None, "rcbrt": None,
}
INT_OK = ["negative", "abs", "sign", "square", "relu", "logical_not"]
ZERO_GRAD = ["sign", "floor", "ceil", "round", "rint", "trunc", "fix", "logical_not"]
SMOOTH = [n for n in DOMAIN if n not in ZERO_GRAD]


def _input(name, shape, dtype, seed=0):
    rng = np.random.RandomState(seed)
    dom = DOMAIN[name]
    if dom is None:
        x = rng.uniform(0.5, 2, size=shape) * np.where(rng.rand(*shape) < 0.5, -1, 1)
    else:
        x = rng.uniform(dom[0], dom[1], size=shape)
    if name in ZERO_GRAD and name != "sign":
        x = np.round(x * 4) / 4 + 0.1  # away from integers and halves
    if name in ("relu", "abs"):
        x = np.where(np.abs(x) < 0.1, 0.5, x)  # away from the kink
    return x.astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(DOMAIN))
def test_forward_float(name, dtype, shape):
    x = _input(name, shape, dtype)
    kw = {}
    if dtype == "float16" and name in ("gamma", "sinh", "cosh", "exp", "expm1", "tan", "reciprocal",
                                       "rsqrt", "square"):
        kw = {"rtol": 3e-2, "atol": 3e-2}
    check_forward(name, [x], **kw)


@pytest.mark.parametrize("dtype", INTS)
@pytest.mark.parametrize("name", INT_OK)
def test_forward_int(name, dtype):
    lo = 0 if dtype == "uint8" else -5
    x = np.random.RandomState(1).randint(lo, 6, size=(3, 4)).astype(dtype)
    out = check_forward(name, [x])
    assert out[0].asnumpy().dtype == np.dtype(dtype)


@pytest.mark.parametrize("name", SMOOTH)
def test_gradient(name):
    check_gradient(name, [_input(name, (2, 3), "float64", seed=3)])


@pytest.mark.parametrize("name", ZERO_GRAD + ["BlockGrad", "stop_gradient", "zeros_like", "ones_like"])
def test_zero_gradient(name):
    x = _input("floor", (2, 3), "float64") if name in DOMAIN else rand((2, 3), dtype="float64")
    sym = getattr(mx.sym, name)(mx.sym.Variable("x"))
    _, g = backward(sym, {"x": x}, [np.ones((2, 3))])
    np.testing.assert_array_equal(g["x"], np.zeros((2, 3)))


@pytest.mark.parametrize("name", sorted(DOMAIN) + ["identity", "_copy", "BlockGrad", "stop_gradient",
                                                   "zeros_like", "ones_like", "_digamma"])
def test_json_roundtrip(name):
    x = _input(name, (2, 3), "float32") if name in DOMAIN else rand((2, 3), 0.5, 2)
    check_json_roundtrip(name, [x])


@pytest.mark.parametrize("name", ["identity", "_copy", "BlockGrad", "stop_gradient", "zeros_like", "ones_like"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8"])
def test_identity_like_forward(name, dtype):
    check_forward(name, [(np.arange(12).reshape(3, 4) % 7).astype(dtype)])


def test_identity_gradient():
    check_gradient("identity", [rand((2, 3), dtype="float64")])
    check_gradient("_copy", [rand((2, 3), dtype="float64")])


def test_round_halves_away_from_zero():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.4, 0.6], "float32")
    check_forward("round", [x], expected=np.array([-3, -2, -1, 1, 2, 3, -0, 1], "float32"))


def test_rint_halves():
    # MXNet's rint: the nearer of floor/ceil, floor on a tie
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.4, 0.6], "float32")
    check_forward("rint", [x], expected=np.array([-3, -2, -1, 0, 1, 2, -0, 1], "float32"))


def test_fix_trunc_towards_zero():
    x = np.array([-2.7, -0.3, 0.3, 2.7], "float64")
    check_forward("fix", [x], expected=np.array([-2, 0, 0, 2], "float64"))
    check_forward("trunc", [x], expected=np.array([-2, 0, 0, 2], "float64"))


def test_sign_and_abs_gradient_at_zero():
    x = np.array([-2.0, 0.0, 3.0])
    _, g = backward(mx.sym.abs(mx.sym.Variable("x")), {"x": x}, [np.ones(3)])
    np.testing.assert_array_equal(g["x"], [-1, 0, 1])
    check_forward("sign", [np.array([-2, 0, 3], "int8")], expected=np.array([-1, 0, 1], "int8"))


def test_gamma_negative_non_integer():
    x = np.array([-0.5, -1.5, -2.3, 0.5, 4.0], "float64")
    check_forward("gamma", [x])
    check_gradient("gamma", [np.array([-0.5, -1.5, -2.3, 0.5, 2.5])])


def test_erfinv_edges():
    x = np.array([-1.0, 1.0, 0.0, 0.5], "float32")
    out = forward(mx.sym.erfinv(mx.sym.Variable("x")), x=x)[0]
    assert out[0] == -np.inf and out[1] == np.inf and out[2] == 0
    np.testing.assert_allclose(out[3], 0.4769362762044699, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_digamma(dtype):
    x = np.array([0.1, 0.5, 1.0, 2.0, 3.7, 10.0, -0.5, -1.3], dtype)
    out = forward(mx.sym._digamma(mx.sym.Variable("x")), x=x)[0]
    scipy_special = pytest.importorskip("scipy.special")
    np.testing.assert_allclose(out, scipy_special.digamma(x.astype(np.float64)),
                               rtol=1e-5 if dtype == "float32" else 1e-10, atol=1e-6)


def test_sigmoid_large_inputs():
    x = np.array([-100.0, -30.0, 0.0, 30.0, 100.0], "float32")
    out = forward(mx.sym.sigmoid(mx.sym.Variable("x")), x=x)[0]
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6, atol=1e-30)


# ---- Cast ----
@pytest.mark.parametrize("src,dst", [("float32", "float64"), ("float64", "float32"), ("float32", "float16"),
                                     ("float16", "float32"), ("int32", "float32"), ("float32", "int32"),
                                     ("float64", "int64"), ("float32", "int8"), ("int32", "int64"),
                                     ("int64", "int32"), ("uint8", "float32"), ("int32", "uint8")])
def test_cast(src, dst):
    if src.startswith("float"):
        x = np.array([[-2.7, -1.5, -0.5], [0.4, 1.5, 100.9]], src)
        if dst == "int8":
            x = np.array([[-2.7, -1.5, -0.5], [0.4, 1.5, 100.9]], src)
    elif src == "uint8":
        x = np.array([[0, 1, 2], [127, 200, 255]], src)
    else:
        x = np.array([[-3, -1, 0], [1, 7, 100]], src)
        if dst == "uint8":
            x = np.abs(x)
    expected = x.astype(dst)  # numpy's float->int conversion truncates towards zero
    check_forward("Cast", [x], {"dtype": dst}, expected=expected)
    check_forward("cast", [x], {"dtype": dst}, expected=expected)


def test_cast_truncates_towards_zero():
    x = np.array([-1.7, -0.5, 0.5, 1.7, 2.9], "float32")
    check_forward("Cast", [x], {"dtype": "int32"}, expected=np.array([-1, 0, 0, 1, 2], "int32"))


def test_cast_gradient_dtype():
    sym = mx.sym.Cast(mx.sym.Variable("x"), dtype="float64") * 3.0
    x = rand((2, 3))
    outs, g = backward(sym, {"x": x}, [np.ones((2, 3), "float64")])
    assert outs[0].dtype == np.float64
    assert g["x"].dtype == np.float32
    np.testing.assert_allclose(g["x"], np.full((2, 3), 3.0))


def test_cast_json_roundtrip():
    check_json_roundtrip("Cast", [rand((2, 3))], {"dtype": "float16"})
    check_json_roundtrip("_cast_like", [rand((2, 3)), rand((2, 3), dtype="float64")])


def test_cast_like():
    x, like = rand((2, 3)), rand((1, 1), dtype="float64")
    check_forward("_cast_like", [x, like], expected=x.astype("float64"))


# ---- BlockGrad ----
def test_blockgrad_stops_gradient():
    x = mx.sym.Variable("x")
    sym = x * x + mx.sym.BlockGrad(x * 3.0)
    v = rand((2, 3), dtype="float64")
    outs, g = backward(sym, {"x": v}, [np.ones((2, 3))])
    np.testing.assert_allclose(outs[0], v * v + 3 * v)
    np.testing.assert_allclose(g["x"], 2 * v)


# ---- second order ----
def _grad_symbol(sym, wrt_name):
    """d(sum(sym))/d(wrt) as a Symbol, built with the gradient pass."""
    from kiln.compiler.builder import Builder
    from kiln.compiler.graph import Graph
    from kiln.compiler.passes.gradient import gradient
    from kiln.symbol import Symbol
    graph = Graph(sym._outputs)
    v = graph.find_variable(wrt_name)
    head = Builder("head").ones_like(sym._outputs[0])
    return Symbol(gradient(graph, [v], [head]))


@pytest.mark.parametrize("name,d1,d2", [
    ("tanh", lambda x: 1 - np.tanh(x) ** 2, lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)),
    ("sigmoid", lambda x: (1 / (1 + np.exp(-x))) * (1 - 1 / (1 + np.exp(-x))),
     lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s)),
    ("sin", np.cos, lambda x: -np.sin(x)),
    ("log", lambda x: 1 / x, lambda x: -1 / x ** 2),
])
def test_second_order(name, d1, d2):
    x = rand((2, 3), 0.3, 2.0, dtype="float64")
    g1 = _grad_symbol(getattr(mx.sym, name)(mx.sym.Variable("x")), "x")
    np.testing.assert_allclose(forward(g1, x=x)[0], d1(x), rtol=1e-10)
    g2 = _grad_symbol(g1, "x")
    np.testing.assert_allclose(forward(g2, x=x)[0], d2(x), rtol=1e-9)
    # and the first gradient, compiled with its own backward, against finite differences
    check_gradient_sym = pytest.importorskip("kiln.test_utils").check_numeric_gradient
    check_gradient_sym(g1, {"x": x}, numeric_eps=1e-4, rtol=1e-3, atol=1e-4, dtype=np.float64)


def test_every_unary_registered():
    for name in list(DOMAIN) + ["identity", "_copy", "BlockGrad", "stop_gradient", "zeros_like",
                                "ones_like", "Cast", "cast", "_cast_like", "_digamma"]:
        assert registry.exists(name), name


def test_cast_golden_wraparound():
    """Cast against MXNet 1.9.1 values (029_nd_cast_overflow): integer wrap-around, float16 range."""
    import json
    import os
    path = "/work/shared/conformance/golden/029_nd_cast_overflow.json"
    if not os.path.exists(path):
        pytest.skip("no golden data")
    golden = {r["name"]: r["value"] for r in json.load(open(path))["results"]}
    ints = np.array([0, 1, 127, 128, 255, 256, 300, 511, -1, -2, -256, 1000], "int32")
    f = np.array([0.1, 1.0 / 3, 65504.0, 70000.0, -70000.0, 1e-8, 2049.0], "float32")
    cases = [
        ("int32_to_uint8_cast", ints, "uint8"), ("int32_to_int8", ints, "int8"),
        ("float_in_range_to_uint8", np.array([0.0, 1.7, 128.5, 254.9, 255.0], "float32"), "uint8"),
        ("float_to_int32_trunc", np.array([-2.7, -0.5, 0.5, 2.7, 1e6 + 0.5], "float32"), "int32"),
        ("float_to_int64", np.array([3.99, -3.99], "float64"), "int64"),
        ("int64_to_int32", np.array([2 ** 31 - 1, 2 ** 31 + 5, -(2 ** 31) - 1, 2 ** 40], "int64"), "int32"),
        ("float32_to_float16", f, "float16"),
        ("float64_to_float32", np.array([1.0 + 1e-10, 1e40], "float64"), "float32"),
        ("int8_to_uint8", np.array([-128, -1, 127], "int8"), "uint8"),
    ]
    for key, x, dtype in cases:
        g = golden[key]
        want = np.array([np.inf if v == "inf" else -np.inf if v == "-inf" else v for v in g["data"]]
                        if isinstance(g["data"], list) else g["data"], dtype=g["dtype"])
        got = forward(mx.sym.Cast(mx.sym.Variable("x"), dtype=dtype), x=x)[0]
        assert got.dtype == np.dtype(g["dtype"]), key
        np.testing.assert_array_equal(got, want, err_msg=key)
