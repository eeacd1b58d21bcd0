"""The runtime alone: JIT a hand-written LLVM program, bind buffers, run entries."""
import numpy as np
import pytest

from kiln.runtime import MXNetError, ProgramSpec, SlotSpec, load_program
from kiln.runtime import llvm_jit

IR = r"""
define void @double(ptr %table) {
entry:
  %pin = getelementptr inbounds ptr, ptr %table, i64 0
  %in = load ptr, ptr %pin
  %pout = getelementptr inbounds ptr, ptr %table, i64 1
  %out = load ptr, ptr %pout
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i2, %loop]
  %a = getelementptr inbounds float, ptr %in, i64 %i
  %v = load float, ptr %a
  %w = fmul float %v, 2.0
  %b = getelementptr inbounds float, ptr %out, i64 %i
  store float %w, ptr %b
  %i2 = add i64 %i, 1
  %c = icmp slt i64 %i2, 6
  br i1 %c, label %loop, label %done
done:
  ret void
}
"""


def _spec():
    slots = [SlotSpec("x", (2, 3), "float32", True), SlotSpec("y", (2, 3), "float32", True)]
    return ProgramSpec("double", IR, ["double"], slots, 0)


def test_run_and_cache():
    prog = load_program(_spec())
    size = llvm_jit.cache_size()
    prog2 = load_program(_spec())
    assert prog.module is prog2.module and llvm_jit.cache_size() == size
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.zeros((2, 3), np.float32)
    prog.bind("x", x)
    prog.bind("y", y)
    prog.run("double")
    np.testing.assert_array_equal(y, 2 * x)


def test_unbound_and_unknown():
    prog = load_program(_spec())
    with pytest.raises(MXNetError, match="not bound"):
        prog.run("double")
    with pytest.raises(MXNetError, match="no external slot"):
        prog.bind("z", np.zeros((2, 3), np.float32))
    prog.bind("x", np.zeros((2, 3), np.float32))
    prog.bind("y", np.zeros((2, 3), np.float32))
    with pytest.raises(MXNetError, match="no entry"):
        prog.run("triple")


def test_resized_array_is_caught_at_run():
    prog = load_program(_spec())
    x = np.zeros((2, 3), np.float32)
    prog.bind("x", x)
    prog.bind("y", np.zeros((2, 3), np.float32))
    x.resize((3, 3), refcheck=False)
    with pytest.raises(MXNetError, match="shape"):
        prog.run("double")
