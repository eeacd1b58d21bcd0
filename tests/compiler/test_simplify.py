"""Graph simplification passes (constant_fold, simplify, cse, dce): each rule on
small graphs (node counts and kinds), CSE's refusals, and bitwise-equal
results with the passes on and off, on hand-built and random graphs."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln as mx
from kiln.compiler.graph import Graph
from kiln.compiler.passes.simplify import PASSES, constant_fold, cse, dce, simplify

from .test_random_graphs import SHAPE, UNARY, graphs

PASS_NAMES = [name for name, _ in PASSES]
x = mx.sym.Variable("x")
y = mx.sym.Variable("y")


def graph(sym):
    return Graph(sym._outputs)


def ops(g):
    """Operator names of a graph's operator nodes, in order."""
    return [n.op.name for n in g.nodes if n.op is not None]


def count(g, name):
    return ops(g).count(name)


# ---- cse ------------------------------------------------------------------------------------

def test_cse_merges_identical_nodes_and_their_consumers():
    s = mx.sym.exp(x) + mx.sym.exp(x)
    s = mx.sym.sin(s) * mx.sym.sin(mx.sym.exp(x) + mx.sym.exp(x))
    g = cse(graph(s))
    assert ops(g) == ["exp", "elemwise_add", "sin", "elemwise_mul"]
    assert len(graph(s).nodes) == 10  # the input graph is untouched


def test_cse_merges_commuted_add_and_mul_but_not_sub():
    s = mx.sym.Group([x + y, y + x, x * y, y * x, x - y, y - x])
    g = cse(graph(s))
    assert ops(g) == ["elemwise_add", "elemwise_mul", "elemwise_sub", "elemwise_sub"]
    assert g.outputs[0] == g.outputs[1] and g.outputs[2] == g.outputs[3]


def test_cse_compares_typed_params_exactly():
    s = mx.sym.Group([x * 2, x * 2.0, x * 3, x + 0.0, x + (-0.0)])
    g = cse(graph(s))
    assert count(g, "_mul_scalar") == 2  # "2" and "2.0" parse to the same float
    assert count(g, "_plus_scalar") == 2  # -0.0 is not 0.0


def test_cse_never_merges_random_operators():
    s = mx.sym.Dropout(x, p=0.5) + mx.sym.Dropout(x, p=0.5)
    assert count(cse(graph(s)), "Dropout") == 2


def test_cse_never_merges_batchnorm_or_readers_of_its_moving_statistics():
    gamma, beta = mx.sym.Variable("gamma"), mx.sym.Variable("beta")
    mean, var = mx.sym.Variable("mean"), mx.sym.Variable("var")
    bn1 = mx.sym.BatchNorm(x, gamma, beta, mean, var, name="bn1")
    bn2 = mx.sym.BatchNorm(x, gamma, beta, mean, var, name="bn2")
    s = mx.sym.Group([bn1 + bn2, mx.sym.exp(mean), mx.sym.exp(mean), mx.sym.exp(gamma), mx.sym.exp(gamma)])
    g = cse(graph(s))
    assert count(g, "BatchNorm") == 2
    assert count(g, "exp") == 3  # the two exp(gamma) merge; exp(moving mean) does not


def test_cse_remaps_every_output_of_multi_output_nodes():
    a = mx.sym.SliceChannel(x, num_outputs=2, axis=1)
    b = mx.sym.SliceChannel(x, num_outputs=2, axis=1)
    g = cse(graph(mx.sym.Group([a[0] + b[0], a[1] * b[1]])))
    assert count(g, "SliceChannel") == 1
    split = [n for n in g.nodes if n.op is not None and n.op.name == "SliceChannel"][0]
    add, mul = (e.node for e in g.outputs)
    assert [(e.node, e.index) for e in add.inputs] == [(split, 0), (split, 0)]
    assert [(e.node, e.index) for e in mul.inputs] == [(split, 1), (split, 1)]


def test_cse_never_merges_variables():
    s = mx.sym.Group([mx.sym.Variable("p"), mx.sym.Variable("q")])
    assert len(cse(graph(s)).nodes) == 2


# ---- dce ------------------------------------------------------------------------------------

def test_dce_bypasses_pass_through_nodes_except_outputs():
    inner = mx.sym.exp(mx.sym.BlockGrad(mx.sym.identity(mx.sym._copy(x))))
    s = mx.sym.Group([mx.sym.identity(inner), mx.sym.stop_gradient(inner)])
    g = dce(graph(s))
    assert ops(g) == ["exp", "identity", "BlockGrad"]
    assert g.nodes[1].inputs[0].node.name == "x"


# ---- constant_fold --------------------------------------------------------------------------

def test_zeros_like_reads_the_earliest_same_shaped_entry():
    z = mx.sym.zeros_like(mx.sym.relu(mx.sym.exp(x) * y))
    g = constant_fold(graph(z))
    assert ops(g) == ["zeros_like"]
    assert g.nodes[0].name == "x"
    o = constant_fold(graph(mx.sym.ones_like(mx.sym.zeros_like(mx.sym.exp(x)))))
    assert ops(o) == ["ones_like"]


def test_zeros_like_stops_at_shape_changing_operators():
    z = mx.sym.zeros_like(mx.sym.exp(mx.sym.sum(mx.sym.exp(x), axis=0)))
    assert ops(constant_fold(graph(z))) == ["exp", "sum", "zeros_like"]


def test_zero_preserving_operators_on_zeros_fold():
    z = mx.sym.zeros_like(x)
    s = mx.sym.tanh(mx.sym.negative(mx.sym.relu(z * 3)) / 4) % 5
    assert ops(constant_fold(graph(s))) == ["zeros_like"]


@pytest.mark.parametrize("make", [lambda z: z * float("inf"), lambda z: z / 0.0, lambda z: z * 1e300,
                                  lambda z: z * 1e5, lambda z: z / 1e-30,
                                  lambda z: z ** 0.5, lambda z: mx.sym.exp(z), lambda z: mx.sym.cos(z),
                                  lambda z: z + 1, lambda z: z * y])
def test_operators_not_exact_on_zeros_are_kept(make):
    s = make(mx.sym.zeros_like(x))
    assert len(constant_fold(graph(s)).nodes) == len(graph(s).nodes)


def test_adding_zeros_and_multiplying_by_ones_fold():
    z, o = mx.sym.zeros_like(y), mx.sym.ones_like(y)
    s = mx.sym.Group([x + z, z + x, x - z, x * o, o * x, x / o, z * mx.sym.zeros_like(x)])
    g = constant_fold(graph(s))
    assert [e.node.name for e in g.outputs[:6]] == ["x"] * 6
    assert g.outputs[6].node.op.name == "zeros_like"
    assert ops(g) == ["zeros_like"]


def test_zeros_minus_x_is_negative_x():
    g = constant_fold(graph(mx.sym.zeros_like(y) - x))
    assert ops(g) == ["negative"] and g.nodes[-1].inputs[0].node.name == "x"


def test_add_n_drops_zero_terms():
    z = mx.sym.zeros_like(x)
    g = constant_fold(graph(mx.sym.add_n(x, z, y, z)))
    assert ops(g) == ["add_n"] and g.nodes[-1].params["num_args"] == 2
    assert [e.node.name for e in g.nodes[-1].inputs] == ["x", "y"]
    assert ops(constant_fold(graph(mx.sym.add_n(z, x, z)))) == []
    assert ops(constant_fold(graph(mx.sym.add_n(z, z)))) == ["zeros_like"]


# ---- simplify -------------------------------------------------------------------------------

def test_scalar_identities():
    s = mx.sym.Group([x * 1, x / 1, x + 0, x - 0, x + (-0.0), 1 * x])
    g = simplify(graph(s))
    assert ops(g) == [] and all(e.node.name == "x" for e in g.outputs)
    kept = mx.sym.Group([x * 2, x / 2, x + 1, 1 - x, 1 / x, x ** 1])
    assert len(simplify(graph(kept)).nodes) == len(graph(kept).nodes)


def test_double_negation():
    neg = mx.sym.negative
    assert ops(simplify(graph(neg(neg(x))))) == []
    assert ops(simplify(graph(neg(neg(neg(x)))))) == ["negative"]
    assert ops(simplify(graph(neg(-(neg(-mx.sym.exp(x))))))) == ["exp"]
    assert ops(simplify(graph(-(-x)))) == []  # Symbol's -x is x * -1
    assert ops(simplify(graph(neg(x * -2)))) == ["_mul_scalar", "negative"]


def test_add_n_of_one_input():
    assert ops(simplify(graph(mx.sym.add_n(mx.sym.exp(x))))) == ["exp"]


def test_transpose_chains():
    t = mx.sym.transpose
    assert ops(simplify(graph(t(t(x))))) == []
    assert ops(simplify(graph(t(t(x, axes=(1, 0)), axes=(1, 0))))) == []
    assert ops(simplify(graph(t(x, axes=(0, 1, 2))))) == []
    assert ops(simplify(graph(t(t(x, axes=(0, 2, 1)), axes=(0, -1, 1))))) == []
    g = simplify(graph(t(t(x, axes=(1, 2, 0)), axes=(0, 2, 1))))
    assert ops(g) == ["transpose"] and g.nodes[-1].params["axes"] == (1, 0, 2)
    g = simplify(graph(t(t(x, axes=(1, 2, 0)))))
    assert ops(g) == ["transpose"] and g.nodes[-1].params["axes"] == (0, 2, 1)


def test_reshape_chains():
    g = simplify(graph(mx.sym.Reshape(mx.sym.Flatten(mx.sym.expand_dims(x, axis=0)), shape=(4, -1))))
    assert ops(g) == ["Reshape"] and g.nodes[-1].inputs[0].node.name == "x"
    g = simplify(graph(mx.sym.reshape_like(mx.sym.Reshape(x, shape=(0, -1)), y)))
    assert ops(g) == ["reshape_like"] and [e.node.name for e in g.nodes[-1].inputs] == ["x", "y"]
    assert ops(simplify(graph(mx.sym.Flatten(mx.sym.Flatten(x))))) == ["Flatten"]
    # code 0 copies a dimension of the input, so the inner reshape matters
    kept = mx.sym.Reshape(mx.sym.Reshape(x, shape=(-1,)), shape=(0, -1))
    assert ops(simplify(graph(kept))) == ["Reshape", "Reshape"]


def test_passes_do_not_mutate_the_input_graph():
    s = mx.sym.Group([mx.sym.transpose(mx.sym.transpose(-(-x))) * 1 + mx.sym.zeros_like(y),
                      mx.sym.identity(mx.sym.exp(x)) + mx.sym.exp(x)])
    g = graph(s)
    before = [(n, list(n.inputs), dict(n.attrs)) for n in g.nodes]
    for _, fn in PASSES:
        fn(g)
    assert [(n, list(n.inputs), dict(n.attrs)) for n in g.nodes] == before


# ---- the pipeline ---------------------------------------------------------------------------

def run(sym, feed, disabled=(), out_grads=None):
    """Forward (training) and backward through an executor with ``disabled`` passes switched
    off by ``KILN_DISABLE_PASSES``; returns outputs, gradients and the compile report."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KILN_DISABLE_PASSES", ",".join(disabled))
        mp.setenv("KILN_FASTMATH", "none")  # bitwise comparisons: contraction follows expression shape
        ex = sym.simple_bind(mx.cpu(), **{k: v.shape for k, v in feed.items()})
    for k, v in feed.items():
        ex.arg_dict[k][:] = v
    outs = [o.asnumpy().copy() for o in ex.forward(is_train=True)]
    ex.backward([mx.nd.array(g) for g in out_grads] if out_grads is not None else None)
    grads = {k: ex.grad_dict[k].asnumpy().copy() for k in feed}
    return outs, grads, ex.compile_report()


def assert_same(a, b):
    for u, v in zip(a[0], b[0]):
        np.testing.assert_array_equal(u, v)
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k], err_msg=k)


def test_pipeline_reports_passes_and_env_var_disables_them():
    feed = {"x": np.ones((2, 3), np.float32)}
    report = run(mx.sym.exp(x) + mx.sym.exp(x), feed)[2]
    names = [p["name"] for p in report["passes"]]
    assert names.index("expand_composites") < names.index("constant_fold") < names.index("simplify") \
        < names.index("cse") < names.index("dce")
    cse_row = [p for p in report["passes"] if p["name"] == "cse"][0]
    assert cse_row["nodes_after"] < cse_row["nodes_before"]
    off = [p["name"] for p in run(mx.sym.exp(x), feed, disabled=("cse", "dce"))[2]["passes"]]
    assert "cse" not in off and "dce" not in off and "simplify" in off


def test_every_rule_bitwise_equal_with_passes_on_and_off():
    rs = np.random.RandomState(3)
    feed = {"x": rs.uniform(-2, 2, (3, 4)).astype(np.float32), "y": rs.uniform(0.5, 2, (3, 4)).astype(np.float32)}
    z, o = mx.sym.zeros_like(mx.sym.sin(y)), mx.sym.ones_like(y)
    t = mx.sym.transpose
    a = mx.sym.exp(x) * 1 + z - (-(-mx.sym.sin(x)))
    b = mx.sym.reshape_like(mx.sym.Reshape(t(t(x * y)), shape=(-1,)), y) * o
    c = mx.sym.add_n(mx.sym.BlockGrad(a), z, mx.sym.identity(b)) + mx.sym.exp(x) / 1
    d = mx.sym.broadcast_add(mx.sym.negative(z * 3) - mx.sym.tanh(x * y),
                             mx.sym.sum(z + mx.sym.tanh(y * x), axis=0, keepdims=True))
    e = x * 2 + x * 3 + 1 - (x - 1) / 2  # near misses: scalars that are not identities
    sym = mx.sym.Group([a, c, d, e])
    heads = [rs.uniform(-1, 1, (3, 4)).astype(np.float32) for _ in range(4)]
    on = run(sym, feed, out_grads=heads)
    rows = {p["name"]: p for p in on[2]["passes"]}
    assert rows["dce"]["nodes_after"] < rows["constant_fold"]["nodes_before"]
    for disabled in [(p,) for p in PASS_NAMES] + [tuple(PASS_NAMES)]:
        assert_same(on, run(sym, feed, disabled, out_grads=heads))
    ex_x = feed["x"].astype(np.float64)
    np.testing.assert_allclose(on[0][0], np.exp(ex_x) - np.sin(ex_x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["int32", "float16", "float64"])
def test_folds_exact_for_integer_and_half_dtypes(dtype):
    """Scalars are cast to the data's dtype (ints truncate): the zero rules must still hold."""
    z = mx.sym.zeros_like(x)
    sym = mx.sym.Group([(z / 0.5) ** 1.5 * 7 % 3 + x * 1 - 0, -(-x) / 1 + mx.sym.zeros_like(x * 2),
                        (z * 65504.0) + z / 2 ** -24])
    feed = np.random.RandomState(1).uniform(-50, 50, (5, 3)).astype(dtype)
    got = {}
    for off in ("", ",".join(PASS_NAMES)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KILN_DISABLE_PASSES", off)
            ex = sym.simple_bind(mx.cpu(), grad_req="null", type_dict={"x": dtype}, x=feed.shape)
        ex.arg_dict["x"][:] = feed
        got[off] = [o.asnumpy().copy() for o in ex.forward()]
    for u, v in zip(*got.values()):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(got[""][0], feed)


# ---- random graphs with redundancy ----------------------------------------------------------

WRAPPERS = [
    lambda s, f: f(s) + f(s),                                    # cse
    lambda s, f: s * 1 + mx.sym.zeros_like(f(s)),                # simplify, constant_fold
    lambda s, f: -(-f(s)) * mx.sym.ones_like(s),
    lambda s, f: mx.sym.transpose(mx.sym.transpose(f(s))) / 1,
    lambda s, f: mx.sym.reshape_like(mx.sym.Reshape(mx.sym.Flatten(f(s)), shape=(-1,)), s),
    lambda s, f: mx.sym.add_n(s, mx.sym.zeros_like(s) * 3, mx.sym.identity(f(s))),
    lambda s, f: mx.sym.zeros_like(s) - f(mx.sym.BlockGrad(s)) + f(s),
]


@st.composite
def redundant_graphs(draw):
    """A random graph from ``graphs()`` whose outputs are wrapped in redundant expressions."""
    base, _ = draw(graphs())
    heads = []
    for h in base:
        for _ in range(draw(st.integers(1, 3))):
            f = getattr(mx.sym, draw(st.sampled_from(UNARY)))
            h = draw(st.sampled_from(WRAPPERS))(h, f)
        heads.append(h)
    return mx.sym.Group(heads)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(redundant_graphs(), st.sampled_from(PASS_NAMES), st.integers(0, 2**31 - 1))
def test_random_redundant_graphs_bitwise_equal_with_passes_on_and_off(sym, off, seed):
    rs = np.random.RandomState(seed)
    shapes = {"a": SHAPE, "b": SHAPE, "row": (1, 4)}
    feed = {k: rs.uniform(-1, 1, shapes[k]).astype(np.float32) for k in sym.list_arguments()}
    on = run(sym, feed)
    rows = {p["name"]: p for p in on[2]["passes"]}
    assert rows["dce"]["nodes_after"] < rows["constant_fold"]["nodes_before"]
    assert_same(on, run(sym, feed, disabled=(off,)))
    assert_same(on, run(sym, feed, disabled=tuple(PASS_NAMES)))


def test_shape_noops_are_bypassed_only_when_shapes_and_dtypes_agree():
    from kiln.compiler.graph import Graph
    from kiln.compiler.passes.infer import infer_shapes, infer_types
    from kiln.compiler.passes.simplify import drop_shape_noops
    x = mx.sym.Variable("x")
    y = mx.sym.Flatten(mx.sym.transpose(mx.sym.exp(x), axes=(0, 1)))   # both no-ops on 2-d x
    z = mx.sym.reshape_like(mx.sym.transpose(mx.sym.sin(x)), x)         # a real transpose: kept
    g = Graph(mx.sym.Group([y, z])._outputs)
    out = drop_shape_noops(g, infer_shapes(g, {"x": (3, 3)}), infer_types(g, {"x": "float32"}))
    ops = sorted(n.op.name for n in out.nodes if n.op is not None)
    assert ops == ["exp", "sin", "transpose"]
    g34 = Graph(mx.sym.Flatten(mx.sym.exp(mx.sym.Variable("x")))._outputs)
    kept = drop_shape_noops(g34, infer_shapes(g34, {"x": (3, 2, 2)}), infer_types(g34, {"x": "float32"}))
    assert sorted(n.op.name for n in kept.nodes if n.op is not None) == ["Flatten", "exp"]
