"""Small helpers shared by the operator test files (forward/backward through bind)."""
from __future__ import annotations

import numpy as np

import kiln as mx

RNG = np.random.RandomState(0)


def rand(shape, lo=-1.0, hi=1.0, dtype="float32", seed=None):
    rng = np.random.RandomState(seed) if seed is not None else RNG
    return rng.uniform(lo, hi, size=shape).astype(dtype)


def randint(shape, lo, hi, dtype="int32", seed=None):
    rng = np.random.RandomState(seed) if seed is not None else RNG
    return rng.randint(lo, hi, size=shape).astype(dtype)


def away_from_zero(shape, lo=0.3, hi=2.0, dtype="float64", seed=None):
    rng = np.random.RandomState(seed) if seed is not None else RNG
    mag = rng.uniform(lo, hi, size=shape)
    sgn = np.where(rng.rand(*shape) < 0.5, -1.0, 1.0) if shape else 1.0
    return (mag * sgn).astype(dtype)


def forward(sym, **inputs):
    feed = {k: mx.nd.array(v, dtype=np.asarray(v).dtype) for k, v in inputs.items()}
    return [o.asnumpy() for o in sym.eval(ctx=mx.cpu(), **feed)]


def backward(sym, inputs, head_grads=None, wrt=None):
    """Run forward (training) + backward; return (outputs, {name: grad}) as numpy."""
    names = sym.list_arguments()
    wrt = list(wrt) if wrt is not None else names
    args = {k: mx.nd.array(v, dtype=np.asarray(v).dtype) for k, v in inputs.items()}
    grads = {k: mx.nd.array(np.zeros(np.shape(inputs[k]), dtype=np.asarray(inputs[k]).dtype),
                            dtype=np.asarray(inputs[k]).dtype) for k in wrt}
    ex = sym.bind(mx.cpu(), args, args_grad=grads, grad_req={k: ("write" if k in wrt else "null") for k in names})
    outs = ex.forward(is_train=True)
    if head_grads is None:
        ex.backward()
    else:
        ex.backward([mx.nd.array(h, dtype=np.asarray(h).dtype) for h in head_grads])
    return [o.asnumpy() for o in outs], {k: ex.grad_dict[k].asnumpy() for k in wrt}


def sample(shape, dtype="float32", seed=0):
    """Floats in [-2, 2) or integers in [-5, 5], reproducible per seed."""
    rng = np.random.RandomState(seed)
    if dtype.startswith("float"):
        return rng.uniform(-2, 2, shape).astype(dtype)
    return rng.randint(-5, 6, shape).astype(dtype)
