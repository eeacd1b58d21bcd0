"""Parallel kernels: outer loops split over libgomp threads give the same bits as serial code."""
import ctypes

import llvmlite.ir as ir
import numpy as np
import pytest

import kiln as mx
from kiln.compiler.codegen import llvm as L
from kiln.compiler.codegen.llvm import emit_program
from kiln.compiler.kernel import Buffer, Kernel, compute
from kiln.runtime import llvm_jit, threads

needs_gomp = pytest.mark.skipif(not threads.load_runtime(), reason="libgomp is not available")


def _elementwise_ir(shape, num_threads):
    x, y = Buffer("x", shape, "float32"), Buffer("y", shape, "float32")
    k = Kernel("k0_scale", [x], [y], [compute(y, lambda *i: x.load(i) * 2.0 + x.load(i))])
    return emit_program("p", [k], {"forward": [("k0_scale", [0, 1])]}, num_threads=num_threads)


@needs_gomp
def test_large_kernels_call_gomp_small_ones_do_not():
    assert "GOMP_parallel" in _elementwise_ir((1024, 1024), 2)
    assert "GOMP_parallel" not in _elementwise_ir((16, 16), 2)
    assert "GOMP_parallel" not in _elementwise_ir((1024, 1024), 1)
    assert "GOMP_parallel" in _elementwise_ir((1, 1, 1 << 20), 2)  # leading unit axes skipped


@needs_gomp
def test_parallel_range_covers_every_unit_once():
    """A helper called over [lo, hi) per thread writes each unit exactly once."""
    out = Buffer("out", (4096,), "int64")
    module = ir.Module("p")
    helper = ir.Function(module, ir.FunctionType(L.VOID, [L.PTR, L.I64, L.I64]), "helper")
    hem = L._FunctionEmitter(module, helper, [out])

    def body(i):
        old = hem.load(out, [i])
        hem.store(out, [i], hem.b.add(old, hem.b.add(i, hem.i64(1))))
    hem.loop(helper.args[2], body, start=helper.args[1])
    hem.b.ret_void()
    kernel = ir.Function(module, ir.FunctionType(L.VOID, [L.PTR]), "kernel")
    em = L._FunctionEmitter(module, kernel, [out], num_threads=2)
    em.parallel_range(helper, [out], 4096, work=L.PARALLEL_MIN_WORK)
    em.b.ret_void()
    entry = ir.Function(module, ir.FunctionType(L.VOID, [L.PTR]), "run")
    b = ir.IRBuilder(entry.append_basic_block())
    b.call(kernel, [b.load(entry.args[0], typ=L.PTR)])
    b.ret_void()
    assert "GOMP_parallel" in str(module)
    result = np.zeros(4096, np.int64)
    table = (ctypes.c_void_p * 1)(result.ctypes.data)
    jit = llvm_jit.JitModule(str(module))  # keeps the code mapped while it runs
    jit.entry("run")(ctypes.addressof(table))
    np.testing.assert_array_equal(result, np.arange(1, 4097))


def test_env_sets_threads(monkeypatch):
    monkeypatch.setenv("KILN_NUM_THREADS", "1")
    assert threads.parallel_threads() == 1
    monkeypatch.setenv("KILN_NUM_THREADS", "3")
    assert threads.num_threads() == 3
    monkeypatch.setenv("KILN_NUM_THREADS", "many")
    assert threads.num_threads() >= 1


def _rand(rs, shape, lo=-1.0, hi=1.0):
    return rs.uniform(lo, hi, shape).astype(np.float32)


def _graphs():
    """(symbol, inputs) covering each stage kind at sizes large enough to run in parallel."""
    rs = np.random.RandomState(0)
    x = mx.sym.Variable("x")
    w = mx.sym.Variable("w")
    yield "elementwise", True, mx.sym.tanh(x) * 2 + mx.sym.exp(x), {"x": _rand(rs, (512, 640))}
    yield "reduce_rows", True, mx.sym.sum(x, axis=1) * mx.sym.max(x, axis=1) + mx.sym.argmax(x, axis=1), \
        {"x": _rand(rs, (2048, 300))}
    yield "reduce_columns", True, mx.sym.sum(x, axis=0) + mx.sym.min(x, axis=0), {"x": _rand(rs, (2048, 300))}
    # float dots are Gemm stages: parallel once their helper is called through parallel_range
    yield "dot", None, mx.sym.dot(x, w), {"x": _rand(rs, (160, 128)), "w": _rand(rs, (128, 192))}
    conv = mx.sym.Convolution(x, w, kernel=(3, 3), num_filter=16, pad=(1, 1), no_bias=True)
    yield "convolution", True, mx.sym.Pooling(conv, kernel=(2, 2), stride=(2, 2), pool_type="max"), \
        {"x": _rand(rs, (4, 8, 24, 24)), "w": _rand(rs, (16, 8, 3, 3))}
    idx = mx.sym.Variable("idx")
    yield "take", True, mx.sym.take(x, idx) * 3, \
        {"x": _rand(rs, (40000, 8)), "idx": rs.randint(0, 50, (5000,)).astype(np.float32)}


def _run(sym, inputs):
    args = {k: mx.nd.array(v) for k, v in inputs.items()}
    grads = {k: mx.nd.zeros(v.shape) for k, v in inputs.items() if k != "idx"}
    ex = sym.bind(mx.cpu(), args, args_grad=grads, grad_req={k: ("write" if k in grads else "null") for k in args})
    ex.forward(is_train=True)
    head = np.random.RandomState(1).uniform(-1, 1, ex.outputs[0].shape).astype(np.float32)
    ex.backward(mx.nd.array(head))
    parallel = "GOMP_parallel" in ex._program.spec.llvm_ir
    return [o.asnumpy() for o in ex.outputs] + [grads[k].asnumpy() for k in sorted(grads)], parallel


@needs_gomp
@pytest.mark.parametrize("case", list(_graphs()), ids=lambda c: c[0])
def test_two_threads_match_one_bitwise(monkeypatch, case):
    _, expect_parallel, sym, inputs = case
    monkeypatch.setenv("KILN_NUM_THREADS", "1")
    serial, serial_parallel = _run(sym, inputs)
    monkeypatch.setenv("KILN_NUM_THREADS", "2")
    par, par_parallel = _run(sym, inputs)
    assert not serial_parallel
    if expect_parallel:
        assert par_parallel
    for a, b in zip(serial, par):
        np.testing.assert_array_equal(a, b)
