"""NDArray API surface (creation, methods, indexing, in-place, out=) and the
operators added for it, against numpy and MXNet 1.x's documented results."""
from __future__ import annotations

import numpy as np

import kiln as mx
from tests.op_harness import check_forward, check_gradient


def test_creation():
    np.testing.assert_array_equal(mx.nd.arange(5).asnumpy(), np.arange(5, dtype=np.float32))
    np.testing.assert_allclose(mx.nd.arange(5, 0, -1.5).asnumpy(), [5, 3.5, 2, 0.5])
    np.testing.assert_array_equal(mx.nd.arange(0, 3, repeat=2).asnumpy(), [0, 0, 1, 1, 2, 2])
    a = mx.nd.arange(start=2, stop=8, step=2, dtype="int32")
    assert a.dtype == np.int32 and a.asnumpy().tolist() == [2, 4, 6]
    np.testing.assert_allclose(mx.nd.linspace(0, 1, 4, endpoint=False).asnumpy(), [0, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(mx.nd.eye(2, 4, k=1).asnumpy(), np.eye(2, 4, 1))
    x = mx.nd.ones((2, 3), dtype="float64")
    f = mx.nd.full_like(x, 2.5)
    assert f.dtype == np.float64 and f.asnumpy().tolist() == [[2.5] * 3] * 2
    assert x.zeros_like().asnumpy().sum() == 0 and x.ones_like().dtype == np.float64
    assert mx.nd.array(3.5).shape == ()
    assert mx.nd.array(np.array([0.1], np.float64)).dtype == np.float32


def test_reduction_methods():
    xv = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 10
    x = mx.nd.array(xv)
    np.testing.assert_allclose(x.sum(axis=2).asnumpy(), xv.sum(2))
    np.testing.assert_allclose(x.mean(axis=0, keepdims=True).asnumpy(), xv.mean(0, keepdims=True))
    assert x.max().shape == (1,)
    np.testing.assert_allclose(x.prod(axis=1, exclude=True).asnumpy(), xv.prod((0, 2)))
    np.testing.assert_array_equal(x.argmax(axis=2).asnumpy(), xv.argmax(2))
    np.testing.assert_array_equal(mx.nd.argmax_channel(x[0]).asnumpy(), xv[0].argmax(-1))
    np.testing.assert_allclose(x.norm(ord=1, axis=2).asnumpy(), np.abs(xv).sum(2))
    n = mx.nd.array([1.0, float("nan"), 2.0])
    assert mx.nd.nansum(n).asscalar() == 3.0 and mx.nd.nanprod(n).asscalar() == 2.0


def test_shape_methods():
    x = mx.nd.arange(24).reshape((2, 3, 4))
    assert x.expand_dims(axis=0).shape == (1, 2, 3, 4)
    assert mx.nd.zeros((1, 3, 1, 2)).squeeze(axis=2).shape == (1, 3, 2)
    assert x.flatten().shape == (2, 12)
    assert x.transpose(axes=(1, 0, 2)).shape == (3, 2, 4)
    assert x.swapaxes(0, 1).shape == (3, 2, 4)
    assert x.reshape_like(mx.nd.zeros((4, 6))).shape == (4, 6)
    r = mx.nd.array([[1, 2, 3]])
    assert r.broadcast_to((3, 3)).shape == (3, 3)
    assert r.broadcast_like(mx.nd.zeros((2, 3))).shape == (2, 3)
    np.testing.assert_array_equal(mx.nd.broadcast_axis(mx.nd.array([[1], [2]]), axis=1, size=3).asnumpy(),
                                  [[1, 1, 1], [2, 2, 2]])
    assert r.tile(reps=(2, 2)).shape == (2, 6) and r.repeat(repeats=2, axis=1).shape == (1, 6)
    np.testing.assert_array_equal(x.clip(0, 5).asnumpy(), np.clip(x.asnumpy(), 0, 5))
    np.testing.assert_array_equal(mx.nd.array([0, 2]).one_hot(3).asnumpy(), np.eye(3)[[0, 2]])
    assert mx.nd.shape_array(x).asnumpy().tolist() == [2, 3, 4] and mx.nd.size_array(x).asnumpy().tolist() == [24]
    np.testing.assert_array_equal(x.sort().asnumpy(), np.sort(x.asnumpy(), axis=-1))


def test_indexing_read():
    xv = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = mx.nd.array(xv)
    for key in [1, -1, (1, 2), slice(1, 2), (slice(None), 1), (slice(None), slice(1, 3), slice(None, None, 2)),
                (1, slice(None, None, -1), slice(None, None, 2)), [1, 0], ([0, 1], [2, 0]), (slice(None), [0, 2])]:
        np.testing.assert_array_equal(x[key].asnumpy(), xv[key])
    np.testing.assert_array_equal(x[mx.nd.array([1, 1, 0])].asnumpy(), xv[[1, 1, 0]])
    assert mx.nd.arange(5)[2].shape == (1,)


def test_indexing_write_and_views():
    y = mx.nd.zeros((3, 4))
    y[:, 2] = mx.nd.array([7, 8, 9])
    y[0, 1:3] = -5
    y[0:3:2] = 9
    expect = np.zeros((3, 4), np.float32)
    expect[:, 2] = [7, 8, 9]
    expect[0, 1:3] = -5
    expect[0:3:2] = 9
    np.testing.assert_array_equal(y.asnumpy(), expect)
    x = mx.nd.arange(24).reshape((2, 3, 4))
    v = x[1]
    v[:] = -1
    assert (x.asnumpy()[1] == -1).all()
    c = x[:, 1]  # not contiguous: a copy, as MXNet
    c[:] = 100
    assert (x.asnumpy() != 100).all()


def test_inplace_and_out():
    a = mx.nd.array([5, 7], dtype="int32")
    a %= 4
    assert a.asnumpy().tolist() == [1, 3]
    a **= 2
    assert a.asnumpy().tolist() == [1, 9]
    out = mx.nd.zeros((2,))
    r = mx.nd.exp(mx.nd.array([0, 1]), out=out)
    assert r is out
    np.testing.assert_allclose(out.asnumpy(), np.exp([0, 1]), rtol=1e-6)


def test_compare_and_misc_functions():
    a, b = mx.nd.array([1, 2, 3]), mx.nd.array([3, 2, 1])
    assert mx.nd.greater(a, b).asnumpy().tolist() == [0, 0, 1]
    assert mx.nd.lesser_equal(2, a).asnumpy().tolist() == [0, 1, 1]
    assert mx.nd.equal(a, 2).asnumpy().tolist() == [0, 1, 0]
    u = np.array([[0.1, -0.5, 0.3]], np.float32)
    e = np.exp(-u)
    np.testing.assert_allclose(mx.nd.softmin(mx.nd.array(u)).asnumpy(), e / e.sum(-1, keepdims=True), rtol=1e-5)
    x = mx.nd.arange(12).reshape((3, 4))
    p = mx.nd.pick(x, mx.nd.array([2, 2, 0]), axis=1, keepdims=True)
    assert p.shape == (3, 1) and p.asnumpy().ravel().tolist() == [2, 6, 8]


def test_new_operators_forward():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx = np.array([[0, 2, 1], [1, 3, 0]], np.float32)
    check_forward("gather_nd", [x, idx], expected=[x[[0, 2, 1], [1, 3, 0]]])
    check_forward("scatter_nd", [np.array([9, 8], np.float32), np.array([[0, 2], [1, 3]], np.float32)],
                  {"shape": (3, 4)})
    for k in (0, 1, -1):
        check_forward("diag", [x], {"k": k}, expected=[np.diag(x, k)])
        check_forward("diag", [x[0]], {"k": k}, expected=[np.diag(x[0], k)])
    lens = np.array([1, 3], np.float32)
    check_forward("SequenceMask", [np.ones((3, 2, 2), np.float32), lens],
                  {"use_sequence_length": True, "value": -1})
    check_forward("smooth_l1", [np.array([-2, -0.5, 0.2, 1.5], np.float32)], {"scalar": 1.0},
                  expected=[np.array([1.5, 0.125, 0.02, 1.0], np.float32)])


def test_new_operators_gradient():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (3, 4))
    check_gradient("gather_nd", [x, np.array([[0, 2, 2], [1, 3, 3]], np.float64)], grad_nodes=[0])
    check_gradient("diag", [x], {"k": 1})
    check_gradient("diag", [x[0]], {"k": -1})
    check_gradient("SequenceMask", [rng.uniform(-1, 1, (3, 2, 2)), np.array([1, 3], np.float64)],
                   {"use_sequence_length": True}, grad_nodes=[0])
    check_gradient("smooth_l1", [np.array([-2, -0.5, 0.2, 1.5])], {"scalar": 1.0})


def test_array_from_non_contiguous_numpy():
    """A transposed numpy array is copied into row-major storage (kernels need C order)."""
    x = np.arange(6.0).reshape(2, 3).T
    np.testing.assert_array_equal((mx.nd.array(x) + 1).asnumpy(), x + 1)


def test_positional_none_is_an_absent_input():
    """MXNet code passes None for optional inputs: ``F.FullyConnected(x, w, None, 4, no_bias=True)``."""
    x, w = mx.nd.ones((3, 2)), mx.nd.ones((4, 2))
    assert mx.nd.FullyConnected(x, w, None, 4, no_bias=True).shape == (3, 4)
    s = mx.sym.FullyConnected(mx.sym.var("x"), None, None, 4, name="fc")
    assert s.list_arguments() == ["x", "fc_weight", "fc_bias"]
