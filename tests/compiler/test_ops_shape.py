"""Shape operators (compiler/ops/shape_ops.py): Concat, stack, SliceChannel, slice, slice_axis,
slice_like, tile, repeat, reverse, SwapAxis, squeeze, Pad."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .helpers import forward, sample


_x = sample


DTYPES = ["float32", "float64", "int32"]

# (op, input shapes, attrs); each runs forward in every dtype, gradient and JSON round trip.
CASES = [
    ("Concat", [(2, 3), (2, 2)], {"dim": 1}),
    ("concat", [(2, 3), (1, 3), (3, 3)], {"dim": 0}),
    ("Concat", [(2, 1, 2), (2, 3, 2)], {}),
    ("concat", [(2, 2), (2, 1)], {"dim": -1}),
    ("stack", [(2, 3), (2, 3)], {}),
    ("stack", [(2, 3), (2, 3), (2, 3)], {"axis": 1}),
    ("stack", [(3,), (3,)], {"axis": -1}),
    ("SliceChannel", [(2, 4)], {"num_outputs": 2}),
    ("split", [(3, 2, 2)], {"num_outputs": 3, "axis": 0, "squeeze_axis": True}),
    ("split", [(2, 6)], {"num_outputs": 3, "axis": -1}),
    ("split", [(4,)], {"num_outputs": 4, "axis": 0, "squeeze_axis": True}),
    ("slice", [(4, 5)], {"begin": (1, 2), "end": (3, 5)}),
    ("slice", [(4, 5)], {"begin": (None, 1), "end": (None, None)}),
    ("slice", [(5, 6)], {"begin": (0, 0), "end": (5, 6), "step": (2, 3)}),
    ("slice", [(5, 4)], {"begin": (4, None), "end": (0, None), "step": (-2, 1)}),
    ("slice", [(5, 4)], {"begin": (None,), "end": (None,), "step": (-1,)}),
    ("slice", [(3, 4, 2)], {"begin": (-2, 1), "end": (-1, -1)}),
    ("crop", [(3, 4)], {"begin": (0, 1), "end": (2, 10)}),
    ("slice_axis", [(4, 5)], {"axis": 1, "begin": 1, "end": -1}),
    ("slice_axis", [(4, 5)], {"axis": 0, "begin": -3, "end": None}),
    ("slice_axis", [(2, 3, 4)], {"axis": -1, "begin": 0, "end": 2}),
    ("tile", [(2, 3)], {"reps": (2, 2)}),
    ("tile", [(2, 3)], {"reps": (3,)}),
    ("tile", [(3,)], {"reps": (2, 1, 2)}),
    ("repeat", [(2, 3)], {"repeats": 2, "axis": 1}),
    ("repeat", [(2, 3)], {"repeats": 3}),
    ("repeat", [(2, 2, 2)], {"repeats": 2, "axis": -3}),
    ("reverse", [(3, 4)], {"axis": 1}),
    ("flip", [(2, 3, 4)], {"axis": (0, 2)}),
    ("SwapAxis", [(2, 3, 4)], {"dim1": 0, "dim2": 2}),
    ("swapaxes", [(2, 3)], {"dim1": 1, "dim2": 0}),
    ("swapaxes", [(2, 3, 2)], {"dim1": -1}),
    ("squeeze", [(1, 3, 1, 2)], {}),
    ("squeeze", [(1, 3, 1, 2)], {"axis": 2}),
    ("squeeze", [(1, 3, 1, 2)], {"axis": (0, -2)}),
    ("squeeze", [(1, 1)], {}),
    ("Pad", [(1, 2, 3, 3)], {"mode": "constant", "pad_width": (0, 0, 0, 0, 1, 2, 2, 1), "constant_value": 9}),
    ("pad", [(1, 2, 3, 3)], {"mode": "edge", "pad_width": (0, 0, 0, 0, 1, 2, 2, 1)}),
    ("pad", [(1, 1, 3, 4)], {"mode": "reflect", "pad_width": (0, 0, 0, 0, 2, 2, 1, 3)}),
    ("pad", [(2, 3)], {"mode": "constant", "pad_width": (1, 0, 0, 2)}),
]


def _full(name, shapes, attrs):
    """The harness parses attrs for the reference itself: variadic ops need num_args there."""
    if name in ("Concat", "concat", "stack"):
        return dict(attrs, num_args=len(shapes))
    return attrs


def _ids(case):
    name, shapes, attrs = case
    return "%s-%s-%s" % (name, "x".join(str(s) for s in shapes), ",".join("%s=%s" % kv for kv in sorted(attrs.items())))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_forward(case, dtype):
    name, shapes, attrs = case
    check_forward(name, [_x(s, dtype, seed=k) for k, s in enumerate(shapes)], _full(name, shapes, attrs))


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_gradient(case):
    name, shapes, attrs = case
    check_gradient(name, [_x(s, "float64", seed=k) for k, s in enumerate(shapes)], _full(name, shapes, attrs))


@pytest.mark.parametrize("case", CASES[::3], ids=[_ids(c) for c in CASES[::3]])
def test_json_roundtrip(case):
    name, shapes, attrs = case
    check_json_roundtrip(name, [_x(s, "float32", seed=k) for k, s in enumerate(shapes)], _full(name, shapes, attrs))


@pytest.mark.parametrize("dtype", DTYPES)
def test_slice_like(dtype):
    x, like = _x((3, 4), dtype), _x((2, 3), dtype, seed=1)
    check_forward("slice_like", [x, like], {})
    check_forward("slice_like", [x, like], {"axes": (-1,)})
    check_forward("slice_like", [x, _x((2,), dtype)], {"axes": (0,)})


def test_slice_like_gradient_and_json():
    x, like = _x((3, 4), "float64"), _x((2, 3), "float64", seed=1)
    check_gradient("slice_like", [x, like], {"axes": (1,)}, grad_nodes=[0])
    check_json_roundtrip("slice_like", [x.astype("float32"), like.astype("float32")], {"axes": (1,)})


def test_pad_edge_gradient_sums_contributions():
    """Golden MXNet value of 015_sym_reshape_transpose_pad 'pad_edge_grad' (all ones * 2)."""
    a = mx.sym.Variable("a")
    s = mx.sym.sum(mx.sym.pad(a, mode="edge", pad_width=(0, 0, 0, 0, 1, 2, 2, 1)) * 2)
    g = mx.nd.zeros((1, 1, 2, 2))
    exe = s.bind(mx.cpu(), args={"a": mx.nd.ones((1, 1, 2, 2))}, args_grad={"a": g})
    exe.forward(is_train=True)
    exe.backward(mx.nd.ones((1,)))
    # rows: 1 + 2 copies at top/bottom, cols: 2 + 1 at left/right -> corner counts
    np.testing.assert_allclose(g.asnumpy()[0, 0], 2 * np.array([[2 * 3, 2 * 2], [3 * 3, 3 * 2]]))


def test_split_partial_head_gradient():
    """Only one output of split used: the others get zero gradient."""
    x = _x((2, 4), "float64")
    s = mx.sym.split(mx.sym.Variable("x"), num_outputs=2, axis=1)[1]
    g = mx.nd.zeros((2, 4), dtype="float64")
    exe = s.bind(mx.cpu(), args={"x": mx.nd.array(x, dtype="float64")}, args_grad={"x": g})
    exe.forward(is_train=True)
    exe.backward(mx.nd.ones((2, 2), dtype="float64"))
    np.testing.assert_array_equal(g.asnumpy(), np.array([[0, 0, 1, 1], [0, 0, 1, 1]]))


def test_concat_names_and_infer():
    a, b = mx.sym.Variable("a"), mx.sym.Variable("b")
    c = mx.sym.concat(a, b, dim=1, name="c")
    assert c.list_arguments() == ["a", "b"]
    _, out, _ = c.infer_shape(a=(2, 3), b=(2, 4))
    assert out == [(2, 7)]
    assert '"op": "Concat"' in c.tojson()
    sc = mx.sym.SliceChannel(a, num_outputs=3, name="sc")
    assert sc.list_outputs() == ["sc_output0", "sc_output1", "sc_output2"]


def test_squeeze_all_ones_gives_1():
    assert forward(mx.sym.squeeze(mx.sym.Variable("x")), x=np.ones((1, 1), "float32"))[0].shape == (1,)


BAD = [
    ("concat", [(2, 3), (3, 3)], {"dim": 1}),
    ("stack", [(2, 3), (3, 2)], {}),
    ("split", [(2, 5)], {"num_outputs": 2}),
    ("split", [(2, 4)], {"num_outputs": 2, "squeeze_axis": True}),
    ("slice", [(3, 4)], {"begin": (2,), "end": (1,)}),
    ("slice", [(3, 4)], {"begin": (0, 0, 0), "end": (1, 1, 1)}),
    ("slice", [(3, 4)], {"begin": (0,), "end": (2,), "step": (0,)}),
    ("slice_axis", [(3, 4)], {"axis": 2, "begin": 0, "end": 1}),
    ("slice_axis", [(3, 4)], {"axis": 1, "begin": 0, "end": 5}),
    ("tile", [(2, 3)], {"reps": (0, 1)}),
    ("repeat", [(2, 3)], {"repeats": 2, "axis": 3}),
    ("reverse", [(2, 3)], {"axis": 2}),
    ("swapaxes", [(2, 3)], {"dim1": 0, "dim2": 2}),
    ("squeeze", [(2, 3)], {"axis": 0}),
    ("pad", [(1, 1, 3, 3)], {"mode": "constant", "pad_width": (0, 0, 1, 1)}),
    ("pad", [(1, 1, 3, 3)], {"mode": "reflect", "pad_width": (0, 0, 0, 0, 3, 0, 0, 0)}),
]


@pytest.mark.parametrize("case", BAD, ids=[_ids(c) for c in BAD])
def test_bad_input(case):
    name, shapes, attrs = case
    from kiln.compiler.ops import registry
    args = [mx.sym.Variable("x%d" % k) for k in range(len(shapes))]
    sym = getattr(mx.sym, name)(*args, **attrs)
    feed = {"x%d" % k: mx.nd.array(_x(s)) for k, s in enumerate(shapes)}
    with pytest.raises(MXNetError) as err:
        sym.eval(ctx=mx.cpu(), **feed)
    assert registry.get(name).name in str(err.value)


def test_bad_attribute():
    with pytest.raises(MXNetError, match="Pad"):
        mx.sym.pad(mx.sym.Variable("x"), mode="wrap", pad_width=(0, 0))


def test_rnn_param_concat_shares_the_remainder_and_reshape_fills_one_dim():
    """Values as MXNet 1.9.1's infer_shape gives them for the same graph."""
    a, c = mx.sym.var("a", shape=(32, 0)), mx.sym.var("c", shape=(32, 0))
    b, d = mx.sym.var("b", shape=(32, 8)), mx.sym.var("d", shape=(32, 8))
    biases = [mx.sym.var("b%d" % i, shape=(32,)) for i in range(4)]
    packed = mx.sym._rnn_param_concat(*[x.reshape((-1,)) for x in [a, b, c, d] + biases], dim=0)
    out = mx.sym.RNN(mx.sym.var("data"), packed, mx.sym.var("s"), mx.sym.var("sc"), state_size=8, num_layers=1,
                     bidirectional=True, mode="lstm")
    args, _, _ = out.infer_shape(data=(5, 2, 6))
    assert args == [(5, 2, 6), (32, 6), (32, 8), (32, 6), (32, 8), (32,), (32,), (32,), (32,), (2, 2, 8), (2, 2, 8)]
    ones = [mx.nd.ones((2, 3)), mx.nd.zeros((4,))]
    np.testing.assert_array_equal(mx.nd._rnn_param_concat(ones[0].reshape((-1,)), ones[1], dim=0).asnumpy(),
                                  [1] * 6 + [0] * 4)
