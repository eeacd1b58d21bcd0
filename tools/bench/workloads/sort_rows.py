"""sort along the last axis: 64 rows x 65536 float32 (kiln's radix path) and 65536 rows x 64
(its merge path), each 4M elements."""
import numpy as np

from harness import Bench, Case
from workloads import _common as C

NAME = "sort_rows"
DESCRIPTION = ("sort(x, axis=-1) of float32 normal samples, forward only; kiln's is stable (radix sort for "
               "long rows, merge sort for short ones), rows over threads; numpy:stable = np.sort(kind='stable'), "
               "numpy runs on one thread")


def cases(quick):
    shapes = [(8, 4096), (512, 32)] if quick else [(64, 65536), (65536, 64)]
    return [Case("%sx%s" % (C.size_label(rows), C.size_label(n)), {"rows": rows, "n": n}, per=(rows * n, "elem"))
            for rows, n in shapes]


def _data(case):
    rng = np.random.default_rng(0)
    return rng.standard_normal((case.params["rows"], case.params["n"])).astype(np.float32)


def _mx(modname, case):
    import importlib
    mx = importlib.import_module(modname)
    return C.mx_forward_bench(mx, mx.sym.sort(mx.sym.Variable("x")), {"x": _data(case)})


def kiln(case):
    return _mx("kiln", case)


def mxnet(case):
    return _mx("mxnet", case)


def numpy(case):
    x = _data(case)
    holder = {}

    def run(kind=None):
        holder["out"] = np.sort(x, axis=-1, kind=kind)
    return {"": Bench(run, output=lambda: holder["out"], note="np.sort default (quicksort/SIMD)"),
            "stable": Bench(lambda: run("stable"), output=lambda: holder["out"])}


def torch(case):
    import torch as T
    x = _data(case)
    return C.torch_variants(T, lambda a: T.sort(a, dim=-1, stable=True)[0], [x], compile_too=False)


def jax(case):
    import jax as J
    return C.jax_jit_bench(J, lambda a: J.numpy.sort(a, axis=-1), [_data(case)])
