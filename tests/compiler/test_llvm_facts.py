"""Fast-math flags (KILN_FASTMATH) and the noalias / align facts on kernel parameters."""
import re

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from kiln.compiler.codegen import llvm as L
from kiln.compiler.kernel import Buffer, Compute, Kernel
from kiln.compiler.pipeline import compile_program
from kiln.runtime.llvm_jit import optimized_ir


def test_flag_parsing(monkeypatch):
    monkeypatch.delenv("KILN_FASTMATH", raising=False)
    assert L.fastmath_flags() == ("nsz", "arcp", "contract", "afn")
    assert L.fastmath_flags("none") == () and L.fastmath_flags("") == ()
    assert L.fastmath_flags("afn,reassoc") == ("reassoc", "afn")
    assert L.fastmath_flags("fast") == L.FASTMATH_FLAGS
    monkeypatch.setenv("KILN_FASTMATH", "none")
    assert L.fastmath_flags() == ()
    with pytest.raises(MXNetError, match="nnan"):
        L.fastmath_flags("nnan")


def _net():
    x, w = mx.sym.Variable("x"), mx.sym.Variable("w")
    h = mx.sym.tanh(mx.sym.dot(x, w)) * 2 + mx.sym.exp(x * 0.1) / 3
    return mx.sym.sum(mx.sym.sqrt(h * h + 1), axis=1) - mx.sym.max(h, axis=1)


def _numpy(x, w):
    h = np.tanh(x @ w) * 2 + np.exp(x * 0.1) / 3
    return np.sqrt(h * h + 1).sum(axis=1) - h.max(axis=1)


@pytest.mark.parametrize("flags", ["none", "nsz,arcp,contract,afn", "reassoc", "fast"])
def test_results_within_tolerance(monkeypatch, flags):
    monkeypatch.setenv("KILN_FASTMATH", flags)
    rs = np.random.RandomState(0)
    x, w = rs.uniform(-1, 1, (64, 96)).astype(np.float32), rs.uniform(-1, 1, (96, 96)).astype(np.float32)
    ex = _net().bind(mx.cpu(), {"x": mx.nd.array(x), "w": mx.nd.array(w)})
    out = ex.forward()[0].asnumpy()
    np.testing.assert_allclose(out, _numpy(x.astype(np.float64), w.astype(np.float64)), rtol=1e-4, atol=1e-3)
    report = ex.compile_report().to_dict()
    assert report["program_cache"]["hit"] in (None, "memory", "disk")


def test_flags_reach_the_ir():
    sym = mx.sym.sum(mx.sym.Variable("x") * 3 + 1, axis=1)
    strict, _ = compile_program(sym._outputs, {"x": (8, 1024)}, {"x": "float32"}, fastmath="none")
    default, _ = compile_program(sym._outputs, {"x": (8, 1024)}, {"x": "float32"}, fastmath=None)
    assert not re.search(r"f(add|mul|sub|div) (reassoc|nsz|arcp|afn)", strict.llvm_ir)
    assert "fmuladd" not in strict.llvm_ir
    assert re.search(r"fadd nsz arcp afn", default.llvm_ir)
    assert "llvm.fmuladd" in default.llvm_ir  # contract: a*b+c fused by the emitter itself
    assert strict.llvm_ir != default.llvm_ir


def _reduction_loop_is_vector(flags):
    sym = mx.sym.sum(mx.sym.Variable("x"), axis=1)
    spec, _ = compile_program(sym._outputs, {"x": (4, 4096)}, {"x": "float32"}, fastmath=flags)
    return re.search(r"fadd [a-z ]*<\d+ x float>", optimized_ir(spec.llvm_ir)) is not None


def test_reassoc_vectorises_a_float32_sum():
    assert _reduction_loop_is_vector("reassoc")
    assert not _reduction_loop_is_vector("nsz,arcp,contract,afn")  # ordered sum: kept in order


def test_param_facts_respect_inplace_and_external_memory():
    from kiln.compiler import expr as E
    n = 16
    a, b, out = Buffer("a", (n,), "float32"), Buffer("b", (n,), "float32"), Buffer("o", (n,), "float32")
    i = E.Var("i")
    k = Kernel("add", [a, b], [out], [Compute(out, [i], E.Call("add", [a.load(i), b.load(i)]))])
    k.name = "k"
    regions = [("arena", 0, 64), ("arena", 64, 128), ("arena", 128, 192), ("external", 3), ("external", 4),
               ("arena", 200, 264)]
    # launch 1: all distinct arena memory
    noalias, aligned = L.param_facts([k], {"forward": [("k", [0, 1, 2])]}, regions)["k"]
    assert noalias == {0, 1, 2} and aligned == {0, 1, 2}
    # a second launch writes its output over its first input (in place): that pair loses noalias
    noalias, aligned = L.param_facts([k], {"forward": [("k", [0, 1, 2]), ("k", [2, 1, 2])]}, regions)["k"]
    assert noalias == {1}
    # two external arrays may be one array (grad_req='add', or a caller's choice): a written
    # external output is never noalias against an external input; arena vs external is disjoint
    noalias, aligned = L.param_facts([k], {"forward": [("k", [3, 0, 4])]}, regions)["k"]
    assert noalias == {1} and aligned == {1}
    noalias, aligned = L.param_facts([k], {"forward": [("k", [3, 4, 1])]}, regions)["k"]
    assert noalias == {0, 1, 2} and aligned == {2}
    assert L.param_facts([k], {"forward": [("k", [0, 1, 5])]}, regions)["k"][1] == {0, 1}  # offset 200


def _defines(ir_text):
    return {m.group(1): m.group(2) for m in re.finditer(r'define internal void @"([\w.]+)"\((.*)\)', ir_text)}


def _launches(ir_text):
    """(kernel, [slot per argument]) for each call in the entry functions of ``ir_text``."""
    gep, load, out = {}, {}, []
    for line in ir_text[ir_text.index('define void @"forward"'):].splitlines():
        m = re.match(r'\s*(%"\.\d+") = getelementptr inbounds ptr, ptr %"\.1", i64 (\d+)', line)
        if m:
            gep[m.group(1)] = int(m.group(2))
        m = re.match(r'\s*(%"\.\d+") = load ptr, ptr (%"\.\d+")', line)
        if m:
            load[m.group(1)] = gep[m.group(2)]
        m = re.match(r'\s*call void @"(\w+)"\((.*)\)', line)
        if m:
            out.append((m.group(1), [load[a] for a in re.findall(r'ptr (%"\.\d+")', m.group(2))]))
    return out


def test_inplace_kernel_gets_no_noalias_on_the_shared_pair():
    x = mx.sym.Variable("x")
    y = mx.sym.exp(mx.sym.broadcast_mul(mx.sym.sum(x, axis=1, keepdims=True), x))
    z = mx.sym.sqrt(mx.sym.broadcast_add(mx.sym.sum(y, axis=1, keepdims=True), y))
    spec, _ = compile_program(z._outputs, {"x": (64, 128)}, {"x": "float32"}, {"x": "write"})
    assert spec.report["memory"]["inplace"] >= 1
    params = {k: [("noalias" in p, "align 64" in p) for p in args.split(",")]
              for k, args in _defines(spec.llvm_ir).items()}
    shared = 0
    for kname, slots in _launches(spec.llvm_ir):
        regions = [spec.slots[s] for s in slots]
        for i, (noalias, aligned) in enumerate(params[kname]):
            r = regions[i]
            if aligned:
                assert not r.external and r.offset % 64 == 0
            for j, q in enumerate(regions):
                same = j != i and not r.external and not q.external and r.offset == q.offset
                shared += same
                assert not (same and noalias), "%s: parameter %d shares memory with %d" % (kname, i, j)
    assert shared, "expected an in-place launch"


def test_results_unchanged_with_inplace_and_grad_add():
    rs = np.random.RandomState(3)
    x = mx.sym.Variable("x")
    y = mx.sym.exp(mx.sym.broadcast_mul(mx.sym.sum(x, axis=1, keepdims=True), x) * 0.01)
    z = mx.sym.sqrt(mx.sym.broadcast_add(mx.sym.sum(y, axis=1, keepdims=True), y))
    xv = rs.uniform(-1, 1, (64, 128)).astype(np.float64)
    g = mx.nd.array(np.ones((64, 128)), dtype="float64")
    ex = z.bind(mx.cpu(), {"x": mx.nd.array(xv, dtype="float64")}, args_grad={"x": g}, grad_req="add")
    out = ex.forward(is_train=True)[0].asnumpy()
    yv = np.exp(xv.sum(axis=1, keepdims=True) * xv * 0.01)
    np.testing.assert_allclose(out, np.sqrt(yv.sum(axis=1, keepdims=True) + yv), rtol=1e-10)
    ex.backward(mx.nd.array(np.zeros((64, 128)), dtype="float64"))
    np.testing.assert_array_equal(g.asnumpy(), 1.0)  # grad_in and grad are one array: add of zero
