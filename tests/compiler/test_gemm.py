"""The Gemm stage and its LLVM kernel (compiler/codegen/llvm_gemm.py), directly and through dot."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

import kiln as mx
from kiln.compiler import expr as E
from kiln.compiler.codegen import llvm_gemm
from kiln.compiler.codegen.llvm import emit_program
from kiln.compiler.kernel import Buffer, Gemm, Kernel, compute
from kiln.runtime.llvm_jit import compile_ir
from tests.op_harness import check_forward, check_gradient

from .helpers import backward, forward

TOL = {"float32": 1e-5, "float64": 1e-12}


def _r(shape, dtype, seed):
    return np.random.RandomState(seed).uniform(-1, 1, shape).astype(dtype)


def run_kernel(make_stage, inputs, out_shape, dtype):
    """Compile one kernel whose single stage is ``make_stage(in_buffers, out_buffer)``; run it."""
    ins = [Buffer("in%d" % i, x.shape, x.dtype.name) for i, x in enumerate(inputs)]
    out = Buffer("out0", out_shape, dtype)
    kernel = Kernel("k0_gemm", ins, [out], [make_stage(ins, out)])
    ir_text = emit_program("gemm_test", [kernel], {"run": [("k0_gemm", list(range(len(ins) + 1)))]},
                           num_threads=1)
    result = np.full(out_shape, np.nan, dtype)
    arrays = [np.ascontiguousarray(x) for x in inputs] + [result]
    table = (ctypes.c_void_p * len(arrays))(*[x.ctypes.data for x in arrays])
    compile_ir(ir_text).entry("run")(ctypes.addressof(table))
    return result


def operands(m, n, k, ta, tb, dtype, batch=None):
    lead = (batch,) if batch else ()
    a = _r(lead + ((k, m) if ta else (m, k)), dtype, 1)
    b = _r(lead + ((n, k) if tb else (k, n)), dtype, 2)
    op_a = np.swapaxes(a, -1, -2) if ta else a
    op_b = np.swapaxes(b, -1, -2) if tb else b
    return a, b, np.matmul(op_a.astype(np.float64), op_b.astype(np.float64))


def assert_close(got, want, dtype, k):
    np.testing.assert_allclose(got, want, rtol=TOL[dtype] * max(k, 8), atol=TOL[dtype] * max(k, 8))


# (m, n, k): tiny, primes, K=1, exact micro-tiles (12x32 float32 on AVX-512), one past them,
# and sizes crossing the mc/nc/kc cache blocks of both dtypes.
SHAPES = [(1, 1, 1), (7, 13, 5), (11, 31, 1), (12, 32, 16), (13, 33, 17), (129, 257, 65), (250, 1100, 300)]
TRANSPOSES = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
@pytest.mark.parametrize("m,n,k", SHAPES, ids=["%dx%dx%d" % s for s in SHAPES])
def test_gemm_matches_numpy(m, n, k, ta, tb, dtype):
    a, b, want = operands(m, n, k, ta, tb, dtype)
    got = run_kernel(lambda ins, out: Gemm(out, ins[0], ins[1], ta, tb), [a, b], (m, n), dtype)
    assert_close(got, want, dtype, k)


@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_batched_gemm(ta, tb):
    a, b, want = operands(13, 35, 20, ta, tb, "float32", batch=3)
    got = run_kernel(lambda ins, out: Gemm(out, ins[0], ins[1], ta, tb, batch=3), [a, b], (3, 13, 35), "float32")
    assert_close(got, want, "float32", 20)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,n,k", [(24, 64, 8), (29, 70, 900)], ids=["full-tiles", "edges-and-k-blocks"])
def test_epilogue_bias_relu(m, n, k, dtype):
    """relu(acc + bias[col]) is applied once, after the last depth block, on full and edge tiles."""
    a, b, want = operands(m, n, k, False, False, dtype)
    bias = _r((n,), dtype, 3)

    def stage(ins, out):
        ep = E.maximum(Gemm.acc(dtype) + ins[2].load(Gemm.COL), 0.0)
        return Gemm(out, ins[0], ins[1], epilogue=ep, extra_inputs=[ins[2]])
    got = run_kernel(stage, [a, b, bias], (m, n), dtype)
    assert_close(got, np.maximum(want + bias, 0), dtype, k)


def test_epilogue_reads_row_and_batch():
    a, b, want = operands(14, 40, 9, True, False, "float64", batch=2)
    scale = _r((2, 14), "float64", 4)

    def stage(ins, out):
        ep = Gemm.acc("float64") * ins[2].load(Gemm.BATCH, Gemm.ROW)
        return Gemm(out, ins[0], ins[1], transpose_a=True, batch=2, epilogue=ep, extra_inputs=[ins[2]])
    got = run_kernel(stage, [a, b, scale], (2, 14, 40), "float64")
    assert_close(got, want * scale[:, :, None], "float64", 9)


def test_with_epilogue_attaches_an_elementwise_consumer():
    """What fusion does with dot -> broadcast_add -> relu: one Gemm writing the consumer's output."""
    a, b, want = operands(30, 50, 40, False, True, "float32")
    bias = _r((50,), "float32", 3)

    def stage(ins, out):
        prod = Gemm(Buffer("prod", (30, 50), "float32"), ins[0], ins[1], transpose_b=True)
        fused = prod.with_epilogue(compute(out, lambda i, j: E.maximum(prod.out.load(i, j) + ins[2].load(j), 0.0)))
        assert fused.extra_inputs == [ins[2]]
        return fused
    got = run_kernel(stage, [a, b, bias], (30, 50), "float32")
    assert_close(got, np.maximum(want + bias, 0), "float32", 40)


def test_with_epilogue_refuses_other_index_patterns():
    a, b = Buffer("a", (4, 4), "float32"), Buffer("b", (4, 4), "float32")
    prod = Gemm(Buffer("p", (4, 4), "float32"), a, b)
    out = Buffer("o", (4, 4), "float32")
    assert prod.with_epilogue(compute(out, lambda i, j: prod.out.load(j, i))) is None
    assert prod.with_epilogue(compute(Buffer("o", (16,), "float32"), lambda i: a.load(0, 0))) is None


@pytest.mark.parametrize("target", [llvm_gemm.Target(256, 16, True), llvm_gemm.Target(128, 16, False),
                                    llvm_gemm.Target(128, 32, True)], ids=["avx2", "sse2", "neon"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_narrower_vector_targets(monkeypatch, target, dtype):
    """The widths chosen for AVX2, plain x86-64 and aarch64 also give correct kernels."""
    monkeypatch.setattr(llvm_gemm, "host_target", lambda: target)
    a, b, want = operands(29, 45, 31, False, True, dtype)
    got = run_kernel(lambda ins, out: Gemm(out, ins[0], ins[1], False, True), [a, b], (29, 45), dtype)
    assert_close(got, want, dtype, 31)


def test_blocking_fits_registers_and_stack():
    for target in (llvm_gemm.host_target(), llvm_gemm.Target(256, 16, True), llvm_gemm.Target(128, 16, False)):
        for dtype, esize in (("float32", 4), ("float64", 8)):
            blk = llvm_gemm.Blocking(target, dtype, 4096, 4096, 4096)
            assert blk.mr * blk.nv + blk.nv + 1 <= target.registers
            assert blk.mc % blk.mr == 0 and blk.nc % blk.nr == 0
            assert (blk.mc + blk.nc + blk.mr) * blk.kc * esize <= 2 << 20


def test_gemm_checks_its_operands():
    a, b = Buffer("a", (3, 4), "float32"), Buffer("b", (4, 5), "float32")
    with pytest.raises(ValueError):
        Gemm(Buffer("c", (3, 6), "float32"), a, b)
    with pytest.raises(TypeError):
        Gemm(Buffer("c", (3, 5), "float64"), a, b)
    with pytest.raises(TypeError):
        Gemm(Buffer("c", (3, 5), "float32"), a, b, epilogue=Gemm.acc("float64"))


# ---- through the operators ----
def test_dot_lowers_to_gemm_for_float_types_only():
    from kiln.compiler.ops.linalg import _dot_lower
    params = {"transpose_a": False, "transpose_b": True}
    for dtype, kind in (("float32", Gemm), ("float64", Gemm), ("float16", None), ("int32", None)):
        ins = [Buffer("a", (3, 4), dtype), Buffer("b", (5, 4), dtype)]
        (stage,) = _dot_lower(params, ins, [Buffer("c", (3, 5), dtype)])
        assert isinstance(stage, Gemm) == (kind is Gemm)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_sym_dot(ta, tb, dtype):
    a, b, want = operands(37, 41, 70, ta, tb, dtype)
    got = forward(mx.sym.dot(mx.sym.Variable("a"), mx.sym.Variable("b"), transpose_a=ta, transpose_b=tb),
                  a=a, b=b)[0]
    assert_close(got, want, dtype, 70)


@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_batch_dot(ta, tb):
    a, b, _ = operands(9, 17, 33, ta, tb, "float32", batch=4)
    check_forward("batch_dot", [a, b], {"transpose_a": ta, "transpose_b": tb}, rtol=1e-4)


def test_fully_connected():
    x, w, bias = _r((6, 3, 5), "float32", 1), _r((20, 15), "float32", 2), _r((20,), "float32", 3)
    sym = mx.sym.FullyConnected(mx.sym.Variable("x"), num_hidden=20, name="fc")
    got = forward(sym, x=x, fc_weight=w, fc_bias=bias)[0]
    np.testing.assert_allclose(got, x.reshape(6, -1) @ w.T + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sa,sb,ta,tb", [((5, 7), (7, 3), False, False), ((7, 5), (3, 7), True, True),
                                         ((2, 3, 4), (4, 5), False, False), ((4, 2, 3), (5, 4), True, True)])
def test_dot_gradient(sa, sb, ta, tb):
    check_gradient("dot", [_r(sa, "float64", 3), _r(sb, "float64", 4)], {"transpose_a": ta, "transpose_b": tb})


@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_batch_dot_gradient(ta, tb):
    a = _r((2, 4, 3) if ta else (2, 3, 4), "float64", 5)
    b = _r((2, 5, 4) if tb else (2, 4, 5), "float64", 6)
    check_gradient("batch_dot", [a, b], {"transpose_a": ta, "transpose_b": tb})


def test_fully_connected_gradient_matches_numpy():
    x, w, bias = _r((4, 6), "float64", 1), _r((5, 6), "float64", 2), _r((5,), "float64", 3)
    head = _r((4, 5), "float64", 4)
    sym = mx.sym.FullyConnected(mx.sym.Variable("x"), num_hidden=5, name="fc")
    _, grads = backward(sym, {"x": x, "fc_weight": w, "fc_bias": bias}, head_grads=[head])
    np.testing.assert_allclose(grads["x"], head @ w, rtol=1e-12)
    np.testing.assert_allclose(grads["fc_weight"], head.T @ x, rtol=1e-12)
    np.testing.assert_allclose(grads["fc_bias"], head.sum(0), rtol=1e-12)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_small_products_take_the_plain_loop_path(ta, tb):
    """Below SMALL_GEMM the emitter writes plain vectorisable loops; results are the same."""
    from kiln.compiler.codegen.llvm_gemm import SMALL_GEMM
    rs = np.random.RandomState(3)
    m, n, k = 5, 9, 7
    assert m * n * k <= SMALL_GEMM
    a = rs.uniform(-1, 1, (k, m) if ta else (m, k)).astype(np.float32)
    b = rs.uniform(-1, 1, (n, k) if tb else (k, n)).astype(np.float32)
    out = mx.sym.dot(mx.sym.var("a"), mx.sym.var("b"), transpose_a=ta, transpose_b=tb).eval(
        a=mx.nd.array(a), b=mx.nd.array(b))[0].asnumpy()
    np.testing.assert_allclose(out, (a.T if ta else a) @ (b.T if tb else b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m,n,k", [(1, 37, 100), (3, 512, 784), (2, 5, 3)])
def test_few_row_products_with_transposed_weight(m, n, k):
    """FullyConnected at small batch: B stored [n, k], summed in vector lanes; any k remainder."""
    rs = np.random.RandomState(m + n + k)
    x = rs.uniform(-1, 1, (m, k)).astype(np.float32)
    w = rs.uniform(-1, 1, (n, k)).astype(np.float32)
    bias = rs.uniform(-1, 1, (n,)).astype(np.float32)
    out = mx.sym.relu(mx.sym.FullyConnected(mx.sym.var("x"), num_hidden=n, name="fc")).eval(
        x=mx.nd.array(x), fc_weight=mx.nd.array(w), fc_bias=mx.nd.array(bias))[0].asnumpy()
    np.testing.assert_allclose(out, np.maximum(x @ w.T + bias, 0), rtol=1e-4, atol=1e-5)
