"""10 arithmetic elementwise ops on 16M float32, with numpy's single copy as the bandwidth floor."""
import numpy as np

from harness import Bench, Case
from workloads import _common as C

NAME = "elemwise_arith"
DESCRIPTION = ("(a*b+a) -> max(x,b)-a*.5 -> min(y,b)/b -> (z-x)*y+a: 10 ops, float32, forward only; "
               "numpy:copy = one array copy (bandwidth floor)")


def cases(quick):
    n = (1 << 16) if quick else (1 << 24)
    return [Case("n=%s" % C.size_label(n), {"n": n}, per=(n, "elem"))]


kiln, mxnet = C.mx_elem_workload("arith")


def numpy(case):
    a, b = C.elem_inputs(case.params["n"])
    dst = np.empty_like(a)
    holder = {}

    def run():
        holder["out"] = C.arith(a, b, np.maximum, np.minimum)
    return {"": Bench(run, output=lambda: holder["out"]),
            "copy": Bench(lambda: np.copyto(dst, a), note="floor: 1 read + 1 write")}


def torch(case):
    import torch as T
    a, b = C.elem_inputs(case.params["n"])
    return C.torch_variants(T, lambda a, b: C.arith(a, b, T.maximum, T.minimum), [a, b])


def jax(case):
    import jax as J
    jnp = J.numpy
    a, b = C.elem_inputs(case.params["n"])
    return C.jax_jit_bench(J, lambda a, b: C.arith(a, b, jnp.maximum, jnp.minimum), [a, b])
