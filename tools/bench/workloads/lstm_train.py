"""LSTM layer forward + backward (T=35, N=32, I=H=256, one layer, TNC): kiln's fused layer
(``gluon.rnn.LSTM``, one RNN operator unrolled by the compiler) hybridized and imperative,
kiln's LSTMCell unrolled in a hybridized block, MXNet's fused layer, torch's nn.LSTM.
The same weights everywhere (MXNet's and torch's gate order is i, f, g, o)."""
import numpy as np

from harness import Bench, Case

NAME = "lstm_train"
DESCRIPTION = ("LSTM layer fwd+bwd (record, sum of outputs, backward): :hybrid/:imperative = gluon.rnn.LSTM, "
               ":cells = LSTMCell.unroll in a hybridized block; torch nn.LSTM")


def cases(quick):
    t, n, h = (5, 4, 16) if quick else (35, 32, 256)
    return [Case("T=%d N=%d I=H=%d" % (t, n, h), {"T": t, "N": n, "H": h}, per=(t * n, "step-sample"),
                 max_repeat=7)]


def _data(case):
    t, n, h = case.params["T"], case.params["N"], case.params["H"]
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (t, n, h)).astype(np.float32)
    w = {k: rng.uniform(-0.1, 0.1, s).astype(np.float32)
         for k, s in (("i2h_weight", (4 * h, h)), ("h2h_weight", (4 * h, h)), ("i2h_bias", (4 * h,)),
                      ("h2h_bias", (4 * h,)))}
    return x, w


def _gluon(modname, case, with_cells):
    import importlib
    mx = importlib.import_module(modname)
    gluon, autograd = mx.gluon, mx.autograd
    t, n, h = case.params["T"], case.params["N"], case.params["H"]
    x, w = _data(case)
    data = mx.nd.array(x)
    states = [mx.nd.zeros((1, n, h)), mx.nd.zeros((1, n, h))]

    class Unrolled(gluon.HybridBlock):
        def __init__(self, **kw):
            super().__init__(**kw)
            with self.name_scope():
                self.cell = gluon.rnn.LSTMCell(h, input_size=h, prefix="l0_")

        def hybrid_forward(self, F, x, h0, c0):
            out, _ = self.cell.unroll(t, x, begin_state=[h0, c0], layout="TNC", merge_outputs=True)
            return out

    def make(kind):
        if kind == "cells":
            net, args = Unrolled(), (data, states[0][0], states[1][0])
        else:
            net, args = gluon.rnn.LSTM(h, input_size=h), (data, states)
        net.initialize()
        for name, p in net.collect_params().items():  # <prefix>l0_i2h_weight...
            p.set_data(mx.nd.array(w[name[name.index("l0_") + 3:]]))
        if kind != "imperative":
            net.hybridize(static_alloc=True, static_shape=True)
        grad = next(p for k, p in net.collect_params().items() if k.endswith("i2h_weight"))

        def step():
            with autograd.record():
                out = net(*args)
                out = out[0] if isinstance(out, (list, tuple)) else out
            out.backward()
            mx.nd.waitall()
        step()
        first = grad.grad().asnumpy().copy()
        return Bench(step, output=lambda: first)
    kinds = ["hybrid", "imperative"] + (["cells"] if with_cells else [])
    return {k: make(k) for k in kinds}


def kiln(case):
    return _gluon("kiln", case, True)


def mxnet(case):
    return _gluon("mxnet", case, False)


def torch(case):
    import torch as T
    h = case.params["H"]
    x, w = _data(case)
    lstm = T.nn.LSTM(h, h)
    with T.no_grad():
        lstm.weight_ih_l0.copy_(T.from_numpy(w["i2h_weight"]))
        lstm.weight_hh_l0.copy_(T.from_numpy(w["h2h_weight"]))
        lstm.bias_ih_l0.copy_(T.from_numpy(w["i2h_bias"]))
        lstm.bias_hh_l0.copy_(T.from_numpy(w["h2h_bias"]))
    tx = T.from_numpy(x)

    def step():
        lstm.zero_grad()
        out, _ = lstm(tx)
        out.sum().backward()
    step()
    first = lstm.weight_ih_l0.grad.numpy().copy()
    return {"eager": Bench(step, output=lambda: first)}
