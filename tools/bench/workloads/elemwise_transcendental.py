"""A chain of 11 elementwise ops with tanh, exp, sigmoid, mul and add on 16M float32."""
import numpy as np

from harness import Bench, Case
from workloads import _common as C

NAME = "elemwise_transcendental"
DESCRIPTION = "tanh(a)*exp(b*.5) -> sigmoid(x+a)*b -> tanh(y)+exp(x*-.25): 11 ops, float32, forward only"


def cases(quick):
    n = (1 << 16) if quick else (1 << 24)
    return [Case("n=%s" % C.size_label(n), {"n": n}, per=(n, "elem"))]


kiln, mxnet = C.mx_elem_workload("transcendental")


def numpy(case):
    a, b = C.elem_inputs(case.params["n"])
    holder = {}

    def run():
        holder["out"] = C.transcendental(a, b, np.tanh, np.exp, C.np_sigmoid)
    return Bench(run, output=lambda: holder["out"])


def torch(case):
    import torch as T
    a, b = C.elem_inputs(case.params["n"])
    return C.torch_variants(T, lambda a, b: C.transcendental(a, b, T.tanh, T.exp, T.sigmoid), [a, b])


def jax(case):
    import jax as J
    jnp = J.numpy
    a, b = C.elem_inputs(case.params["n"])
    return C.jax_jit_bench(J, lambda a, b: C.transcendental(a, b, jnp.tanh, jnp.exp, J.nn.sigmoid), [a, b])
