"""mx.random, mx.nd.random and mx.sym.random; Dropout in training mode."""
from __future__ import annotations

import json

import numpy as np
import pytest

import kiln as mx
from kiln import autograd


def test_seed_gives_the_same_numbers_and_calls_advance():
    mx.random.seed(123)
    a = mx.nd.random.uniform(shape=(4, 5)).asnumpy()
    b = mx.nd.random.uniform(shape=(4, 5)).asnumpy()
    mx.random.seed(123)
    a2 = mx.nd.random.uniform(shape=(4, 5)).asnumpy()
    mx.random.seed(124)
    c = mx.nd.random.uniform(shape=(4, 5)).asnumpy()
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


def test_seed_validation():
    with pytest.raises(mx.MXNetError, match="seed_state"):
        mx.random.seed("abc")
    mx.random.seed(2 ** 70 + 3, ctx=mx.cpu())  # taken modulo 2**64, any context
    mx.random.seed(-5)


def test_mx_random_has_mxnets_functions():
    for name in ("uniform", "normal", "randn", "randint", "exponential", "gamma", "poisson",
                 "negative_binomial", "generalized_negative_binomial", "multinomial", "shuffle", "seed"):
        assert callable(getattr(mx.random, name))
    for name in ("random_uniform", "uniform", "sample_normal", "random_randint", "sample_multinomial",
                 "shuffle", "_random_uniform_like", "_random_normal_like", "_random_gamma_like",
                 "_random_exponential_like", "_random_poisson_like", "_random_negative_binomial_like",
                 "_random_generalized_negative_binomial_like"):
        assert callable(getattr(mx.nd, name)) and callable(getattr(mx.sym, name))


def test_nd_random_scalar_and_array_parameters():
    mx.random.seed(0)
    x = mx.nd.random.uniform(-1, 1)
    assert x.shape == (1,) and x.dtype == np.float32  # MXNet's default shape for numbers
    y = mx.nd.random.normal(0, 1, shape=(2, 3), dtype="float64")
    assert y.shape == (2, 3) and y.dtype == np.float64
    loc = mx.nd.array([0.0, 100.0])
    scale = mx.nd.array([1.0, 0.001])
    z = mx.nd.random.normal(loc, scale, shape=(3, 4)).asnumpy()
    assert z.shape == (2, 3, 4)
    assert np.all(np.abs(z[1] - 100) < 0.01) and np.all(np.abs(z[0]) < 8)
    r = mx.nd.random.randn(2, 5)
    assert r.shape == (2, 5)
    e = mx.nd.random.exponential(scale=mx.nd.array([1.0, 2.0]), shape=2000).asnumpy()
    assert abs(e[1].mean() - 2.0) < 5 * 2.0 / np.sqrt(2000)
    i = mx.nd.random.randint(3, 9, shape=(1000,), dtype="int64").asnumpy()
    assert i.dtype == np.int64 and i.min() == 3 and i.max() == 8


def test_dtypes():
    h = mx.nd.random.uniform(shape=(100,), dtype="float16").asnumpy()
    assert h.dtype == np.float16 and h.min() >= 0 and h.max() <= 1
    s = mx.nd.random.normal(mx.nd.zeros((2,), dtype="float64"), mx.nd.ones((2,), dtype="float64"), shape=3)
    assert s.dtype == np.float64  # _sample_* take the parameters' dtype
    s32 = mx.nd.random.normal(mx.nd.zeros((2,), dtype="float64"), mx.nd.ones((2,), dtype="float64"),
                              dtype="float32")
    assert s32.dtype == np.float32 and s32.shape == (2,)
    assert mx.nd.random.randint(0, 5, shape=(3,)).dtype == np.int32
    with pytest.raises(mx.MXNetError, match="dtype"):
        mx.nd.random.randint(0, 5, shape=(3,), dtype="float32")
    with pytest.raises(ValueError, match="numbers"):
        mx.nd.random.randint(mx.nd.zeros((1,)), mx.nd.ones((1,)))


def test_out_and_ctx():
    out = mx.nd.zeros((3, 3))
    res = mx.nd.random.uniform(5, 6, out=out)
    assert res is out
    v = out.asnumpy()
    assert np.all((v >= 5) & (v < 6))
    g = mx.nd.random.gamma(2.0, 1.0, shape=(4,), ctx=mx.cpu(0))
    assert g.context == mx.cpu(0)


def test_like_operators():
    data = mx.nd.zeros((3, 4), dtype="float64")
    u = mx.nd._random_uniform_like(data, low=1.0, high=2.0)
    assert u.shape == (3, 4) and u.dtype == np.float64
    p = mx.nd._random_poisson_like(mx.nd.zeros((500,)), lam=4.0).asnumpy()
    assert np.all(p == np.round(p)) and abs(p.mean() - 4) < 5 * 2 / np.sqrt(500)


def test_multinomial_and_get_prob():
    probs = mx.nd.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    idx = mx.nd.random.multinomial(probs, shape=5)
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(idx.asnumpy(), [[2] * 5, [0] * 5])
    single = mx.nd.random.multinomial(mx.nd.array([0.5, 0.5]))
    assert single.shape == ()
    idx, logp = mx.nd.random.multinomial(mx.nd.array([[0.25, 0.75]]), shape=(8,), get_prob=True)
    np.testing.assert_allclose(logp.asnumpy(), np.log(np.where(idx.asnumpy() == 1, 0.75, 0.25)), rtol=1e-6)


def test_shuffle_permutes_the_first_axis():
    mx.random.seed(3)
    x = mx.nd.arange(30).reshape((10, 3))
    y = mx.nd.random.shuffle(x).asnumpy()
    assert sorted(y[:, 0].tolist()) == list(range(0, 30, 3))
    np.testing.assert_array_equal(y[:, 2] - y[:, 0], np.full(10, 2.0))
    z = mx.nd.random.shuffle(x).asnumpy()
    assert not np.array_equal(y, z)


def test_parameter_errors_name_operator_attribute_and_value():
    with pytest.raises(mx.MXNetError, match=r"_random_normal.*scale=-1\.0|scale=-1\.0.*_random_normal"):
        mx.nd.random.normal(0, -1.0, shape=(2,))
    with pytest.raises(mx.MXNetError, match="low=3"):
        mx.nd.random.uniform(3, 1, shape=(2,))
    with pytest.raises(mx.MXNetError, match="p=1.5"):
        mx.nd.random.negative_binomial(2, 1.5, shape=(2,))
    with pytest.raises(ValueError, match="same type"):
        mx.nd.random.uniform(mx.nd.zeros((2,)), 1.0)


def test_sym_random_in_a_bound_graph_and_json_round_trip():
    x = mx.sym.Variable("x")
    noise = mx.sym.random.normal(loc=0.0, scale=1.0, shape=(2, 3), name="noise")
    y = x + noise
    assert y.list_arguments() == ["x"]
    again = mx.sym.load_json(y.tojson())
    assert again.tojson() == y.tojson()
    node = [n for n in json.loads(y.tojson())["nodes"] if n["name"] == "noise"][0]
    assert node["op"] == "_random_normal" and node["attrs"]["shape"] == "(2, 3)"
    ex = again.bind(mx.cpu(), {"x": mx.nd.ones((2, 3))})
    a = ex.forward()[0].asnumpy().copy()
    b = ex.forward()[0].asnumpy().copy()
    assert not np.array_equal(a, b)  # a fresh key per forward
    mx.random.seed(9)
    c = ex.forward()[0].asnumpy().copy()
    mx.random.seed(9)
    d = ex.forward()[0].asnumpy().copy()
    np.testing.assert_array_equal(c, d)


def test_sym_random_sample_and_shape_from_graph():
    mu = mx.sym.Variable("mu")
    s = mx.sym.random.normal(mu, mx.sym.ones_like(mu), shape=(4,))
    assert s.list_arguments() == ["mu"]
    _, out, _ = s.infer_shape(mu=(3,))
    assert out == [(3, 4)]
    x = mx.sym.Variable("x")
    u = mx.sym.random.uniform() * x  # shape=() takes its shape from the graph, as MXNet
    res = u.eval(x=mx.nd.ones((2, 2)))[0].asnumpy()
    assert res.shape == (2, 2) and np.all((res >= 0) & (res < 1))


# ---- Dropout ----
def test_dropout_executor_train_predict_and_gradient():
    p = 0.3
    x = mx.sym.Variable("x")
    d = mx.sym.Dropout(x, p=p)
    assert len(d.list_outputs()) == 1 and d.list_outputs()[0].endswith("_output")  # the mask is hidden
    ex = d.simple_bind(mx.cpu(), x=(40, 50))
    data = np.random.RandomState(0).uniform(1, 2, (40, 50)).astype(np.float32)
    ex.arg_dict["x"][:] = data
    np.testing.assert_array_equal(ex.forward(is_train=False)[0].asnumpy(), data)
    out = ex.forward(is_train=True)[0].asnumpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], data[kept] / (1 - p), rtol=1e-6)
    n = out.size
    assert abs((~kept).mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    head = np.random.RandomState(1).uniform(-1, 1, (40, 50)).astype(np.float32)
    ex.backward(mx.nd.array(head))
    np.testing.assert_allclose(ex.grad_dict["x"].asnumpy(), head * kept / (1 - p), rtol=1e-6)
    again = ex.forward(is_train=True)[0].asnumpy()
    assert not np.array_equal(again != 0, kept)  # a new mask each forward
    ex.forward(is_train=False)
    with pytest.raises(mx.MXNetError, match="is_train"):
        ex.backward(mx.nd.array(head))


def test_dropout_mode_always_imperative_and_gradient():
    x = mx.nd.ones((8, 25))
    y = mx.nd.Dropout(x, p=0.5, mode="always").asnumpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and 0 < (y == 0).sum() < y.size
    np.testing.assert_array_equal(mx.nd.Dropout(x, p=0.5).asnumpy(), np.ones((8, 25)))  # predict: identity
    np.testing.assert_array_equal(mx.nd.Dropout(x, p=0.0, mode="always").asnumpy(), np.ones((8, 25)))
    sym = mx.sym.Dropout(mx.sym.Variable("x"), p=0.5, mode="always")
    ex = sym.simple_bind(mx.cpu(), x=(8, 25))
    ex.arg_dict["x"][:] = 3.0
    out = ex.forward(is_train=False)[0].asnumpy()  # mode='always' samples in inference too
    assert set(np.unique(out)) <= {0.0, 6.0}
    ex.backward(mx.nd.ones((8, 25)))
    np.testing.assert_array_equal(ex.grad_dict["x"].asnumpy(), (out != 0) * 2.0)


def test_dropout_train_mode_imperative():
    x = mx.nd.ones((3, 10))
    with autograd.train_mode():
        t = mx.nd.Dropout(x, p=0.2).asnumpy()
    assert set(np.unique(t)) <= {0.0, 1.25}
    with autograd.predict_mode():
        np.testing.assert_array_equal(mx.nd.Dropout(x, p=0.2).asnumpy(), np.ones((3, 10)))


def test_dropout_axes_share_the_mask():
    x = mx.nd.ones((6, 40))
    y = mx.nd.Dropout(x, p=0.5, axes=(0,), mode="always").asnumpy()
    assert np.all(y == y[:1])  # one mask row broadcast along axis 0


def test_dropout_p_validation():
    with pytest.raises(mx.MXNetError, match="p=1.5"):
        mx.nd.Dropout(mx.nd.ones((2,)), p=1.5, mode="always")


def test_dropout_under_autograd_record_large_array():
    """Queued on the engine's worker: the training flag and key are taken in the caller's thread."""
    x = mx.nd.ones((300, 300))
    x.attach_grad()
    with autograd.record():
        y = mx.nd.Dropout(x, p=0.5)
    y.backward()
    yv = y.asnumpy()
    assert set(np.unique(yv)) == {0.0, 2.0}
    np.testing.assert_array_equal(x.grad.asnumpy(), yv)


def test_dropout_mode_always_autograd_gradient_is_head_times_mask():
    x = mx.nd.array(np.random.RandomState(2).uniform(1, 2, (6, 30)))
    x.attach_grad()
    head = mx.nd.array(np.random.RandomState(3).uniform(-1, 1, (6, 30)))
    with autograd.record(train_mode=False):  # 'always' samples whatever the mode
        y = mx.nd.Dropout(x, p=0.4, mode="always")
    y.backward(head)
    yv, xv = y.asnumpy(), x.asnumpy()
    mask = np.where(yv != 0, 1 / 0.6, 0.0)
    np.testing.assert_allclose(yv, xv * mask, rtol=1e-6)
    np.testing.assert_allclose(x.grad.asnumpy(), head.asnumpy() * mask, rtol=1e-6)
