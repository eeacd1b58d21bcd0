"""Fusion: which operators share a kernel, and that fused code computes the same."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln as mx
from kiln.compiler import expr as E
from kiln.compiler.graph import Graph
from kiln.compiler.lower import lower_graph
from kiln.compiler.passes.fuse import fuse
from kiln.compiler.passes.infer import infer_shapes, infer_types
from kiln.compiler.pipeline import _phase_nodes

from .test_random_graphs import SHAPE, graphs


def kernels(sym, grad_req="null", **shapes):
    ex = sym.simple_bind(mx.cpu(), grad_req=grad_req, **shapes)
    return [k["ops"] for k in ex.compile_report()["kernels"]]


def test_elementwise_chain_is_one_kernel():
    x = mx.sym.Variable("x")
    y = x
    for op in ["tanh", "exp", "sigmoid", "relu", "abs", "sqrt", "negative", "square", "sin", "cos"]:
        y = getattr(mx.sym, op)(y)
    assert kernels(y * 2 + 1, x=(8, 8)) == [["tanh", "exp", "sigmoid", "relu", "abs", "sqrt", "negative",
                                             "square", "sin", "cos", "_mul_scalar", "_plus_scalar"]]


def test_diamond_fuses_and_shares_the_common_producer():
    x = mx.sym.Variable("x")
    e = mx.sym.exp(x)
    y = mx.sym.sin(e) + mx.sym.cos(e)
    assert kernels(y, x=(4, 4)) == [["exp", "sin", "cos", "elemwise_add"]]
    graph = Graph(y._outputs)
    shapes, dtypes = infer_shapes(graph, {"x": (4, 4)}), infer_types(graph, {"x": "float32"})
    nodes = _phase_nodes(graph.outputs)
    phases = fuse([("forward", nodes)], shapes, dtypes, {graph.outputs[0].key()})
    low = lower_graph(graph, shapes, dtypes, {graph.outputs[0].key(): "out"}, phases)
    body = low.kernels[0].stages[0].body
    exps = set()

    def walk(node):
        if isinstance(node, E.Call) and node.fn == "exp":
            exps.add(id(node))
        E.map_children(node, lambda c: walk(c) or c)
    walk(body)
    assert len(exps) == 1, "exp(x) must be one shared subexpression"


def test_reduction_prologue_and_gemm_epilogue():
    x, y = mx.sym.Variable("x"), mx.sym.Variable("y")
    assert kernels(mx.sym.sum(x * y, axis=1), x=(3, 5), y=(3, 5)) == [["elemwise_mul", "sum"]]
    a, w, b = mx.sym.Variable("a"), mx.sym.Variable("w"), mx.sym.Variable("b")
    out = mx.sym.relu(mx.sym.broadcast_add(mx.sym.dot(a, w, transpose_b=True), b))
    assert kernels(out, a=(4, 5), w=(3, 5), b=(3,)) == [["dot", "broadcast_add", "relu"]]


def test_reductions_are_not_recomputed_per_broadcast_read():
    x = mx.sym.Variable("x")
    s = mx.sym.broadcast_sub(x, mx.sym.max(x, axis=1, keepdims=True))
    assert kernels(s, x=(3, 4)) == [["max"], ["broadcast_sub"]]


def test_nothing_is_inlined_into_opaque_consumers():
    x, w = mx.sym.Variable("x"), mx.sym.Variable("w")
    c = mx.sym.Convolution(mx.sym.relu(x), w, kernel=(3, 3), num_filter=2, no_bias=True)
    # Convolution expands to im2col + GEMM; the column gather is opaque too (it reads each
    # input element once per kernel tap, so an inlined producer would be recomputed)
    assert kernels(c, x=(1, 1, 5, 5), w=(2, 1, 3, 3)) == [["relu"], ["_im2col"], ["_conv_fwd_gemm"]]


def test_outputs_are_materialised():
    x = mx.sym.Variable("x")
    a = mx.sym.exp(x)
    b = mx.sym.sin(a)
    assert kernels(mx.sym.Group([a, b]), x=(2, 2)) == [["exp"], ["sin"]]


def test_group_size_is_capped():
    x = mx.sym.Variable("x")
    y = x
    for _ in range(70):
        y = y * 1.01
    ks = kernels(y, x=(4,))  # 32 + 32 + 6 operators: the two full groups share one kernel
    assert sorted(len(k) for k in ks) == [6, 32]
    out = y.eval(x=mx.nd.ones((4,)))[0].asnumpy()
    np.testing.assert_allclose(out, np.full(4, np.float32(1.01)) ** 70, rtol=1e-5)


def _run(sym, feed, grads, monkeypatch, disabled):
    monkeypatch.setenv("KILN_DISABLE_PASSES", disabled)
    args = {k: mx.nd.array(v, dtype=v.dtype) for k, v in feed.items()}
    g = {k: mx.nd.zeros(v.shape, dtype=v.dtype) for k, v in feed.items()} if grads else None
    ex = sym.bind(mx.cpu(), args, args_grad=g, grad_req="write" if grads else "null")
    outs = [o.asnumpy() for o in ex.forward(is_train=grads)]
    if grads:
        ex.backward([mx.nd.ones(o.shape, dtype=o.dtype) for o in outs])
        outs += [g[k].asnumpy() for k in sorted(g)]
    return outs


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(graphs(), st.integers(0, 2**31 - 1), st.booleans())
def test_fusion_on_and_off_agree(monkeypatch, case, seed, grads):
    sym, _ = case
    rs = np.random.RandomState(seed)
    feed = {"a": rs.uniform(-1, 1, SHAPE), "b": rs.uniform(-1, 1, SHAPE), "row": rs.uniform(-1, 1, (1, 4))}
    feed = {k: v for k, v in feed.items() if k in sym.list_arguments()}
    fused = _run(sym, feed, grads, monkeypatch, "")
    plain = _run(sym, feed, grads, monkeypatch, "fuse")
    for x, y in zip(fused, plain):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("disabled", ["", "fuse"])
def test_mlp_training_graph_with_and_without_fusion(monkeypatch, disabled):
    monkeypatch.setenv("KILN_DISABLE_PASSES", disabled)
    from tests.e2e.test_examples import _load
    losses = _load("mlp_symbolic").train(epochs=2, n=256, dim=64, hidden=32)
    assert losses[-1] < losses[0]
