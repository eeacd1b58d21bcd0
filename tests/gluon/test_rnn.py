"""gluon.rnn: fused layers against MXNet 1.9.1 and against unrolled cells; hybridized = imperative."""
import numpy as np
import pytest

import kiln as mx
from kiln import autograd
from kiln.gluon import rnn


def _fill(block):
    """Deterministic parameters (sorted by name), so a test can be replayed in MXNet."""
    for k, (_, p) in enumerate(sorted(block.collect_params().items())):
        n = int(np.prod(p.shape))
        p.set_data(mx.nd.array((0.4 * np.cos(np.arange(n) * 0.37 + k)).reshape(p.shape)))


# Golden values: the same script run with MXNet 1.9.1 (gluon.rnn.LSTM/GRU(2, input_size=3)).
GOLDEN = {
    "lstm": ([-0.021449921652674675, -0.13608789443969727, -0.027101317420601845, -0.20828376710414886,
              -0.06552205979824066, -0.04607053101062775, -0.18493901193141937, 0.03027091547846794,
              -0.10304789990186691, -0.16092894971370697, -0.05899031460285187, -0.1367795616388321],
             [[-0.10304789990186691, -0.16092894971370697, -0.05899031460285187, -0.1367795616388321],
              [-0.29424771666526794, -0.3896274268627167, -0.29204216599464417, -0.33764421939849854]]),
    "gru": ([-0.039190877228975296, -0.26182428002357483, -0.15990591049194336, -0.45808497071266174,
             -0.1364481896162033, -0.10177353024482727, -0.2728147804737091, 0.17701153457164764,
             -0.26288995146751404, -0.3293911814689636, -0.2745459973812103, -0.14368592202663422],
            [[-0.26288995146751404, -0.3293911814689636, -0.2745459973812103, -0.14368592202663422]]),
}


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_golden_values_from_mxnet(name):
    layer = {"lstm": rnn.LSTM, "gru": rnn.GRU}[name](2, input_size=3, prefix=name + "_")
    layer.initialize()
    _fill(layer)
    x = mx.nd.array(np.sin(np.arange(18) * 0.5).reshape(3, 2, 3))
    h = [mx.nd.array(0.3 * np.cos(np.arange(4)).reshape(1, 2, 2))] * (2 if name == "lstm" else 1)
    out, states = layer(x, h)
    want_out, want_states = GOLDEN[name]
    np.testing.assert_allclose(out.asnumpy().ravel(), want_out, rtol=1e-5, atol=1e-6)
    for s, w in zip(states, want_states):
        np.testing.assert_allclose(s.asnumpy().ravel(), w, rtol=1e-5, atol=1e-6)


def test_parameter_names_states_and_layout():
    layer = rnn.LSTM(3, num_layers=2, bidirectional=True, layout="NTC")
    names = list(layer.collect_params().keys())
    assert names[:4] == ["lstm0_l0_i2h_weight", "lstm0_l0_h2h_weight", "lstm0_l0_i2h_bias", "lstm0_l0_h2h_bias"]
    assert "lstm0_r1_h2h_bias" in names and len(names) == 16
    layer.initialize()
    x = mx.nd.random.uniform(shape=(2, 5, 4))  # NTC, input size deferred
    out = layer(x)
    assert out.shape == (2, 5, 6) and layer.l0_i2h_weight.shape == (12, 4)
    states = layer.begin_state(batch_size=2)
    assert [s.shape for s in states] == [(4, 2, 3), (4, 2, 3)]
    out2, new_states = layer(x, states)
    np.testing.assert_allclose(out2.asnumpy(), out.asnumpy(), rtol=1e-6)
    assert [s.shape for s in new_states] == [(4, 2, 3), (4, 2, 3)]
    # NTC equals TNC on swapped data
    tnc = rnn.LSTM(3, num_layers=2, bidirectional=True, params=layer.collect_params(), prefix="lstm0_")
    np.testing.assert_allclose(tnc(x.swapaxes(0, 1)).swapaxes(0, 1).asnumpy(), out.asnumpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Invalid recurrent state shape"):
        layer(x, [mx.nd.zeros((4, 3, 3))] * 2)


@pytest.mark.parametrize("mode", ["rnn_tanh", "lstm", "gru"])
def test_cells_unrolled_equal_fused_layer(mode):
    """BidirectionalCell/SequentialRNNCell stacks with the layer's parameters give its outputs."""
    layer_cls = {"rnn_tanh": lambda: rnn.RNN(3, 2, activation="tanh", bidirectional=True, input_size=4),
                 "lstm": lambda: rnn.LSTM(3, 2, bidirectional=True, input_size=4),
                 "gru": lambda: rnn.GRU(3, 2, bidirectional=True, input_size=4)}[mode]
    cell_cls = {"rnn_tanh": lambda **kw: rnn.RNNCell(3, activation="tanh", **kw),
                "lstm": lambda **kw: rnn.LSTMCell(3, **kw), "gru": lambda **kw: rnn.GRUCell(3, **kw)}[mode]
    layer = layer_cls()
    layer.initialize(mx.init.Uniform(0.5))
    stack = rnn.SequentialRNNCell(prefix=layer.prefix, params=layer.collect_params())
    with stack.name_scope():
        for i in range(2):
            stack.add(rnn.BidirectionalCell(cell_cls(prefix="l%d_" % i, input_size=4 if i == 0 else 6),
                                            cell_cls(prefix="r%d_" % i, input_size=4 if i == 0 else 6)))
    x = mx.nd.random.uniform(-1, 1, shape=(5, 2, 4))
    want, want_states = layer(x, layer.begin_state(batch_size=2))
    got, _ = stack.unroll(5, x, layout="TNC", merge_outputs=True)
    np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-5, atol=1e-6)


def _run(block, x, *args):
    x = x.copy()
    x.attach_grad()
    with autograd.record():
        out = block(x, *args)
        flat = out if isinstance(out, mx.nd.NDArray) else out[0]
        loss = (flat * flat).sum()
    loss.backward()
    grads = {k: p.grad().asnumpy().copy() for k, p in block.collect_params().items()}
    return flat.asnumpy(), x.grad.asnumpy(), grads


@pytest.mark.parametrize("make", [lambda: rnn.LSTM(4, num_layers=2, layout="NTC", bidirectional=True),
                                  lambda: rnn.GRU(4), lambda: rnn.RNN(4, activation="relu")])
def test_hybridized_equals_imperative_layer(make):
    layer = make()
    layer.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(-1, 1, shape=(3, 5, 2))
    out, xg, grads = _run(layer, x)
    layer.hybridize()
    out2, xg2, grads2 = _run(layer, x)
    np.testing.assert_allclose(out2, out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xg2, xg, rtol=1e-5, atol=1e-6)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("hybridize", [False, True])
def test_dropout_between_layers(hybridize):
    layer = rnn.LSTM(4, num_layers=2, dropout=0.5)
    layer.initialize()
    if hybridize:
        layer.hybridize()
    x = mx.nd.random.uniform(shape=(3, 8, 5))
    y0 = layer(x).asnumpy()
    np.testing.assert_allclose(layer(x).asnumpy(), y0)  # inference: no dropout
    with autograd.record():
        y = layer(x)
    y.backward()
    assert not np.allclose(y.asnumpy(), y0)
    assert np.abs(layer.l0_h2h_weight.grad().asnumpy()).sum() > 0


def test_hybridized_equals_imperative_sequential_cell():
    seq = rnn.HybridSequentialRNNCell()
    with seq.name_scope():
        seq.add(rnn.LSTMCell(4, input_size=3))
        seq.add(rnn.ResidualCell(rnn.GRUCell(4, input_size=4)))
    seq.initialize(mx.init.Uniform(0.5))
    names = list(seq.collect_params().keys())
    assert names[0] == "hybridsequentialrnncell0_lstm0_i2h_weight" and len(names) == 8
    x = mx.nd.random.uniform(-1, 1, shape=(2, 4, 3))

    def run():
        x_ = x.copy()
        x_.attach_grad()
        with autograd.record():
            outs, states = seq.unroll(4, x_, layout="NTC", merge_outputs=True)
            loss = (outs * outs).sum() + states[0].sum()
        loss.backward()
        return outs.asnumpy(), x_.grad.asnumpy(), {k: p.grad().asnumpy().copy() for k, p in seq.collect_params().items()}
    out, xg, grads = run()
    seq.hybridize()
    out2, xg2, grads2 = run()
    np.testing.assert_allclose(out2, out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xg2, xg, rtol=1e-5, atol=1e-6)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_cell_api():
    cell = rnn.LSTMCell(5, input_size=3, prefix="c_")
    assert sorted(cell.collect_params().keys()) == ["c_h2h_bias", "c_h2h_weight", "c_i2h_bias", "c_i2h_weight"]
    cell.initialize()
    steps = [mx.nd.ones((2, 3)) for _ in range(3)]
    outs, states = cell.unroll(3, steps, merge_outputs=False)
    assert len(outs) == 3 and outs[0].shape == (2, 5) and [s.shape for s in states] == [(2, 5), (2, 5)]
    zone = rnn.ZoneoutCell(rnn.GRUCell(5, input_size=3), zoneout_outputs=0.5, zoneout_states=0.5)
    zone.initialize()
    out, st = zone.unroll(3, mx.nd.ones((2, 3, 3)), merge_outputs=True)
    assert out.shape == (2, 3, 5) and st[0].shape == (2, 5)
    drop = rnn.DropoutCell(0.5)
    out, st = drop.unroll(3, mx.nd.ones((2, 3, 3)), merge_outputs=True)
    assert out.shape == (2, 3, 3) and st == []
    with pytest.raises(NotImplementedError):
        rnn.BidirectionalCell(rnn.GRUCell(2), rnn.GRUCell(2))(mx.nd.ones((1, 2)), [])
    sym_out, _ = rnn.GRUCell(4, prefix="g_").unroll(2, mx.sym.var("data"), layout="NTC", merge_outputs=True)
    assert "g_i2h_weight" in sym_out.list_arguments()


def test_deferred_input_size_inside_a_hybridized_parent():
    """Both directions' first i2h weights are deferred: _rnn_param_concat shares the packed
    vector's remainder equally and Reshape gives each weight its missing width (MXNet's rule)."""
    class Model(mx.gluon.HybridBlock):
        def __init__(self, **kw):
            super().__init__(**kw)
            with self.name_scope():
                self.lstm = rnn.LSTM(8, num_layers=2, bidirectional=True)
                self.out = mx.gluon.nn.Dense(3, flatten=False)

        def hybrid_forward(self, F, x):
            return self.out(self.lstm(x))

    x = mx.nd.array(np.random.RandomState(0).rand(5, 2, 6))
    hyb, eager = Model(), Model()
    for net in (hyb, eager):
        net.initialize()
    hyb.hybridize()
    assert hyb(x).shape == eager(x).shape == (5, 2, 3)
    assert hyb.lstm.l0_i2h_weight.shape == hyb.lstm.r0_i2h_weight.shape == (32, 6)
    assert hyb.lstm.l1_i2h_weight.shape == (32, 16)


# ---- unroll(valid_length=...): MXNet 1.9.1 masks outputs with SequenceMask, takes each final state
# with SequenceLast and reverses each valid prefix with SequenceReverse (bidirectional) ----
VALID = [3, 5, 1]


def _lstm_stack():
    seq = rnn.HybridSequentialRNNCell()
    with seq.name_scope():
        seq.add(rnn.LSTMCell(4, input_size=3))
        seq.add(rnn.ResidualCell(rnn.GRUCell(4, input_size=4)))
    return seq


VL_CELLS = {
    "rnn": lambda: rnn.RNNCell(4, input_size=3),
    "lstm": lambda: rnn.LSTMCell(4, input_size=3),
    "gru": lambda: rnn.GRUCell(4, input_size=3),
    "sequential": _lstm_stack,
    "bidirectional": lambda: rnn.BidirectionalCell(rnn.LSTMCell(4, input_size=3), rnn.GRUCell(4, input_size=3)),
    "bidirectional_stack": lambda: _bidir_stack(),
}


def _bidir_stack():
    seq = rnn.SequentialRNNCell()
    with seq.name_scope():
        seq.add(rnn.BidirectionalCell(rnn.GRUCell(3, input_size=3), rnn.GRUCell(3, input_size=3)))
        seq.add(rnn.DropoutCell(0.0))
        seq.add(rnn.LSTMCell(2, input_size=6))
    return seq


@pytest.mark.parametrize("layout", ["NTC", "TNC"])
@pytest.mark.parametrize("name", sorted(VL_CELLS))
def test_unroll_valid_length_equals_per_sequence_unroll(name, layout):
    """Each sequence's outputs and final states are those of unrolling its valid prefix alone;
    the padded steps' outputs are zero."""
    cell = VL_CELLS[name]()
    cell.initialize(mx.init.Uniform(0.5))
    x = np.random.RandomState(0).uniform(-1, 1, (3, 5, 3)).astype("float32")  # NTC
    data = mx.nd.array(x if layout == "NTC" else x.transpose(1, 0, 2))
    outs, states = cell.unroll(5, data, layout=layout, merge_outputs=True,
                               valid_length=mx.nd.array(VALID))
    outs = outs.asnumpy() if layout == "NTC" else outs.asnumpy().transpose(1, 0, 2)
    for b, n in enumerate(VALID):
        o_b, s_b = cell.unroll(n, mx.nd.array(x[b:b + 1, :n]), layout="NTC", merge_outputs=True)
        np.testing.assert_allclose(outs[b, :n], o_b.asnumpy()[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(outs[b, n:], 0)
        for got, want in zip(states, s_b):
            np.testing.assert_allclose(got.asnumpy()[b], want.asnumpy()[0], rtol=1e-5, atol=1e-6)


def test_unroll_valid_length_unmerged_steps_and_int_lengths():
    cell = rnn.BidirectionalCell(rnn.GRUCell(2, input_size=3), rnn.GRUCell(2, input_size=3))
    cell.initialize(mx.init.Uniform(0.5))
    steps = [mx.nd.random.uniform(-1, 1, shape=(3, 3)) for _ in range(5)]
    merged, st = cell.unroll(5, steps, merge_outputs=True, valid_length=mx.nd.array(VALID))
    listed, st2 = cell.unroll(5, steps, merge_outputs=False, valid_length=mx.nd.array(VALID, dtype="int32"))
    assert len(listed) == 5 and listed[0].shape == (3, 4)
    np.testing.assert_allclose(np.stack([o.asnumpy() for o in listed], 1), merged.asnumpy(), rtol=1e-6)
    for a, b in zip(st, st2):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-6)
    one, _ = cell.unroll(1, steps[:1], merge_outputs=False, valid_length=mx.nd.array([1, 1, 1]))
    assert len(one) == 1 and one[0].shape == (3, 4)


class _Unroller(mx.gluon.HybridBlock):
    def __init__(self, cell, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.cell = cell

    def hybrid_forward(self, F, x, valid_length):
        outs, states = self.cell.unroll(5, x, layout="NTC", merge_outputs=True, valid_length=valid_length)
        return outs, states[-1]


@pytest.mark.parametrize("name", ["lstm", "sequential", "bidirectional"])
def test_unroll_valid_length_hybridized_equals_imperative(name):
    net = _Unroller(VL_CELLS[name]())
    net.initialize(mx.init.Uniform(0.5))
    x = mx.nd.random.uniform(-1, 1, shape=(3, 5, 3))
    vl = mx.nd.array(VALID)

    def run():
        x_ = x.copy()
        x_.attach_grad()
        with autograd.record():
            outs, last = net(x_, vl)
            loss = (outs * outs).sum() + (last * last).sum()
        loss.backward()
        grads = {k: p.grad().asnumpy().copy() for k, p in net.collect_params().items()}
        return outs.asnumpy(), last.asnumpy(), x_.grad.asnumpy(), grads
    want = run()
    net.hybridize()
    got = run()
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert np.all(want[2][0, 3:] == 0) and np.all(want[2][2, 1:] == 0)  # padded inputs get no gradient
    for k in want[3]:
        np.testing.assert_allclose(got[3][k], want[3][k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("hybridize", [False, True])
def test_layer_use_sequence_length(hybridize):
    """Each sequence's outputs equal a run on its valid prefix alone; padded steps output zero
    and their inputs get no gradient."""
    layer = rnn.LSTM(4, input_size=3, bidirectional=True, use_sequence_length=True, layout="NTC")
    layer.initialize(mx.init.Xavier())
    if hybridize:
        layer.hybridize()
    x = mx.nd.array(np.random.RandomState(0).rand(2, 5, 3))
    x.attach_grad()
    with autograd.record():
        y = layer(x, sequence_length=mx.nd.array([5, 2]))
    y.backward()
    alone = layer(x[1:2, :2], sequence_length=mx.nd.array([2]))
    np.testing.assert_allclose(y[1, :2].asnumpy(), alone[0].asnumpy(), rtol=1e-5, atol=1e-6)
    assert not y[1, 2:].asnumpy().any() and not x.grad[1, 2:].asnumpy().any()
    with pytest.raises(ValueError, match="pass sequence_length"):
        layer(x)
