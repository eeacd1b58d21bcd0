"""Reductions (compiler/ops/reduce.py): sum/mean/prod/max/min/norm/argmax/argmin."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .helpers import backward, forward

REDUCE = ["sum", "mean", "prod", "max", "min", "norm"]
AXES = [
    {}, {"axis": 0}, {"axis": 1}, {"axis": -1}, {"axis": (0, 2)}, {"axis": (0, 1, 2)},
    {"axis": 1, "keepdims": True}, {"keepdims": True}, {"axis": (0, 2), "keepdims": True},
    {"axis": 1, "exclude": True}, {"axis": (0, 2), "exclude": True}, {"axis": 0, "exclude": True, "keepdims": True},
]


def _x(dtype, shape=(2, 3, 4), seed=0, name="sum"):
    rng = np.random.RandomState(seed)
    if dtype.startswith("float"):
        x = rng.uniform(-2, 2, shape)
        if name == "prod":
            x = rng.uniform(0.5, 1.5, shape) * np.where(rng.rand(*shape) < 0.5, -1, 1)
        return x.astype(dtype)
    lo = 0 if dtype == "uint8" else -5
    if name == "prod":
        return rng.randint(max(lo, -2), 3, shape).astype(dtype)
    return rng.randint(lo, 6, shape).astype(dtype)


@pytest.mark.parametrize("attrs", AXES, ids=lambda a: ",".join("%s=%s" % kv for kv in sorted(a.items())) or "all")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", REDUCE)
def test_forward(name, dtype, attrs):
    check_forward(name, [_x(dtype, name=name)], attrs, rtol=1e-5 if dtype == "float32" else 1e-10)


@pytest.mark.parametrize("attrs", [{}, {"axis": 1}, {"axis": (0, 2), "keepdims": True}])
@pytest.mark.parametrize("name", REDUCE)
def test_forward_float16(name, attrs):
    x = _x("float16", (2, 3, 2), name=name)
    check_forward(name, [x], attrs, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("attrs", [{}, {"axis": 1}, {"axis": (0, 2), "keepdims": True}, {"axis": 0, "exclude": True}])
@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "int8"])
@pytest.mark.parametrize("name", ["sum", "prod", "max", "min"])
def test_forward_int(name, dtype, attrs):
    x = _x(dtype, (2, 3, 2), name=name)
    out = check_forward(name, [x], attrs)
    assert out[0].asnumpy().dtype == np.dtype(dtype)


@pytest.mark.parametrize("name", REDUCE + ["argmax", "argmin"])
def test_all_axes_shape_is_1(name):
    x = _x("float32", name=name)
    out = forward(getattr(mx.sym, name)(mx.sym.Variable("x")), x=x)[0]
    assert out.shape == (1,)


def test_aliases():
    x = _x("float32")
    check_forward("sum_axis", [x], {"axis": 1}, expected=x.sum(axis=1))
    check_forward("max_axis", [x], {"axis": 1}, expected=x.max(axis=1))
    check_forward("min_axis", [x], {"axis": 1}, expected=x.min(axis=1))


def test_sum_exclude_values():
    x = _x("float64")
    check_forward("sum", [x], {"axis": 1, "exclude": True}, expected=x.sum(axis=(0, 2)))
    check_forward("sum", [x], {"axis": (0, 1), "exclude": True, "keepdims": True},
                  expected=x.sum(axis=2, keepdims=True))


@pytest.mark.parametrize("ord_", [1, 2])
@pytest.mark.parametrize("attrs", [{}, {"axis": 1}, {"axis": (0, 2), "keepdims": True}])
def test_norm_values(ord_, attrs):
    x = _x("float64")
    axis = attrs.get("axis")
    if ord_ == 2:
        want = np.sqrt(np.sum(x * x, axis=axis, keepdims=attrs.get("keepdims", False)))
    else:
        want = np.sum(np.abs(x), axis=axis, keepdims=attrs.get("keepdims", False))
    want = np.asarray(want).reshape(want.shape or (1,))
    check_forward("norm", [x], dict(attrs, ord=ord_), expected=want)


# ---- argmax / argmin ----
@pytest.mark.parametrize("attrs", [{}, {"axis": 0}, {"axis": 1}, {"axis": -1}, {"axis": 1, "keepdims": True}])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "uint8", "int8"])
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg(name, dtype, attrs):
    rng = np.random.RandomState(3)
    x = rng.permutation(24).reshape(2, 3, 4).astype(dtype) if dtype != "int8" else \
        (rng.permutation(24).reshape(2, 3, 4) - 12).astype(dtype)
    out = check_forward(name, [x], attrs)
    assert out[0].asnumpy().dtype == np.dtype(dtype)  # MXNet returns indices in the input dtype


@pytest.mark.parametrize("name,fn", [("argmax", np.argmax), ("argmin", np.argmin)])
def test_arg_ties_take_first(name, fn):
    x = np.array([[1, 3, 3, 0], [2, 2, 0, 0], [5, 5, 5, 5]], "float32")
    check_forward(name, [x], {"axis": 1}, expected=fn(x, axis=1).astype("float32"))
    check_forward(name, [x], {"axis": 0}, expected=fn(x, axis=0).astype("float32"))


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_zero_gradient(name):
    x = _x("float64")
    _, g = backward(getattr(mx.sym, name)(mx.sym.Variable("x"), axis=1), {"x": x}, [np.ones((2, 4))])
    np.testing.assert_array_equal(g["x"], 0)


# ---- gradients ----
GRAD_AXES = [{}, {"axis": 1}, {"axis": (0, 2), "keepdims": True}, {"axis": 1, "exclude": True},
             {"axis": -1, "keepdims": True}, {"axis": (1, 2), "exclude": True, "keepdims": True}]


@pytest.mark.parametrize("attrs", GRAD_AXES, ids=lambda a: ",".join("%s=%s" % kv for kv in sorted(a.items())) or "all")
@pytest.mark.parametrize("name", REDUCE)
def test_gradient(name, attrs):
    x = _x("float64", seed=5, name=name)
    if name in ("max", "min"):
        x = np.random.RandomState(5).permutation(24).reshape(2, 3, 4) / 4.0  # no ties
    if name == "norm":
        x = np.where(np.abs(x) < 0.1, 0.5, x)
    check_gradient(name, [x], attrs)


def test_norm_ord1_gradient():
    x = np.random.RandomState(6).uniform(0.2, 1, (2, 3)) * np.array([1, -1, 1])
    check_gradient("norm", [x], {"ord": 1, "axis": 1})
    check_gradient("norm", [x], {"ord": 1})


def test_max_gradient_ties_mxnet():
    # MXNet's max gradient goes to every maximal element
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    _, g = backward(mx.sym.max(mx.sym.Variable("x"), axis=1), {"x": x}, [np.ones(2)])
    np.testing.assert_array_equal(g["x"], [[0, 1, 1], [1, 0, 0]])


def test_mean_gradient_values():
    x = _x("float64")
    _, g = backward(mx.sym.mean(mx.sym.Variable("x"), axis=(0, 2)), {"x": x}, [np.array([1.0, 2.0, 3.0])])
    np.testing.assert_allclose(g["x"], np.broadcast_to(np.array([1.0, 2.0, 3.0])[None, :, None] / 8, x.shape))


@pytest.mark.parametrize("name", REDUCE + ["argmax", "argmin"])
def test_json_roundtrip(name):
    x = _x("float32", name=name)
    check_json_roundtrip(name, [x], {"axis": 1})
    if name not in ("argmax", "argmin"):
        check_json_roundtrip(name, [x], {"axis": (0, 2), "keepdims": True, "exclude": True})


# ---- internal helpers used by gradients ----
def test_reduce_sum_like():
    g = np.random.RandomState(1).rand(2, 3, 4)
    check_forward("_reduce_sum_like", [g, np.zeros((3, 1))])
    check_forward("_reduce_sum_like", [g, np.zeros((1, 3, 4))])
    check_forward("_reduce_sum_like", [g, np.zeros((4,))])
    check_gradient("_reduce_sum_like", [g, np.zeros((3, 1))], grad_nodes=[0])
    check_json_roundtrip("_reduce_sum_like", [g.astype("float32"), np.zeros((3, 1), "float32")])


def test_broadcast_reduce_like_and_div_by_count():
    g = np.random.RandomState(1).rand(3)
    like = np.zeros((2, 3, 4))
    check_forward("_broadcast_reduce_like", [g, like], {"axis": (0, 2)},
                  expected=np.broadcast_to(g[None, :, None], like.shape))
    check_gradient("_broadcast_reduce_like", [g, like], {"axis": (0, 2)}, grad_nodes=[0])
    check_forward("_div_by_reduced_count", [like + 8.0, like], {"axis": (0, 2)}, expected=like + 1.0)
    check_json_roundtrip("_broadcast_reduce_like", [g, like], {"axis": (0, 2)})
    check_json_roundtrip("_div_by_reduced_count", [like, like], {"axis": 1})


def test_golden_reductions():
    """MXNet 1.9.1 values (026_nd_reductions) for a few cases."""
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    X = mx.sym.Variable("x")
    assert forward(mx.sym.sum(X, axis=(0, 2)), x=x)[0].tolist() == [60.0, 92.0, 124.0]
    assert forward(mx.sym.argmax(X, axis=2), x=x)[0].dtype == np.float32
    np.testing.assert_allclose(forward(mx.sym.norm(X), x=x)[0], [np.sqrt((x.astype(np.float64) ** 2).sum())],
                               rtol=1e-6)
