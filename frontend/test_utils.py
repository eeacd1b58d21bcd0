"""MXNet's testing helpers: compare arrays, check forward/backward results, and
check gradients against finite differences."""
from __future__ import annotations

import numpy as np

from .context import Context, cpu
from .ndarray import NDArray, array

_default_ctx = [None]


def default_context():
    return _default_ctx[0] or cpu()


def set_default_context(ctx):
    _default_ctx[0] = ctx


def _np(x):
    return x.asnumpy() if isinstance(x, NDArray) else np.asarray(x)


def default_rtols(dtype):
    return {np.float16: 1e-2, np.float32: 1e-4, np.float64: 1e-6}.get(np.dtype(dtype).type, 1e-4)


def same(a, b):
    return np.array_equal(_np(a), _np(b))


def almost_equal(a, b, rtol=None, atol=None, equal_nan=False):
    a, b = _np(a), _np(b)
    rtol = rtol if rtol is not None else default_rtols(a.dtype)
    atol = atol if atol is not None else rtol / 10
    return np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


def assert_almost_equal(a, b, rtol=None, atol=None, names=("a", "b"), equal_nan=False):
    a, b = _np(a), _np(b)
    rtol = rtol if rtol is not None else default_rtols(a.dtype)
    atol = atol if atol is not None else rtol / 10
    if a.shape != b.shape:
        raise AssertionError("shapes differ: %s %s vs %s %s" % (names[0], a.shape, names[1], b.shape))
    if np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan):
        return
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    rel = diff / (atol + rtol * np.abs(b.astype(np.float64)))
    idx = np.unravel_index(np.nanargmax(rel), rel.shape) if rel.size else ()
    raise AssertionError("Items are not equal (rtol=%g, atol=%g): worst at %s: %s=%r, %s=%r\n%s:\n%s\n%s:\n%s"
                         % (rtol, atol, idx, names[0], a[idx], names[1], b[idx], names[0], a, names[1], b))


def rand_shape_nd(ndim, dim=10):
    return tuple(np.random.randint(1, dim + 1, size=ndim))


def rand_ndarray(shape, stype="default", density=None, dtype=None, ctx=None):
    if stype != "default":
        raise NotImplementedError("rand_ndarray: sparse storage type %r is not supported" % stype)
    return array(np.random.uniform(-1, 1, size=shape), ctx=ctx, dtype=dtype or np.float32)


def _locations(sym, location, ctx, dtype):
    names = sym.list_arguments()
    if isinstance(location, dict):
        missing = set(names) - set(location)
        if missing:
            raise ValueError("location misses %s" % sorted(missing))
        loc = {k: location[k] for k in names}
    else:
        loc = dict(zip(names, location))
    return {k: (v if isinstance(v, NDArray) else array(v, ctx=ctx, dtype=dtype or np.asarray(v).dtype))
            for k, v in loc.items()}


def _aux(sym, aux_states, ctx):
    def conv(v):
        return v if isinstance(v, NDArray) else array(v, ctx=ctx, dtype=np.asarray(v).dtype)
    if aux_states is None:
        return None
    if isinstance(aux_states, dict):
        return {k: conv(v) for k, v in aux_states.items()}
    return [conv(v) for v in aux_states]


def check_symbolic_forward(sym, location, expected, rtol=1e-4, atol=None, aux_states=None, ctx=None,
                           equal_nan=False, dtype=np.float32):
    ctx = ctx or default_context()
    loc = _locations(sym, location, ctx, dtype)
    ex = sym.bind(ctx, loc, grad_req="null", aux_states=_aux(sym, aux_states, ctx))
    outs = ex.forward(is_train=False)
    if isinstance(expected, dict):
        expected = [expected[k] for k in sym.list_outputs()]
    for name, out, exp in zip(sym.list_outputs(), outs, expected):
        assert_almost_equal(out, exp, rtol, atol, ("kiln " + name, "expected"), equal_nan)
    return outs


def check_symbolic_backward(sym, location, out_grads, expected, rtol=1e-5, atol=None, aux_states=None,
                            grad_req="write", ctx=None, grad_stypes=None, equal_nan=False, dtype=np.float32):
    ctx = ctx or default_context()
    loc = _locations(sym, location, ctx, dtype)
    names = sym.list_arguments()
    if isinstance(expected, (list, tuple)):
        expected = dict(zip(names, expected))
    reqs = grad_req if isinstance(grad_req, dict) else {k: grad_req for k in names}
    grads = {k: NDArray(np.random.normal(size=v.shape).astype(v.asnumpy().dtype), ctx) for k, v in loc.items()}
    before = {k: g.asnumpy() for k, g in grads.items()}
    ex = sym.bind(ctx, loc, args_grad=grads, grad_req=reqs, aux_states=_aux(sym, aux_states, ctx))
    ex.forward(is_train=True)
    if out_grads is not None:
        out_grads = [g if isinstance(g, NDArray) else array(g, ctx=ctx) for g in
                     (out_grads.values() if isinstance(out_grads, dict) else out_grads)]
    ex.backward(out_grads)
    for name, exp in expected.items():
        req = reqs.get(name, "null")
        got = grads[name].asnumpy()
        if req == "write":
            assert_almost_equal(got, exp, rtol, atol, ("kiln grad " + name, "expected"), equal_nan)
        elif req == "add":
            assert_almost_equal(got, before[name] + _np(exp), rtol, atol, ("kiln grad " + name, "expected"), equal_nan)
        elif req == "null":
            assert_almost_equal(got, before[name], rtol, atol, ("kiln grad " + name, "untouched"), equal_nan)
    return {k: g.asnumpy() for k, g in grads.items()}


def check_numeric_gradient(sym, location, aux_states=None, numeric_eps=1e-3, rtol=1e-2, atol=None,
                           grad_nodes=None, use_forward_train=True, ctx=None, grad_stype_dict=None,
                           dtype=np.float64):
    """Compare the symbolic gradient of sum(outputs * random projection) with central differences."""
    ctx = ctx or default_context()
    loc = _locations(sym, location, ctx, dtype)
    names = sym.list_arguments()
    grad_nodes = list(grad_nodes) if grad_nodes is not None else names
    rng = np.random.RandomState(1234)
    ex = sym.bind(ctx, {k: v.copy() for k, v in loc.items()},
                  args_grad={k: NDArray(np.zeros(v.shape, v.asnumpy().dtype), ctx) for k, v in loc.items()
                             if k in grad_nodes},
                  grad_req={k: ("write" if k in grad_nodes else "null") for k in names},
                  aux_states=_aux(sym, aux_states, ctx))
    outs = ex.forward(is_train=use_forward_train)
    projs = [rng.normal(size=o.shape).astype(o.asnumpy().dtype) for o in outs]
    ex.backward([array(p, ctx=ctx, dtype=p.dtype) for p in projs])
    symbolic = {k: ex.grad_dict[k].asnumpy() for k in grad_nodes}

    def objective():
        outs = ex.forward(is_train=use_forward_train)
        return sum(float(np.sum(o.asnumpy().astype(np.float64) * p)) for o, p in zip(outs, projs))

    for k in grad_nodes:
        x = ex.arg_dict[k]._data  # forward() runs synchronously, so these writes are safe
        numeric = np.zeros(x.shape, np.float64)
        flat = x.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + numeric_eps / 2
            fp = objective()
            flat[i] = old - numeric_eps / 2
            fm = objective()
            flat[i] = old
            numeric.reshape(-1)[i] = (fp - fm) / numeric_eps
        assert_almost_equal(symbolic[k], numeric.astype(symbolic[k].dtype), rtol,
                            atol if atol is not None else rtol * 0.1,
                            ("symbolic grad " + k, "numeric grad " + k))
    return symbolic


__all__ = ["assert_almost_equal", "almost_equal", "check_numeric_gradient", "check_symbolic_forward",
           "check_symbolic_backward", "default_context", "set_default_context", "rand_ndarray", "rand_shape_nd",
           "same", "Context"]
