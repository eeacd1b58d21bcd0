"""The graph-level program cache: memory and disk hits, key coverage, bad files rebuilt."""
import logging


import kiln as mx
from kiln.compiler import program_cache
from kiln.compiler.pipeline import compile_program
from kiln.runtime import llvm_jit
from tests.fresh_process import run_fresh


def _mlp(layers=3, prefix=""):
    net = mx.sym.Variable("data")
    for i in range(layers):
        net = mx.sym.Activation(mx.sym.FullyConnected(net, num_hidden=16, name="%sfc%d" % (prefix, i)),
                                act_type="relu", name="%srelu%d" % (prefix, i))
    return mx.sym.SoftmaxOutput(net, name="softmax")


def _compile(sym, batch=8, grad="write", **kw):
    shapes, _, _ = sym.infer_shape(data=(batch, 16))
    names = sym.list_arguments()
    return compile_program(sym._outputs, dict(zip(names, shapes)), {n: "float32" for n in names},
                           {n: grad for n in names if n not in ("data", "softmax_label")}, **kw)


def test_memory_hit_gives_the_same_program(monkeypatch, tmp_path):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    sym = _mlp()
    spec, info = _compile(sym)
    again, info2 = _compile(sym)
    assert spec.report["program_cache"]["hit"] is None
    assert again.report["program_cache"]["hit"] == "memory"
    assert [p["name"] for p in again.report["passes"]] == ["program_cache"]
    assert again.llvm_ir == spec.llvm_ir and again.slots == spec.slots and again.arena_bytes == spec.arena_bytes
    assert info2 == info
    assert again is not spec and again.report is not spec.report
    assert len(list(tmp_path.glob("*.kprog"))) == 1


def test_key_covers_names_shapes_grad_req_and_options(monkeypatch, tmp_path):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    base = _compile(_mlp())[0].llvm_ir
    variants = [_compile(_mlp(prefix="x"))[0], _compile(_mlp(), batch=4)[0], _compile(_mlp(), grad="add")[0],
                _compile(_mlp(), fastmath="none")[0], _compile(_mlp(), disabled_passes=("cse",))[0]]
    for spec in variants:
        assert spec.report["program_cache"]["hit"] is None
    assert all(v.llvm_ir != base for v in variants[1:4])
    monkeypatch.setenv("KILN_FASTMATH", "none")
    assert _compile(_mlp())[0].report["program_cache"]["hit"] == "memory"  # same flags as fastmath="none"


def test_bad_disk_entries_are_ignored_and_rebuilt(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    sym = _mlp(layers=2)
    spec, _ = _compile(sym)
    (path,) = tmp_path.glob("*.kprog")
    key = bytes.fromhex(path.stem)
    good = path.read_bytes()
    for bad in (good[:-10], good[:60] + b"x" + good[61:],
                None):  # truncated, flipped byte, valid header around a malformed program
        if bad is None:
            llvm_jit.write_cache_file(str(path), key, b'{"spec": {"slots": 3}, "info": {}}',
                                      program_cache.MAGIC, program_cache.FORMAT)
        else:
            path.write_bytes(bad)
        program_cache.clear_memory()
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            again, _ = _compile(sym)
        assert again.report["program_cache"]["hit"] is None and again.llvm_ir == spec.llvm_ir
        assert any("recompiling" in r.getMessage() for r in caplog.records)
        assert llvm_jit.read_cache_file(str(path), key, program_cache.MAGIC, program_cache.FORMAT)  # rewritten
    program_cache.clear_memory()
    assert _compile(sym)[0].report["program_cache"]["hit"] == "disk"


def test_disabled_by_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("KILN_DISABLE_PROGRAM_CACHE", "1")
    sym = _mlp(layers=1)
    assert _compile(sym)[0].report["program_cache"]["hit"] is None
    assert _compile(sym)[0].report["program_cache"]["hit"] is None
    assert not list(tmp_path.glob("*.kprog"))


SCRIPT = r"""
import json, time
import numpy as np
import kiln as mx
net = mx.sym.Variable("data")
for i in range(20):
    net = mx.sym.Activation(mx.sym.FullyConnected(net, num_hidden=64), act_type="relu")
net = mx.sym.SoftmaxOutput(net, name="softmax")
t0 = time.perf_counter()
ex = net.simple_bind(mx.cpu(), data=(32, 64))
bind = time.perf_counter() - t0
rs = np.random.RandomState(0)
for name, arr in ex.arg_dict.items():
    arr[:] = rs.uniform(-0.2, 0.2, arr.shape)
ex.forward(is_train=True)
ex.backward()
rep = ex.compile_report()
print(json.dumps({"bind": bind, "hit": rep.program_cache.get("hit"), "jit_hit": rep.jit["cache_hit"],
                  "out": ex.outputs[0].asnumpy().tolist(), "text": str(rep),
                  "grads": [float(np.abs(g.asnumpy()).sum()) for g in ex.grad_dict.values()]}))
"""


def _fresh_process(cache_dir):
    return run_fresh(SCRIPT, cache_dir)


def test_second_process_skips_the_compiler(tmp_path):
    cold = _fresh_process(tmp_path)
    warm = _fresh_process(tmp_path)
    assert cold["hit"] is None and not cold["jit_hit"]
    assert warm["hit"] == "disk" and warm["jit_hit"]
    assert "program from the disk cache" in warm["text"]
    assert warm["out"] == cold["out"] and warm["grads"] == cold["grads"]
    print("20-layer MLP bind: cold %.3fs, warm process %.3fs" % (cold["bind"], warm["bind"]))
