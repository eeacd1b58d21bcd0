"""gluon.Trainer against MXNet's Parameter interface (a minimal parameter class defined here, so
these tests do not depend on gluon.Parameter), plus one check with the real Gluon Dense."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln import autograd
from kiln.base import MXNetError
from kiln.gluon.trainer import Trainer


class FakeParam:
    """MXNet's Parameter surface the Trainer uses: one data and grad array per context."""

    def __init__(self, name, value, ctxs=(mx.cpu(0),), grad_req="write", lr_mult=1.0, wd_mult=1.0):
        self.name, self.grad_req, self.lr_mult, self.wd_mult = name, grad_req, lr_mult, wd_mult
        self._ctxs = list(ctxs)
        self._data = [mx.nd.array(value, ctx=c) for c in self._ctxs] if value is not None else None
        self._grads = [mx.nd.zeros(np.shape(value), ctx=c) for c in self._ctxs] if value is not None else None
        self.trainer = None

    def _set_trainer(self, trainer):
        self.trainer = trainer

    def list_data(self):
        if self._data is None:
            raise RuntimeError("Parameter '%s' has not been initialized" % self.name)
        return self._data

    def list_grad(self):
        return self._grads

    def list_ctx(self):
        return self._ctxs

    def set_grad(self, values):
        for g, v in zip(self._grads, values):
            g[:] = v


def test_single_context_sgd_step():
    p = FakeParam("w_weight", [1.0, 2.0])
    tr = Trainer({"w_weight": p}, "sgd", {"learning_rate": 0.1, "wd": 0.1})
    assert p.trainer is tr and tr.learning_rate == 0.1
    p.set_grad([[4.0, 8.0]])
    tr.step(batch_size=4)  # rescale 1/4
    np.testing.assert_allclose(p._data[0].asnumpy(), [1 - 0.01 - 0.1, 2 - 0.02 - 0.2], rtol=1e-6)


def test_param_collections_and_errors():
    a, b = FakeParam("b_bias", [0.0]), FakeParam("a_weight", [0.0])
    tr = Trainer({"b_bias": a, "a_weight": b}, "sgd")
    assert [p.name for p in tr._params] == ["a_weight", "b_bias"]  # sorted keys, as MXNet
    assert Trainer([a, b], "sgd")._params == [a, b]
    with pytest.raises(ValueError, match="list or dict of Parameters"):
        Trainer(a, "sgd")
    with pytest.raises(ValueError, match="list of"):
        Trainer([1, 2], "sgd")
    with pytest.raises(MXNetError, match="optimizer_params must be None"):
        Trainer([a], mx.optimizer.SGD(), {"learning_rate": 0.1})
    with pytest.raises(TypeError, match="kvstore must be KVStore, str or None"):
        Trainer([a], "sgd", kvstore=3)


def test_optimizer_instance_learning_rate_and_multipliers():
    w = FakeParam("w", [1.0], lr_mult=2.0)
    frozen = FakeParam("f", [1.0], grad_req="null")
    opt = mx.optimizer.SGD(learning_rate=0.2)
    tr = Trainer([w, frozen], opt)
    assert tr.optimizer is opt and opt.param_dict == {0: w, 1: frozen}
    tr.set_learning_rate(0.05)
    assert tr.learning_rate == 0.05
    w.set_grad([[1.0]])
    tr.step(1)
    np.testing.assert_allclose(w._data[0].asnumpy(), [1 - 0.1], rtol=1e-6)
    np.testing.assert_allclose(frozen._data[0].asnumpy(), [1.0])


def test_momentum_state_persists_across_steps():
    p = FakeParam("w", [0.0])
    tr = Trainer([p], "sgd", {"learning_rate": 1.0, "momentum": 0.5})
    for _ in range(3):
        p.set_grad([[1.0]])
        tr.step(1)
    np.testing.assert_allclose(p._data[0].asnumpy(), [-(1 + 1.5 + 1.75)], rtol=1e-6)


@pytest.mark.parametrize("update_on_kvstore", [None, False])
def test_two_contexts_sum_gradients(update_on_kvstore):
    ctxs = [mx.cpu(0), mx.cpu(1)]
    p = FakeParam("w", [1.0, 1.0], ctxs=ctxs)
    p._data[1][:] = 5.0  # the first copy wins at initialisation (kvstore broadcast)
    tr = Trainer([p], "sgd", {"learning_rate": 0.1, "momentum": 0.9}, update_on_kvstore=update_on_kvstore)
    for _ in range(2):
        p.set_grad([[1.0, 2.0], [3.0, 4.0]])
        tr.step(2)
    # summed grad (4, 6) / 2 each step: mom1 = -0.1*g, mom2 = 0.9*mom1 - 0.1*g -> total -0.29*g
    want = np.array([1.0, 1.0]) - 0.29 * np.array([2.0, 3.0])
    for d in p._data:
        np.testing.assert_allclose(d.asnumpy(), want, rtol=1e-6)
    assert tr._update_on_kvstore is (update_on_kvstore is None)
    if update_on_kvstore is False:
        for g in p._grads:  # the reduced gradient is written back into every copy
            np.testing.assert_allclose(g.asnumpy(), [4.0, 6.0])


def test_allreduce_then_update():
    ctxs = [mx.cpu(0), mx.cpu(1)]
    p = FakeParam("w", [0.0], ctxs=ctxs)
    tr = Trainer([p], "sgd", {"learning_rate": 1.0}, update_on_kvstore=False)
    p.set_grad([[1.0], [2.0]])
    tr.allreduce_grads()
    for g in p._grads:
        g *= 0.5  # gradient manipulation between the two calls
    tr.update(1)
    for d in p._data:
        np.testing.assert_allclose(d.asnumpy(), [-1.5])
    tr2 = Trainer([FakeParam("v", [0.0], ctxs=ctxs)], "sgd")  # default: updated on the store
    with pytest.raises(MXNetError, match="update_on_kvstore"):
        tr2.allreduce_grads()


def test_deferred_parameter_raises_on_step():
    p = FakeParam("w", None)
    tr = Trainer([p], "sgd")
    with pytest.raises(RuntimeError, match="not been initialized"):
        tr.step(1)


def test_stale_gradient_flag():
    p = FakeParam("w", [1.0])
    tr = Trainer([p], "sgd", {"learning_rate": 1.0})
    p._data[0]._fresh_grad = False
    with pytest.raises(UserWarning, match="has not been updated by backward"):
        tr.step(1)
    tr.step(1, ignore_stale_grad=True)  # skipped, not updated
    np.testing.assert_allclose(p._data[0].asnumpy(), [1.0])


def test_save_load_states(tmp_path):
    fname = str(tmp_path / "trainer.states")
    p = FakeParam("w", [1.0, -1.0])
    tr = Trainer([p], "adam", {"learning_rate": 0.1})
    for g in ([0.5, 0.1], [0.2, -0.3]):
        p.set_grad([g])
        tr.step(1)
    tr.save_states(fname)
    q = FakeParam("w", p._data[0].asnumpy())
    tr2 = Trainer([q], "sgd")
    tr2.load_states(fname)
    assert isinstance(tr2.optimizer, mx.optimizer.Adam) and tr2.optimizer.param_dict == {0: q}
    for tr_, par in ((tr, p), (tr2, q)):
        par.set_grad([[0.3, 0.3]])
        tr_.step(1)
    np.testing.assert_array_equal(p._data[0].asnumpy(), q._data[0].asnumpy())


def test_with_gluon_dense():
    gluon = pytest.importorskip("kiln.gluon")
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize(mx.init.Constant(0.5))
    tr = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    x = mx.nd.ones((4, 3))
    with autograd.record():
        loss = net(x).sum()
    loss.backward()
    tr.step(4)
    # d(sum)/dW = 4 per element, / batch 4 -> 1: 0.5 - 0.1; bias (initialised 0) -> -0.1
    np.testing.assert_allclose(net.weight.data().asnumpy(), np.full((2, 3), 0.4), rtol=1e-6)
    np.testing.assert_allclose(net.bias.data().asnumpy(), [-0.1, -0.1], rtol=1e-6)


def test_kvstore_objects():
    """A KVStore object is used as given (even for one context); a store that cannot run an
    optimiser (MXNet's TestStore) only sums, and every context's updater applies the sum."""
    ctxs = [mx.cpu(0), mx.cpu(1)]
    kv = mx.kv.create("local")
    p = FakeParam("w", [1.0], ctxs=ctxs)
    tr = Trainer([p], "sgd", {"learning_rate": 0.5}, kvstore=kv)
    p.set_grad([[1.0], [3.0]])
    tr.step(1)
    assert tr._kvstore is kv and tr._update_on_kvstore is True
    for d in p._data:
        np.testing.assert_allclose(d.asnumpy(), [1.0 - 0.5 * 4.0])
    q = FakeParam("v", [1.0], ctxs=ctxs)
    tr2 = Trainer([q], "sgd", {"learning_rate": 0.5}, kvstore=mx.kv.create("teststore"))
    q.set_grad([[1.0], [3.0]])
    tr2.step(1)
    assert tr2._update_on_kvstore is False
    for d, g in zip(q._data, q._grads):
        np.testing.assert_allclose(d.asnumpy(), [-1.0])
        np.testing.assert_allclose(g.asnumpy(), [4.0])
    with pytest.raises(ValueError, match="update_on_kvstore=False"):
        Trainer([FakeParam("u", [1.0], ctxs=ctxs)], "sgd", kvstore=mx.kv.create("teststore"),
                update_on_kvstore=True).step(1)
