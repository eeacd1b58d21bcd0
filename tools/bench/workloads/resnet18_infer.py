"""ResNet-18 v1 inference at batch 1 on 3x224x224 (the model zoo's resnet18_v1: conv 7x7/2,
maxpool 3x3/2, four stages of two basic blocks, 64-128-256-512 channels, global average pool,
FullyConnected 1000, softmax), float32, built with mx.sym: the compile path on a whole model
(21 convolutions, 20 BatchNorms folded into inference, residual adds). --quick runs a
narrower network (16-32-64-128 channels, 100 classes) on 3x32x32."""
import numpy as np

from harness import Bench, Case
from workloads import _common as C

NAME = "resnet18_infer"
DESCRIPTION = "ResNet-18 v1 inference, batch 1, 3x224x224 (quick: 1/4 width on 3x32x32); float32"
EPS = 1e-5  # the model zoo's BatchNorm epsilon (mx.sym.BatchNorm's default is 1e-3)


def cases(quick):
    p = {"hw": 32, "width": 16, "classes": 100} if quick else {"hw": 224, "width": 64, "classes": 1000}
    return [Case("hw=%d width=%d" % (p["hw"], p["width"]), p, per=(1, "image"),
                 max_repeat=3 if quick else 7, warmup=1)]


def _layers(width, classes):
    """[(kind, name, shape args)] in order: what both builders walk, so they share weights."""
    out = [("conv", "conv0", (width, 3, 7, 2, 3)), ("bn", "bn0", width)]
    cin = width
    for stage in range(4):
        cout = width << stage
        for block in range(2):
            stride = 2 if stage and not block else 1
            pre = "stage%d_unit%d_" % (stage + 1, block + 1)
            out.append(("block", pre, (cin, cout, stride, cin != cout or stride != 1)))
            cin = cout
    out.append(("fc", "fc", (classes, cin)))
    return out


def _params(width, classes, seed=0):
    """He-initialised convolutions, BatchNorm statistics near (0, 1): activations stay O(1)."""
    rng = np.random.default_rng(seed)
    p = {}

    def conv(name, cout, cin, k):
        p[name + "_weight"] = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
                               ).astype(np.float32)

    def bn(name, c):
        p[name + "_gamma"] = rng.uniform(0.5, 1.0, c).astype(np.float32)
        p[name + "_beta"] = rng.uniform(-0.1, 0.1, c).astype(np.float32)
        p[name + "_moving_mean"] = rng.uniform(-0.1, 0.1, c).astype(np.float32)
        p[name + "_moving_var"] = rng.uniform(0.8, 1.2, c).astype(np.float32)

    for kind, name, a in _layers(width, classes):
        if kind == "conv":
            conv(name, a[0], a[1], a[2])
        elif kind == "bn":
            bn(name, a)
        elif kind == "block":
            cin, cout, _, down = a
            conv(name + "conv1", cout, cin, 3)
            bn(name + "bn1", cout)
            conv(name + "conv2", cout, cout, 3)
            bn(name + "bn2", cout)
            if down:
                conv(name + "sc", cout, cin, 1)
                bn(name + "sc_bn", cout)
        else:
            p["fc_weight"] = (rng.standard_normal(a) / np.sqrt(a[1])).astype(np.float32)
            p["fc_bias"] = np.zeros(a[0], np.float32)
    return p


def _data(hw):
    return np.random.default_rng(1).standard_normal((1, 3, hw, hw)).astype(np.float32)


def _symbol(mx, width, classes):
    def conv(x, name, cout, k, stride, pad):
        return mx.sym.Convolution(x, kernel=(k, k), stride=(stride, stride), pad=(pad, pad), num_filter=cout,
                                  no_bias=True, name=name)

    def bn(x, name):
        return mx.sym.BatchNorm(x, fix_gamma=False, eps=EPS, name=name)

    x = mx.sym.Variable("data")
    for kind, name, a in _layers(width, classes):
        if kind == "conv":
            x = conv(x, name, a[0], a[2], a[3], a[4])
        elif kind == "bn":
            x = mx.sym.Activation(bn(x, name), act_type="relu")
            x = mx.sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
        elif kind == "block":
            _, cout, stride, down = a
            y = mx.sym.Activation(bn(conv(x, name + "conv1", cout, 3, stride, 1), name + "bn1"), act_type="relu")
            y = bn(conv(y, name + "conv2", cout, 3, 1, 1), name + "bn2")
            sc = bn(conv(x, name + "sc", cout, 1, stride, 0), name + "sc_bn") if down else x
            x = mx.sym.Activation(y + sc, act_type="relu")
        else:
            x = mx.sym.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg")
            x = mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=a[0], name=name)
    return mx.sym.softmax(x)


def _mx(mx, case):
    """As ``C.mx_forward_bench`` (binding is not timed), with the BatchNorm statistics as
    auxiliary states."""
    p = case.params
    sym = _symbol(mx, p["width"], p["classes"])
    params = _params(p["width"], p["classes"])
    ex = sym.simple_bind(mx.cpu(), grad_req="null", data=(1, 3, p["hw"], p["hw"]))
    ex.arg_dict["data"][:] = _data(p["hw"])
    for name, value in params.items():
        (ex.aux_dict if name in ex.aux_dict else ex.arg_dict)[name][:] = value
    sync = C.mx_sync(mx)

    def run():
        ex.forward(is_train=False)
        sync()
    return Bench(run, output=lambda: ex.outputs[0].asnumpy())


def kiln(case):
    import kiln as mx
    return _mx(mx, case)


def mxnet(case):
    import mxnet as mx
    return _mx(mx, case)


def torch(case):
    import torch as T
    F = T.nn.functional
    p = case.params
    w = {k: T.from_numpy(v) for k, v in _params(p["width"], p["classes"]).items()}
    layers = _layers(p["width"], p["classes"])

    def bn(x, name):
        return F.batch_norm(x, w[name + "_moving_mean"], w[name + "_moving_var"], w[name + "_gamma"],
                            w[name + "_beta"], training=False, eps=EPS)

    def fwd(x):
        for kind, name, a in layers:
            if kind == "conv":
                x = F.conv2d(x, w[name + "_weight"], stride=a[3], padding=a[4])
            elif kind == "bn":
                x = F.max_pool2d(T.relu(bn(x, name)), 3, 2, 1)
            elif kind == "block":
                stride, down = a[2], a[3]
                y = T.relu(bn(F.conv2d(x, w[name + "conv1_weight"], stride=stride, padding=1), name + "bn1"))
                y = bn(F.conv2d(y, w[name + "conv2_weight"], padding=1), name + "bn2")
                sc = bn(F.conv2d(x, w[name + "sc_weight"], stride=stride), name + "sc_bn") if down else x
                x = T.relu(y + sc)
            else:
                x = F.linear(x.mean(dim=(2, 3)), w["fc_weight"], w["fc_bias"])
        return F.softmax(x, dim=1)
    return C.torch_variants(T, fwd, [_data(p["hw"])])
