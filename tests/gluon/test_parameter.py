"""Gluon Parameter / ParameterDict: naming, deferred init, grad arrays, save/load."""
import numpy as np
import pytest

import kiln as mx
from kiln import autograd, gluon
from kiln.base import MXNetError
from kiln.gluon import nn


def test_parameter_basics():
    p = gluon.Parameter("weight", shape=(2, 3))
    assert p.name == "weight" and p.shape == (2, 3) and p.grad_req == "write"
    p.initialize(init=mx.init.Constant(3.0))
    np.testing.assert_array_equal(p.data().asnumpy(), np.full((2, 3), 3.0, np.float32))
    np.testing.assert_array_equal(p.grad().asnumpy(), np.zeros((2, 3), np.float32))
    assert p.list_ctx() == [mx.cpu()] and len(p.list_data()) == 1 and len(p.list_grad()) == 1
    p.set_data(mx.nd.array([[1, 2, 3], [4, 5, 6]]))
    assert p.data().asnumpy()[1, 2] == 6
    p.grad()[:] = 7
    p.zero_grad()
    assert p.grad().asnumpy().sum() == 0
    p.initialize(init=mx.init.Constant(9.0), force_reinit=True)
    assert p.data().asnumpy()[0, 0] == 9
    v = p.var()
    assert v.name == "weight" and v.attr("__shape__") == "(2, 3)"


def test_parameter_errors():
    q = gluon.Parameter("frozen", shape=(2,), grad_req="null", init=mx.init.One())
    q.initialize()
    with pytest.raises(RuntimeError):
        q.grad()
    u = gluon.Parameter("uninit", shape=(2,))
    with pytest.raises(RuntimeError):
        u.data()
    d = gluon.Parameter("deferred", shape=(2, 0), allow_deferred_init=True)
    d.initialize()
    with pytest.raises(gluon.DeferredInitializationError):
        d.data()
    with pytest.raises(MXNetError):
        gluon.Parameter("bad", shape=(2, 0)).initialize()
    with pytest.raises(MXNetError):
        gluon.Parameter("w", grad_req="sometimes")


def test_parameter_cast_and_reset_ctx():
    p = gluon.Parameter("w", shape=(3,), init=mx.init.Constant(1.5))
    p.initialize()
    p.cast("float64")
    assert p.data().dtype == np.float64 and p.grad().dtype == np.float64
    p.reset_ctx(mx.cpu(0))
    assert p.data().asnumpy().tolist() == [1.5, 1.5, 1.5]


def test_parameter_grad_req_switch_detaches():
    p = gluon.Parameter("w", shape=(2,), init=mx.init.One())
    p.initialize()
    p.grad_req = "null"
    with pytest.raises(RuntimeError):
        p.grad()
    p.grad_req = "write"
    x = mx.nd.array([2.0, 3.0])
    with autograd.record():
        y = (p.data() * x).sum()
    y.backward()
    assert p.grad().asnumpy().tolist() == [2.0, 3.0]


def test_constant():
    c = gluon.Constant("c", [[1.0, 2.0]])
    c.initialize()
    assert c.grad_req == "null" and c.data().asnumpy().tolist() == [[1.0, 2.0]]


def test_parameter_dict():
    pd = gluon.ParameterDict(prefix="blk_")
    w = pd.get("w", shape=(3,), init=mx.init.Constant(0.5), lr_mult=0.1, wd_mult=0.0)
    b = pd.get("b", shape=(3,))
    assert list(pd.keys()) == ["blk_w", "blk_b"] and pd.prefix == "blk_"
    assert pd.get("w") is w and w.lr_mult == 0.1 and w.wd_mult == 0.0
    # an existing parameter's unknown dims merge with the requested shape
    z = pd.get("z", shape=(2, 0))
    assert pd.get("z", shape=(2, 5)) is z and z.shape == (2, 5)
    with pytest.raises(MXNetError):
        pd.get("z", shape=(3, 5))
    pd.initialize(mx.init.Constant(2.0))
    assert w.data().asnumpy().tolist() == [0.5] * 3
    assert b.data().asnumpy().tolist() == [2.0] * 3
    assert list(pd.select(".*_w").keys()) == ["blk_w"]
    pd.setattr("grad_req", "null")
    assert all(p.grad_req == "null" for p in pd.values())


def test_parameter_dict_save_load(tmp_path):
    pd = gluon.ParameterDict(prefix="m_")
    pd.get("a", shape=(2,), init=mx.init.Constant(1.0))
    pd.get("b", shape=(1, 2), init=mx.init.Constant(2.0))
    pd.initialize()
    f = str(tmp_path / "p.params")
    pd.save(f, strip_prefix="m_")
    assert sorted(mx.nd.load(f).keys()) == ["a", "b"]
    pd2 = gluon.ParameterDict(prefix="m_")
    pd2.get("a", shape=(2,))
    pd2.get("b", shape=(1, 0), allow_deferred_init=True)
    pd2.load(f, restore_prefix="m_")
    assert pd2["m_b"].shape == (1, 2) and pd2["m_b"].data().asnumpy().tolist() == [[2.0, 2.0]]
    pd3 = gluon.ParameterDict(prefix="m_")
    pd3.get("a", shape=(2,))
    with pytest.raises(MXNetError):
        pd3.load(f, restore_prefix="m_")
    pd3.load(f, restore_prefix="m_", ignore_extra=True)


def test_naming():
    d = nn.Dense(3)
    n = int(d.name[len("dense"):])
    assert d.prefix == "dense%d_" % n
    assert list(d.collect_params().keys()) == ["dense%d_weight" % n, "dense%d_bias" % n]
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Dense(2), nn.Dense(2))
    pre = net.prefix
    assert list(net.collect_params().keys()) == [pre + "dense0_weight", pre + "dense0_bias",
                                                 pre + "dense1_weight", pre + "dense1_bias"]
    assert net[1].name == pre + "dense1"
    named = nn.HybridSequential(prefix="net_")
    with named.name_scope():
        named.add(nn.Dense(3, in_units=2), nn.BatchNorm())
    assert list(named.collect_params(".*weight|.*running_mean").keys()) == ["net_dense0_weight",
                                                                           "net_batchnorm0_running_mean"]


def test_deferred_init_infers_shapes():
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Dense(4, activation="relu"), nn.BatchNorm(), nn.Dense(2))
    net.initialize(mx.init.Constant(0.1))
    assert net[0].weight.shape == (4, 0)
    with pytest.raises(gluon.DeferredInitializationError):
        net[0].weight.data()
    y = net(mx.nd.ones((3, 5)))
    assert y.shape == (3, 2)
    assert net[0].weight.shape == (4, 5) and net[1].gamma.shape == (4,) and net[2].weight.shape == (2, 4)
    assert net[1].running_var.data().asnumpy().tolist() == [1.0] * 4  # its own initializer ('ones')


@pytest.mark.parametrize("hybridize", [False, True])
def test_wrong_width_error_names_block_parameter_and_shapes(hybridize):
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=4), nn.Dense(2, in_units=5))
    net.initialize()
    net.hybridize(hybridize)
    with pytest.raises(MXNetError) as err:
        net(mx.nd.ones((2, 4)))
    msg = str(err.value)
    assert "%s.%s" % (net.name, net[1].name) in msg, msg
    assert net[1].weight.name in msg and "(2, 5)" in msg and "(2, 3)" in msg, msg


def test_wrong_width_error_in_named_scope():
    net = nn.HybridSequential(prefix="net_")
    with net.name_scope():
        net.add(nn.Dense(3, in_units=4))
    net.initialize()
    with pytest.raises(MXNetError, match=r"net\.dense0: parameter 'net_dense0_weight' has shape \(3, 4\)"):
        net(mx.nd.ones((2, 6)))
