"""Rematerialisation (``remat=``): the same outputs and gradients as without it, a sound memory
plan (the checker of test_memory), and a smaller arena on a deep MLP."""
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln as mx
from kiln.compiler import pipeline
from kiln.compiler.pipeline import compile_program

from .test_memory import check_plan, planning, training_graphs
from .test_random_graphs import SHAPE, graphs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from mlp_symbolic import build  # noqa: E402


def deep_mlp(act, layers=20, hidden=64):
    x = mx.sym.Variable("data")
    for i in range(layers):
        x = mx.sym.FullyConnected(x, num_hidden=hidden, name="fc%d" % i)
        x = mx.sym.Activation(x, act_type=act, name="act%d" % i)
    return mx.sym.SoftmaxOutput(x, name="softmax")


def swish_mlp(layers=4, hidden=64):
    """x * sigmoid(x): backward reads x and sigmoid(x); the cheap step recomputes sigmoid(x) from x."""
    x = mx.sym.Variable("data")
    for i in range(layers):
        x = mx.sym.FullyConnected(x, num_hidden=hidden, name="fc%d" % i)
        x = x * mx.sym.sigmoid(x)
    return mx.sym.SoftmaxOutput(x, name="softmax")


def train_step(sym, shapes, remat, seed=0, dtype="float64", grad_req="write"):
    """Outputs, gradients (backward run twice after one forward) and the memory report."""
    rs = np.random.RandomState(seed)
    names = sym.list_arguments()
    # compiled afresh, bypassing the program cache both ways, so that the plan can be checked
    with planning() as seen, mock.patch.object(pipeline.program_cache, "load", return_value=None), \
            mock.patch.object(pipeline.program_cache, "store"):
        ex = sym.simple_bind(mx.cpu(), grad_req=grad_req, type_dict={n: dtype for n in names}, remat=remat,
                             **shapes)
    report = ex.compile_report().to_dict()
    ((low, plan),) = seen
    check_plan(low, plan, report["memory"]["arena_bytes"])
    assert ("remat" in [p["name"] for p in report["passes"]]) == bool(remat)
    feed = {n: (rs.randint(0, a.shape[-1] if len(a.shape) > 1 else 2, a.shape) if n.endswith("label")
                else rs.uniform(-1, 1, a.shape)).astype(dtype) for n, a in ex.arg_dict.items()}
    heads = [rs.uniform(-1, 1, o.shape).astype(dtype) for o in ex.outputs]
    if grad_req == "add":
        for g in ex.grad_dict.values():
            g[:] = rs.uniform(-1, 1, g.shape).astype(dtype)
    ex.forward(is_train=True, **feed)
    outs = [o.asnumpy().copy() for o in ex.outputs]
    ex.backward(heads)
    grads = {n: g.asnumpy().copy() for n, g in ex.grad_dict.items()}
    if grad_req == "write":
        ex.backward(heads)  # recomputation reads only what forward left: a second backward is the same
        for n, g in ex.grad_dict.items():
            np.testing.assert_array_equal(g.asnumpy(), grads[n])
    return outs, grads, report["memory"]


def assert_same(sym, shapes, remat, seed=0, dtype="float64", grad_req="write", exact=False):
    """Equal within 1e-6 relative, or bitwise with ``exact``. A recomputed value inlined into a
    different kernel may round differently under the default fast-math flags (``contract``
    fuses other multiply-adds), which float32 GEMMs with cancellation amplify."""
    outs, grads, memory = train_step(sym, shapes, remat, seed, dtype, grad_req)
    ref_outs, ref_grads, ref_memory = train_step(sym, shapes, False, seed, dtype, grad_req)
    assert set(grads) == set(ref_grads)
    for got, want in zip(outs + [grads[n] for n in ref_grads], ref_outs + list(ref_grads.values())):
        if exact:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    return memory, ref_memory


@pytest.mark.parametrize("remat", [True, "cheap"])
def test_mlp_example(remat):
    assert_same(build(128, 10), {"data": (32, 784)}, remat, dtype="float32")


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_deep_mlp_same_results(act):
    """Checkpointing recomputes with the forward's own kernels: bitwise the same."""
    assert_same(deep_mlp(act), {"data": (32, 64)}, True, dtype="float32", exact=True)


def test_deep_tanh_mlp_arena():
    """Without remat every layer's activation lives to backward (each is a GEMM operand there);
    checkpointing keeps about sqrt(20) of them and recomputes the rest segment by segment."""
    on, off = assert_same(deep_mlp("tanh"), {"data": (32, 64)}, True, dtype="float32", exact=True)
    assert on["arena_bytes"] < off["arena_bytes"]
    assert on["arena_bytes"] <= 0.3 * off["naive_bytes"]
    assert on["arena_bytes"] <= 0.3 * on["naive_bytes"]


def test_cheap_mode_keeps_gemm_results_and_recomputes_cheap_values():
    """'cheap' never trades a value for a GEMM result of the same size (the tanh MLP is unchanged),
    but recomputes sigmoid(x) from x, which backward keeps anyway."""
    shapes = {"data": (32, 64)}
    on, off = assert_same(deep_mlp("tanh", layers=4), shapes, "cheap", dtype="float32")
    assert on["arena_bytes"] == off["arena_bytes"]
    on, off = assert_same(swish_mlp(), shapes, "cheap")
    assert on["arena_bytes"] < off["arena_bytes"]
    with mock.patch.dict("os.environ", {"KILN_FASTMATH": "none"}):
        assert_same(swish_mlp(), shapes, "cheap", dtype="float32", exact=True)


def test_grad_req_add():
    assert_same(deep_mlp("tanh", layers=6), {"data": (8, 16)}, True, grad_req="add")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.sampled_from([True, "cheap"]), st.integers(0, 2**31 - 1))
def test_random_graphs(case, remat, seed):
    sym, _ = case
    shapes = {"a": SHAPE, "b": SHAPE, "row": (1, 4)}
    assert_same(sym, {k: v for k, v in shapes.items() if k in sym.list_arguments()}, remat, seed)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(training_graphs(), st.sampled_from([True, "cheap"]), st.integers(0, 2**31 - 1))
def test_random_training_graphs(sym, remat, seed):
    assert_same(sym, {"x": (4, 6)}, remat, seed)


def test_bad_remat_value():
    x = mx.sym.Variable("x")
    with pytest.raises(mx.base.MXNetError, match="remat"):
        compile_program(mx.sym.tanh(x)._outputs, {"x": (2,)}, {"x": "float32"}, {"x": "write"}, remat="all")


def test_bind_and_reshape_pass_remat_through():
    sym = deep_mlp("tanh", layers=6)
    ref = sym.simple_bind(mx.cpu(), data=(8, 16))
    ex = sym.bind(mx.cpu(), ref.arg_dict, args_grad=ref.grad_dict, remat=True)
    plain = ref.reshape(data=(4, 16))
    reshaped = ex.reshape(data=(4, 16))
    arena = [e.compile_report().memory["arena_bytes"] for e in (ref, ex, plain, reshaped)]
    assert arena[1] < arena[0] and arena[3] < arena[2]
