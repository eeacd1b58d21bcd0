"""LeNet inference at batch 64: conv 20@5x5 tanh, maxpool 2, conv 50@5x5 tanh, maxpool 2,
FullyConnected 500 tanh, FullyConnected 10, softmax (MXNet's LeNet example)."""
import numpy as np

from harness import Bench, Case
from workloads import _common as C

NAME = "lenet_infer"
DESCRIPTION = "LeNet inference on 1x28x28: conv-tanh-pool x2, fc500-tanh, fc10, softmax; float32"


def cases(quick):
    b = 4 if quick else 64
    return [Case("b=%d" % b, {"batch": b}, per=(b, "sample"), max_repeat=3 if quick else 5, warmup=1)]


def _params(seed=0):
    rng = np.random.default_rng(seed)

    def u(shape, fan_in):
        lim = np.sqrt(3.0 / fan_in)
        return rng.uniform(-lim, lim, shape).astype(np.float32)
    return {
        "conv1_weight": u((20, 1, 5, 5), 25), "conv1_bias": u((20,), 25),
        "conv2_weight": u((50, 20, 5, 5), 500), "conv2_bias": u((50,), 500),
        "fc1_weight": u((500, 800), 800), "fc1_bias": u((500,), 800),
        "fc2_weight": u((10, 500), 500), "fc2_bias": u((10,), 500),
    }


def _data(batch):
    return np.random.default_rng(1).standard_normal((batch, 1, 28, 28)).astype(np.float32)


def _mx(mx, case):
    data = mx.sym.Variable("data")
    x = mx.sym.Convolution(data, kernel=(5, 5), num_filter=20, name="conv1")
    x = mx.sym.Activation(x, act_type="tanh")
    x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2))
    x = mx.sym.Convolution(x, kernel=(5, 5), num_filter=50, name="conv2")
    x = mx.sym.Activation(x, act_type="tanh")
    x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2))
    x = mx.sym.Flatten(x)
    x = mx.sym.FullyConnected(x, num_hidden=500, name="fc1")
    x = mx.sym.Activation(x, act_type="tanh")
    x = mx.sym.FullyConnected(x, num_hidden=10, name="fc2")
    sym = mx.sym.softmax(x)
    inputs = dict(_params(), data=_data(case.params["batch"]))
    return C.mx_forward_bench(mx, sym, inputs)


def kiln(case):
    import kiln as mx
    return _mx(mx, case)


def mxnet(case):
    import mxnet as mx
    return _mx(mx, case)


def _np_conv(x, w, b):
    k = w.shape[-1]
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))   # N,C,Ho,Wo,k,k
    out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))                  # N,Ho,Wo,F
    return out.transpose(0, 3, 1, 2) + b[None, :, None, None]


def _np_pool(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def numpy(case):
    p = _params()
    x = _data(case.params["batch"])
    holder = {}

    def run():
        a = _np_pool(np.tanh(_np_conv(x, p["conv1_weight"], p["conv1_bias"])))
        a = _np_pool(np.tanh(_np_conv(a, p["conv2_weight"], p["conv2_bias"])))
        a = np.tanh(a.reshape(len(a), -1) @ p["fc1_weight"].T + p["fc1_bias"])
        holder["out"] = C.np_softmax(a @ p["fc2_weight"].T + p["fc2_bias"])
    return Bench(run, output=lambda: holder["out"], note="im2col via sliding_window_view + tensordot")


def torch(case):
    import torch as T
    F = T.nn.functional
    p = {k: T.from_numpy(v) for k, v in _params().items()}
    x = _data(case.params["batch"])

    def fwd(x):
        a = F.max_pool2d(T.tanh(F.conv2d(x, p["conv1_weight"], p["conv1_bias"])), 2)
        a = F.max_pool2d(T.tanh(F.conv2d(a, p["conv2_weight"], p["conv2_bias"])), 2)
        a = T.tanh(F.linear(a.flatten(1), p["fc1_weight"], p["fc1_bias"]))
        return F.softmax(F.linear(a, p["fc2_weight"], p["fc2_bias"]), dim=1)
    return C.torch_variants(T, fwd, [x])


def jax(case):
    import jax as J
    jnp, lax = J.numpy, J.lax
    p = {k: jnp.asarray(v) for k, v in _params().items()}
    x = _data(case.params["batch"])

    def conv(a, w, b):
        return lax.conv_general_dilated(a, w, (1, 1), "VALID") + b[None, :, None, None]

    def pool(a):
        return lax.reduce_window(a, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def fwd(x):
        a = pool(jnp.tanh(conv(x, p["conv1_weight"], p["conv1_bias"])))
        a = pool(jnp.tanh(conv(a, p["conv2_weight"], p["conv2_bias"])))
        a = jnp.tanh(a.reshape(a.shape[0], -1) @ p["fc1_weight"].T + p["fc1_bias"])
        return J.nn.softmax(a @ p["fc2_weight"].T + p["fc2_bias"], axis=1)
    return C.jax_jit_bench(J, fwd, [x])
