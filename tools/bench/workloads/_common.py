"""Helpers shared by the workloads: data, expressions, per-framework wrappers."""
import numpy as np

from harness import Bench, Unsupported


def size_label(n):
    for unit, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return "%d%s" % (n // scale, unit)
    return str(n)


def elem_inputs(n, seed=0):
    """a in [-1, 1], b in [0.5, 1.5] (a safe divisor), float32."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, n).astype(np.float32)
    b = rng.uniform(0.5, 1.5, n).astype(np.float32)
    return a, b


# -- the elementwise expressions, written once over each framework's functions

def transcendental(a, b, tanh, exp, sigmoid):
    """11 ops: tanh x2, exp x2, sigmoid, mul x3 (two by scalars), add x3."""
    x = tanh(a) * exp(b * 0.5)
    y = sigmoid(x + a) * b
    return tanh(y) + exp(x * -0.25)


def arith(a, b, maximum, minimum):
    """10 ops: mul x3 (one by a scalar), add x2, maximum, minimum, sub x2, div."""
    x = a * b + a
    y = maximum(x, b) - a * 0.5
    z = minimum(y, b) / b
    return (z - x) * y + a


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# -- kiln / MXNet (same API: kiln is imported as mx)

def mx_sync(mx):
    waitall = getattr(mx.nd, "waitall", None)
    return waitall if waitall is not None else (lambda: None)


def mx_bind(mx, sym, inputs, grad_req="null", **extra_shapes):
    shapes = {k: v.shape for k, v in inputs.items()}
    shapes.update(extra_shapes)
    ex = sym.simple_bind(mx.cpu(), grad_req=grad_req, **shapes)
    for k, v in inputs.items():
        ex.arg_dict[k][:] = v
    return ex


def mx_forward_bench(mx, sym, inputs, **extra_shapes):
    """Compiles (binds) outside the timing; times forward(is_train=False)."""
    ex = mx_bind(mx, sym, inputs, **extra_shapes)
    sync = mx_sync(mx)

    def run():
        ex.forward(is_train=False)
        sync()
    return Bench(run, output=lambda: ex.outputs[0].asnumpy())


def mx_elem_symbol(mx, kind):
    a, b = mx.sym.Variable("a"), mx.sym.Variable("b")
    if kind == "transcendental":
        return transcendental(a, b, mx.sym.tanh, mx.sym.exp, mx.sym.sigmoid)
    return arith(a, b, mx.sym.maximum, mx.sym.minimum)


# -- torch

def torch_variants(torch, fn, args, compile_too=True):
    """{"eager": Bench, "compile": Bench or Unsupported}; fn(*tensors) -> tensor."""
    tensors = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]

    def make(f):
        holder = {}

        def run():
            with torch.no_grad():
                holder["out"] = f(*tensors)
        return Bench(run, output=lambda: holder["out"].detach().numpy())
    out = {"eager": make(fn)}
    if compile_too:
        if not hasattr(torch, "compile"):
            out["compile"] = Unsupported("torch.compile not in torch %s" % torch.__version__)
        else:
            try:
                compiled = torch.compile(fn)
                with torch.no_grad():
                    compiled(*tensors)
                out["compile"] = make(compiled)
            except Exception as exc:
                out["compile"] = Unsupported("torch.compile failed: %s" % str(exc).splitlines()[0][:120])
    return out


# -- jax

def jax_jit_bench(jax, fn, args):
    jnp = jax.numpy
    arrays = [jnp.asarray(a) for a in args]
    f = jax.jit(fn)
    f(*arrays).block_until_ready()
    holder = {}

    def run():
        holder["out"] = f(*arrays).block_until_ready()
    return Bench(run, output=lambda: np.asarray(holder["out"]))


# -- MLPs (weights in MXNet's FullyConnected layout: (out, in))

def mlp_params(dims, seed=0):
    """[(W, b)] for layer sizes dims = [in, h1, ..., out]; Glorot-uniform weights."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        params.append((rng.uniform(-lim, lim, (fan_out, fan_in)).astype(np.float32),
                       rng.uniform(-0.1, 0.1, fan_out).astype(np.float32)))
    return params


def mlp_data(batch, dim, classes, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, dim)).astype(np.float32)
    y = rng.integers(0, classes, batch).astype(np.float32)
    return x, y


def mx_mlp_symbol(mx, dims, head="softmax"):
    """FullyConnected+relu per hidden layer, then FullyConnected and softmax
    (head='softmax') or SoftmaxOutput (head='SoftmaxOutput', for training)."""
    x = mx.sym.Variable("data")
    n = len(dims) - 1
    for i in range(n):
        x = mx.sym.FullyConnected(x, num_hidden=dims[i + 1], name="fc%d" % i)
        if i < n - 1:
            x = mx.sym.Activation(x, act_type="relu", name="relu%d" % i)
    if head == "SoftmaxOutput":
        return mx.sym.SoftmaxOutput(x, name="softmax")
    return mx.sym.softmax(x, name="softmax")


def mx_mlp_inputs(params, x):
    inputs = {"data": x}
    for i, (w, b) in enumerate(params):
        inputs["fc%d_weight" % i] = w
        inputs["fc%d_bias" % i] = b
    return inputs


def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def op_chain(fns, nodes):
    """``x = fns[i % len](x, b)`` applied ``nodes`` times: the compile-time chain for every framework."""
    def chain(a, b):
        x = a
        for i in range(nodes):
            x = fns[i % len(fns)](x, b)
        return x
    return chain


def jax_mlp_loss(J):
    """Summed cross-entropy of an MLP (relu between layers) in JAX; ``ps`` = [(w, b), ...]."""
    jnp = J.numpy

    def loss(ps, x, y):
        a = x
        for i, (w, b) in enumerate(ps):
            a = a @ w.T + b
            if i < len(ps) - 1:
                a = J.nn.relu(a)
        logp = J.nn.log_softmax(a, axis=1)
        return -jnp.sum(jnp.take_along_axis(logp, y[:, None], axis=1))
    return loss


def mx_elem_workload(kind):
    """``kiln`` and ``mxnet`` entry points of an elementwise-chain workload (same code, two modules)."""
    def bench(modname, case):
        import importlib
        mx = importlib.import_module(modname)
        a, b = elem_inputs(case.params["n"])
        return mx_forward_bench(mx, mx_elem_symbol(mx, kind), {"a": a, "b": b})
    return (lambda case: bench("kiln", case)), (lambda case: bench("mxnet", case))
