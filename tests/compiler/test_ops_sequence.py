"""Sequence operators (compiler/ops/sequence.py): SequenceLast, SequenceReverse, and
SequenceMask (indexing.py) along the axes MXNet supports."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from tests.compiler.test_ops_rnn import _case
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

# fractional (truncated), full and short lengths; out-of-range ones are clamped
LENS = np.array([2.7, 4, 1], np.float32)
LENS_OUT = np.array([0, 9, -3], np.float32)
X = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
W = np.arange(1, 25, dtype=np.float32)  # head-gradient weights of the golden gradients


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("lens_dtype", ["float32", "int32", "int64"])
def test_forward(dtype, lens_dtype):
    x = np.random.RandomState(0).uniform(-5, 5, (4, 3, 2)).astype(dtype)
    lens = np.array([2, 4, 1], lens_dtype)
    for op in ("SequenceLast", "SequenceReverse", "SequenceMask"):
        check_forward(op, [x], {})
        check_forward(op, [x, lens], {"use_sequence_length": True})


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 2, 2)])
def test_forward_ranks(shape):
    x = np.random.RandomState(1).uniform(-1, 1, shape).astype("float32")
    for op in ("SequenceLast", "SequenceReverse", "SequenceMask"):
        check_forward(op, [x, LENS], {"use_sequence_length": True})
        check_forward(op, [x, LENS_OUT], {"use_sequence_length": True})


def test_axis1():
    """(N, T, ...) layout: SequenceLast and SequenceMask take axis=1."""
    xt = X.transpose(1, 0, 2).copy()
    lens = np.array([1, 3, 4], np.float32)
    check_forward("SequenceLast", [xt, lens], {"use_sequence_length": True, "axis": 1})
    check_forward("SequenceLast", [xt], {"axis": 1})
    check_forward("SequenceMask", [xt, lens], {"use_sequence_length": True, "axis": 1, "value": -1})


def test_golden_mxnet():
    """Golden values from MXNet 1.9.1 (mx.nd.Sequence*(X, [2.7, 4, 1], use_sequence_length=True))."""
    lens = mx.nd.array(LENS)
    x = mx.nd.array(X)
    rev = [[[6, 7], [20, 21], [4, 5]], [[0, 1], [14, 15], [10, 11]],
           [[12, 13], [8, 9], [16, 17]], [[18, 19], [2, 3], [22, 23]]]
    np.testing.assert_array_equal(mx.nd.SequenceReverse(x, lens, use_sequence_length=True).asnumpy(), rev)
    np.testing.assert_array_equal(mx.nd.SequenceReverse(x).asnumpy()[:, 0], [[18, 19], [12, 13], [6, 7], [0, 1]])
    np.testing.assert_array_equal(mx.nd.SequenceLast(x, lens, use_sequence_length=True).asnumpy(),
                                  [[6, 7], [20, 21], [4, 5]])
    np.testing.assert_array_equal(mx.nd.SequenceLast(x).asnumpy(), [[18, 19], [20, 21], [22, 23]])
    xt = mx.nd.array(X.transpose(1, 0, 2))
    np.testing.assert_array_equal(
        mx.nd.SequenceLast(xt, mx.nd.array([1, 3, 4]), use_sequence_length=True, axis=1).asnumpy(),
        [[0, 1], [14, 15], [22, 23]])
    np.testing.assert_array_equal(
        mx.nd.SequenceMask(xt, mx.nd.array([1, 3, 4]), use_sequence_length=True, axis=1, value=-1).asnumpy(),
        [[[0, 1], [-1, -1], [-1, -1], [-1, -1]], [[2, 3], [8, 9], [14, 15], [-1, -1]],
         [[4, 5], [10, 11], [16, 17], [22, 23]]])
    np.testing.assert_array_equal(
        mx.nd.SequenceLast(mx.nd.array(X), mx.nd.array([2, 4, 1], dtype="int32"),
                           use_sequence_length=True).asnumpy(), [[6, 7], [20, 21], [4, 5]])
    x2 = mx.nd.array(np.arange(12).reshape(4, 3))
    np.testing.assert_array_equal(mx.nd.SequenceLast(x2, lens, use_sequence_length=True).asnumpy(), [3, 10, 2])
    np.testing.assert_array_equal(mx.nd.SequenceReverse(x2, lens, use_sequence_length=True).asnumpy(),
                                  [[3, 10, 2], [0, 7, 5], [6, 4, 8], [9, 1, 11]])


@pytest.mark.parametrize("op,want", [
    # MXNet 1.9.1: gradient of sum(op(X, [2.7, 4, 1]) * (arange(out.size) + 1)) with respect to X
    ("SequenceLast", [[[0, 0], [0, 0], [5, 6]], [[1, 2], [0, 0], [0, 0]], [[0, 0], [0, 0], [0, 0]],
                      [[0, 0], [3, 4], [0, 0]]]),
    ("SequenceReverse", [[[7, 8], [21, 22], [5, 6]], [[1, 2], [15, 16], [11, 12]],
                         [[13, 14], [9, 10], [17, 18]], [[19, 20], [3, 4], [23, 24]]]),
])
def test_golden_gradient_mxnet(op, want):
    x = mx.nd.array(X)
    x.attach_grad()
    with mx.autograd.record():
        y = getattr(mx.nd, op)(x, mx.nd.array(LENS), use_sequence_length=True)
        z = (y * mx.nd.array(W[:y.size].reshape(y.shape))).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), want)


@pytest.mark.parametrize("op,attrs,shape", [
    ("SequenceLast", {}, (4, 3, 2)), ("SequenceLast", {"axis": 1}, (3, 4, 2)),
    ("SequenceReverse", {}, (4, 3, 2)), ("SequenceMask", {"value": 2.0}, (4, 3, 2)),
    ("SequenceMask", {"axis": 1}, (3, 4, 2))])
@pytest.mark.parametrize("lens", [LENS, LENS_OUT])
def test_gradient(op, attrs, shape, lens):
    x = np.random.RandomState(2).uniform(-1, 1, shape)
    check_gradient(op, [x, lens.astype(np.float64)], dict(attrs, use_sequence_length=True), grad_nodes=[0])
    check_gradient(op, [x], attrs)


def test_second_order_last():
    """_backward_SequenceLast's own gradient is SequenceLast."""
    og = np.random.RandomState(3).uniform(-1, 1, (3, 2))
    check_gradient("_backward_SequenceLast", [og, LENS.astype(np.float64), np.zeros((4, 3, 2))],
                   {"use_sequence_length": True}, grad_nodes=[0])


def test_symbolic():
    d, n = mx.sym.var("d"), mx.sym.var("n")
    s = mx.sym.SequenceLast(d, n, use_sequence_length=True, axis=1)
    assert s.list_arguments() == ["d", "n"]
    assert s.infer_shape(d=(3, 4, 5)) == ([(3, 4, 5), (3,)], [(3, 5)], [])
    r = mx.sym.SequenceReverse(d, n, use_sequence_length=True)
    assert r.infer_shape(d=(3, 4, 5)) == ([(3, 4, 5), (4,)], [(3, 4, 5)], [])
    assert mx.sym.SequenceReverse(d).list_arguments() == ["d"]
    exe = (mx.sym.SequenceLast(r, n, use_sequence_length=True) * 2).bind(
        mx.cpu(), {"d": mx.nd.array(X), "n": mx.nd.array(LENS)})
    # reversing then taking the last valid step gives each sequence's first step
    np.testing.assert_array_equal(exe.forward()[0].asnumpy(), 2 * X[0])
    check_json_roundtrip("SequenceReverse", [X, LENS], {"use_sequence_length": True})
    check_json_roundtrip("SequenceLast", [X, LENS], {"use_sequence_length": True})


@pytest.mark.parametrize("call,msg", [
    (lambda: mx.nd.SequenceReverse(mx.nd.array(X), mx.nd.array(LENS), use_sequence_length=True, axis=1),
     "axis must be 0"),
    (lambda: mx.nd.SequenceLast(mx.nd.array(X), axis=2), "axis must be 0 or 1"),
    (lambda: mx.nd.SequenceLast(mx.nd.array(X), mx.nd.array([1, 2]), use_sequence_length=True),
     r"sequence_length shape \(2,\) must be \(3,\)"),
    (lambda: mx.nd.SequenceReverse(mx.nd.array([1, 2, 3])), "at least 2 dimensions"),
])
def test_errors(call, msg):
    with pytest.raises(MXNetError, match=msg):
        call()


# ---- RNN(use_sequence_length=True): past a sequence's length the state is carried and the output is
# zero, the final states are the last valid step's and the reverse direction starts at each sequence's
# end (cuDNN's semantics, MXNet's GPU path; MXNet 1.9.1's CPU kernel silently ignores sequence_length) ----
def _rnn_case(mode, nl, bi, t=5, n=3, **kw):
    return _case(mode, nl, bi, t=t, n=n, **kw)


def _rnn_attrs(mode, nl, bi, **kw):
    return dict(state_size=2, num_layers=nl, bidirectional=bi, mode=mode, state_outputs=True, **kw)


RNN_CASES = [("lstm", 2, True), ("gru", 1, True), ("rnn_tanh", 2, False), ("rnn_relu", 1, False)]


@pytest.mark.parametrize("mode,nl,bi", RNN_CASES)
@pytest.mark.parametrize("lens_dtype", ["float32", "int32"])
def test_rnn_sequence_length_equals_per_sequence_rnn(mode, nl, bi, lens_dtype):
    arrays = _rnn_case(mode, nl, bi)
    lens = np.array([2.6, 5, 1]).astype(lens_dtype)
    out = mx.nd.RNN(*[mx.nd.array(a) for a in arrays], mx.nd.array(lens, dtype=lens_dtype),
                    use_sequence_length=True, **_rnn_attrs(mode, nl, bi))
    out = [o.asnumpy() for o in out]
    for b, n in enumerate([2, 5, 1]):
        one = [arrays[0][:n, b:b + 1], arrays[1]] + [a[:, b:b + 1] for a in arrays[2:]]
        want = mx.nd.RNN(*[mx.nd.array(a) for a in one], **_rnn_attrs(mode, nl, bi))
        np.testing.assert_allclose(out[0][:n, b], want[0].asnumpy()[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(out[0][n:, b], 0)
        for got, w in zip(out[1:], want[1:]):
            np.testing.assert_allclose(got[:, b], w.asnumpy()[:, 0], rtol=1e-5, atol=1e-6)
    check_forward("RNN", arrays + [lens], _rnn_attrs(mode, nl, bi, use_sequence_length=True))


def test_rnn_full_lengths_golden_mxnet():
    """Lengths all equal to T give MXNet 1.9.1's output (values below from mx.nd.RNN, rnn_tanh, one layer,
    x = arange(12).reshape(2, 2, 3) / 10, parameters = linspace(-0.5, 0.5, 14), h0 = 0)."""
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3) / 10
    w = np.linspace(-0.5, 0.5, 14).astype(np.float32)
    out = mx.nd.RNN(mx.nd.array(x), mx.nd.array(w), mx.nd.zeros((1, 2, 2)), mx.nd.array([2, 2]),
                    use_sequence_length=True, state_size=2, num_layers=1, mode="rnn_tanh")
    np.testing.assert_allclose(out.asnumpy(), GOLDEN_RNN_TANH, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_rnn_sequence_length_gradient(mode):
    arrays = _rnn_case(mode, 1, True, t=3, n=2, dtype="float64", seed=1)
    lens = np.array([1, 3], np.float64)
    check_gradient("RNN", arrays + [lens], _rnn_attrs(mode, 1, True, use_sequence_length=True),
                   grad_nodes=list(range(len(arrays))), rtol=1e-4, atol=1e-6, eps=1e-6)


def test_rnn_sequence_length_tape_and_shapes():
    arrays = _rnn_case("lstm", 2, True, seed=3)
    lens = mx.nd.array([4, 1, 5], dtype="int32")
    attrs = _rnn_attrs("lstm", 2, True, use_sequence_length=True)
    names = ["x", "w", "h", "c", "n"]
    sym = mx.sym.RNN(*[mx.sym.var(k) for k in names], **attrs)
    arg_shapes, out_shapes, _ = sym.infer_shape(x=(5, 3, 3), h=(4, 3, 2))
    assert arg_shapes[-1] == (3,) and out_shapes[0] == (5, 3, 4)
    with pytest.raises(MXNetError, match=r"sequence_length has shape \(2,\), expected \(batch,\) = \(3,\)"):
        sym.infer_shape(x=(5, 3, 3), n=(2,))
    args = dict({k: mx.nd.array(a) for k, a in zip(names, arrays)}, n=lens)
    grads = {k: mx.nd.zeros(a.shape) for k, a in zip(names, arrays)}
    ex = mx.sym.Group(list(sym)).bind(mx.cpu(), args, args_grad=grads, grad_req=dict(
        {k: "write" for k in names[:4]}, n="null"))
    outs = ex.forward(is_train=True)
    heads = [mx.nd.ones(o.shape) * (i + 1) for i, o in enumerate(outs)]
    ex.backward(heads)
    nds = [mx.nd.array(a) for a in arrays]
    for a in nds:
        a.attach_grad()
    with mx.autograd.record():
        res = mx.nd.RNN(*nds, lens, **attrs)
    mx.autograd.backward(res, heads)
    for k, a in zip(names, nds):
        np.testing.assert_allclose(a.grad.asnumpy(), grads[k].asnumpy(), rtol=1e-5, atol=1e-6)


GOLDEN_RNN_TANH = [[[0.5232243, 0.6661815], [0.1973753, 0.5585816]],
                   [[-0.1734979, 0.5690902], [-0.4987538, 0.3925483]]]
