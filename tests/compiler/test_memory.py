"""Memory planning: an independent checker of the planned arena (no two values live at
the same time share bytes unless they are an accepted in-place pair or an alias), run
on random graphs and training graphs, and numerical equality with planning on and off."""
import contextlib
import os
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln as mx
from kiln.compiler import expr as E
from kiln.compiler import pipeline
from kiln.compiler.kernel import Buffer, Compute, Gemm, Kernel, compute
from kiln.compiler.memory import inplace_safe
from kiln.runtime.program import ALIGN, load_program

from .test_random_graphs import SHAPE, graphs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from mlp_symbolic import build  # noqa: E402


# ---- the checker: knows nothing of the planner but its output ----
def _loads_of(exprs, buf):
    found, seen = [], set()

    def go(x):
        if id(x) not in seen:
            seen.add(id(x))
            if isinstance(x, E.Load) and x.buf is buf:
                found.append(x)
            E.map_children(x, go)
        return x
    for e in exprs:
        go(e)
    return found


def _stage_exprs(stage):
    if isinstance(stage, Compute):
        return [stage.body]
    return [e for e in (getattr(stage, "value", None), getattr(stage, "epilogue", None)) if e is not None] \
        + list(getattr(stage, "target", ()))


def reads_own_element_only(kernel, k, j):
    """Input ``k`` is read, from the stage writing output ``j`` on, only as dst[i] = f(src[i])."""
    src, dst = kernel.inputs[k], kernel.outputs[j]
    writers = [i for i, stage in enumerate(kernel.stages) if getattr(stage, "out", None) is dst]
    if src.shape != dst.shape or len(writers) != 1 or not isinstance(kernel.stages[writers[0]], Compute):
        return False
    w = writers[0]
    for i, stage in enumerate(kernel.stages[w:], start=w):
        loads = _loads_of(_stage_exprs(stage), src)
        if any(b is src for b in getattr(stage, "inputs", ())):
            return False
        if i > w and loads:
            return False
        if i == w and any(len(l.index) != len(stage.axes) or any(a is not b for a, b in zip(l.index, stage.axes))
                          for l in loads):
            return False
    return True


def check_plan(low, plan, arena_bytes):
    """Assert the plan is sound; returns the peak of live bytes (a lower bound for any arena)."""
    slots = low.slots
    order = [(p, l) for p, launches in low.phases.items() for l in launches]
    end = len(order)
    writes = {}
    for t, (_, launch) in enumerate(order):
        for s in launch.slots[len(launch.kernel.inputs):]:
            assert s not in writes, "slot %s written twice" % slots[s].name
            writes[s] = t

    def storage(s):
        return s if slots[s].alias_of is None else slots[s].alias_of

    for s, spec in enumerate(slots):
        if spec.alias_of is not None:
            target = slots[spec.alias_of]
            assert not spec.external, "an external slot is an alias"
            assert target.alias_of is None and target.nbytes == spec.nbytes
            assert s not in writes, "an alias is written"
            assert not (target.external and spec.alias_of in writes), "alias of an external output"
    first, last, phase = {}, {}, {}
    for t, (p, launch) in enumerate(order):
        n_in = len(launch.kernel.inputs)
        for s in map(storage, launch.slots[:n_in]):
            if s in writes:
                assert writes[s] < t, "%s read before it is written" % slots[s].name
            if not slots[s].external:
                last[s] = end if phase[s] != p else max(last[s], t)
        for s in launch.slots[n_in:]:
            if not slots[s].external:
                first[s], last[s], phase[s] = t, t, p
    for s in first:
        assert slots[s].offset % ALIGN == 0 and slots[s].offset + slots[s].nbytes <= arena_bytes
    accepted = set()
    for t, src, dst in plan.inplace:
        _, launch = order[t]
        n_in = len(launch.kernel.inputs)
        params = [storage(s) for s in launch.slots]
        k = [storage(s) for s in launch.slots[:n_in]].index(src)
        j = launch.slots[n_in:].index(dst)
        assert params.count(src) == 1 and last[src] == t == first[dst]
        assert slots[src].nbytes == slots[dst].nbytes and not slots[src].external
        assert reads_own_element_only(launch.kernel, k, j)
        accepted.add((src, dst))
    values = sorted(first)
    peak = max((sum(-(-max(slots[v].nbytes, 1) // ALIGN) * ALIGN for v in values
                    if first[v] <= t <= last[v] and not any((v, d) in accepted for d in values if first[d] == t))
                for t in range(end)), default=0)
    for a in values:
        for b in values:
            if a < b and first[a] <= last[b] and first[b] <= last[a]:
                lo_a, lo_b = slots[a].offset, slots[b].offset
                if lo_a < lo_b + slots[b].nbytes and lo_b < lo_a + slots[a].nbytes:
                    assert (a, b) in accepted or (b, a) in accepted, \
                        "%s and %s overlap while both live" % (slots[a].name, slots[b].name)
    return peak


@contextlib.contextmanager
def planning(enabled=True, disabled=()):
    """Compile with or without the memory pass; yields the (Lowered, MemoryPlan) of each compile."""
    seen = []
    real = pipeline.plan_memory

    def spy(low):
        plan = real(low)
        seen.append((low, plan))
        return plan
    env = {"KILN_DISABLE_PASSES": ",".join(list(disabled) + ([] if enabled else ["memory"])),
           "KILN_DISABLE_PROGRAM_CACHE": "1"}  # the spy must see every compile
    with mock.patch.object(pipeline, "plan_memory", spy), mock.patch.dict(os.environ, env):
        yield seen


def train_step(sym, shapes, seed, enabled=True, dtype="float64", disabled=()):
    """Outputs and gradients of forward + backward (run twice), after checking the plan."""
    rs = np.random.RandomState(seed)
    with planning(enabled, disabled) as seen:
        names = sym.list_arguments()
        ex = sym.simple_bind(mx.cpu(), grad_req="write", type_dict={n: dtype for n in names}, **shapes)
    report = ex.compile_report().to_dict()
    if enabled:
        ((low, plan),) = seen
        report["memory"]["peak_live"] = check_plan(low, plan, report["memory"]["arena_bytes"])
        assert "memory" in [p["name"] for p in report["passes"]]
    else:
        assert not seen and report["memory"]["arena_bytes"] == report["memory"]["naive_bytes"]
    feed = {n: (rs.randint(0, a.shape[-1] if len(a.shape) > 1 else 2, a.shape) if n.endswith("label")
                else rs.uniform(-1, 1, a.shape)).astype(dtype) for n, a in ex.arg_dict.items()}
    heads = [rs.uniform(-1, 1, o.shape).astype(dtype) for o in ex.outputs]
    ex.forward(is_train=True, **feed)
    outs = [o.asnumpy().copy() for o in ex.outputs]
    ex.backward(heads)
    grads = {n: g.asnumpy().copy() for n, g in ex.grad_dict.items()}
    ex.backward(heads)  # backward twice after one forward reads the same forward values
    for n, g in ex.grad_dict.items():
        np.testing.assert_array_equal(g.asnumpy(), grads[n])
    ex.forward(is_train=False, **feed)  # inference alone, again
    for o, want in zip(ex.outputs, outs):
        np.testing.assert_array_equal(o.asnumpy(), want)
    return outs, grads, report["memory"]


def assert_same_with_and_without(sym, shapes, seed=0, dtype="float64", disabled=()):
    outs, grads, memory = train_step(sym, shapes, seed, True, dtype, disabled)
    ref_outs, ref_grads, _ = train_step(sym, shapes, seed, False, dtype, disabled)
    for got, want in zip(outs, ref_outs):
        np.testing.assert_array_equal(got, want)
    for n in ref_grads:
        np.testing.assert_array_equal(grads[n], ref_grads[n])
    return memory


# ---- random graphs ----
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.integers(0, 2**31 - 1))
def test_random_graphs_plan_and_results(case, seed):
    sym, _ = case
    shapes = {"a": SHAPE, "b": SHAPE, "row": (1, 4)}
    assert_same_with_and_without(sym, {k: v for k, v in shapes.items() if k in sym.list_arguments()}, seed)


RESHAPES = [(24,), (4, 6), (6, 4), (2, 12), (2, 3, 4), (1, 24)]


@st.composite
def training_graphs(draw):
    """Chains and diamonds of elementwise, reshape-like, FullyConnected and reduce operators."""
    pool, shapes = [mx.sym.Variable("x")], [(4, 6)]
    for _ in range(draw(st.integers(2, 10))):
        i = draw(st.integers(0, len(pool) - 1))
        x, s = pool[i], shapes[i]
        size = int(np.prod(s))
        kind = draw(st.sampled_from(["unary", "binary", "reshape", "flatten", "expand", "like", "fc", "sum"]))
        if kind == "unary":
            pool.append(getattr(mx.sym, draw(st.sampled_from(["relu", "tanh", "sigmoid", "square"])))(x))
            shapes.append(s)
        elif kind == "binary":
            j = draw(st.sampled_from([k for k, t in enumerate(shapes) if t == s]))
            pool.append(getattr(mx.sym, draw(st.sampled_from(["elemwise_add", "elemwise_mul"])))(x, pool[j]))
            shapes.append(s)
        elif kind == "reshape" and size == 24:
            target = draw(st.sampled_from(RESHAPES))
            pool.append(mx.sym.Reshape(x, shape=target))
            shapes.append(target)
        elif kind == "flatten" and len(s) >= 2:
            pool.append(mx.sym.Flatten(x))
            shapes.append((s[0], size // s[0]))
        elif kind == "expand" and len(s) < 4:
            y = mx.sym.expand_dims(x, axis=0)
            squeeze = draw(st.booleans())
            pool.append(mx.sym.squeeze(y, axis=0) if squeeze else y)
            shapes.append(s if squeeze else (1,) + s)
        elif kind == "like":
            same = [k for k, t in enumerate(shapes) if int(np.prod(t)) == size]
            j = draw(st.sampled_from(same))
            pool.append(mx.sym.reshape_like(x, pool[j]))
            shapes.append(shapes[j])
        elif kind == "fc":
            n = draw(st.integers(1, 5))
            pool.append(mx.sym.FullyConnected(x, num_hidden=n, name="fc%d" % len(pool)))
            shapes.append((s[0], n))
        elif kind == "sum" and len(s) >= 2:
            pool.append(mx.sym.sum(x, axis=len(s) - 1))
            shapes.append(s[:-1])
    heads = draw(st.lists(st.integers(1, len(pool) - 1), min_size=1, max_size=3, unique=True)) \
        if len(pool) > 1 else [0]
    return mx.sym.Group([pool[k] for k in heads])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(training_graphs(), st.integers(0, 2**31 - 1))
def test_random_training_graphs_plan_and_results(sym, seed):
    assert_same_with_and_without(sym, {"x": (4, 6)}, seed)


# ---- the MLPs of the issue ----
def deep_mlp(layers=20, hidden=64):
    x = mx.sym.Variable("data")
    for i in range(layers):
        x = mx.sym.FullyConnected(x, num_hidden=hidden, name="fc%d" % i)
        x = mx.sym.Activation(x, act_type="relu", name="relu%d" % i)
    return mx.sym.SoftmaxOutput(x, name="softmax")


@pytest.mark.parametrize("disabled", [(), ("fuse", "shape_noops")])
def test_mlp_training_graph(disabled):
    memory = assert_same_with_and_without(build(128, 10), {"data": (32, 784)}, dtype="float32",
                                          disabled=disabled)
    assert memory["arena_bytes"] <= 1.02 * memory["peak_live"] and memory["arena_bytes"] < memory["naive_bytes"]
    if disabled:
        assert memory["inplace"] >= 2 and memory["aliased"] >= 1


@pytest.mark.parametrize("disabled", [(), ("fuse",)])
def test_deep_mlp_arena(disabled):
    """The arena is the liveness lower bound; against unfused slots, at most half of naive.

    Fused, each layer leaves about one forward value (kept for backward) and one backward
    temporary, so no plan can go below about half of the naive sum there."""
    memory = assert_same_with_and_without(deep_mlp(), {"data": (32, 64)}, dtype="float32", disabled=disabled)
    assert memory["arena_bytes"] == memory["peak_live"]
    assert memory["reused"] >= 20
    if disabled:
        assert memory["arena_bytes"] <= 0.5 * memory["naive_bytes"] and memory["inplace"] >= 20


def test_real_byte_sizes():
    """float16 and float64 slots take 2 and 8 bytes an element (MXNet assumed 4)."""
    for dtype, itemsize in (("float16", 2), ("float64", 8)):
        x = mx.sym.Variable("x")
        y = mx.sym.exp(mx.sym.dot(mx.sym.relu(mx.sym.dot(x, x)), x))
        with planning() as seen:
            ex = y.simple_bind(mx.cpu(), grad_req="null", type_dict={"x": dtype}, x=(64, 64))
        ((low, plan),) = seen
        internal = [s for s in low.slots if not s.external and s.alias_of is None]
        assert internal and all(s.nbytes == 64 * 64 * itemsize for s in internal)
        check_plan(low, plan, plan.stats["arena_bytes"])
        xs = np.random.RandomState(0).uniform(-0.1, 0.1, (64, 64)).astype(dtype)
        got = ex.forward(x=xs)[0].asnumpy()
        want = np.exp(np.maximum(xs.astype("float64") @ xs, 0) @ xs)
        np.testing.assert_allclose(got, want, rtol=1e-2 if dtype == "float16" else 1e-12)


# ---- aliases ----
def test_alias_of_an_external_input_follows_rebinding():
    x, w = mx.sym.Variable("x"), mx.sym.Variable("w")
    y = mx.sym.dot(mx.sym.Reshape(x, shape=(6, 4)), w)
    with planning() as seen:
        spec, info = pipeline.compile_program(y._outputs, {"x": (4, 6), "w": (4, 3)},
                                              {"x": "float64", "w": "float64"})
    ((low, plan),) = seen
    assert plan.stats["aliased"] == 1 and "Reshape" not in [op for k in spec.report["kernels"] for op in k["ops"]]
    (alias,) = [s for s in spec.slots if s.alias_of is not None]
    assert spec.slots[alias.alias_of].name == "x"
    prog = load_program(spec)
    rs = np.random.RandomState(1)
    w_arr, out = rs.rand(4, 3), np.zeros((6, 3))
    prog.bind("w", w_arr)
    prog.bind(info["outputs"][0], out)
    for _ in range(2):
        x_arr = rs.rand(4, 6)  # a new array each time: the alias must follow the binding
        prog.bind("x", x_arr)
        prog.run("forward")
        np.testing.assert_allclose(out, x_arr.reshape(6, 4) @ w_arr, rtol=1e-12)


def test_no_alias_of_or_as_an_external_output():
    x, w = mx.sym.Variable("x"), mx.sym.Variable("w")
    y = mx.sym.dot(x, w)
    for second in (mx.sym.Reshape(y, shape=(-1,)), mx.sym.dot(w, mx.sym.Reshape(y, shape=(6, 4)))):
        sym = mx.sym.Group([y, second])
        with planning() as seen:
            sym.simple_bind(mx.cpu(), grad_req="null", type_dict={"x": "float64", "w": "float64"},
                            x=(4, 6), w=(6, 6))
        ((low, plan),) = seen
        assert plan.stats["aliased"] == 0
        check_plan(low, plan, plan.stats["arena_bytes"])
        assert_same_with_and_without(sym, {"x": (4, 6), "w": (6, 6)})


def test_alias_read_in_backward_keeps_its_storage_alive():
    """The weight gradient of the second dot reads, in backward, an alias of a forward value."""
    x, w1, w2 = mx.sym.Variable("x"), mx.sym.Variable("w1"), mx.sym.Variable("w2")
    r = mx.sym.Reshape(mx.sym.dot(x, w1), shape=(6, 4))
    y = mx.sym.tanh(mx.sym.dot(r, w2))
    memory = assert_same_with_and_without(y, {"x": (4, 6), "w1": (6, 6), "w2": (4, 5)})
    assert memory["aliased"] >= 1
    # and through two reshape-like operators in one launch
    r2 = mx.sym.Flatten(mx.sym.Reshape(mx.sym.dot(x, w1), shape=(2, 3, 4)))
    y2 = mx.sym.tanh(mx.sym.dot(r2, w2, transpose_b=True))
    memory = assert_same_with_and_without(y2, {"x": (4, 6), "w1": (6, 6), "w2": (5, 12)})
    assert memory["aliased"] >= 1


# ---- the in-place rule on kernel IR ----
def _kernel(build_stages, in_shapes, out_shape):
    ins = [Buffer("in%d" % k, s, "float32") for k, s in enumerate(in_shapes)]
    out = Buffer("out", out_shape, "float32")
    return Kernel("k", ins, [out], build_stages(ins, out))


def test_inplace_rule_on_kernel_ir():
    ew = _kernel(lambda i, o: [compute(o, lambda *ix: E.call("exp", i[0].load(ix)) + i[1].load(ix))],
                 [(3, 4), (3, 4)], (3, 4))
    assert inplace_safe(ew, 0, 0) and inplace_safe(ew, 1, 0)
    transpose = _kernel(lambda i, o: [compute(o, lambda a, b: i[0].load(b, a))], [(4, 4)], (4, 4))
    assert not inplace_safe(transpose, 0, 0)
    shifted = _kernel(lambda i, o: [compute(o, lambda a, b: i[0].load(a, b) + i[0].load(a, E.clamp_index(b + 1, 4)))],
                      [(4, 4)], (4, 4))
    assert not inplace_safe(shifted, 0, 0)
    bcast = _kernel(lambda i, o: [compute(o, lambda a, b: i[0].load(a, b) + i[1].load(0, b))],
                    [(3, 4), (1, 4)], (3, 4))
    assert inplace_safe(bcast, 0, 0) and not inplace_safe(bcast, 1, 0)

    def two_stages(i, o):
        tmp = Buffer("tmp", (3, 4), "float32")
        return [compute(tmp, lambda *ix: i[0].load(ix)), compute(o, lambda *ix: tmp.load(ix) + i[0].load(0, 0))]
    k = _kernel(two_stages, [(3, 4)], (3, 4))
    k.outputs.insert(0, k.stages[0].out)
    assert not inplace_safe(k, 0, 0)  # a later stage still reads the input
    gemm = _kernel(lambda i, o: [Gemm(o, i[0], i[1])], [(4, 4), (4, 4)], (4, 4))
    assert not inplace_safe(gemm, 0, 0)


@pytest.mark.parametrize("enabled", [True, False])
def test_disable_falls_back_to_naive(enabled):
    with planning(enabled):
        ex = build(16, 4).simple_bind(mx.cpu(), data=(8, 20), grad_req="write")
    report = ex.compile_report().to_dict()
    names = [p["name"] for p in report["passes"]]
    m = report["memory"]
    assert ("memory" in names) == enabled
    assert (m["arena_bytes"] < m["naive_bytes"]) == enabled


def test_checker_rejects_overlapping_live_values():
    with planning() as seen:
        build(16, 4).simple_bind(mx.cpu(), data=(8, 20), grad_req="write")
    ((low, plan),) = seen
    check_plan(low, plan, plan.stats["arena_bytes"])
    for s in low.slots:
        if not s.external and s.alias_of is None:
            s.offset = 0
    with pytest.raises(AssertionError, match="overlap while both live"):
        check_plan(low, plan, plan.stats["arena_bytes"])


def test_grad_req_add_accumulates_the_same():
    sym = deep_mlp(layers=3, hidden=8)
    results = []
    for enabled in (True, False):
        with planning(enabled):
            ex = sym.simple_bind(mx.cpu(), grad_req="add", type_dict={n: "float64" for n in sym.list_arguments()},
                                 data=(4, 8))
        rs = np.random.RandomState(0)
        for n, a in ex.arg_dict.items():
            a[:] = rs.randint(0, 8, a.shape) if n.endswith("label") else rs.uniform(-1, 1, a.shape)
        for g in ex.grad_dict.values():
            g[:] = 0
        for _ in range(2):
            ex.forward(is_train=True)
            ex.backward()
        results.append({n: g.asnumpy().copy() for n, g in ex.grad_dict.items()})
    for n in results[1]:
        np.testing.assert_array_equal(results[0][n], results[1][n])
