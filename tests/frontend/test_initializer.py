"""mx.init: name dispatch, dumps/create round trips, each initialiser's values, seeding."""
from __future__ import annotations

import json

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError


def _apply(init, name, shape, dtype="float32"):
    arr = mx.nd.full(shape, -9.0, dtype=dtype)
    init(mx.init.InitDesc(name), arr)
    return arr.asnumpy()


def test_aliases():
    assert mx.init is mx.initializer


def test_dumps_strings_match_mxnet():
    assert mx.init.Xavier().dumps() == '["xavier", {"rnd_type": "uniform", "factor_type": "avg", "magnitude": 3}]'
    assert mx.init.MSRAPrelu().dumps() == '["msraprelu", {"factor_type": "avg", "slope": 0.25}]'
    assert mx.init.Zero().dumps() == '["zero", {}]'
    assert mx.init.Constant(3).dumps() == '["constant", {"value": 3}]'
    assert mx.init.Constant(np.array([1.0, 2.0])).dumps() == '["constant", {"value": [1.0, 2.0]}]'
    assert mx.init.Orthogonal().dumps() == '["orthogonal", {"scale": 1.414, "rand_type": "uniform"}]'


@pytest.mark.parametrize("init", [mx.init.Normal(0.5), mx.init.Uniform(0.2), mx.init.Xavier("gaussian", "in", 2),
                                  mx.init.MSRAPrelu("out", 0.1), mx.init.Constant(0.5), mx.init.One(),
                                  mx.init.Orthogonal(2.0, "normal"), mx.init.LSTMBias(2.0), mx.init.Bilinear()])
def test_create_round_trip(init):
    again = mx.init.create(init.dumps())
    assert type(again) is type(init) and again.dumps() == init.dumps() and again == init


def test_create_by_name_and_instance():
    assert isinstance(mx.init.create("zeros"), mx.init.Zero)
    assert isinstance(mx.init.create("ONES"), mx.init.One)
    assert isinstance(mx.init.create("uniform", scale=0.5), mx.init.Uniform)
    x = mx.init.Xavier()
    assert mx.init.create(x) is x
    with pytest.raises(MXNetError, match="nosuch"):
        mx.init.create("nosuch")


def test_register_custom():
    @mx.init.register
    class MyTwos(mx.init.Initializer):
        def _init_weight(self, _, arr):
            arr[:] = 2.0
    assert (_apply(mx.init.create("mytwos"), "a_weight", (2,)) == 2).all()


def test_name_dispatch():
    init = mx.init.Constant(0.5)
    assert (_apply(init, "fc_weight", (2, 3)) == 0.5).all()
    assert (_apply(init, "fc_bias", (3,)) == 0).all()
    assert (_apply(init, "bn_gamma", (3,)) == 1).all()
    assert (_apply(init, "bn_beta", (3,)) == 0).all()
    assert (_apply(init, "q_min", (3,)) == 0).all()
    assert (_apply(init, "q_max", (3,)) == 1).all()
    with pytest.raises(ValueError, match="Unknown initialization pattern for bn_moving_mean"):
        _apply(init, "bn_moving_mean", (3,))


def test_init_attribute_overrides_name():
    arr = mx.nd.zeros((2, 2))
    mx.init.Uniform()(mx.init.InitDesc("x_bias", attrs={"__init__": mx.init.Constant(4.0).dumps()}), arr)
    assert (arr.asnumpy() == 4).all()
    desc = mx.init.InitDesc("w", attrs={"lr_mult": "2"})
    assert str(desc) == "w" and desc.attrs == {"lr_mult": "2"} and desc.global_init is None


def test_legacy_string_call():
    arr = mx.nd.zeros((3,))
    with pytest.warns(DeprecationWarning):
        mx.init.Uniform()("bn_moving_var", arr)
    assert (arr.asnumpy() == 1).all()


def test_uniform_and_normal_statistics_and_seed():
    mx.random.seed(7)
    u = _apply(mx.init.Uniform(0.3), "u_weight", (100, 100))
    assert np.abs(u).max() <= 0.3 and abs(u.mean()) < 0.01 and abs(u.std() - 0.3 / np.sqrt(3)) < 0.01
    mx.random.seed(7)
    assert (u == _apply(mx.init.Uniform(0.3), "u_weight", (100, 100))).all()
    n = _apply(mx.init.Normal(0.02), "n_weight", (100, 100))
    assert abs(n.std() - 0.02) < 0.001 and abs(n.mean()) < 0.001


def test_random_init_keeps_dtype():
    arr = _apply(mx.init.Uniform(0.5), "w_weight", (4, 4), dtype="float64")
    assert arr.dtype == np.float64 and np.abs(arr).max() <= 0.5 and arr.std() > 0


def test_xavier_bounds():
    shape = (20, 10, 3, 3)
    fan_in, fan_out = 10 * 9, 20 * 9
    w = _apply(mx.init.Xavier("uniform", "avg", 3), "c_weight", shape)
    bound = np.sqrt(3.0 / ((fan_in + fan_out) / 2))
    assert np.abs(w).max() <= bound + 1e-6 and np.abs(w).max() > 0.8 * bound
    g = _apply(mx.init.Xavier("gaussian", "in", 2), "c_weight", (200, 300))
    assert abs(g.std() - np.sqrt(2.0 / 300)) < 0.005
    with pytest.raises(ValueError, match="vector"):
        _apply(mx.init.Xavier(), "v_weight", (5,))
    m = _apply(mx.init.MSRAPrelu("in", 0.0), "m_weight", (200, 300))
    assert abs(m.std() - np.sqrt(2.0 / 300)) < 0.005


def test_orthogonal():
    for shape in [(4, 6), (6, 4), (3, 2, 2)]:
        w = _apply(mx.init.Orthogonal(scale=2.0), "o_weight", shape).reshape(shape[0], -1)
        if w.shape[0] <= w.shape[1]:
            np.testing.assert_allclose(w @ w.T, 4 * np.eye(w.shape[0]), atol=1e-4)
        else:
            np.testing.assert_allclose(w.T @ w, 4 * np.eye(w.shape[1]), atol=1e-4)


def test_bilinear_matches_mxnet_loop():
    shape = (1, 1, 4, 4)
    w = _apply(mx.init.Bilinear(), "up_weight", shape)
    f = np.ceil(shape[3] / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    want = np.zeros(16, np.float32)
    for i in range(16):
        x, y = i % 4, (i // 4) % 4
        want[i] = (1 - abs(x / f - c)) * (1 - abs(y / f - c))
    np.testing.assert_allclose(w.reshape(-1), want, rtol=1e-6)


def test_lstm_bias():
    b = _apply(mx.init.LSTMBias(forget_bias=1.5), "l_weight", (8,))
    np.testing.assert_array_equal(b, [0, 0, 1.5, 1.5, 0, 0, 0, 0])


def test_fused_rnn():
    """Each gate block of the packed vector is initialised on its own (MXNet's unpacked names):
    weights by ``init``, biases 0, LSTM forget-gate biases (i2h and h2h) ``forget_bias``."""
    init = mx.init.FusedRNN(mx.init.Constant(0.5), num_hidden=2, num_layers=2, mode="lstm", bidirectional=True,
                            forget_bias=3.0)
    assert json.loads(init.dumps())[0] == "fusedrnn"
    from kiln.compiler.ops.rnn import param_layout
    layout, total = param_layout({"mode": "lstm", "state_size": 2, "num_layers": 2, "bidirectional": True}, 3)
    arr = mx.nd.zeros((total,))
    mx.init.Uniform()(mx.init.InitDesc("rnn_parameters", {"__init__": init.dumps()}), arr)  # a variable's init=
    v = arr.asnumpy()
    weights_end = layout[0][5]  # every weight precedes every bias
    assert (v[:weights_end] == 0.5).all()
    bias = v[weights_end:].reshape(-1, 4, 2)  # (layer/direction/group, gate i f c o, hidden)
    assert (bias[:, 1] == 3.0).all() and (bias[:, [0, 2, 3]] == 0).all()
    with pytest.raises(MXNetError, match="no input size"):
        init._init_weight(mx.init.InitDesc("rnn_parameters", global_init=mx.init.Uniform()), mx.nd.zeros((7,)))
    # no init: the global initialiser fills the weights
    gru = mx.init.FusedRNN(None, num_hidden=2, num_layers=1, mode="gru")
    arr = mx.nd.zeros((3 * 2 * (3 + 2) + 12,))
    mx.init.One()(mx.init.InitDesc("rnn_parameters", {"__init__": gru.dumps()}), arr)
    assert (arr.asnumpy()[:30] == 1).all() and (arr.asnumpy()[30:] == 0).all()


def test_mixed():
    mixed = mx.init.Mixed([".*bias", ".*"], [mx.init.Constant(0.5), mx.init.One()])
    b = mx.nd.zeros((2,))
    mixed(mx.init.InitDesc("fc_bias"), b)  # Constant on a bias name -> the bias rule: 0
    assert (b.asnumpy() == 0).all()
    w = mx.nd.zeros((2,))
    mixed(mx.init.InitDesc("fc_weight"), w)
    assert (w.asnumpy() == 1).all()
    with pytest.raises(ValueError, match="other_weight"):
        mx.init.Mixed(["fc.*"], [mx.init.Zero()])(mx.init.InitDesc("other_weight"), w)


def test_load(tmp_path):
    fname = str(tmp_path / "p.params")
    mx.nd.save(fname, {"arg:fc_weight": mx.nd.full((2, 2), 3.0), "aux:bn_moving_mean": mx.nd.full((2,), 5.0)})
    ld = mx.init.Load(fname, default_init=mx.init.Zero())
    w, m, other = mx.nd.zeros((2, 2)), mx.nd.zeros((2,)), mx.nd.ones((2,))
    ld("fc_weight", w)
    ld("bn_moving_mean", m)
    ld(mx.init.InitDesc("other_weight"), other)
    assert (w.asnumpy() == 3).all() and (m.asnumpy() == 5).all() and (other.asnumpy() == 0).all()
    with pytest.raises(MXNetError, match="Shape mismatch"):
        ld("fc_weight", mx.nd.zeros((3,)))
    with pytest.raises(MXNetError, match="not found|Not found"):
        mx.init.Load({"a": mx.nd.zeros((1,))})("b", mx.nd.zeros((1,)))


def test_set_verbosity_logs(caplog):
    import logging
    init = mx.init.Constant(2.0).set_verbosity(True)
    with caplog.at_level(logging.INFO, logger="kiln.initializer"):
        init(mx.init.InitDesc("v_weight"), mx.nd.zeros((4,)))
    assert "Initialized v_weight as weight" in caplog.text
