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
    assert g[2, 3].shape == (1,) and g[2, 3].asnumpy().tolist() == [want[2, 3]]  # a scalar: shape (1,)
    g[:, 0] = 7  # not contiguous: written through a host copy
    want[:, 0] = 7
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
    assert mx.nd.ones((2,), ctx=gpu).__dlpack_device__() == (2, 0)


def test_gradients_flow_across_devices(gpu):
    x0 = np.arange(1, 5, dtype=np.float32)
    x = mx.nd.array(x0)
    x.attach_grad()
    with mx.autograd.record():
        y = (x * 2).as_in_context(gpu)  # computed on the CPU, continued on the GPU
        z = (y * y).sum().as_in_context(mx.cpu()) + x.sum()
        with pytest.raises(NotImplementedError, match="into an existing array"):
            y.copyto(mx.nd.zeros((4,)))
    z.backward()
    assert x.grad.context == mx.cpu()
    np.testing.assert_allclose(x.grad.asnumpy(), 8 * x0 + 1)


def test_save_and_load_gpu_arrays(gpu, tmp_path):
    g = mx.nd.array(np.arange(5, dtype=np.float32), ctx=gpu)
    path = str(tmp_path / "a.params")
    mx.nd.save(path, {"g": g})
    loaded = mx.nd.load(path)["g"]
    assert loaded.context == mx.cpu()
    np.testing.assert_array_equal(loaded.asnumpy(), np.arange(5))


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "uint8", "bool"])
def test_dlpack_round_trip_shares_device_memory(gpu, dtype):
    x = mx.nd.array(np.arange(6).reshape(2, 3) % 2, ctx=gpu, dtype=dtype)
    y = mx.nd.from_dlpack(x.to_dlpack_for_write())
    assert y.context == gpu and y.shape == (2, 3) and y.dtype == np.dtype(dtype)
    y[:] = np.ones((2, 3))
    np.testing.assert_array_equal(x.asnumpy(), np.ones((2, 3), dtype))
    del x, y  # the importer releases the exporter's tensor


def test_unconsumed_gpu_capsules_are_released(gpu):
    from kiln.ndarray import dlpack
    before = len(dlpack._exported)
    cap = mx.nd.ones((3,), ctx=gpu).to_dlpack_for_read()
    assert len(dlpack._exported) == before + 1
    del cap
    assert len(dlpack._exported) == before
    y = mx.nd.from_dlpack(mx.nd.ones((3,), ctx=gpu).to_dlpack_for_read())
    assert len(dlpack._exported) == before + 1
    del y
    import gc
    gc.collect()
    assert len(dlpack._exported) == before


def _basic_keys(shape):
    from hypothesis import strategies as st

    def axis_key(n):
        ints = st.integers(-n, n - 1) if n else st.nothing()
        bounds = st.one_of(st.none(), st.integers(-n - 1, n + 1))
        slices = st.builds(slice, bounds, bounds, st.one_of(st.none(), st.sampled_from([1, 2, -1])))
        return st.one_of(ints, slices)
    return st.integers(0, len(shape)).flatmap(lambda k: st.tuples(*[axis_key(n) for n in shape[:k]]))


def test_basic_indexing_matches_numpy(gpu):
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple).flatmap(
        lambda shape: st.tuples(st.just(shape), _basic_keys(shape))))
    def check(case):
        shape, key = case
        host = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
        g = mx.nd.array(host, ctx=gpu)
        want = host[key]
        got = g[key].asnumpy()
        np.testing.assert_array_equal(got, want if np.ndim(want) else [want])
        g[key] = -1
        host[key] = -1
        np.testing.assert_array_equal(g.asnumpy(), host)
    check()
