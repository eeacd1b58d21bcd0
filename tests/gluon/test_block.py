"""Gluon blocks: hybridized vs imperative outputs and gradients, re-tracing, saving, export."""
import json

import numpy as np
import pytest

import kiln as mx
from kiln import autograd, gluon
from kiln.base import MXNetError
from kiln.gluon import nn

RS = np.random.RandomState(0)


def _fill(block, seed):
    rs = np.random.RandomState(seed)
    for name in sorted(block.collect_params().keys()):
        p = block.collect_params()[name]
        if p.name.endswith("running_var"):
            p.set_data(mx.nd.array(rs.uniform(0.5, 1.5, size=p.shape)))
        else:
            p.set_data(mx.nd.array(rs.uniform(-0.5, 0.5, size=p.shape)))


def _run(net, x, head=None):
    """Output and gradients (input and every parameter) of sum(out * head)."""
    x = x.copy()
    x.attach_grad()
    with autograd.record():
        out = net(x)
        loss = (out * head).sum() if head is not None else out.sum()
    loss.backward()
    grads = {k: p.grad().asnumpy().copy() for k, p in net.collect_params().items() if p.grad_req != "null"}
    return out.asnumpy(), x.grad.asnumpy(), grads


def _compare(make, x, seed=1, train_stats=False):
    eager, hyb = make(), make()
    eager.initialize()
    hyb.initialize()
    eager(x)  # finish deferred init
    hyb(x)
    _fill(eager, seed)
    _fill(hyb, seed)
    hyb.hybridize()
    head = mx.nd.array(RS.uniform(-1, 1, size=eager(x).shape))
    o1, gx1, g1 = _run(eager, x, head)
    o2, gx2, g2 = _run(hyb, x, head)
    np.testing.assert_allclose(o1, o2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx1, gx2, rtol=1e-4, atol=1e-5)
    assert len(g1) == len(g2)
    for (k, a), b in zip(g1.items(), g2.values()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=k)
    for (k, p), q in zip(eager.collect_params().items(), hyb.collect_params().values()):
        np.testing.assert_allclose(p.data().asnumpy(), q.data().asnumpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    return eager, hyb


LAYERS = {
    "dense": (lambda: nn.Dense(3, activation="tanh"), (2, 4)),
    "dense_no_flatten": (lambda: nn.Dense(3, flatten=False, use_bias=False), (2, 2, 4)),
    "batchnorm": (lambda: nn.BatchNorm(), (4, 3, 2)),
    "batchnorm_axis_noscale": (lambda: nn.BatchNorm(axis=-1, scale=False, momentum=0.5), (4, 3)),
    "batchnorm_global_stats_nocenter": (lambda: nn.BatchNorm(use_global_stats=True, center=False), (3, 2)),
    "dropout0": (lambda: nn.Dropout(0.0), (2, 3)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 2)),
    "activation": (lambda: nn.Activation("sigmoid"), (2, 3)),
    "leakyrelu": (lambda: nn.LeakyReLU(0.1), (2, 3)),
    "prelu": (lambda: nn.PReLU(in_channels=3), (2, 3, 2)),
    "elu": (lambda: nn.ELU(0.7), (2, 3)),
    "selu": (lambda: nn.SELU(), (2, 3)),
    "gelu": (lambda: nn.GELU(), (2, 3)),
    "swish": (lambda: nn.Swish(1.5), (2, 3)),
    "layernorm": (lambda: nn.LayerNorm(), (2, 3, 4)),
    "layernorm_axis1_nocenter": (lambda: nn.LayerNorm(axis=1, center=False), (2, 3, 4)),
    "groupnorm": (lambda: nn.GroupNorm(2), (2, 4, 3)),
    "instancenorm": (lambda: nn.InstanceNorm(), (2, 3, 4)),
    "instancenorm_last_axis_scale": (lambda: nn.InstanceNorm(axis=-1, scale=True), (2, 3, 4)),
    "hybridlambda": (lambda: nn.HybridLambda(lambda F, t: F.relu(t) * 2 - 1), (2, 3)),
    "hybridlambda_str": (lambda: nn.HybridLambda("tanh"), (2, 3)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_hybrid_equals_imperative(name):
    make, shape = LAYERS[name]
    x = mx.nd.array(RS.uniform(-1, 1, size=shape))
    _compare(make, x)


def test_norm_layers_match_mxnet_values():
    """Outputs and input gradients recorded from MXNet 1.9.1's gluon.nn layers (default init)
    on x = arange(24).reshape(2, 4, 3) / 10 with head gradient arange(24) % 5."""
    x = mx.nd.array(np.arange(24, dtype=np.float32).reshape(2, 4, 3) / 10)
    head = mx.nd.array(np.arange(24, dtype=np.float32).reshape(2, 4, 3) % 5)
    want = {
        "layernorm": (nn.LayerNorm(), [-1.2238274, 0.0, 1.2238274], [-0.01832867, 0.0, 0.01832867]),
        "groupnorm": (nn.GroupNorm(2), [-1.4635992, -0.8781596, -0.2927198], [-5.577049, -1.3947637, 2.7875214]),
        "instancenorm": (nn.InstanceNorm(), [-1.2238274, 0.0, 1.2238274], [-0.01832962, 0.0, 0.01832962]),
    }
    for name, (blk, y0, g0) in want.items():
        blk.initialize()
        xx = x.copy()
        xx.attach_grad()
        with autograd.record():
            y = blk(xx)
        y.backward(head)
        np.testing.assert_allclose(y.asnumpy()[0, 0], y0, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(xx.grad.asnumpy()[0, 0], g0, rtol=1e-4, atol=1e-5, err_msg=name)
    assert repr(nn.GroupNorm(2)) == "GroupNorm(eps=1e-05, num_groups=2, center=True, scale=True)"


def test_sequential_with_batchnorm_training_updates_running_stats():
    def make():
        net = nn.HybridSequential()
        with net.name_scope():
            net.add(nn.Dense(4), nn.BatchNorm(momentum=0.8), nn.Activation("relu"), nn.Dense(2))
        return net
    x = mx.nd.array(RS.uniform(-1, 1, size=(5, 3)))
    eager, hyb = _compare(make, x)
    rm = hyb[1].running_mean.data().asnumpy()
    assert np.abs(rm).sum() > 0  # moved from its initial zeros by the training forward
    # inference uses the moving statistics and leaves them alone
    before = rm.copy()
    np.testing.assert_allclose(eager(x).asnumpy(), hyb(x).asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(hyb[1].running_mean.data().asnumpy(), before)


@pytest.mark.parametrize("sparse_grad", [False, True])
def test_embedding_hybrid_equals_imperative(sparse_grad):
    """sparse_grad=True gives the same (dense) gradient: kiln has no row_sparse storage."""
    x = mx.nd.array([[0, 2], [5, 2]])
    a, b = nn.Embedding(6, 3, sparse_grad=sparse_grad), nn.Embedding(6, 3, sparse_grad=sparse_grad)
    for blk in (a, b):
        blk.initialize()
    b.weight.set_data(a.weight.data())
    b.hybridize()
    with autograd.record():
        ya = a(x)
    ya.backward()
    with autograd.record():
        yb = b(x)
    yb.backward()
    np.testing.assert_allclose(ya.asnumpy(), yb.asnumpy())
    np.testing.assert_allclose(a.weight.grad().asnumpy(), b.weight.grad().asnumpy())
    assert b.weight.grad().asnumpy()[2].tolist() == [2.0, 2.0, 2.0]
    assert b.weight.grad().asnumpy()[1].tolist() == [0.0, 0.0, 0.0]


def test_dropout_training_through_hybridized_block():
    net = nn.HybridSequential()
    net.add(nn.Dropout(0.5))
    net.hybridize()
    x = mx.nd.ones((50, 40))
    x.attach_grad()
    np.testing.assert_array_equal(net(x).asnumpy(), x.asnumpy())  # inference: identity
    with autograd.record():
        y = net(x)
    y.backward()
    out = y.asnumpy()
    assert set(np.unique(out).tolist()) <= {0.0, 2.0} and 0.3 < (out == 0).mean() < 0.7
    np.testing.assert_array_equal(x.grad.asnumpy(), out)  # gradient uses the same mask


class _Custom(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.dense = nn.Dense(3, in_units=4)
            self.scale = self.params.get("scale", shape=(1, 3), init=mx.init.Constant(2.0))

    def hybrid_forward(self, F, x, scale):
        h = F.broadcast_mul(self.dense(x), scale)
        return h, [F.relu(h), F.sum(h, axis=1)]


def test_nested_outputs_and_custom_params():
    net = _Custom()
    net.initialize()
    x = mx.nd.array(RS.uniform(-1, 1, size=(2, 4)))
    eager = net(x)
    net.hybridize()
    hyb = net(x)
    assert isinstance(hyb, (list, tuple)) and isinstance(hyb[1], list) and len(hyb[1]) == 2
    for a, b in zip([eager[0]] + eager[1], [hyb[0]] + hyb[1]):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-6)
    with autograd.record():
        h, (r, s) = net(x)
        loss = h.sum() + r.sum() * 2 + s.sum()
    loss.backward()
    g_hyb = net.scale.grad().asnumpy().copy()
    net.hybridize(False)
    with autograd.record():
        h, (r, s) = net(x)
        loss = h.sum() + r.sum() * 2 + s.sum()
    loss.backward()
    np.testing.assert_allclose(net.scale.grad().asnumpy(), g_hyb, rtol=1e-5)


def test_retrace_on_new_shape_and_dtype():
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=4), nn.Activation("relu"))
    net.initialize()
    net.hybridize()
    for n in (2, 5, 2):
        x = mx.nd.array(RS.uniform(-1, 1, size=(n, 4)))
        y = net(x)
        ref = np.maximum(x.asnumpy() @ net[0].weight.data().asnumpy().T + net[0].bias.data().asnumpy(), 0)
        np.testing.assert_allclose(y.asnumpy(), ref, rtol=1e-5, atol=1e-6)
    assert len(net._cached) == 2
    net.cast("float64")
    y = net(mx.nd.ones((2, 4), dtype="float64"))
    assert y.dtype == np.float64


def test_grad_req_add_accumulates():
    for hybridize in (False, True):
        net = nn.Dense(2, in_units=3)
        net.initialize(mx.init.One())
        net.collect_params().setattr("grad_req", "add")
        net.hybridize(hybridize)
        x = mx.nd.array([[1.0, 2.0, 3.0]])
        for _ in range(3):
            with autograd.record():
                y = net(x)
            y.backward()
        assert net.weight.grad().asnumpy().tolist() == [[3.0, 6.0, 9.0]] * 2, hybridize
        assert net.bias.grad().asnumpy().tolist() == [3.0, 3.0]
        net.collect_params().zero_grad()
        assert net.weight.grad().asnumpy().sum() == 0


def test_shared_block_called_twice_in_one_recording():
    net = nn.Dense(2, in_units=2)
    net.initialize(mx.init.One())
    net.hybridize()
    a, b = mx.nd.array([[1.0, 2.0]]), mx.nd.array([[3.0, 5.0]])
    with autograd.record():
        loss = net(a).sum() + net(b).sum() * 10
    loss.backward()
    assert net.weight.grad().asnumpy().tolist() == [[31.0, 52.0]] * 2


def test_symbol_value_read_is_a_clear_error():
    class Bad(gluon.HybridBlock):
        def hybrid_forward(self, F, x):
            return x * float(x.asnumpy().sum())
    net = Bad()
    net.hybridize()
    with pytest.raises(MXNetError, match="Symbols"):
        net(mx.nd.ones((2,)))


def test_symbolic_call_gives_symbol():
    net = nn.HybridSequential(prefix="m_")
    with net.name_scope():
        net.add(nn.Dense(2), nn.Dense(1))
    out = net(mx.sym.var("data"))
    assert out.list_arguments() == ["data", "m_dense0_weight", "m_dense0_bias", "m_dense1_weight",
                                    "m_dense1_bias"]


def test_save_load_parameters_round_trip(tmp_path):
    def build():
        net = nn.HybridSequential()
        net.add(nn.Dense(5, activation="relu", in_units=3), nn.BatchNorm(in_channels=5), nn.Dense(2, in_units=5))
        return net
    x = mx.nd.array(RS.uniform(-1, 1, size=(4, 3)))
    a = build()
    a.initialize()
    _fill(a, 3)
    f = str(tmp_path / "net.params")
    a.save_parameters(f)
    assert list(mx.nd.load(f).keys()) == ["0.weight", "0.bias", "1.gamma", "1.beta", "1.running_mean",
                                          "1.running_var", "2.weight", "2.bias"]
    b = build()
    b.load_parameters(f)
    np.testing.assert_allclose(a(x).asnumpy(), b(x).asnumpy())
    c = build()
    c.add(nn.Dense(1, in_units=2))
    with pytest.raises(MXNetError):
        c.load_parameters(f)
    c.load_parameters(f, allow_missing=True)
    small = nn.HybridSequential()
    small.add(nn.Dense(5, in_units=3))
    with pytest.raises(MXNetError):
        small.load_parameters(f)
    small.load_parameters(f, ignore_extra=True)
    wrong = nn.HybridSequential()
    wrong.add(nn.Dense(4, in_units=3))
    with pytest.raises(MXNetError, match="shape incompatible"):
        wrong.load_parameters(f, ignore_extra=True)


def test_export_and_symbolblock_imports(tmp_path):
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Dense(4, activation="relu"), nn.BatchNorm(), nn.Dense(2))
    net.initialize()
    x = mx.nd.array(RS.uniform(-1, 1, size=(3, 5)))
    with pytest.raises(RuntimeError):
        net.export(str(tmp_path / "none"))
    net.hybridize()
    with autograd.record():  # move the running statistics away from their initial values
        net(x)
    ref = net(x).asnumpy()
    path = str(tmp_path / "model")
    net.export(path, epoch=3)
    saved = mx.nd.load(path + "-0003.params")
    pre = net.prefix
    assert list(saved.keys()) == ["arg:%sdense0_weight" % pre, "arg:%sdense0_bias" % pre,
                                  "arg:%sbatchnorm0_gamma" % pre, "arg:%sbatchnorm0_beta" % pre,
                                  "aux:%sbatchnorm0_running_mean" % pre, "aux:%sbatchnorm0_running_var" % pre,
                                  "arg:%sdense1_weight" % pre, "arg:%sdense1_bias" % pre]
    sym = mx.sym.load(path + "-symbol.json")
    assert sym.list_arguments()[0] == "data" and len(sym.list_auxiliary_states()) == 2
    assert json.loads(open(path + "-symbol.json").read())["nodes"][1]["name"] == "%sdense0_weight" % pre
    blk = gluon.SymbolBlock.imports(path + "-symbol.json", ["data"], path + "-0003.params")
    np.testing.assert_allclose(blk(x).asnumpy(), ref, rtol=1e-5, atol=1e-6)
    # a SymbolBlock trains like any hybridized block
    with autograd.record():
        y = blk(x)
    y.backward()
    assert blk.collect_params()["%sdense1_bias" % pre].grad().asnumpy().tolist() == [3.0, 3.0]


def test_symbolblock_from_symbols():
    data = mx.sym.var("data")
    out = mx.sym.FullyConnected(data, num_hidden=2, name="fc")
    blk = gluon.SymbolBlock(out, data)
    blk.initialize(mx.init.One())
    y = blk(mx.nd.ones((1, 3)))
    assert y.asnumpy().tolist() == [[4.0, 4.0]]  # One() fills the bias too (no own init)
    assert blk.collect_params()["fc_weight"].shape == (2, 3)


def test_hooks_apply_and_repr():
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=2), nn.Activation("tanh"), nn.Dropout(0.5))
    seen = []
    h1 = net[0].register_forward_pre_hook(lambda blk, args: seen.append(("pre", blk.name)))
    h2 = net[0].register_forward_hook(lambda blk, args, out: seen.append(("post", out.shape)))
    net.initialize()
    net(mx.nd.ones((4, 2)))
    assert seen == [("pre", net[0].name), ("post", (4, 3))]
    h1.detach()
    h2.detach()
    net(mx.nd.ones((4, 2)))
    assert len(seen) == 2
    names = []
    net.apply(lambda blk: names.append(type(blk).__name__))
    assert names == ["Dense", "Activation", "Dropout", "HybridSequential"]
    assert repr(net).splitlines() == ["HybridSequential(", "  (0): Dense(2 -> 3, linear)", "  (1): Activation(tanh)",
                                      "  (2): Dropout(p = 0.5, axes=())", ")"]
    assert repr(nn.Dense(5, activation="relu")) == "Dense(None -> 5, Activation(relu))"
    assert "Total params: 9" in net.summary(mx.nd.ones((1, 2)))


def test_block_with_python_control_flow_and_lambda():
    class MLP(nn.Block):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.hidden = nn.Dense(4, in_units=3)
                self.act = nn.Lambda("relu")
                self.extra = self.params.get("extra", shape=(4,), init=mx.init.Constant(0.25))

        def forward(self, x):
            h = self.act(self.hidden(x))
            if h.sum().asscalar() >= 0:
                h = h * 2
            return h + self.extra.data()
    net = MLP(prefix="custom_")
    assert sorted(net.collect_params().keys()) == ["custom_dense0_bias", "custom_dense0_weight", "custom_extra"]
    net.initialize(mx.init.One())
    x = mx.nd.array([[1.0, -2.0, 4.0]])
    x.attach_grad()
    with autograd.record():
        y = net(x).sum()
    y.backward()
    assert y.asscalar() == pytest.approx(4 * (2 * 3.0 + 0.25))  # the bias keeps its own 'zeros' init
    assert x.grad.asnumpy().tolist() == [[8.0, 8.0, 8.0]]
    assert net.extra.grad().asnumpy().tolist() == [1.0] * 4
    with pytest.raises(MXNetError):
        nn.HybridSequential().add(net)  # a HybridBlock's children must be HybridBlocks


def test_sequential_slicing_and_len():
    seq = nn.Sequential()
    seq.add(nn.Dense(3, in_units=2), nn.Dense(2, in_units=3), nn.Dense(1, in_units=2))
    seq.initialize(mx.init.One())
    assert len(seq) == 3 and len(seq[:2]) == 2
    assert seq[:2](mx.nd.ones((1, 2))).asnumpy().tolist() == [[6.0, 6.0]]


def test_hybridized_children_of_plain_block_and_predict_mode_recording():
    def build():
        seq = nn.Sequential()
        a = nn.HybridSequential()
        a.add(nn.Dense(3, in_units=2), nn.BatchNorm(), nn.Dropout(0.3))
        seq.add(a, nn.Dense(1))
        seq.initialize(mx.init.Xavier())
        return seq
    x = mx.nd.array([[1.0, 2.0], [3.0, 5.0], [-1.0, 0.5]])
    eager, hyb = build(), build()
    eager(x)
    hyb(x)
    for p, q in zip(eager.collect_params().values(), hyb.collect_params().values()):
        q.set_data(p.data())
    hyb[0].hybridize()
    hyb[1].hybridize()
    res = []
    for net in (eager, hyb):
        with autograd.record(train_mode=False):  # BatchNorm uses its moving statistics, Dropout is off
            y = net(x)
        y.backward()
        res.append((y.asnumpy(), net[0][0].weight.grad().asnumpy().copy(), net[0][1].beta.grad().asnumpy().copy()))
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unused_input_gets_zero_gradient():
    class Two(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.d = nn.Dense(2)

        def hybrid_forward(self, F, x, unused):
            return self.d(x)
    for hybridize in (False, True):
        net = Two()
        net.initialize(mx.init.One())
        net.hybridize(hybridize)
        x, u = mx.nd.ones((1, 3)), mx.nd.ones((2,))
        x.attach_grad()
        u.attach_grad()
        with autograd.record():
            y = net(x, u)
        y.backward()
        assert y.asnumpy().tolist() == [[3.0, 3.0]]  # deferred weight (2, 3) inferred, bias zeros
        assert x.grad.asnumpy().tolist() == [[2.0, 2.0, 2.0]] and u.grad.asnumpy().tolist() == [0.0, 0.0]


def test_higher_order_through_hybridized_block_is_refused():
    net = nn.Dense(1, in_units=2)
    net.initialize(mx.init.One())
    net.hybridize()
    x = mx.nd.ones((1, 2))
    x.attach_grad()
    with autograd.record():
        y = net(x) ** 2
    with pytest.raises(NotImplementedError, match="higher-order"):
        autograd.grad(y, [x], create_graph=True)
