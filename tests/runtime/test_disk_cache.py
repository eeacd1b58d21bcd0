"""The on-disk object cache: hits in fresh processes, recovery from bad files, disabled mode."""

import numpy as np

from kiln.runtime import llvm_jit
from tests.fresh_process import run_fresh
from tests.runtime.test_program import IR

SCRIPT = r"""
import json, time
import numpy as np
import kiln as mx
from kiln.runtime import llvm_jit
t0 = time.perf_counter()
net = mx.sym.Variable("data")
for i in range(4):
    net = mx.sym.Activation(mx.sym.FullyConnected(net, num_hidden=16), act_type="relu")
net = mx.sym.SoftmaxOutput(net, name="softmax")
ex = net.simple_bind(mx.cpu(), data=(8, 16))
bind = time.perf_counter() - t0
ex.arg_dict["data"][:] = 1.0
for name, arr in ex.arg_dict.items():
    if name.endswith("weight"):
        arr[:] = 0.05
ex.forward(is_train=True)
ex.backward()
m = ex._program.module
print(json.dumps({"from_cache": m.from_cache, "jit_seconds": m.compile_seconds, "bind_seconds": bind,
                  "stats": llvm_jit.cache_stats(), "out": ex.outputs[0].asnumpy().tolist()}))
"""


def _fresh_process(cache_dir):
    return run_fresh(SCRIPT, cache_dir)


def test_second_process_loads_from_disk(tmp_path):
    cold = _fresh_process(tmp_path)
    warm = _fresh_process(tmp_path)
    assert not cold["from_cache"] and cold["stats"]["misses"] == 1
    assert warm["from_cache"] and warm["stats"]["disk_hits"] == 1 and warm["stats"]["misses"] == 0
    assert warm["out"] == cold["out"]
    assert len(list(tmp_path.glob("*.kobj"))) == 1
    print("cold JIT %.3fs (bind %.3fs), disk load %.3fs (bind %.3fs)"
          % (cold["jit_seconds"], cold["bind_seconds"], warm["jit_seconds"], warm["bind_seconds"]))


def _double(module):
    x = np.arange(6, dtype=np.float32)
    y = np.zeros(6, np.float32)
    table = (llvm_jit.ctypes.c_void_p * 2)(x.ctypes.data, y.ctypes.data)
    module.entry("double")(llvm_jit.ctypes.addressof(table))
    np.testing.assert_array_equal(y, 2 * x)


def test_corrupt_and_truncated_files_are_rebuilt(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    assert not llvm_jit.JitModule(IR).from_cache
    (path,) = tmp_path.glob("*.kobj")
    good = path.read_bytes()
    assert llvm_jit.JitModule(IR).from_cache
    flipped = bytearray(good)
    flipped[-10] ^= 0xFF
    for bad in (good[:len(good) // 2], bytes(flipped), b"", b"KILNOBJ\n" + b"\0" * 200):
        path.write_bytes(bad)
        errors = llvm_jit.cache_stats()["disk_errors"]
        mod = llvm_jit.JitModule(IR)
        assert not mod.from_cache and llvm_jit.cache_stats()["disk_errors"] == errors + 1
        _double(mod)
        assert path.read_bytes() == good  # rewritten
    assert "corrupt or truncated" in caplog.text
    mod = llvm_jit.JitModule(IR)
    assert mod.from_cache
    _double(mod)


def test_key_covers_ir_and_opt_level():
    keys = {llvm_jit.cache_key(IR, 3), llvm_jit.cache_key(IR, 2), llvm_jit.cache_key(IR + "\n", 3)}
    assert len(keys) == 3


def test_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("KILN_DISABLE_DISK_CACHE", "1")
    assert llvm_jit.cache_dir() is None
    assert not llvm_jit.JitModule(IR).from_cache and not llvm_jit.JitModule(IR).from_cache
    monkeypatch.delenv("KILN_DISABLE_DISK_CACHE")
    monkeypatch.setenv("KILN_CACHE_DIR", "")
    assert llvm_jit.cache_dir() is None
    _double(llvm_jit.JitModule(IR))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_directory_still_compiles(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("KILN_CACHE_DIR", str(blocker / "cache"))
    _double(llvm_jit.JitModule(IR))
    assert "cannot write" in caplog.text
