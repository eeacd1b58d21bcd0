"""Memory planning: internal slots share one arena by liveness, in place, or as aliases.

The launch order is forward then backward. A value (an internal slot that is
not an alias) lives from the launch that writes it to its last reader; a value
written in forward and read in backward lives to the end of backward, because
backward may run twice after one forward and must find it intact. Freed
regions are reused best-fit with real byte sizes. A launch may write an output
over an input that dies there when its kernel reads that input only at the
output's own index (decided on the kernel IR). Reshape-like launches are
removed and their output slot aliases the input's storage (transitively), the
input living as long as any alias is read. Before placement, each phase's
launches are reordered (dependencies kept) so that values die early: the
gradient pass lists every weight gradient after the whole data-gradient chain,
which would otherwise keep each layer's temporaries alive to the end. External
slots (program inputs and outputs) are never planned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..runtime.errors import MXNetError
from ..runtime.program import ALIGN
from . import expr as E
from .kernel import Compute, stage_exprs
from .lower import plan_naive

RESHAPE_OPS = frozenset({"Reshape", "Flatten", "expand_dims", "reshape_like", "squeeze"})


@dataclass
class MemoryPlan:
    """``stats`` go to the compile report; ``inplace`` lists (launch position, input slot, output slot)
    over the final forward-then-backward order, for checkers."""

    stats: dict
    inplace: list = field(default_factory=list)


def _aligned(nbytes):
    return -(-max(nbytes, 1) // ALIGN) * ALIGN


def _stage_reads(stage):
    """ids of the buffers a stage reads, loads and whole-buffer operands (GEMM) alike."""
    return E.loaded_buffers(stage_exprs(stage)) | {id(b) for b in getattr(stage, "inputs", ())}


def _loads_only_at(expr, buf, axes):
    """Whether every load of ``buf`` in ``expr`` is at exactly ``axes`` (same Var objects, same order)."""
    seen = set()
    ok = [True]

    def go(x):
        if id(x) in seen or not ok[0]:
            return x
        seen.add(id(x))
        if isinstance(x, E.Load) and x.buf is buf:
            if len(x.index) != len(axes) or any(i is not a for i, a in zip(x.index, axes)):
                ok[0] = False
        E.map_children(x, go)
        return x
    go(expr)
    return ok[0]


def inplace_safe(kernel, k, j):
    """Whether output ``j`` of ``kernel`` may share storage with input ``k``: dst[i] = f(src[i])."""
    src, dst = kernel.inputs[k], kernel.outputs[j]
    if not E.same_shape(src.shape, dst.shape) or np.dtype(src.dtype).itemsize != np.dtype(dst.dtype).itemsize:
        return False
    writers = [s for s, st in enumerate(kernel.stages) if getattr(st, "out", None) is dst]
    if len(writers) != 1:
        return False
    s = writers[0]
    st = kernel.stages[s]
    if not isinstance(st, Compute) or not _loads_only_at(st.body, src, st.axes):
        return False
    return not any(id(src) in _stage_reads(later) for later in kernel.stages[s + 1:])


def _is_pure_copy(launch):
    """A reshape-like launch (its nodes all reshape-like, e.g. Reshape fused into Flatten): one input,
    and a kernel that copies it element for element."""
    kernel = launch.kernel
    if not all(n.op.name in RESHAPE_OPS for n in launch.nodes):
        return False
    if len(kernel.inputs) != 1 or len(kernel.outputs) != 1 or len(kernel.stages) != 1:
        return False
    (st,) = kernel.stages
    src, dst = kernel.inputs[0], kernel.outputs[0]
    return (isinstance(st, Compute) and st.out is dst and isinstance(st.body, E.Load) and st.body.buf is src
            and src.dtype == dst.dtype and src.size == dst.size)


class _Arena:
    """Best-fit allocator over one growing arena; freed neighbours coalesce."""

    def __init__(self):
        self.free = []  # sorted [offset, size]
        self.top = 0

    def alloc(self, size):
        """(offset, whether the region was used before)."""
        fits = [(sz, off, k) for k, (off, sz) in enumerate(self.free) if sz >= size]
        if fits:
            sz, off, k = min(fits)
            if sz == size:
                del self.free[k]
            else:
                self.free[k] = [off + size, sz - size]
            return off, True
        if self.free and sum(self.free[-1]) == self.top:  # grow the free tail
            off = self.free.pop()[0]
            self.top = off + size
            return off, True
        off = self.top
        self.top += size
        return off, False

    def release(self, off, size):
        k = 0
        while k < len(self.free) and self.free[k][0] < off:
            k += 1
        self.free.insert(k, [off, size])
        if k + 1 < len(self.free) and off + size == self.free[k + 1][0]:
            self.free[k][1] += self.free.pop(k + 1)[1]
        if k > 0 and sum(self.free[k - 1]) == off:
            self.free[k - 1][1] += self.free.pop(k)[1]


def _make_aliases(low):
    """Drop reshape-like launches whose output can alias its input; {slot: root slot}."""
    written = {s for launches in low.phases.values() for l in launches for s in l.slots[len(l.kernel.inputs):]}
    alias = {}
    for phase, launches in low.phases.items():
        kept = []
        for launch in launches:
            if _is_pure_copy(launch):
                src, dst = launch.slots
                root = alias.get(src, src)
                rs, ds = low.slots[root], low.slots[dst]
                # an external output is no alias target: its array may change before readers run
                if not ds.external and not (rs.external and root in written) \
                        and low.byte_size(root) == low.byte_size(dst):
                    alias[dst] = root
                    continue
            kept.append(launch)
        low.phases[phase] = kept
    return alias


def _schedule(launches, root, slots, keep, size):
    """Reorder one phase's launches, respecting data dependencies: run the ready launch that
    grows the live internal bytes least (first in the given order on ties), so that e.g. weight
    gradients run as soon as their operands exist instead of keeping them alive to the end.
    ``keep``: values that must outlive the phase."""
    n = len(launches)
    ins = [{root(s) for s in l.slots[:len(l.kernel.inputs)]} for l in launches]
    writer = {s: i for i, l in enumerate(launches) for s in l.slots[len(l.kernel.inputs):]}
    outs = [[s for s in l.slots[len(l.kernel.inputs):] if not slots[s].external] for l in launches]
    readers, dependents, waiting = {}, [[] for _ in range(n)], [0] * n
    for i, reads in enumerate(ins):
        for s in reads:
            readers[s] = readers.get(s, 0) + 1
            if s in writer:
                dependents[writer[s]].append(i)
                waiting[i] += 1

    def growth(i):
        freed = sum(size(s) for s in ins[i]
                    if s in writer and not slots[s].external and s not in keep and readers[s] == 1)
        return sum(size(s) for s in outs[i]) - freed

    ready = [i for i in range(n) if waiting[i] == 0]
    order = []
    while ready:
        i = min(ready, key=lambda k: (growth(k), k))
        ready.remove(i)
        order.append(launches[i])
        for s in ins[i]:
            readers[s] -= 1
        for d in dependents[i]:
            waiting[d] -= 1
            if waiting[d] == 0:
                ready.append(d)
    return order


def plan_memory(low):
    """Plan every internal slot of ``low`` in place (offsets, aliases, dropped copies); a MemoryPlan."""
    naive = plan_naive(low)["naive_bytes"]
    alias = _make_aliases(low)
    used = {l.kernel.name for launches in low.phases.values() for l in launches}
    low.kernels = [k for k in low.kernels if k.name in used]
    slots = low.slots

    def root(s):
        return alias.get(s, s)

    phases = list(low.phases)  # forward, then backward
    placement = {}  # planned slot -> (scaled, aligned bytes or bytes per unit of N)

    def place(s):
        hit = placement.get(s)
        if hit is None:
            scaled, size = low.placement(s)
            hit = placement[s] = (scaled, _aligned(size))
        return hit

    for k, phase in enumerate(phases):
        later = {root(s) for p in phases[k + 1:] for l in low.phases[p] for s in l.slots}
        low.phases[phase] = _schedule(low.phases[phase], root, slots, later, lambda s: place(s)[1])
    order = [(p, l) for p in phases for l in low.phases[p]]
    end = len(order)

    def planned(s):
        return not slots[s].external

    first, last, phase_of = {}, {}, {}
    for t, (phase, launch) in enumerate(order):
        n_in = len(launch.kernel.inputs)
        for s in launch.slots[n_in:]:
            if planned(s) and s not in first:
                first[s], last[s], phase_of[s] = t, t, phase
        for s in map(root, launch.slots[:n_in]):
            if planned(s):
                if s not in first:
                    raise MXNetError("memory planning: internal slot %r is read before it is written"
                                     % slots[s].name)
                last[s] = end if phase_of[s] != phase else max(last.get(s, t), t)

    arenas = (_Arena(), _Arena())  # fixed, scaled (in bytes per unit of N; see symbolic_sizes)
    block = {}  # value slot -> (arena, offset, size)
    inplace, reused = [], 0
    for t, (_, launch) in enumerate(order):
        n_in = len(launch.kernel.inputs)
        roots = [root(s) for s in launch.slots]
        taken = set()
        for j, out in enumerate(launch.slots[n_in:]):
            if not planned(out):
                continue
            scaled, size = place(out)
            donor = next((k for k, src in enumerate(roots[:n_in])
                          if planned(src) and src not in taken and last[src] == t and roots.count(src) == 1
                          and low.byte_size(src) == low.byte_size(out)
                          and inplace_safe(launch.kernel, k, j)), None)
            if donor is not None:
                src = roots[donor]
                taken.add(src)
                block[out] = block[src]
                inplace.append((t, src, out))
                continue
            off, was_used = arenas[scaled].alloc(size)
            reused += was_used
            block[out] = (scaled, off, size)
        for s in set(roots):
            if planned(s) and last[s] == t and s not in taken:
                scaled, off, size = block[s]
                arenas[scaled].release(off, size)
    fixed = arenas[0].top
    for s, spec in enumerate(slots):
        if s in alias:
            spec.alias_of = alias[s]
        if planned(s):
            scaled, off, _ = block.get(alias.get(s, s), (False, 0, 0))
            # a scaled value sits at fixed + off*N: the scaled arena follows the fixed one
            spec.offset, spec.offset_scale = (fixed, off) if scaled else (off, 0)
    stats = {"arena_bytes": fixed, "arena_scale": arenas[1].top, "naive_bytes": naive, "inplace": len(inplace),
             "reused": reused, "aliased": len(alias)}
    return MemoryPlan(stats, inplace)
