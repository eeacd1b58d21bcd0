"""Compile (bind) time: a 20-layer MLP forward+backward, and elementwise chains of 10..1000 nodes.

kiln compiles in simple_bind; its JIT caches modules by a hash of the LLVM IR,
so the MLP is measured three ways: the first compile in a fresh process
(a subprocess; the time is measured inside it, interpreter start-up and
import excluded) with an empty and with a warm on-disk cache ($KILN_CACHE_DIR,
where the kiln build has one), repeated in-process with the identical graph (cache hits),
and in-process with a new batch size each time (a new IR, no cache hit). The
symbol is always built anew and its construction is not timed. The chains
use a new array size each time, so nothing is cached.
"""
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

from harness import Bench, Case, Unsupported
from workloads import _common as C

NAME = "compile_time"
DESCRIPTION = "simple_bind (compile) time; per item = per graph node"

_fresh = itertools.count(1)   # new shapes each call, so no cache can answer


def cases(quick):
    layers = 3 if quick else 20
    mlp = {"layers": layers, "hidden": 64 if quick else 256, "batch": 64}
    nodes = (10, 30) if quick else (10, 100, 1000)
    # graph nodes of the MLP forward: per layer FullyConnected (+relu), plus softmax
    mlp_nodes = 2 * layers + 2
    out = [
        Case("mlp%d fwd+bwd, fresh process, empty disk cache" % layers, dict(mlp, how="subprocess"),
             warmup=0, max_repeat=3, per=(mlp_nodes, "node")),
        Case("mlp%d fwd+bwd, fresh process, warm disk cache" % layers,
             dict(mlp, how="subprocess", warm=True), warmup=1, max_repeat=3, per=(mlp_nodes, "node")),
        Case("mlp%d fwd+bwd, same graph (IR cache)" % layers, dict(mlp, how="same"), warmup=1,
             per=(mlp_nodes, "node")),
        Case("mlp%d fwd+bwd, new batch size" % layers, dict(mlp, how="new"), warmup=0,
             max_repeat=3, per=(mlp_nodes, "node")),
    ]
    for n in nodes:
        out.append(Case("chain %d nodes fwd, new size" % n, {"nodes": n}, warmup=0,
                        max_repeat=1 if n >= 1000 else (3 if n >= 100 else 5), per=(n, "node")))
    return out


# ---------------------------------------------------------------- graphs

def mx_mlp(mx, layers, hidden, classes=10):
    x = mx.sym.Variable("data")
    for i in range(layers):
        x = mx.sym.FullyConnected(x, num_hidden=hidden, name="fc%d" % i)
        x = mx.sym.Activation(x, act_type="relu", name="relu%d" % i)
    x = mx.sym.FullyConnected(x, num_hidden=classes, name="fc_out")
    return mx.sym.SoftmaxOutput(x, name="softmax")


def mx_chain(mx, n):
    a, b = mx.sym.Variable("a"), mx.sym.Variable("b")
    ops = (lambda x: x + b, lambda x: x * b, lambda x: mx.sym.maximum(x, b),
           lambda x: x - b, lambda x: mx.sym.minimum(x, b), lambda x: x / b)
    x = a
    for i in range(n):
        x = ops[i % len(ops)](x)
    return x


_SUBPROCESS = r"""
import json, sys, time
t0 = time.perf_counter()
import {module} as mx
t_import = time.perf_counter() - t0
def mx_mlp(mx, layers, hidden, classes=10):
{mlp_body}
sym = mx_mlp(mx, {layers}, {hidden})
t0 = time.perf_counter()
ex = sym.simple_bind(mx.cpu(), data=({batch}, 784))
t_bind = time.perf_counter() - t0
print(json.dumps({{"import_s": t_import, "bind_s": t_bind}}))
"""


def _mlp_body():
    import inspect
    src = inspect.getsource(mx_mlp).splitlines()[1:]
    return "\n".join(src)


def _mx(modname, case):
    mx = __import__(modname)
    p = case.params
    if "nodes" in p:
        def run():
            n = 1024 + next(_fresh)
            sym = mx_chain(mx, p["nodes"])
            t0 = time.perf_counter()
            sym.simple_bind(mx.cpu(), grad_req="null", a=(n,), b=(n,))
            return time.perf_counter() - t0
        return Bench(run, self_timed=True)
    if p["how"] == "subprocess":
        code = _SUBPROCESS.format(module=modname, mlp_body=_mlp_body(), layers=p["layers"],
                                  hidden=p["hidden"], batch=p["batch"])
        imports = []
        base = os.environ.get("KILN_CACHE_DIR")   # run.py's private directory, removed at exit
        warm_dir = tempfile.mkdtemp(prefix="kiln-bench-cache-", dir=base if base and os.path.isdir(base) else None)

        def run():
            # kiln keeps compiled objects in $KILN_CACHE_DIR: a new empty one per run
            # (a true first compile), or one kept across runs (warmed by the warm-up run).
            env = os.environ.copy()
            env["KILN_CACHE_DIR"] = warm_dir if p.get("warm") else tempfile.mkdtemp(
                prefix="kiln-bench-cache-", dir=warm_dir)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=env, timeout=600)
            if res.returncode != 0:
                raise RuntimeError("subprocess failed: %s" % res.stderr.strip().splitlines()[-1:])
            out = json.loads(res.stdout.strip().splitlines()[-1])
            imports.append(out["import_s"])
            return out["bind_s"]
        bench = Bench(run, self_timed=True)
        bench.note = "import excluded"
        return bench

    def run():
        batch = p["batch"] if p["how"] == "same" else p["batch"] + next(_fresh)
        sym = mx_mlp(mx, p["layers"], p["hidden"])
        t0 = time.perf_counter()
        sym.simple_bind(mx.cpu(), data=(batch, 784))
        return time.perf_counter() - t0
    return Bench(run, self_timed=True)


def kiln(case):
    return _mx("kiln", case)


def mxnet(case):
    # MXNet binds without generating code; its bind time is still what a user waits for.
    return _mx("mxnet", case)


def numpy(case):
    raise Unsupported("eager, no compile step")


def jax(case):
    import jax as J
    jnp = J.numpy
    import numpy as np
    p = case.params
    if "nodes" in p:
        chain = C.op_chain((jnp.add, jnp.multiply, jnp.maximum, jnp.subtract, jnp.minimum, jnp.divide),
                           p["nodes"])

        def run():
            n = 1024 + next(_fresh)
            a = J.ShapeDtypeStruct((n,), jnp.float32)
            t0 = time.perf_counter()
            J.jit(chain).lower(a, a).compile()
            return time.perf_counter() - t0
        return Bench(run, self_timed=True, note="lower + compile")
    if p["how"] != "new":
        raise Unsupported("measured with new shapes only")

    loss = C.jax_mlp_loss(J)
    dims = [784] + [p["hidden"]] * p["layers"] + [10]
    ps = [(J.ShapeDtypeStruct((o, i), jnp.float32), J.ShapeDtypeStruct((o,), jnp.float32))
          for i, o in zip(dims[:-1], dims[1:])]

    def run():
        batch = p["batch"] + next(_fresh)
        x = J.ShapeDtypeStruct((batch, 784), jnp.float32)
        y = J.ShapeDtypeStruct((batch,), np.int32)
        t0 = time.perf_counter()
        J.jit(J.value_and_grad(loss)).lower(ps, x, y).compile()
        return time.perf_counter() - t0
    return Bench(run, self_timed=True, note="lower + compile")


def torch(case):
    import torch as T
    if not hasattr(T, "compile"):
        raise Unsupported("no torch.compile")
    p = case.params
    if "nodes" not in p:
        raise Unsupported("measured for the chains only")
    chain = C.op_chain((T.add, T.mul, T.maximum, T.sub, T.minimum, T.div), p["nodes"])

    def run():
        n = 1024 + next(_fresh)
        a = T.rand(n) - 0.5
        b = T.rand(n) + 0.5
        T._dynamo.reset()
        f = T.compile(chain)
        t0 = time.perf_counter()
        f(a, b)
        return time.perf_counter() - t0
    return Bench(run, self_timed=True, note="first call: trace + compile + one run")
