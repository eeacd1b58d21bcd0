"""Indexing operators (compiler/ops/indexing.py): take, Embedding, one_hot, pick, batch_take."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .helpers import sample


_x = sample


DTYPES = ["float32", "float64", "int32"]
# indices deliberately out of range (clip/wrap) and fractional (truncation)
IDX = np.array([[0, 4], [7, -1]], dtype="float32")
IDX_FRAC = np.array([1.7, -0.5, 2.2], dtype="float32")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("attrs", [{}, {"mode": "clip"}, {"mode": "wrap"}, {"mode": "raise"},
                                   {"axis": 1}, {"axis": -1, "mode": "wrap"}])
def test_take(attrs, dtype):
    check_forward("take", [_x((5, 3), dtype), IDX], attrs)
    check_forward("take", [_x((2, 5, 3), dtype), IDX_FRAC], attrs)


@pytest.mark.parametrize("idx_dtype", ["float64", "int32", "int64"])
def test_take_index_dtypes(idx_dtype):
    check_forward("take", [_x((5, 3)), np.array([3, 0, 9], dtype=idx_dtype)], {"mode": "wrap"})


@pytest.mark.parametrize("attrs", [{}, {"mode": "wrap"}, {"axis": 1}])
def test_take_gradient(attrs):
    """Repeated and out-of-range indices accumulate into the clipped/wrapped rows."""
    idx = np.array([[1, 3], [1, 9]], dtype="float64")
    check_gradient("take", [_x((4, 5), "float64"), idx], attrs, grad_nodes=[0])


def test_take_golden_grad():
    """MXNet 1.9 golden (016 'take_grad'): rows 1 (twice) and 3 get 3 each."""
    s = mx.sym.sum(mx.sym.take(mx.sym.Variable("a"), mx.sym.Variable("b")) * 3)
    g = mx.nd.zeros((5, 6))
    exe = s.bind(mx.cpu(), args={"a": mx.nd.ones((5, 6)), "b": mx.nd.array([1, 3, 1])},
                 args_grad={"a": g}, grad_req={"a": "write", "b": "null"})
    exe.forward(is_train=True)
    exe.backward(mx.nd.ones((1,)))
    want = np.zeros((5, 6))
    want[1], want[3] = 6, 3
    np.testing.assert_array_equal(g.asnumpy(), want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("data_shape", [(3,), (2, 2)])
def test_embedding(data_shape, dtype):
    data = np.array([0, 4, 9, -2], dtype="float32")[:int(np.prod(data_shape))].reshape(data_shape)
    check_forward("Embedding", [data, _x((5, 3), dtype)], {"input_dim": 5, "output_dim": 3, "dtype": dtype})


def test_embedding_gradient_and_names():
    data = np.array([[0, 2], [4, 2]], dtype="float64")
    check_gradient("Embedding", [data, _x((5, 3), "float64")],
                   {"input_dim": 5, "output_dim": 3, "dtype": "float64"}, grad_nodes=[1])
    emb = mx.sym.Embedding(mx.sym.Variable("data"), input_dim=5, output_dim=3, name="emb")
    assert emb.list_arguments() == ["data", "emb_weight"]
    args, outs, _ = emb.infer_shape(data=(2, 4))
    assert args == [(2, 4), (5, 3)] and outs == [(2, 4, 3)]
    check_json_roundtrip("Embedding", [data.astype("float32"), _x((5, 3))], {"input_dim": 5, "output_dim": 3})


def test_embedding_data_gets_zero_gradient():
    d = mx.sym.Variable("d")
    s = mx.sym.Embedding(d, mx.sym.Variable("w"), input_dim=3, output_dim=2)
    gd = mx.nd.ones((2,))
    exe = s.bind(mx.cpu(), args={"d": mx.nd.array([0, 2]), "w": mx.nd.ones((3, 2))},
                 args_grad={"d": gd, "w": mx.nd.zeros((3, 2))})
    exe.forward(is_train=True)
    exe.backward(mx.nd.ones((2, 2)))
    np.testing.assert_array_equal(gd.asnumpy(), [0, 0])


@pytest.mark.parametrize("idx_dtype", ["float32", "int32"])
@pytest.mark.parametrize("attrs", [{"depth": 4}, {"depth": 5, "on_value": 5, "off_value": -1},
                                   {"depth": 3, "dtype": "int32"}, {"depth": 4, "dtype": "float64"}])
def test_one_hot(attrs, idx_dtype):
    check_forward("one_hot", [np.array([0, 2, 1, 3, -1, 7], dtype=idx_dtype)], attrs)
    check_forward("one_hot", [np.array([[1, 0], [2, 2]], dtype=idx_dtype)], attrs)


def test_one_hot_json_and_dtype():
    check_json_roundtrip("one_hot", [np.array([0, 2, 1], dtype="float32")], {"depth": 3, "dtype": "int32"})
    _, outs, _ = mx.sym.one_hot(mx.sym.Variable("i"), depth=3, dtype="int32").infer_type(i=np.float32)
    assert outs == [np.int32]


PICK = [{}, {"axis": 1}, {"axis": 0}, {"axis": 1, "keepdims": True}, {"mode": "wrap"},
        {"axis": -2, "mode": "wrap", "keepdims": True}]


def _pick_index(x_shape, attrs, dtype="float32"):
    axis = attrs.get("axis", -1) % len(x_shape)
    shape = tuple(1 if k == axis else d for k, d in enumerate(x_shape)) if attrs.get("keepdims") else \
        tuple(d for k, d in enumerate(x_shape) if k != axis)
    rng = np.random.RandomState(3)
    return rng.randint(-2, x_shape[axis] + 2, shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("attrs", PICK)
def test_pick(attrs, dtype):
    x = _x((3, 4), dtype)
    check_forward("pick", [x, _pick_index(x.shape, attrs)], attrs)


def test_pick_1d():
    check_forward("pick", [_x((5,)), np.array([7], "float32")], {"axis": 0})


@pytest.mark.parametrize("attrs", PICK[::2])
def test_pick_gradient(attrs):
    x = _x((3, 4), "float64")
    check_gradient("pick", [x, _pick_index(x.shape, attrs, "float64")], attrs, grad_nodes=[0])
    check_json_roundtrip("pick", [x.astype("float32"), _pick_index(x.shape, attrs)], attrs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_take(dtype):
    check_forward("batch_take", [_x((4, 3), dtype), np.array([0, 2, 5, -1], "float32")])
    check_forward("batch_take", [_x((2, 2, 3), dtype), np.array([[1, 2], [0, 1]], "int32")])


BAD = [
    ("take", [(3, 4), (2,)], {"axis": 2}),
    ("pick", [(3, 4), (4,)], {"axis": 1}),
    ("pick", [(3, 4), (3,)], {"axis": None}),
    ("one_hot", [(3,)], {"depth": 0}),
    ("Embedding", [(3,), (4, 3)], {"input_dim": 5, "output_dim": 3}),
    ("batch_take", [(3, 4), (4,)], {}),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] + str(c[2]) for c in BAD])
def test_bad_input(case):
    name, shapes, attrs = case
    args = [mx.sym.Variable("x%d" % k) for k in range(len(shapes))]
    sym = getattr(mx.sym, name)(*args, **attrs)
    feed = {"x%d" % k: mx.nd.array(np.zeros(s)) for k, s in enumerate(shapes)}
    with pytest.raises(MXNetError) as err:
        sym.eval(ctx=mx.cpu(), **feed)
    assert name in str(err.value)


def test_bad_mode():
    with pytest.raises(MXNetError, match="take"):
        mx.sym.take(mx.sym.Variable("a"), mx.sym.Variable("i"), mode="bogus")
