"""Gluon LeNet inference (batch 64, 1x28x28): hybridized vs imperative; the same Gluon
code for kiln and MXNet, torch eager for comparison."""
import numpy as np

from harness import Bench, Case
from workloads.lenet_infer import _data, _params

NAME = "gluon_lenet_infer"
DESCRIPTION = ("Gluon LeNet inference: Conv2D(20,5,tanh), MaxPool2D, Conv2D(50,5,tanh), MaxPool2D, "
               "Dense(500,tanh), Dense(10); :hybrid = after hybridize()")


def cases(quick):
    b = 4 if quick else 64
    return [Case("b=%d" % b, {"batch": b}, per=(b, "sample"), max_repeat=3 if quick else None, warmup=1)]


def _gluon(modname, case):
    import importlib
    mx = importlib.import_module(modname)
    nn = mx.gluon.nn
    p = _params()
    x = mx.nd.array(_data(case.params["batch"]))

    def make(hybrid):
        net = nn.HybridSequential()
        net.add(nn.Conv2D(20, 5, activation="tanh", in_channels=1), nn.MaxPool2D(2, 2),
                nn.Conv2D(50, 5, activation="tanh", in_channels=20), nn.MaxPool2D(2, 2),
                nn.Dense(500, activation="tanh", in_units=800), nn.Dense(10, in_units=500))
        net.initialize()
        for layer, name in zip([net[0], net[2], net[4], net[5]], ["conv1", "conv2", "fc1", "fc2"]):
            layer.weight.set_data(mx.nd.array(p[name + "_weight"]))
            layer.bias.set_data(mx.nd.array(p[name + "_bias"]))
        if hybrid:
            net.hybridize(static_alloc=True, static_shape=True)
        holder = {}

        def run():
            holder["out"] = net(x)
            holder["out"].wait_to_read()
        run()
        return Bench(run, output=lambda: holder["out"].asnumpy())
    return {"hybrid": make(True), "imperative": make(False)}


def kiln(case):
    return _gluon("kiln", case)


def mxnet(case):
    return _gluon("mxnet", case)


def torch(case):
    import torch as T
    p = {k: T.from_numpy(v) for k, v in _params().items()}
    x = T.from_numpy(_data(case.params["batch"]))
    F = T.nn.functional

    def net():
        with T.no_grad():
            a = F.max_pool2d(T.tanh(F.conv2d(x, p["conv1_weight"], p["conv1_bias"])), 2)
            a = F.max_pool2d(T.tanh(F.conv2d(a, p["conv2_weight"], p["conv2_bias"])), 2)
            a = T.tanh(F.linear(a.flatten(1), p["fc1_weight"], p["fc1_bias"]))
            return F.linear(a, p["fc2_weight"], p["fc2_bias"])
    holder = {}

    def run():
        holder["out"] = net()
    return {"eager": Bench(run, output=lambda: np.asarray(holder["out"]))}
