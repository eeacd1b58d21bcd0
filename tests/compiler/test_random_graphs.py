"""Random graphs (hypothesis): the compiled program equals a node-by-node
interpretation of the same graph with the operators' numpy references, for
forward results and for gradients against finite differences."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln as mx
from kiln.compiler.graph import Graph

UNARY = ["tanh", "sigmoid", "relu", "abs", "square", "sin", "exp", "negative", "softsign", "arctan"]
BINARY = ["elemwise_add", "elemwise_sub", "elemwise_mul", "broadcast_add", "broadcast_mul", "broadcast_maximum"]
REDUCE = ["sum", "mean", "max"]
SHAPE = (3, 4)


def interpret(symbol, feed):
    """Evaluate ``symbol`` with each operator's numpy reference (float64)."""
    graph = Graph(symbol._outputs)
    values = {}
    for node in graph.nodes:
        if node.is_variable:
            values[(node.uid, 0)] = feed[node.name]
            continue
        args = [values[e.key()] for e in node.inputs]
        out = node.op.reference(node.params, *args)
        outs = out if isinstance(out, (list, tuple)) else [out]
        for i, o in enumerate(outs):
            values[(node.uid, i)] = np.asarray(o)
    return [values[e.key()] for e in symbol._outputs]


@st.composite
def graphs(draw, reducers=REDUCE):
    """A random DAG over two (3, 4) inputs and a (1, 4) row, mixing kernel kinds."""
    names = ["a", "b", "row"]
    pool = [mx.sym.Variable(n) for n in names]
    shapes = [SHAPE, SHAPE, (1, 4)]
    n_ops = draw(st.integers(2, 9))
    for _ in range(n_ops):
        kind = draw(st.sampled_from(["unary", "binary", "reduce"]))
        i = draw(st.integers(0, len(pool) - 1))
        if kind == "unary":
            pool.append(getattr(mx.sym, draw(st.sampled_from(UNARY)))(pool[i]))
            shapes.append(shapes[i])
        elif kind == "binary":
            same = [k for k, s in enumerate(shapes) if s == shapes[i]]
            op = draw(st.sampled_from(BINARY))
            if op.startswith("broadcast"):
                j = draw(st.integers(0, len(pool) - 1))
                if shapes[i] == shapes[j] or shapes[j] == (1, 4) or shapes[i] == (1, 4):
                    pool.append(getattr(mx.sym, op)(pool[i], pool[j]))
                    shapes.append(SHAPE if SHAPE in (shapes[i], shapes[j]) else shapes[i])
            else:
                j = draw(st.sampled_from(same))
                pool.append(getattr(mx.sym, op)(pool[i], pool[j]))
                shapes.append(shapes[i])
        elif shapes[i] == SHAPE:
            pool.append(getattr(mx.sym, draw(st.sampled_from(reducers)))(pool[i], axis=0, keepdims=True))
            shapes.append((1, 4))
    heads = draw(st.lists(st.integers(3, len(pool) - 1), min_size=1, max_size=3, unique=True)) \
        if len(pool) > 3 else [len(pool) - 1]
    return mx.sym.Group([pool[k] for k in heads]), shapes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.integers(0, 2**31 - 1))
def test_random_graph_forward_matches_reference(case, seed):
    sym, _ = case
    rs = np.random.RandomState(seed)
    feed = {"a": rs.uniform(-1, 1, SHAPE), "b": rs.uniform(-1, 1, SHAPE), "row": rs.uniform(-1, 1, (1, 4))}
    used = sym.list_arguments()
    outs = sym.eval(**{k: mx.nd.array(v, dtype="float64") for k, v in feed.items() if k in used})
    want = interpret(sym, feed)
    for got, exp in zip(outs, want):
        np.testing.assert_allclose(got.asnumpy(), exp, rtol=1e-10, atol=1e-12)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(reducers=["sum", "mean"]), st.integers(0, 2**31 - 1))
def test_random_graph_gradient_matches_finite_differences(case, seed):
    """No max reduction here: broadcast_maximum against the (1, 4) row makes columns
    constant along the reduced axis, and a tied max has no derivative to compare."""
    sym, _ = case
    rs = np.random.RandomState(seed)
    feed = {"a": rs.uniform(-1, 1, SHAPE), "b": rs.uniform(-1, 1, SHAPE), "row": rs.uniform(-1, 1, (1, 4))}
    loc = {k: v for k, v in feed.items() if k in sym.list_arguments()}
    # relu, abs and maximum have kinks; uniform random inputs land on one with negligible probability
    mx.test_utils.check_numeric_gradient(sym, loc, numeric_eps=1e-6, rtol=1e-3, atol=1e-5)
