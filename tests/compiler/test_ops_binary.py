"""Binary operators (compiler/ops/elemwise_binary.py): same-shape, broadcast and
scalar forms, Symbol operator overloads, add_n, clip, where."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln.compiler.ops import elemwise_binary as EB
from kiln.compiler.ops import registry
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .helpers import backward, forward

FLOATS = ["float32", "float64", "float16"]
INTS = ["int32", "int64", "uint8", "int8"]
KEYS = list(EB.BINARY)
ARITH = ["add", "sub", "mul", "div", "mod", "power", "maximum", "minimum", "hypot"]
COMPARE = ["equal", "not_equal", "greater", "greater_equal", "lesser", "lesser_equal"]
LOGICAL = ["logical_and", "logical_or", "logical_xor"]
SAME = {k: EB.ELEMWISE_NAMES[k][0] for k in KEYS}


def _pair(key, shape_a, shape_b, dtype, seed=0):
    rng = np.random.RandomState(seed)
    if dtype.startswith("float"):
        if key == "power":
            a, b = rng.uniform(0.5, 2, shape_a), rng.uniform(-2, 2, shape_b)
        elif key in ("div", "mod"):
            a = rng.uniform(-3, 3, shape_a)
            b = rng.uniform(0.5, 2, shape_b) * np.where(rng.rand(*shape_b) < 0.5, -1, 1)
        elif key in COMPARE + LOGICAL:
            a, b = rng.randint(-2, 3, shape_a).astype(float), rng.randint(-2, 3, shape_b).astype(float)
        else:
            a, b = rng.uniform(-3, 3, shape_a), rng.uniform(-3, 3, shape_b)
    else:
        lo = 0 if dtype == "uint8" else -6
        a, b = rng.randint(lo, 7, shape_a), rng.randint(lo, 7, shape_b)
        if key == "power":
            a, b = rng.randint(0, 4, shape_a), rng.randint(0, 4, shape_b)
        if key in ("mul",) and dtype in ("int8", "uint8"):
            a, b = a % 5, b % 5
    return a.astype(dtype), b.astype(dtype)


def _tol(key, dtype):
    if dtype == "float16" and key in ("power", "div", "mod", "hypot", "mul"):
        return {"rtol": 3e-2, "atol": 3e-2}
    return {}


def _int_ok(key):
    return key != "hypot"


# ---- same shape ----
@pytest.mark.parametrize("shape", [(5,), (2, 3), (2, 3, 2)])
@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("key", KEYS)
def test_elemwise_forward(key, dtype, shape):
    if dtype in INTS and not _int_ok(key):
        pytest.skip("float only")
    a, b = _pair(key, shape, shape, dtype)
    out = check_forward(SAME[key], [a, b], **_tol(key, dtype))
    assert out[0].asnumpy().dtype == np.dtype(dtype)


@pytest.mark.parametrize("key", KEYS)
def test_elemwise_aliases(key):
    a, b = _pair(key, (2, 3), (2, 3), "float32")
    for alias in EB.ELEMWISE_NAMES[key][1]:
        check_forward(alias, [a, b])


# ---- broadcasting ----
BSHAPES = [((2, 3), (2, 3)), ((2, 3), (1, 3)), ((3, 1, 4), (1, 2, 4)), ((2, 3, 4), (4,)), ((1,), (2, 3))]


@pytest.mark.parametrize("shapes", BSHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8"])
@pytest.mark.parametrize("key", KEYS)
def test_broadcast_forward(key, dtype, shapes):
    if dtype in INTS and not _int_ok(key):
        pytest.skip("float only")
    a, b = _pair(key, shapes[0], shapes[1], dtype)
    out = check_forward("broadcast_" + key, [a, b])
    assert out[0].shape == np.broadcast_shapes(shapes[0], shapes[1])


def test_broadcast_aliases():
    a, b = _pair("add", (2, 3), (1, 3), "float32")
    check_forward("broadcast_plus", [a, b], expected=a + b)
    check_forward("broadcast_minus", [a, b], expected=a - b)


@pytest.mark.parametrize("key", ARITH)
def test_elemwise_gradient(key):
    a, b = _pair(key, (2, 3), (2, 3), "float64", seed=2)
    if key in ("maximum", "minimum"):
        b = a + np.where(np.random.RandomState(3).rand(2, 3) < 0.5, -0.5, 0.5)  # no ties
    if key == "mod":
        a = np.array([[2.3, -1.7, 0.4], [5.1, -3.3, 1.2]])
        b = np.array([[1.5, 1.1, -0.7], [-2.2, 1.4, 0.5]])
    check_gradient(SAME[key], [a, b])


@pytest.mark.parametrize("shapes", [((2, 3), (1, 3)), ((3, 1, 4), (1, 2, 4)), ((2, 3, 4), (4,)), ((1,), (2, 3))])
@pytest.mark.parametrize("key", ARITH)
def test_broadcast_gradient(key, shapes):
    a, b = _pair(key, shapes[0], shapes[1], "float64", seed=4)
    if key in ("maximum", "minimum"):
        a = np.round(a * 3) / 3 + 0.1
        b = np.round(b * 3) / 3 - 0.05
    if key == "mod":
        a = np.random.RandomState(5).uniform(0.1, 0.9, shapes[0]) + np.random.RandomState(6).randint(-3, 3, shapes[0])
        b = np.random.RandomState(7).uniform(1.05, 1.3, shapes[1]) * np.where(np.random.RandomState(8).rand(*shapes[1]) < .5, -1, 1)
        # keep a/b away from integers
        q = a / np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape)) if a.size >= b.size else None
        if q is not None and np.min(np.abs(q - np.round(q))) < 0.02:
            pytest.skip("unlucky draw close to a discontinuity")
    check_gradient("broadcast_" + key, [a, b])


@pytest.mark.parametrize("form", ["same", "broadcast"])
@pytest.mark.parametrize("key", COMPARE + LOGICAL)
def test_zero_gradient(key, form):
    a, b = _pair(key, (2, 3), (2, 3), "float64")
    name = SAME[key] if form == "same" else "broadcast_" + key
    sym = getattr(mx.sym, name)(mx.sym.Variable("a"), mx.sym.Variable("b"))
    _, g = backward(sym, {"a": a, "b": b}, [np.ones((2, 3))])
    np.testing.assert_array_equal(g["a"], 0)
    np.testing.assert_array_equal(g["b"], 0)


@pytest.mark.parametrize("key", KEYS)
def test_json_roundtrip(key):
    a, b = _pair(key, (2, 3), (2, 3), "float32")
    check_json_roundtrip(SAME[key], [a, b])
    check_json_roundtrip("broadcast_" + key, [a, b[:1]])


# ---- MXNet semantics ----
@pytest.mark.parametrize("dtype", INTS)
def test_int_division_by_zero_is_zero(dtype):
    lo = 0 if dtype == "uint8" else -7
    a = np.arange(lo, lo + 12).reshape(3, 4).astype(dtype)
    b = np.array([[0, 2, 0, 3], [1, 0, 4, 0], [0, 5, 0, 7]], dtype)
    if dtype != "uint8":
        b[0, 1] = -2
    with np.errstate(all="ignore"):
        want = np.where(b == 0, 0, np.trunc(a.astype(float) / np.where(b == 0, 1, b))).astype(dtype)
    check_forward("elemwise_div", [a, b], expected=want)
    check_forward("broadcast_div", [a, b], expected=want)
    check_forward("_div_scalar", [a], {"scalar": 0}, expected=np.zeros_like(a))
    check_forward("_rdiv_scalar", [b], {"scalar": 5}, expected=np.where(b == 0, 0, np.trunc(5.0 / np.where(b == 0, 1, b))).astype(dtype))


def test_int_min_div_minus_one_does_not_crash():
    a = np.array([np.iinfo(np.int32).min, 7], "int32")
    b = np.array([-1, -1], "int32")
    out = forward(mx.sym.elemwise_div(mx.sym.Variable("a"), mx.sym.Variable("b")), a=a, b=b)[0]
    assert out[1] == -7
    out = forward(mx.sym._mod(mx.sym.Variable("a"), mx.sym.Variable("b")), a=a, b=b)[0]
    assert out[1] == 0


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "int8"])
def test_mod_sign_of_divisor(dtype):
    a = np.array([7, -7, 7, -7, 5, 0, 3, -3], dtype)
    b = np.array([3, 3, -3, -3, 0, 2, 3, 0], dtype)
    want = np.array([1, 2, -2, -1, 0, 0, 0, 0], dtype)
    check_forward("_mod", [a, b], expected=want)
    check_forward("broadcast_mod", [a, b], expected=want)
    check_forward("_mod_scalar", [a], {"scalar": -3}, expected=np.array([-2, -1, -2, -1, -1, 0, 0, 0], dtype))
    check_forward("_mod_scalar", [a], {"scalar": 0}, expected=np.zeros_like(a))
    check_forward("_rmod_scalar", [b], {"scalar": 7},
                  expected=np.array([1, 1, -2, -2, 0, 1, 1, 0], dtype))


def test_float_mod_fractional():
    a = np.array([5.5, -5.5, 5.5, -5.5, 0.25], "float64")
    b = np.array([2.0, 2.0, -2.0, -2.0, 0.0], "float64")
    check_forward("_mod", [a, b], expected=np.array([1.5, 0.5, -0.5, -1.5, 0.0]))


@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("key", COMPARE + LOGICAL)
def test_comparison_dtype_and_values(key, dtype):
    a, b = _pair(key, (3, 4), (3, 4), dtype, seed=9)
    out = check_forward(SAME[key], [a, b])[0].asnumpy()
    assert out.dtype == np.dtype(dtype)
    assert set(np.unique(out)) <= {0, 1}


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint8"])
def test_int_arith_wraps_like_numpy(dtype):
    info = np.iinfo(dtype)
    a = np.array([info.max, info.min, 3], dtype)
    b = np.array([1, 1, 2], dtype)
    with np.errstate(all="ignore"):
        check_forward("elemwise_add", [a, b], expected=(a + b).astype(dtype))
        check_forward("elemwise_sub", [a, b], expected=(a - b).astype(dtype))


# ---- scalar forms ----
SCALAR_OPS = sorted(n for n in registry.all_names() if n.endswith("_scalar") and registry.exists(n)
                    and n.startswith("_") and n[1:].split("_scalar")[0].lstrip("r") in
                    {s for s in EB._SCALAR_KEYS} | {"minus", "div", "mod", "power"})


def _scalar_key(name):
    stem = name[1:-len("_scalar")]
    rev = stem.startswith("r") and stem[1:] in EB.REVERSIBLE
    return EB._SCALAR_KEYS[stem[1:] if rev else stem], rev


def _scalar_case(name, dtype):
    key, rev = _scalar_key(name)
    rng = np.random.RandomState(11)
    if dtype.startswith("float"):
        if key == "power":
            x = rng.uniform(0.5, 2, (2, 3)) if not rev else rng.uniform(-2, 2, (2, 3))
            s = 2.5 if not rev else 1.7
        elif key in ("div", "mod"):
            x = rng.uniform(0.5, 2, (2, 3)) * np.array([1, -1, 1])
            s = 1.3 if not rev else -2.6
        elif key in COMPARE + LOGICAL:
            x, s = rng.randint(-2, 3, (2, 3)).astype(float), 1.0
        else:
            x, s = rng.uniform(-3, 3, (2, 3)), 0.7
    else:
        lo = 0 if dtype == "uint8" else -5
        x = rng.randint(lo, 6, (2, 3))
        s = 3
        if key == "power":
            x, s = rng.randint(0, 4, (2, 3)), 2
    return x.astype(dtype), s


def test_all_scalar_ops_found():
    expected = {"_plus_scalar", "_minus_scalar", "_rminus_scalar", "_mul_scalar", "_div_scalar",
                "_rdiv_scalar", "_mod_scalar", "_rmod_scalar", "_power_scalar", "_rpower_scalar",
                "_maximum_scalar", "_minimum_scalar", "_hypot_scalar", "_equal_scalar",
                "_not_equal_scalar", "_greater_scalar", "_greater_equal_scalar", "_lesser_scalar",
                "_lesser_equal_scalar", "_logical_and_scalar", "_logical_or_scalar", "_logical_xor_scalar"}
    assert expected <= set(SCALAR_OPS), expected - set(SCALAR_OPS)
    for name, aliases in EB.SCALAR_ALIASES.items():
        for a in aliases:
            assert registry.get(a) is registry.get(name)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "uint8"])
@pytest.mark.parametrize("name", SCALAR_OPS)
def test_scalar_forward(name, dtype):
    key, _ = _scalar_key(name)
    if dtype not in FLOATS and key == "hypot":
        pytest.skip("float only")
    x, s = _scalar_case(name, dtype)
    out = check_forward(name, [x], {"scalar": s}, **_tol(key, dtype))
    assert out[0].asnumpy().dtype == np.dtype(dtype)


@pytest.mark.parametrize("name", SCALAR_OPS)
def test_scalar_gradient(name):
    key, rev = _scalar_key(name)
    x, s = _scalar_case(name, "float64")
    if key in COMPARE + LOGICAL:
        sym = getattr(mx.sym, name)(mx.sym.Variable("x"), scalar=s)
        _, g = backward(sym, {"x": x}, [np.ones_like(x)])
        np.testing.assert_array_equal(g["x"], 0)
        return
    if key in ("maximum", "minimum"):
        x = np.where(np.abs(x - s) < 0.1, x + 0.3, x)
    if key == "mod":
        x = np.array([[0.7, -1.9, 2.2], [1.8, -0.4, 3.1]])
    check_gradient(name, [x], {"scalar": s})


@pytest.mark.parametrize("name", SCALAR_OPS)
def test_scalar_json_roundtrip(name):
    x, s = _scalar_case(name, "float32")
    check_json_roundtrip(name, [x], {"scalar": s})
    for alias in EB.SCALAR_ALIASES.get(name, ()):
        check_json_roundtrip(alias, [x], {"scalar": s})


def test_rpower_scalar_values():
    x = np.array([-1.0, 0.0, 0.5, 2.0], "float64")
    check_forward("_rpower_scalar", [x], {"scalar": 2.0}, expected=2.0 ** x)
    check_gradient("_rpower_scalar", [x], {"scalar": 3.0})


def test_rminus_rdiv_values():
    x = np.array([1.0, -2.0, 4.0], "float32")
    check_forward("_rminus_scalar", [x], {"scalar": 10}, expected=10 - x)
    check_forward("_rdiv_scalar", [x], {"scalar": 10}, expected=10 / x)


# ---- Symbol operator overloads ----
OVERLOADS = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
    "%": lambda a, b: a % b, "**": lambda a, b: a ** b,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


def _np_apply(op, a, b, dtype):
    with np.errstate(all="ignore"):
        if op == "%":
            r = np.mod(a, b)
        else:
            r = OVERLOADS[op](a, b)
    return np.asarray(r).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("op", sorted(OVERLOADS))
def test_symbol_overloads(op, dtype):
    rng = np.random.RandomState(13)
    if dtype.startswith("float"):
        a = rng.uniform(0.5, 3, (2, 3)).astype(dtype)
        b = rng.uniform(0.5, 3, (2, 3)).astype(dtype)
        if op in ("==", "!=", ">", ">=", "<", "<="):
            a, b = np.round(a), np.round(b)
        s = 1.5 if op != "**" else 2.0
    else:
        a = rng.randint(1, 5, (2, 3)).astype(dtype)
        b = rng.randint(1, 4, (2, 3)).astype(dtype)
        s = 2
    A, B = mx.sym.Variable("a"), mx.sym.Variable("b")
    fn = OVERLOADS[op]
    tol = dict(rtol=1e-5 if dtype == "float32" else 1e-12)
    if dtype == "int32" and op == "/":
        want_ab = np.trunc(a / b).astype(dtype)
        want_as = np.trunc(a / s).astype(dtype)
        want_sa = np.trunc(s / a).astype(dtype)
    else:
        want_ab = _np_apply(op, a, b, dtype)
        want_as = _np_apply(op, a, np.asarray(s, dtype), dtype)
        want_sa = _np_apply(op, np.asarray(s, dtype), a, dtype)
    got = forward(fn(A, B), a=a, b=b)[0]
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want_ab, **tol)
    np.testing.assert_allclose(forward(fn(A, s), a=a)[0], want_as, **tol)
    if op not in ("==", "!=", ">", ">=", "<", "<="):
        np.testing.assert_allclose(forward(fn(s, A), a=a)[0], want_sa, **tol)
    else:
        # python reflects comparisons: s < A  ->  A > s
        np.testing.assert_allclose(forward(fn(s, A), a=a)[0], _np_apply(op, np.asarray(s, dtype), a, dtype), **tol)


def test_symbol_negation():
    a = np.array([1.0, -2.0, 3.0], "float32")
    np.testing.assert_array_equal(forward(-mx.sym.Variable("a"), a=a)[0], -a)


def test_symbol_overload_gradient():
    A, B = mx.sym.Variable("a"), mx.sym.Variable("b")
    sym = (A * B + A / B - 2.0 * A + A ** 2 + 3.0 / B) ** 2.0
    a = np.array([[0.5, 1.2], [2.0, 0.7]])
    b = np.array([[1.5, 0.6], [1.1, 2.3]])
    from kiln.test_utils import check_numeric_gradient
    check_numeric_gradient(sym, {"a": a, "b": b}, numeric_eps=1e-5, rtol=1e-4, atol=1e-5, dtype=np.float64)


# ---- add_n ----
@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "uint8"])
def test_add_n(n, dtype):
    xs = [np.random.RandomState(i).randint(0, 5, (2, 3)).astype(dtype) for i in range(n)]
    check_forward("add_n", xs, {"num_args": n})


def test_add_n_aliases_gradient_json():
    xs = [np.random.RandomState(i).rand(2, 3) for i in range(3)]
    check_forward("ElementWiseSum", [x.astype("float32") for x in xs], {"num_args": 3})
    check_gradient("add_n", xs, {"num_args": 3})
    check_json_roundtrip("add_n", [x.astype("float32") for x in xs], {"num_args": 3})


def test_add_n_symbol_api():
    a, b, c = (mx.sym.Variable(n) for n in "abc")
    v = {k: np.random.RandomState(i).rand(2, 2).astype("float32") for i, k in enumerate("abc")}
    np.testing.assert_allclose(forward(mx.sym.add_n(a, b, c), **v)[0], v["a"] + v["b"] + v["c"], rtol=1e-6)


# ---- clip ----
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "int8", "uint8"])
def test_clip_forward(dtype):
    lo = 0 if dtype == "uint8" else -5
    x = np.random.RandomState(3).randint(lo, 6, (3, 4)).astype(dtype)
    if dtype.startswith("float"):
        x = x + np.asarray(0.25, dtype)
    check_forward("clip", [x], {"a_min": 1, "a_max": 3})
    check_forward("clip", [x], {"a_min": -1.5, "a_max": 2.5} if dtype.startswith("float") else {"a_min": 0, "a_max": 4})


def test_clip_gradient_json():
    x = np.array([[-2.0, -0.5, 0.3], [0.9, 1.7, 3.0]])
    check_gradient("clip", [x], {"a_min": -1.0, "a_max": 1.0})
    _, g = backward(mx.sym.clip(mx.sym.Variable("x"), a_min=-1.0, a_max=1.0), {"x": x}, [np.ones((2, 3))])
    np.testing.assert_array_equal(g["x"], [[0, 1, 1], [1, 0, 0]])
    check_json_roundtrip("clip", [x.astype("float32")], {"a_min": -1.0, "a_max": 1.0})


# ---- where ----
@pytest.mark.parametrize("cond_shape", [(2, 3), (2,)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "uint8"])
def test_where_forward(dtype, cond_shape):
    rng = np.random.RandomState(4)
    c = rng.randint(0, 2, cond_shape).astype("float32")
    x = rng.randint(0, 9, (2, 3)).astype(dtype)
    y = rng.randint(0, 9, (2, 3)).astype(dtype)
    check_forward("where", [c, x, y])


@pytest.mark.parametrize("cdtype", ["int32", "uint8", "float64"])
def test_where_condition_dtype(cdtype):
    c = np.array([[1, 0, 2], [0, 3, 0]], cdtype)
    x = np.arange(6.0).reshape(2, 3).astype("float32")
    y = -x
    check_forward("where", [c, x, y], expected=np.where(c != 0, x, y))


def test_where_gradient_json():
    c = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    x, y = np.random.RandomState(1).rand(2, 3), np.random.RandomState(2).rand(2, 3)
    check_gradient("where", [c, x, y], grad_nodes=[1, 2])
    _, g = backward(mx.sym.where(*(mx.sym.Variable(n) for n in ("c", "x", "y"))), {"c": c, "x": x, "y": y},
                    [np.full((2, 3), 2.0)])
    np.testing.assert_array_equal(g["x"], 2 * c)
    np.testing.assert_array_equal(g["y"], 2 * (1 - c))
    np.testing.assert_array_equal(g["c"], 0)
    check_json_roundtrip("where", [c.astype("float32"), x.astype("float32"), y.astype("float32")])
