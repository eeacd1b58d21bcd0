"""Gluon MLP training step (784-512-512-10, batch 256): hybridized vs imperative,
Trainer('sgd'), SoftmaxCrossEntropyLoss; the same code for kiln and MXNet."""
from harness import Bench, Case
from workloads import _common as C

NAME = "gluon_mlp_train"
DESCRIPTION = ("Gluon training step: HybridSequential Dense(relu) x2 + Dense, SoftmaxCrossEntropyLoss, "
               "record/backward/Trainer.step; :hybrid = after hybridize()")
DIMS = [784, 512, 512, 10]
QUICK_DIMS = [784, 64, 64, 10]
LR = 0.01


def cases(quick):
    dims = QUICK_DIMS if quick else DIMS
    b = 32 if quick else 256
    return [Case("%s b=%d" % ("-".join(map(str, dims)), b), {"dims": dims, "batch": b}, per=(b, "sample"))]


def _gluon(modname, case):
    import importlib
    mx = importlib.import_module(modname)
    gluon, autograd = mx.gluon, mx.autograd
    dims, batch = case.params["dims"], case.params["batch"]
    x, y = C.mlp_data(batch, dims[0], dims[-1])
    params = C.mlp_params(dims)
    data, label = mx.nd.array(x), mx.nd.array(y)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def make(hybrid):
        net = gluon.nn.HybridSequential()
        for i in range(len(dims) - 1):
            net.add(gluon.nn.Dense(dims[i + 1], activation="relu" if i < len(dims) - 2 else None,
                                   in_units=dims[i]))
        net.initialize()
        for layer, (w, b) in zip(net, params):
            layer.weight.set_data(mx.nd.array(w))
            layer.bias.set_data(mx.nd.array(b))
        if hybrid:
            net.hybridize(static_alloc=True, static_shape=True)
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
        holder = {}

        def step():
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(batch)
            holder["loss"] = loss
            mx.nd.waitall()

        # gradient of the first weight after one forward/backward, for the cross-check
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        first = net[0].weight.grad().asnumpy().copy()
        return Bench(step, output=lambda: first)
    return {"hybrid": make(True), "imperative": make(False)}


def kiln(case):
    return _gluon("kiln", case)


def mxnet(case):
    return _gluon("mxnet", case)


def torch(case):
    import torch as T
    F = T.nn.functional
    dims, batch = case.params["dims"], case.params["batch"]
    x, y = C.mlp_data(batch, dims[0], dims[-1])
    layers = [T.nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:])]
    with T.no_grad():
        for layer, (w, b) in zip(layers, C.mlp_params(dims)):
            layer.weight.copy_(T.from_numpy(w))
            layer.bias.copy_(T.from_numpy(b))
    model = T.nn.Sequential(*[m for layer in layers[:-1] for m in (layer, T.nn.ReLU())], layers[-1])
    opt = T.optim.SGD(model.parameters(), lr=LR)
    tx, ty = T.from_numpy(x), T.from_numpy(y).long()

    def step():
        opt.zero_grad()
        F.cross_entropy(model(tx), ty, reduction="mean").backward()
        opt.step()
    F.cross_entropy(model(tx), ty, reduction="sum").backward()
    first = layers[0].weight.grad.numpy().copy()
    opt.zero_grad()
    return {"eager": Bench(step, output=lambda: first)}
