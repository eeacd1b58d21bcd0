"""784-512-512-10 MLP inference (FullyConnected+relu, softmax at the end), batch 256 and 1."""
import numpy as np

from harness import Bench, Case
from workloads import _common as C

NAME = "mlp_infer"
DESCRIPTION = "MLP inference: FullyConnected+relu x2, FullyConnected, softmax; float32"

DIMS = [784, 512, 512, 10]
QUICK_DIMS = [784, 128, 128, 10]


def cases(quick):
    dims = QUICK_DIMS if quick else DIMS
    batches = (32, 1) if quick else (256, 1)
    return [Case("%s b=%d" % ("-".join(map(str, dims)), b), {"dims": dims, "batch": b}, per=(b, "sample"))
            for b in batches]


def _setup(case):
    dims, batch = case.params["dims"], case.params["batch"]
    x, _ = C.mlp_data(batch, dims[0], dims[-1])
    return C.mlp_params(dims), x


def _mx(mx, case):
    params, x = _setup(case)
    return C.mx_forward_bench(mx, C.mx_mlp_symbol(mx, case.params["dims"]), C.mx_mlp_inputs(params, x))


def kiln(case):
    import kiln as mx
    return _mx(mx, case)


def mxnet(case):
    import mxnet as mx
    return _mx(mx, case)


def np_forward(params, x):
    a = x
    for i, (w, b) in enumerate(params):
        a = a @ w.T + b
        if i < len(params) - 1:
            a = np.maximum(a, 0)
    return C.np_softmax(a)


def numpy(case):
    params, x = _setup(case)
    holder = {}

    def run():
        holder["out"] = np_forward(params, x)
    return Bench(run, output=lambda: holder["out"])


def torch(case):
    import torch as T
    F = T.nn.functional
    params, x = _setup(case)
    tp = [(T.from_numpy(w), T.from_numpy(b)) for w, b in params]

    def fwd(x):
        a = x
        for i, (w, b) in enumerate(tp):
            a = F.linear(a, w, b)
            if i < len(tp) - 1:
                a = F.relu(a)
        return F.softmax(a, dim=1)
    return C.torch_variants(T, fwd, [x])


def jax(case):
    import jax as J
    jnp = J.numpy
    params, x = _setup(case)
    jp = [(jnp.asarray(w), jnp.asarray(b)) for w, b in params]

    def fwd(x):
        a = x
        for i, (w, b) in enumerate(jp):
            a = a @ w.T + b
            if i < len(jp) - 1:
                a = J.nn.relu(a)
        return J.nn.softmax(a, axis=1)
    return C.jax_jit_bench(J, fwd, [x])
