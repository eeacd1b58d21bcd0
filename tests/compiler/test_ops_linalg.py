"""dot, batch_dot, FullyConnected (compiler/ops/linalg.py)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .helpers import forward


def mx_dot(a, b, ta=False, tb=False):
    """MXNet's dot: an N-d operand is a matrix of (first dim, rest) or (all but last, last) dims;
    transposing swaps those two groups (it does not reverse every axis)."""
    a2 = a.reshape(a.shape[0], -1).T if ta else a.reshape(-1, a.shape[-1])
    b2 = b.reshape(-1, b.shape[-1]).T if tb else b.reshape(b.shape[0], -1)
    out_a = (a.shape[1:] if ta else a.shape[:-1]) if a.ndim > 1 else ()
    out_b = (b.shape[:-1] if tb else b.shape[1:]) if b.ndim > 1 else ()
    shape = tuple(out_a) + tuple(out_b)
    return (a2 @ b2).reshape(shape or (1,)).astype(a.dtype)


def _r(shape, dtype="float32", seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, shape).astype(dtype)


DOT_CASES = [
    # (lhs shape, rhs shape, transpose_a, transpose_b)
    ((4,), (4,), False, False),
    ((3, 4), (4,), False, False),
    ((4,), (4, 3), False, False),
    ((3, 4), (4, 2), False, False),
    ((4, 3), (4, 2), True, False),
    ((3, 4), (2, 4), False, True),
    ((4, 3), (2, 4), True, True),
    ((2, 3, 4), (4, 5), False, False),
    ((4, 5), (5, 2, 3), False, False),
    ((2, 3, 4), (4, 2, 3), False, False),
    ((4, 2, 3), (4, 5), True, False),
    ((2, 3), (5, 2, 3), False, True),
    ((4, 2, 3), (5, 4), True, True),
    ((2, 3, 4), (5, 2, 4), False, True),
]
IDS = ["%s%s%s%s" % (a, b, "T" if ta else "", "T" if tb else "") for a, b, ta, tb in DOT_CASES]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("case", DOT_CASES, ids=IDS)
def test_dot_forward(case, dtype):
    sa, sb, ta, tb = case
    a, b = _r(sa, dtype, 1), _r(sb, dtype, 2)
    attrs = {"transpose_a": ta, "transpose_b": tb}
    want = mx_dot(a.astype(np.float64), b.astype(np.float64), ta, tb).astype(dtype)
    check_forward("dot", [a, b], attrs, expected=want, rtol=3e-2 if dtype == "float16" else None)
    check_forward("dot", [a, b], attrs)  # the operator's own reference agrees


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_dot_int(dtype):
    a = np.arange(12).reshape(3, 4).astype(dtype) - 5
    b = np.arange(8).reshape(4, 2).astype(dtype)
    check_forward("dot", [a, b], expected=a @ b)


@pytest.mark.parametrize("case", DOT_CASES, ids=IDS)
def test_dot_gradient(case):
    sa, sb, ta, tb = case
    check_gradient("dot", [_r(sa, "float64", 3), _r(sb, "float64", 4)], {"transpose_a": ta, "transpose_b": tb})


def test_dot_golden():
    """MXNet 1.9.1 (025_nd_dot): dot of 1-d vectors gives shape (1,)."""
    v, w = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    out = forward(mx.sym.dot(mx.sym.Variable("a"), mx.sym.Variable("b")), a=v, b=w)[0]
    assert out.shape == (1,) and out[0] == 6.0


def test_dot_json_roundtrip():
    check_json_roundtrip("dot", [_r((4, 3)), _r((2, 4))], {"transpose_a": True, "transpose_b": True})
    check_json_roundtrip("dot", [_r((2, 3, 4)), _r((4, 5))])


def test_dot_shape_error():
    with pytest.raises(Exception):
        forward(mx.sym.dot(mx.sym.Variable("a"), mx.sym.Variable("b")), a=_r((3, 4)), b=_r((3, 4)))


# ---- batch_dot ----
BDOT = [((2, 3, 4), (2, 4, 5), False, False), ((2, 4, 3), (2, 4, 5), True, False),
        ((2, 3, 4), (2, 5, 4), False, True), ((2, 4, 3), (2, 5, 4), True, True), ((1, 1, 3), (1, 3, 1), False, False)]
BIDS = ["%s%s%s%s" % (a, b, "T" if ta else "", "T" if tb else "") for a, b, ta, tb in BDOT]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("case", BDOT, ids=BIDS)
def test_batch_dot_forward(case, dtype):
    sa, sb, ta, tb = case
    a, b = _r(sa, dtype, 5), _r(sb, dtype, 6)
    ea = a.transpose(0, 2, 1) if ta else a
    eb = b.transpose(0, 2, 1) if tb else b
    want = np.matmul(ea.astype(np.float64), eb.astype(np.float64)).astype(dtype)
    check_forward("batch_dot", [a, b], {"transpose_a": ta, "transpose_b": tb}, expected=want,
                  rtol=3e-2 if dtype == "float16" else None)


@pytest.mark.parametrize("case", BDOT, ids=BIDS)
def test_batch_dot_gradient(case):
    sa, sb, ta, tb = case
    check_gradient("batch_dot", [_r(sa, "float64", 7), _r(sb, "float64", 8)], {"transpose_a": ta, "transpose_b": tb})


def test_batch_dot_json_roundtrip():
    check_json_roundtrip("batch_dot", [_r((2, 4, 3)), _r((2, 4, 5))], {"transpose_a": True})


# ---- _tensordot_lead (internal helper of dot's gradient) ----
def test_tensordot_lead():
    x, y = _r((2, 3, 4), "float64"), _r((2, 3, 5), "float64")
    check_forward("_tensordot_lead", [x, y], expected=np.einsum("abm,abn->mn", x, y))
    check_gradient("_tensordot_lead", [x, y])
    check_json_roundtrip("_tensordot_lead", [x, y])


# ---- FullyConnected ----
FC_CASES = [
    ((4, 5), 3, {}), ((4, 5), 3, {"no_bias": True}), ((2, 3, 4), 2, {}),
    ((2, 3, 4), 2, {"flatten": False}), ((2, 3, 4), 2, {"flatten": False, "no_bias": True}),
    ((3, 2, 2, 2), 4, {}),
]


def _fc_inputs(xshape, h, attrs, dtype="float32"):
    x = _r(xshape, dtype, 9)
    k = xshape[-1] if attrs.get("flatten") is False else int(np.prod(xshape[1:]))
    ins = [x, _r((h, k), dtype, 10)]
    if not attrs.get("no_bias"):
        ins.append(_r((h,), dtype, 11))
    return ins


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("case", FC_CASES, ids=[str(c) for c in FC_CASES])
def test_fc_forward(case, dtype):
    xshape, h, attrs = case
    ins = _fc_inputs(xshape, h, attrs, dtype)
    x = ins[0].astype(np.float64)
    x2 = x if attrs.get("flatten") is False else x.reshape(x.shape[0], -1)
    want = x2 @ ins[1].astype(np.float64).T
    if len(ins) == 3:
        want = want + ins[2]
    check_forward("FullyConnected", ins, dict(attrs, num_hidden=h), expected=want.astype(dtype),
                  rtol=3e-2 if dtype == "float16" else None)


@pytest.mark.parametrize("case", FC_CASES, ids=[str(c) for c in FC_CASES])
def test_fc_gradient(case):
    xshape, h, attrs = case
    check_gradient("FullyConnected", _fc_inputs(xshape, h, attrs, "float64"), dict(attrs, num_hidden=h))


def test_fc_json_and_shapes():
    check_json_roundtrip("FullyConnected", _fc_inputs((2, 3, 4), 2, {"flatten": False}),
                         {"num_hidden": 2, "flatten": False})
    sym = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=3, name="fc")
    assert sym.list_arguments() == ["data", "fc_weight", "fc_bias"]
    arg, out, _ = sym.infer_shape(data=(4, 2, 5))
    assert arg == [(4, 2, 5), (3, 10), (3,)] and out == [(4, 3)]
    sym = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=3, no_bias=True, flatten=False, name="fc")
    assert sym.list_arguments() == ["data", "fc_weight"]
    arg, out, _ = sym.infer_shape(data=(4, 2, 5))
    assert arg == [(4, 2, 5), (3, 5)] and out == [(4, 2, 3)]


def test_fc_golden():
    """MXNet 1.9.1 values from 010_sym_fc_act_softmax_output."""
    import json
    import os
    path = "/work/shared/conformance/golden/010_sym_fc_act_softmax_output.json"
    if not os.path.exists(path):
        pytest.skip("no golden data")
    golden = {r["name"]: np.array(r["value"]["data"]) for r in json.load(open(path))["results"]}
    rs = np.random.RandomState(0)
    xv = rs.uniform(-2, 2, (4, 5)).astype(np.float32)
    wv = rs.uniform(-1, 1, (3, 5)).astype(np.float32)
    bv = rs.uniform(-1, 1, (3,)).astype(np.float32)
    fc = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=3, name="fc")
    np.testing.assert_allclose(forward(fc, data=xv, fc_weight=wv, fc_bias=bv)[0], golden["fc"], rtol=1e-5, atol=1e-6)
    x3 = rs.uniform(-1, 1, (2, 3, 4)).astype(np.float32)
    fcnf = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=2, flatten=False, name="fcnf")
    out = forward(fcnf, data=x3, fcnf_weight=rs.uniform(-1, 1, (2, 4)).astype(np.float32),
                  fcnf_bias=np.array([0.5, -0.5], np.float32))[0]
    np.testing.assert_allclose(out, golden["fc_no_flatten"], rtol=1e-5, atol=1e-6)


# ---- _dot_backward (internal: dot's gradient, itself differentiable) ----
@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("case", DOT_CASES, ids=IDS)
def test_dot_backward_op(case, which):
    sa, sb, ta, tb = case
    a, b = _r(sa, "float64", 12), _r(sb, "float64", 13)
    og = _r(mx_dot(a, b, ta, tb).shape, "float64", 14)
    like, other = (a, b) if which == 0 else (b, a)
    attrs = {"transpose_a": ta, "transpose_b": tb, "which": which}
    check_forward("_dot_backward", [og, other, like], attrs)
    check_gradient("_dot_backward", [og, other, like], attrs, grad_nodes=[0, 1])


def test_dot_backward_json():
    check_json_roundtrip("_dot_backward", [_r((3, 2)), _r((4, 2)), _r((3, 4))], {"which": 0})


def test_dot_second_order():
    """d/dA of sum((A.B)^2) differentiated again gives 2 * B B^T summed appropriately."""
    from .test_ops_unary import _grad_symbol
    A, B = mx.sym.Variable("a"), mx.sym.Variable("b")
    y = mx.sym.sum(mx.sym.square(mx.sym.dot(A, B)))
    a, b = _r((2, 3), "float64", 15), _r((3, 4), "float64", 16)
    g = _grad_symbol(y, "a")  # 2 (A B) B^T
    np.testing.assert_allclose(forward(g, a=a, b=b)[0], 2 * (a @ b) @ b.T, rtol=1e-10)
    from kiln.test_utils import check_numeric_gradient
    check_numeric_gradient(g, {"a": a, "b": b}, numeric_eps=1e-5, rtol=1e-4, atol=1e-6, dtype=np.float64)
