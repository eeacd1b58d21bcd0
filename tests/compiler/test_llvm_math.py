"""Inline float32 math (compiler/codegen/llvm_math.py): ulp error, special values, vectorisation.

Each function is compiled into a one-loop llvmlite kernel and compared with
numpy's float64 result rounded to float32, over dense sweeps of wide ranges.
"""
from __future__ import annotations

import ctypes
import math
import re

import llvmlite.ir as ir
import numpy as np
import pytest

import kiln as mx
from kiln.compiler.codegen import llvm_math
from kiln.compiler.pipeline import compile_program
from kiln.runtime import llvm_jit

F32, I64, PTR = ir.FloatType(), ir.IntType(64), ir.PointerType()
MAX_ULP = 4
_kernels = {}


def _kernel_ir(fn, arity, libm=False):
    """``out[i] = fn(a[i], ...)`` for i < n, as LLVM IR text."""
    m = ir.Module("t")
    f = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR] * (arity + 1) + [I64]), "k")
    entry, loop, end = (f.append_basic_block(n) for n in ("entry", "loop", "end"))
    b = ir.IRBuilder(entry)
    n = f.args[-1]
    b.cbranch(b.icmp_signed(">", n, ir.Constant(I64, 0)), loop, end)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), entry)
    args = [b.load(b.gep(f.args[k], [i], inbounds=True, source_etype=F32), typ=F32) for k in range(arity)]
    if libm:
        r = b.call(ir.Function(m, ir.FunctionType(F32, [F32] * arity), fn + "f"), args)
    else:
        r = llvm_math.emit(b, fn, args)
    b.store(r, b.gep(f.args[arity], [i], inbounds=True, source_etype=F32))
    i2 = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(i2, loop)
    b.cbranch(b.icmp_signed("<", i2, n), loop, end)
    b.position_at_end(end)
    b.ret_void()
    return str(m)


def run(fn, *xs):
    if fn not in _kernels:
        jm = llvm_jit.compile_ir(_kernel_ir(fn, len(xs)))
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * (len(xs) + 1)), ctypes.c_int64)
        _kernels[fn] = (proto(jm.engine.get_function_address("k")), jm)
    xs = [np.ascontiguousarray(x) for x in np.broadcast_arrays(*[np.asarray(x, np.float32) for x in xs])]
    out = np.empty_like(xs[0])
    _kernels[fn][0](*[x.ctypes.data for x in xs], out.ctypes.data, out.size)
    return out


def ulp_error(got, ref64):
    """Distance in float32 steps between ``got`` and ``ref64`` rounded to float32 (nan == nan)."""
    with np.errstate(over="ignore"):
        ref = ref64.astype(np.float32)

    def ordinal(a):
        i = a.view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)
    d = np.abs(ordinal(got) - ordinal(ref))
    return np.where(np.isnan(got) & np.isnan(ref), 0, d)


RNG = np.random.RandomState(7)


def lin(lo, hi, n=1 << 18):
    return np.concatenate([np.linspace(lo, hi, n), RNG.uniform(lo, hi, n)]).astype(np.float32)


def geo(lo, hi, n=1 << 17):
    """Log-spaced positive values: reaches denormals and huge magnitudes."""
    return np.exp(np.linspace(math.log(lo), math.log(hi), n)).astype(np.float32)


def _np_erf(x):
    return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)


def _logs():
    return np.concatenate([geo(1e-45, 3.4e38), lin(0.5, 2.0)])


SWEEPS = {
    "exp": (lambda: np.concatenate([lin(-104, 89), lin(-1, 1)]), np.exp),
    "expm1": (lambda: np.concatenate([lin(-30, 89), lin(-1, 1), geo(1e-40, 1), -geo(1e-40, 1)]), np.expm1),
    "log": (_logs, np.log),
    "log2": (_logs, np.log2),
    "log10": (_logs, np.log10),
    "log1p": (lambda: np.concatenate([lin(-0.9999, 2), geo(1e-40, 3e38), -geo(1e-40, 0.9999)]), np.log1p),
    "tanh": (lambda: np.concatenate([lin(-20, 20), geo(1e-40, 20), -geo(1e-40, 20)]), np.tanh),
    "sin": (lambda: np.concatenate([lin(-1e4, 1e4), lin(-4, 4), geo(1e-40, 3.3e7), -geo(1e-40, 3.3e7)]), np.sin),
    "cos": (lambda: np.concatenate([lin(-1e4, 1e4), lin(-4, 4), geo(1e-40, 3.3e7), -geo(1e-40, 3.3e7)]), np.cos),
    "erf": (lambda: np.concatenate([lin(-6, 6, 1 << 16), geo(1e-40, 6, 1 << 15), -geo(1e-40, 6, 1 << 15)]),
            _np_erf),
}


@pytest.mark.parametrize("fn", sorted(SWEEPS))
def test_ulp_error_over_wide_ranges(fn):
    make, ref = SWEEPS[fn]
    x = make()
    got = run(fn, x)
    err = ulp_error(got, ref(x.astype(np.float64)))
    k = int(np.argmax(err))
    assert err[k] <= MAX_ULP, "%s(%r) = %r, reference %r" % (fn, float(x[k]), float(got[k]),
                                                             float(ref(x[k:k + 1].astype(np.float64))[0]))


def test_pow_ulp_error():
    n = 1 << 17
    cases = [
        (geo(1e-30, 1e30, n), RNG.uniform(-4, 4, n)),   # x > 0, results over the whole float range
        (RNG.uniform(0, 10, n), RNG.uniform(-40, 40, n)),
        (-RNG.uniform(0, 10, n), RNG.randint(-30, 30, n)),  # negative x, integer y
    ]
    for x, y in cases:
        x, y = x.astype(np.float32), y.astype(np.float32)
        with np.errstate(over="ignore", under="ignore"):
            ref = np.power(x.astype(np.float64), y.astype(np.float64))
        assert ulp_error(run("pow", x, y), ref).max() <= MAX_ULP


def _same(got, want):
    want = np.asarray(want, np.float32)
    return bool(np.all((got == want) & (np.signbit(got) == np.signbit(want)) | (np.isnan(got) & np.isnan(want))))


INF, NAN = float("inf"), float("nan")
SPECIALS = {
    "exp": ([NAN, -INF, INF, -200, -104, 89, 100, 0, -0.0], [NAN, 0, INF, 0, 0, INF, INF, 1, 1]),
    "expm1": ([NAN, -INF, INF, 100, 0, -0.0, 1e-45, -1e-45], [NAN, -1, INF, INF, 0, -0.0, 1e-45, -1e-45]),
    "log": ([NAN, 0, -0.0, -1, -INF, INF, 1], [NAN, -INF, -INF, NAN, NAN, INF, 0]),
    "log2": ([NAN, 0, -1, INF, 1, 2.0 ** -149, 2.0 ** 100], [NAN, -INF, NAN, INF, 0, -149, 100]),
    "log10": ([NAN, 0, -1, INF, 1, 10, 1000], [NAN, -INF, NAN, INF, 0, 1, 3]),
    "log1p": ([NAN, -1, -2, INF, 0, -0.0, 1e-45], [NAN, -INF, NAN, INF, 0, -0.0, 1e-45]),
    "tanh": ([NAN, INF, -INF, 0, -0.0, 1e-45, -1e-30, 30, -30], [NAN, 1, -1, 0, -0.0, 1e-45, -1e-30, 1, -1]),
    "sin": ([NAN, INF, -INF, 0, -0.0, 1e-45, 2.0 ** 25], [NAN, NAN, NAN, 0, -0.0, 1e-45, NAN]),
    "cos": ([NAN, INF, -INF, 0, -0.0, 2.0 ** 25], [NAN, NAN, NAN, 1, 1, NAN]),
    "erf": ([NAN, INF, -INF, 0, -0.0, 10, -10, 1e-45], [NAN, 1, -1, 0, -0.0, 1, -1, 1e-45]),
}


@pytest.mark.parametrize("fn", sorted(SPECIALS))
def test_special_values(fn):
    x, want = SPECIALS[fn]
    got = run(fn, np.array(x, np.float32))
    assert _same(got, want), list(zip(x, got, want))


def test_pow_special_values():
    """C powf's rules for zeros, infinities, nan, negative bases (compared with float64 numpy)."""
    v = np.array([0, -0.0, 1, -1, 2, -2, 0.5, -0.5, 3, -3, INF, -INF, NAN], np.float32)
    x, y = (a.ravel() for a in np.meshgrid(v, v))
    with np.errstate(all="ignore"):
        want = np.power(x.astype(np.float64), y.astype(np.float64)).astype(np.float32)
    assert _same(run("pow", x, y), want)


def test_exp_loop_vectorises():
    """The exp loop of a kiln program comes out of the optimiser as vector code."""
    sym = mx.sym.exp(mx.sym.Variable("x"))
    spec, _ = compile_program(sym._outputs, {"x": (4096,)}, {"x": "float32"})
    assert "expf" not in spec.llvm_ir
    opt = llvm_jit.optimized_ir(spec.llvm_ir)
    assert re.search(r"<(8|16) x float>", opt), "exp loop not vectorised"
    assert "expf" not in opt


@pytest.mark.parametrize("fn,arity", [("tanh", 1), ("sin", 1), ("erf", 1), ("log1p", 1), ("pow", 2)])
def test_functions_vectorise(fn, arity):
    assert re.search(r"<(8|16) x float>", llvm_jit.optimized_ir(_kernel_ir(fn, arity)))


def test_kiln_libm_switch(monkeypatch):
    assert llvm_math.enabled("exp") and not llvm_math.enabled("tan")
    monkeypatch.setenv("KILN_LIBM", "1")
    assert not llvm_math.enabled("exp")
    sym = mx.sym.exp(mx.sym.Variable("x"))
    spec, _ = compile_program(sym._outputs, {"x": (8,)}, {"x": "float32"})
    assert re.search(r'call float @"?expf', spec.llvm_ir)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_through_kiln_ops(dtype):
    x = np.linspace(-8, 8, 4097).astype(dtype)
    pos = np.linspace(1e-3, 8, 4097).astype(dtype)
    checks = [
        (mx.nd.exp, x, np.exp), (mx.nd.tanh, x, np.tanh), (mx.nd.sigmoid, x, lambda v: 1 / (1 + np.exp(-v))),
        (mx.nd.log, pos, np.log), (mx.nd.erf, x, _np_erf), (mx.nd.sin, x, np.sin),
    ]
    for op, arg, ref in checks:
        got = op(mx.nd.array(arg, dtype=dtype)).asnumpy()
        want = ref(arg.astype(np.float64))
        if dtype == "float32":
            assert ulp_error(got, want).max() <= MAX_ULP, op.__name__
        else:
            np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-3, atol=1e-4, err_msg=op.__name__)
    base, expo = pos / np.asarray(2, dtype) + np.asarray(0.5, dtype), x / np.asarray(2, dtype)
    got = mx.nd.power(mx.nd.array(base, dtype=dtype), mx.nd.array(expo, dtype=dtype)).asnumpy()
    want = np.power(base.astype(np.float64), expo.astype(np.float64))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-3 if dtype == "float16" else 1e-6)
