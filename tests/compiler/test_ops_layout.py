"""Reshape (MXNet codes), Flatten, reshape_like, expand_dims, transpose, broadcast_to,
broadcast_like (compiler/ops/layout.py)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .helpers import forward

DTYPES = ["float32", "float64", "float16", "int32", "int64", "uint8", "int8"]


def _x(shape, dtype="float32"):
    return (np.arange(int(np.prod(shape))) % 100).reshape(shape).astype(dtype)


# (input shape, shape attr, reverse, expected output shape): MXNet's documented examples
RESHAPE = [
    ((2, 3, 4), (4, 0, 2), False, (4, 3, 2)),
    ((2, 3, 4), (2, 0, 0), False, (2, 3, 4)),
    ((2, 3, 4), (6, 1, -1), False, (6, 1, 4)),
    ((2, 3, 4), (3, 1, -1), False, (3, 1, 8)),
    ((2, 3, 4), (-1,), False, (24,)),
    ((2, 3, 4), (-2,), False, (2, 3, 4)),
    ((2, 3, 4), (2, -2), False, (2, 3, 4)),
    ((2, 3, 4), (-2, 1, 1), False, (2, 3, 4, 1, 1)),
    ((2, 3, 4), (-3, 4), False, (6, 4)),
    ((2, 3, 4, 5), (-3, -3), False, (6, 20)),
    ((2, 3, 4), (0, -3), False, (2, 12)),
    ((2, 3, 4, 5), (-3, -2), False, (6, 4, 5)),
    ((2, 3, 4), (-4, 1, 2, -2), False, (1, 2, 3, 4)),
    ((2, 3, 4), (2, -4, -1, 3, -2), False, (2, 1, 3, 4)),
    ((10, 5, 4), (-1, 0), False, (40, 5)),
    ((10, 5, 4), (-1, 0), True, (50, 4)),
    ((2, 3, 4), (0, -1), True, (3, 8)),  # reversed: -1 takes 4, 0 copies 3
    ((2, 3, 4), (4, -1), False, (4, 6)),
]


@pytest.mark.parametrize("case", RESHAPE, ids=[str(c) for c in RESHAPE])
def test_reshape_codes(case):
    ishape, spec, reverse, oshape = case
    x = _x(ishape)
    out = check_forward("Reshape", [x], {"shape": spec, "reverse": reverse}, expected=x.reshape(oshape))
    assert out[0].shape == oshape


@pytest.mark.parametrize("dtype", DTYPES)
def test_reshape_dtypes(dtype):
    x = _x((2, 3, 4), dtype)
    check_forward("Reshape", [x], {"shape": (4, -1)})
    check_forward("reshape", [x], {"shape": (-3, 0)}, expected=x.reshape(6, 4))


def test_reshape_target_shape_legacy():
    x = _x((2, 3, 4))
    check_forward("Reshape", [x], {"target_shape": (4, 0)}, expected=x.reshape(4, 6))


@pytest.mark.parametrize("spec", [(5, -1), (-1, -1), (2, 3, 5)])
def test_reshape_errors(spec):
    with pytest.raises(Exception):
        forward(mx.sym.Reshape(mx.sym.Variable("x"), shape=spec), x=_x((2, 3, 4)))


@pytest.mark.parametrize("case", RESHAPE[:6] + RESHAPE[12:16], ids=str)
def test_reshape_gradient(case):
    ishape, spec, reverse, _ = case
    check_gradient("Reshape", [np.random.RandomState(0).rand(*ishape)], {"shape": spec, "reverse": reverse})


def test_reshape_json():
    check_json_roundtrip("Reshape", [_x((2, 3, 4))], {"shape": (-4, 1, 2, -2)})
    check_json_roundtrip("Reshape", [_x((10, 5, 4))], {"shape": (-1, 0), "reverse": True})


# ---- Flatten / reshape_like / expand_dims ----
@pytest.mark.parametrize("shape", [(2, 3, 4), (5,), (2, 1), (3, 2, 2, 2)])
@pytest.mark.parametrize("dtype", ["float32", "int32", "float16"])
def test_flatten(shape, dtype):
    x = _x(shape, dtype)
    want_shape = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (shape[0], 1)
    check_forward("Flatten", [x], expected=x.reshape(want_shape))
    check_forward("flatten", [x], expected=x.reshape(want_shape))


def test_flatten_gradient_json():
    check_gradient("Flatten", [np.random.RandomState(1).rand(2, 3, 2)])
    check_json_roundtrip("Flatten", [_x((2, 3, 4))])


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8"])
def test_reshape_like(dtype):
    x, like = _x((2, 6), dtype), np.zeros((3, 2, 2), "float32")
    check_forward("reshape_like", [x, like], expected=x.reshape(3, 2, 2))


def test_reshape_like_gradient_json():
    check_gradient("reshape_like", [np.random.RandomState(2).rand(2, 6), np.zeros((4, 3))], grad_nodes=[0])
    check_json_roundtrip("reshape_like", [_x((2, 6)), _x((4, 3))])


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -4])
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_expand_dims(axis, dtype):
    x = _x((2, 3, 4), dtype)
    check_forward("expand_dims", [x], {"axis": axis}, expected=np.expand_dims(x, axis))


def test_expand_dims_gradient_json():
    check_gradient("expand_dims", [np.random.RandomState(3).rand(2, 3)], {"axis": 1})
    check_json_roundtrip("expand_dims", [_x((2, 3))], {"axis": -1})


# ---- transpose ----
@pytest.mark.parametrize("axes", [None, (0, 1, 2), (2, 0, 1), (1, 0, 2), (0, 2, 1), (-1, 0, -2)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose(axes, dtype):
    x = _x((2, 3, 4), dtype)
    attrs = {} if axes is None else {"axes": axes}
    check_forward("transpose", [x], attrs, expected=np.transpose(x, axes))


@pytest.mark.parametrize("axes", [None, (2, 0, 1), (1, 0, 2), (-1, 0, -2)], ids=str)
def test_transpose_gradient(axes):
    attrs = {} if axes is None else {"axes": axes}
    check_gradient("transpose", [np.random.RandomState(4).rand(2, 3, 4)], attrs)


def test_transpose_2d_default_and_json():
    x = _x((3, 5))
    check_forward("transpose", [x], expected=x.T)
    check_json_roundtrip("transpose", [_x((2, 3, 4))], {"axes": (1, 2, 0)})


# ---- broadcast_to / broadcast_like ----
BTO = [((1, 3), (4, 3)), ((2, 1, 4), (2, 3, 4)), ((3,), (2, 3)), ((2, 1), (0, 5)), ((1,), (2, 2, 2)), ((2, 3), (2, 3))]


@pytest.mark.parametrize("case", BTO, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8", "float16"])
def test_broadcast_to(case, dtype):
    ishape, target = case
    x = _x(ishape, dtype)
    final = tuple(ishape[k - (len(target) - len(ishape))] if t == 0 else t for k, t in enumerate(target))
    check_forward("broadcast_to", [x], {"shape": target}, expected=np.broadcast_to(x, final))


@pytest.mark.parametrize("case", BTO, ids=str)
def test_broadcast_to_gradient(case):
    ishape, target = case
    check_gradient("broadcast_to", [np.random.RandomState(5).rand(*ishape)], {"shape": target})


def test_broadcast_to_error_and_json():
    with pytest.raises(Exception):
        forward(mx.sym.broadcast_to(mx.sym.Variable("x"), shape=(4, 4)), x=_x((2, 4)))
    check_json_roundtrip("broadcast_to", [_x((1, 3))], {"shape": (4, 3)})


@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_broadcast_like(dtype):
    x, like = _x((1, 3, 1), dtype), np.zeros((2, 3, 4), "float32")
    check_forward("broadcast_like", [x, like], expected=np.broadcast_to(x, (2, 3, 4)))
    check_gradient("broadcast_like", [np.random.RandomState(6).rand(1, 3, 1), np.zeros((2, 3, 4))], grad_nodes=[0])


def test_broadcast_like_axes():
    x, like = _x((1, 3)), np.zeros((5, 4))
    check_forward("broadcast_like", [x, like], {"lhs_axes": (0,), "rhs_axes": (0,)},
                  expected=np.broadcast_to(x, (5, 3)))
    check_gradient("broadcast_like", [np.random.RandomState(7).rand(1, 3), like], {"lhs_axes": (0,), "rhs_axes": (0,)},
                   grad_nodes=[0])
    check_json_roundtrip("broadcast_like", [x, like], {"lhs_axes": (0,), "rhs_axes": (0,)})

