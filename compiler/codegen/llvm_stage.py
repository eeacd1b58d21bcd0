"""What the hand-written stage emitters (``llvm_sort``, ``llvm_ctc``) share: the stage and
its helper function's emitter, and short forms of the IR they write most (i64 constants,
element pointers, no-wrap index arithmetic, mutable i64 variables)."""
from __future__ import annotations

import llvmlite.ir as ir

I64 = ir.IntType(64)


class StageEmitter:
    def __init__(self, em, st):
        self.em, self.b, self.st = em, em.b, st

    def c(self, v):
        return ir.Constant(I64, int(v))

    def at(self, ptr, off, ty):
        return self.b.gep(ptr, [off], inbounds=True, source_etype=ty)

    def add(self, x, y):
        return self.b.add(x, y, flags=("nsw",))

    def mul(self, x, y):
        return self.b.mul(x, y, flags=("nsw",))

    def var(self, init, ty=I64):
        """A stack variable holding ``init`` (promoted to a register by the optimiser)."""
        slot = self.em.alloca(ty)
        self.b.store(init, slot)
        return slot
