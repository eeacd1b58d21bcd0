"""Checks every operator test uses: numpy reference, finite-difference gradient,
and JSON round trip, all through the public Symbol API."""
from __future__ import annotations

import numpy as np

import kiln as mx
from kiln.compiler.ops import registry
from kiln.test_utils import assert_almost_equal, check_numeric_gradient

TOL = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-10}


def build(opname, n_inputs, attrs, input_names=None):
    names = input_names or ["x%d" % i for i in range(n_inputs)]
    args = [mx.sym.Variable(n) for n in names]
    return getattr(mx.sym, opname)(*args, name="op", **attrs), names


def check_forward(opname, inputs, attrs=None, rtol=None, atol=None, expected=None):
    """Compiled result == the operator's numpy reference (or ``expected``)."""
    attrs = attrs or {}
    sym, names = build(opname, len(inputs), attrs)
    feed = {n: mx.nd.array(x, dtype=x.dtype) for n, x in zip(names, inputs)}
    outs = sym.eval(ctx=mx.cpu(), **feed)
    if expected is None:
        op = registry.get(opname)
        if op.num_args_key and op.num_args_key not in attrs:
            attrs = dict(attrs, **{op.num_args_key: len(inputs)})
        params = op.parse_attrs(op.format_attrs(attrs, "op"), "op")
        expected = op.reference(params, *[x.copy() for x in inputs])
    if not isinstance(expected, (list, tuple)):
        expected = [expected]
    dtype = outs[0].asnumpy().dtype.name
    rtol = rtol if rtol is not None else TOL.get(dtype, 0)
    atol = atol if atol is not None else (rtol if dtype.startswith("float") else 0)
    assert len(outs) == len(expected)
    for got, want in zip(outs, expected):
        want = np.asarray(want)
        assert got.shape == want.shape, (got.shape, want.shape)
        assert got.asnumpy().dtype == want.dtype, (got.asnumpy().dtype, want.dtype)
        if dtype.startswith("float"):
            assert_almost_equal(got.asnumpy(), want, rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(got.asnumpy(), want)
    return outs


def check_gradient(opname, inputs, attrs=None, grad_nodes=None, rtol=1e-3, atol=1e-4, eps=1e-4):
    """Symbolic gradient == central differences (float64 inputs)."""
    sym, names = build(opname, len(inputs), attrs or {})
    loc = {n: x.astype(np.float64) for n, x in zip(names, inputs)}
    nodes = [names[i] for i in grad_nodes] if grad_nodes is not None else names
    check_numeric_gradient(sym, loc, numeric_eps=eps, rtol=rtol, atol=atol, grad_nodes=nodes, dtype=np.float64)


def check_json_roundtrip(opname, inputs, attrs=None):
    """tojson -> load_json keeps the graph, and the reloaded graph computes the same."""
    sym, names = build(opname, len(inputs), attrs or {})
    again = mx.sym.load_json(sym.tojson())
    assert again.tojson() == sym.tojson()
    feed = {n: mx.nd.array(x, dtype=x.dtype) for n, x in zip(names, inputs)}
    a = sym.eval(ctx=mx.cpu(), **feed)
    b = again.eval(ctx=mx.cpu(), **feed)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.asnumpy(), y.asnumpy())
