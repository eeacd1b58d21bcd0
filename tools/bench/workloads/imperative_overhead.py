"""Per-operation overhead of small imperative operations (MXNet's NDArray style).

``chain``: 100 dependent ``x = x + b`` on 10 float32 elements, then one wait
(throughput of the dispatch path). ``sync``: one ``a + b`` and a wait each
time (latency of one call including the engine round trip).
"""
import numpy as np

from harness import Bench, Case

NAME = "imperative_overhead"
DESCRIPTION = "small imperative ops: x = x + b on 10 float32 elements; per-op dispatch cost"
OPS = 100


def cases(quick):
    return [Case("chain n=10 x%d" % OPS, {"n": 10, "chain": True}, per=(OPS, "op")),
            Case("sync n=10", {"n": 10, "chain": False}, per=(1, "op"))]


def _inputs(n):
    rng = np.random.default_rng(0)
    return rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def _loop(add, sync, a, b, case, to_numpy):
    holder = {}
    if case.params["chain"]:
        def run():
            x = a
            for _ in range(OPS):
                x = add(x, b)
            sync(x)
            holder["out"] = x
    else:
        def run():
            holder["out"] = x = add(a, b)
            sync(x)
    return Bench(run, output=lambda: to_numpy(holder["out"]))


def _mx(modname, case):
    import importlib
    mx = importlib.import_module(modname)
    a, b = (mx.nd.array(v) for v in _inputs(case.params["n"]))
    return _loop(lambda x, y: x + y, lambda x: x.wait_to_read(), a, b, case, lambda x: x.asnumpy())


def kiln(case):
    return _mx("kiln", case)


def mxnet(case):
    return _mx("mxnet", case)


def numpy(case):
    a, b = _inputs(case.params["n"])
    return _loop(np.add, lambda x: None, a, b, case, lambda x: x)


def torch(case):
    import torch as T
    a, b = (T.from_numpy(v) for v in _inputs(case.params["n"]))

    def add(x, y):
        with T.no_grad():
            return x + y
    return _loop(add, lambda x: None, a, b, case, lambda x: x.numpy())


def jax(case):
    import jax as J
    a, b = (J.numpy.asarray(v) for v in _inputs(case.params["n"]))
    return _loop(lambda x, y: x + y, lambda x: x.block_until_ready(), a, b, case, lambda x: np.asarray(x))
