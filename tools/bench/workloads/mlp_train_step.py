"""The MLP of mlp_infer: forward, backward and SGD update at batch 256.

Loss: softmax cross-entropy summed over the batch (MXNet SoftmaxOutput's
gradient, p - onehot); SGD with lr/batch. The cross-check compares the
gradient of the first layer's weight after one step from the same weights.
"""
import numpy as np

from harness import Bench, Case
from workloads import _common as C
from workloads.mlp_infer import DIMS, QUICK_DIMS

NAME = "mlp_train_step"
DESCRIPTION = "MLP train step: forward + backward + SGD update of every weight and bias; float32"

LR = 0.1


def cases(quick):
    dims = QUICK_DIMS if quick else DIMS
    b = 32 if quick else 256
    return [Case("%s b=%d" % ("-".join(map(str, dims)), b), {"dims": dims, "batch": b}, per=(b, "sample"))]


def _setup(case):
    dims, batch = case.params["dims"], case.params["batch"]
    x, y = C.mlp_data(batch, dims[0], dims[-1])
    return C.mlp_params(dims), x, y


def _mx(mx, case):
    params, x, y = _setup(case)
    sym = C.mx_mlp_symbol(mx, case.params["dims"], head="SoftmaxOutput")
    inputs = C.mx_mlp_inputs(params, x)
    inputs["softmax_label"] = y
    names = [n for n in sym.list_arguments() if n not in ("data", "softmax_label")]
    reqs = {n: ("write" if n in names else "null") for n in sym.list_arguments()}
    ex = C.mx_bind(mx, sym, inputs, grad_req=reqs)
    sync = C.mx_sync(mx)
    scale = LR / case.params["batch"]
    pairs = [(ex.arg_dict[n], ex.grad_dict[n]) for n in names]

    def run():
        ex.forward(is_train=True)
        ex.backward()
        for w, g in pairs:
            w -= g * scale
        sync()
    ex.forward(is_train=True)
    ex.backward()
    sync()
    first_grad = ex.grad_dict["fc0_weight"].asnumpy()
    return Bench(run, output=lambda: first_grad, note="update: w -= g * lr (NDArray ops)")


def kiln(case):
    import kiln as mx
    return _mx(mx, case)


def mxnet(case):
    import mxnet as mx
    return _mx(mx, case)


def np_step(params, x, y, scale):
    acts = [x]
    a = x
    for i, (w, b) in enumerate(params):
        a = a @ w.T + b
        if i < len(params) - 1:
            a = np.maximum(a, 0)
            acts.append(a)
    d = C.np_softmax(a)
    d[np.arange(len(y)), y.astype(np.int64)] -= 1.0
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        w, _ = params[i]
        a_in = acts[i]
        grads[i] = (d.T @ a_in, d.sum(axis=0))
        if i > 0:
            d = (d @ w) * (a_in > 0)
    for (w, b), (gw, gb) in zip(params, grads):
        w -= scale * gw
        b -= scale * gb
    return grads


def numpy(case):
    params, x, y = _setup(case)
    scale = LR / case.params["batch"]
    first_grad = np_step([(w.copy(), b.copy()) for w, b in params], x, y, scale)[0][0]
    return Bench(lambda: np_step(params, x, y, scale), output=lambda: first_grad,
                 note="hand-written backward")


def torch(case):
    import torch as T
    F = T.nn.functional
    params, x, y = _setup(case)
    scale = LR / case.params["batch"]
    tp = [T.from_numpy(a).requires_grad_() for wb in params for a in wb]
    tx, ty = T.from_numpy(x), T.from_numpy(y).long()

    def step():
        a = tx
        n = len(tp) // 2
        for i in range(n):
            a = F.linear(a, tp[2 * i], tp[2 * i + 1])
            if i < n - 1:
                a = F.relu(a)
        F.cross_entropy(a, ty, reduction="sum").backward()
        with T.no_grad():
            for p in tp:
                p -= scale * p.grad
                p.grad = None
    # one forward/backward without the update, for the cross-check
    a = tx
    for i in range(len(tp) // 2):
        a = F.linear(a, tp[2 * i], tp[2 * i + 1])
        a = F.relu(a) if i < len(tp) // 2 - 1 else a
    F.cross_entropy(a, ty, reduction="sum").backward()
    first_grad = tp[0].grad.numpy().copy()
    for p in tp:
        p.grad = None
    return {"eager": Bench(step, output=lambda: first_grad)}


def jax(case):
    import jax as J
    jnp = J.numpy
    params, x, y = _setup(case)
    scale = LR / case.params["batch"]
    jp = [(jnp.asarray(w), jnp.asarray(b)) for w, b in params]
    jx, jy = jnp.asarray(x), jnp.asarray(y.astype(np.int32))

    loss = C.jax_mlp_loss(J)
    grad = J.jit(J.grad(loss))

    @J.jit
    def step(ps, x, y):
        gs = J.grad(loss)(ps, x, y)
        return J.tree_util.tree_map(lambda p, g: p - scale * g, ps, gs)
    first_grad = np.asarray(grad(jp, jx, jy)[0][0])
    state = {"ps": jp}

    def run():
        state["ps"] = J.block_until_ready(step(state["ps"], jx, jy))
    return Bench(run, output=lambda: first_grad)
