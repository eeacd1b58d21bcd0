"""A single 3x3 convolution (pad 1, bias) + relu on 1x64x56x56 -> 64 filters, float32:
the ResNet stage-1 layer shape, where a direct loop nest and im2col + GEMM differ most."""
import numpy as np

from harness import Bench, Case
from workloads import _common as C

NAME = "conv_infer"
DESCRIPTION = "Convolution 64->64 3x3 pad 1 + relu on 1x64x56x56, float32 inference"


def cases(quick):
    hw = 14 if quick else 56
    return [Case("hw=%d" % hw, {"hw": hw}, per=(1, "image"), max_repeat=3 if quick else 7, warmup=1)]


def _inputs(hw):
    rng = np.random.default_rng(0)
    return {"data": rng.standard_normal((1, 64, hw, hw)).astype(np.float32),
            "c_weight": rng.uniform(-0.05, 0.05, (64, 64, 3, 3)).astype(np.float32),
            "c_bias": rng.uniform(-0.1, 0.1, (64,)).astype(np.float32)}


def _mx(mx, case):
    data = mx.sym.Variable("data")
    sym = mx.sym.Activation(mx.sym.Convolution(data, kernel=(3, 3), pad=(1, 1), num_filter=64, name="c"),
                            act_type="relu")
    return C.mx_forward_bench(mx, sym, _inputs(case.params["hw"]))


def kiln(case):
    import kiln as mx
    return _mx(mx, case)


def mxnet(case):
    import mxnet as mx
    return _mx(mx, case)


def numpy(case):
    p = _inputs(case.params["hw"])
    holder = {}

    def run():
        x = np.pad(p["data"], [(0, 0), (0, 0), (1, 1), (1, 1)])
        win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))
        out = np.tensordot(win, p["c_weight"], axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
        holder["out"] = np.maximum(out + p["c_bias"][None, :, None, None], 0)
    return Bench(run, output=lambda: holder["out"], note="im2col via sliding_window_view + tensordot")


def torch(case):
    import torch as T
    p = {k: T.from_numpy(v) for k, v in _inputs(case.params["hw"]).items()}

    def fwd(x):
        return T.relu(T.nn.functional.conv2d(x, p["c_weight"], p["c_bias"], padding=1))
    return C.torch_variants(T, fwd, [p["data"].numpy()])


def jax(case):
    import jax as J
    p = {k: J.numpy.asarray(v) for k, v in _inputs(case.params["hw"]).items()}

    def fwd(x):
        y = J.lax.conv_general_dilated(x, p["c_weight"], (1, 1), ((1, 1), (1, 1)))
        return J.nn.relu(y + p["c_bias"][None, :, None, None])
    return C.jax_jit_bench(J, fwd, [np.asarray(p["data"])])
