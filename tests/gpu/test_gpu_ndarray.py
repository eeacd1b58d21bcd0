"""NDArrays on ``mx.gpu(0)``: storage, copies between devices, views, operators (CUDA
programs), autograd and the errors MXNet users expect. Results are compared with the same
calls on the CPU."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError


def test_creation_and_reading(gpu):
    x = mx.nd.ones((3, 4), ctx=gpu)
    assert x.context == gpu and x.shape == (3, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x.asnumpy(), np.ones((3, 4), np.float32))
    a = mx.nd.array(np.arange(6).reshape(2, 3), ctx=gpu, dtype="int32")
    assert a.asnumpy().dtype == np.int32 and a.asnumpy().tolist() == [[0, 1, 2], [3, 4, 5]]
    assert mx.nd.zeros((2,), ctx=gpu).asnumpy().tolist() == [0, 0]
    assert mx.nd.full((2,), 7.5, ctx=gpu).asnumpy().tolist() == [7.5, 7.5]
    assert "@gpu(0)" in repr(x)
    assert mx.nd.ones((1,), ctx=gpu).asscalar() == 1
    with gpu:
        assert mx.nd.zeros((1,)).context == gpu  # the default context follows `with`


def test_copies_between_devices(gpu):
    host = np.random.RandomState(0).randn(4, 5).astype(np.float32)
    x = mx.nd.array(host)
    g = x.as_in_context(gpu)
    assert g.context == gpu and g is not x
    assert g.as_in_context(gpu) is g
    np.testing.assert_array_equal(g.asnumpy(), host)
    back = g.copyto(mx.cpu())
    assert back.context == mx.cpu()
    np.testing.assert_array_equal(back.asnumpy(), host)
    target = mx.nd.zeros((4, 5), ctx=gpu, dtype="float64")
    x.copyto(target)  # cast while crossing
    np.testing.assert_array_equal(target.asnumpy(), host.astype(np.float64))
    g2 = mx.nd.zeros((4, 5), ctx=gpu)
    g.copyto(g2)
    np.testing.assert_array_equal(g2.asnumpy(), host)
    with pytest.raises(MXNetError, match="shape mismatch"):
        g.copyto(mx.nd.zeros((5, 4), ctx=gpu))


def test_views_and_assignment(gpu):
    g = mx.nd.array(np.arange(24, dtype=np.float32).reshape(4, 6), ctx=gpu)
    row = g[1]
    assert row.shape == (6,) and row.asnumpy().tolist() == list(range(6, 12))
    rows = g[1:3]
    rows[:] = -1  # a view: writes reach the parent
    want = np.arange(24, dtype=np.float32).reshape(4, 6)
    want[1:3] = -1
    np.testing.assert_array_equal(g.asnumpy(), want)
    g[0, 2:4] = 9
    want[0, 2:4] = 9
    g[3] = mx.nd.arange(6, ctx=gpu)
    want[3] = np.arange(6)
    np.testing.assert_array_equal(g.asnumpy(), want)
    col = g[:, 1]  # not contiguous: a copy
    np.testing.assert_array_equal(col.asnumpy(), want[:, 1])
    idx = mx.nd.array([2, 0], ctx=gpu)
    np.testing.assert_array_equal(g[idx].asnumpy(), want[[2, 0]])
    row += 1  # in place through the view
    want[1] += 1
    np.testing.assert_array_equal(g.asnumpy(), want)


OPS = [
    lambda nd, a, b: a * 2 + b / 3 - 1,
    lambda nd, a, b: nd.dot(a, b.T),
    lambda nd, a, b: nd.softmax(a, axis=-1),
    lambda nd, a, b: nd.sum(a * b, axis=0, keepdims=True),
    lambda nd, a, b: nd.maximum(a, b) ** 2,
    lambda nd, a, b: nd.topk(a, k=2, ret_typ="value"),
    lambda nd, a, b: nd.broadcast_add(a, nd.mean(b, axis=1, keepdims=True)),
    lambda nd, a, b: nd.transpose(nd.reshape(a, (3, 2, 4)), axes=(1, 0, 2)),
    lambda nd, a, b: nd.Cast(a > b, dtype="int32"),
]


@pytest.mark.parametrize("k", range(len(OPS)))
def test_operators_match_cpu(gpu, k):
    rs = np.random.RandomState(k)
    a, b = rs.randn(6, 4).astype(np.float32), rs.randn(6, 4).astype(np.float32)
    want = OPS[k](mx.nd, mx.nd.array(a), mx.nd.array(b))
    got = OPS[k](mx.nd, mx.nd.array(a, ctx=gpu), mx.nd.array(b, ctx=gpu))
    assert got.context == gpu
    np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-5, atol=1e-6)


def test_autograd_matches_cpu(gpu):
    rs = np.random.RandomState(1)
    w0, x0 = rs.randn(3, 5).astype(np.float32), rs.randn(4, 5).astype(np.float32)
    grads = {}
    for ctx in (mx.cpu(), gpu):
        w, x = mx.nd.array(w0, ctx=ctx), mx.nd.array(x0, ctx=ctx)
        w.attach_grad()
        with mx.autograd.record():
            y = mx.nd.tanh(mx.nd.dot(x, w.T))
            loss = (y * y).sum() + mx.nd.norm(w)
        loss.backward()
        assert w.grad.context == ctx
        grads[ctx.device_type] = w.grad.asnumpy()
    np.testing.assert_allclose(grads["gpu"], grads["cpu"], rtol=1e-5, atol=1e-6)


def test_training_mode_operators_update_state(gpu):
    rs = np.random.RandomState(2)
    x0 = rs.randn(4, 3, 2).astype(np.float32)
    stats = {}
    for ctx in (mx.cpu(), gpu):
        x = mx.nd.array(x0, ctx=ctx)
        gamma, beta = mx.nd.ones((3,), ctx=ctx), mx.nd.zeros((3,), ctx=ctx)
        mean, var = mx.nd.zeros((3,), ctx=ctx), mx.nd.ones((3,), ctx=ctx)
        with mx.autograd.record(train_mode=True):
            y = mx.nd.BatchNorm(x, gamma, beta, mean, var, momentum=0.5)
        stats[ctx.device_type] = (y.asnumpy(), mean.asnumpy(), var.asnumpy())
    for got, want in zip(stats["gpu"], stats["cpu"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(stats["gpu"][1]).sum() > 0  # the moving mean moved


def test_random_operators_run_on_the_device(gpu):
    mx.random.seed(7)
    u = mx.nd.random.uniform(-1, 1, shape=(1000,), ctx=gpu)
    assert u.context == gpu
    v = u.asnumpy()
    assert v.min() >= -1 and v.max() < 1 and abs(v.mean()) < 0.1
    n = mx.nd.random.normal(0, 1, shape=(2000,), ctx=gpu).asnumpy()
    assert abs(n.std() - 1) < 0.1


def test_mixed_contexts_are_refused(gpu):
    with pytest.raises(MXNetError, match="one context"):
        mx.nd.ones((2,), ctx=gpu) + mx.nd.ones((2,))
    with pytest.raises(MXNetError, match="sees 1 GPU|does not exist"):
        mx.nd.ones((2,), ctx=mx.gpu(5))
    with pytest.raises(NotImplementedError, match="DLPack"):
        mx.nd.ones((2,), ctx=gpu).to_dlpack_for_read()
    assert mx.nd.ones((2,), ctx=gpu).__dlpack_device__() == (2, 0)


def test_gradient_across_devices_is_refused_clearly(gpu):
    x = mx.nd.ones((2,))
    x.attach_grad()
    with mx.autograd.record():
        y = x * 2
        with pytest.raises(NotImplementedError, match="between contexts"):
            y.as_in_context(gpu)


def test_save_and_load_gpu_arrays(gpu, tmp_path):
    g = mx.nd.array(np.arange(5, dtype=np.float32), ctx=gpu)
    path = str(tmp_path / "a.params")
    mx.nd.save(path, {"g": g})
    loaded = mx.nd.load(path)["g"]
    assert loaded.context == mx.cpu()
    np.testing.assert_array_equal(loaded.asnumpy(), np.arange(5))
