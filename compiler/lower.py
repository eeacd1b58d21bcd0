"""Lowering: an inferred, expanded graph -> kernels, a slot table and entry call lists."""
from __future__ import annotations

from ..runtime.errors import MXNetError
from ..runtime.program import ALIGN, SlotSpec
from .kernel import Buffer, Kernel


def kernel_for(node, in_specs, out_specs):
    """One kernel for one operator node; ``*_specs`` are (shape, dtype) pairs."""
    op = node.op
    if op.lower is None:
        raise NotImplementedError("operator %s has no kernel on the CPU backend" % op.name)
    ins = [Buffer("in%d" % i, s, t) for i, (s, t) in enumerate(in_specs)]
    outs = [Buffer("out%d" % i, s, t) for i, (s, t) in enumerate(out_specs)]
    stages = op.lower(node.params, ins, outs)
    return Kernel(op.name, ins, outs, stages)


def _kernel_key(node, in_specs, out_specs):
    return (node.op.name, tuple(sorted((k, repr(v)) for k, v in node.params.items())),
            tuple(in_specs), tuple(out_specs))


class Lowered:
    """Kernels (deduplicated), slots, and per-entry call lists."""

    def __init__(self):
        self.kernels = []
        self.slots = []
        self.slot_of = {}  # entry key -> slot index
        self.calls = {}  # entry name -> [(kernel name, [slot])]
        self._by_key = {}

    def slot(self, key, name, shape, dtype, external):
        if key in self.slot_of:
            return self.slot_of[key]
        self.slot_of[key] = len(self.slots)
        self.slots.append(SlotSpec(name, tuple(shape), dtype, external))
        return self.slot_of[key]

    def kernel(self, node, in_specs, out_specs):
        key = _kernel_key(node, in_specs, out_specs)
        k = self._by_key.get(key)
        if k is None:
            k = kernel_for(node, in_specs, out_specs)
            k.name = "k%d_%s" % (len(self.kernels), node.op.name.strip("_"))
            self._by_key[key] = k
            self.kernels.append(k)
        return k

    def plan_arena(self):
        """Naive plan: one aligned region per internal slot (reuse comes with the planner)."""
        offset = 0
        for s in self.slots:
            if not s.external:
                s.offset = offset
                offset += -(-max(s.nbytes, 1) // ALIGN) * ALIGN
        return offset


def lower_graph(graph, shapes, dtypes, external_outputs, phases):
    """``external_outputs``: entry key -> slot name; ``phases``: [(entry name, [node])]."""
    low = Lowered()

    def spec(e):
        s, t = shapes.get(e.key()), dtypes.get(e.key())
        if s is None or t is None:
            raise MXNetError("cannot compile: the shape or dtype of %s (output %d of %r) is unknown"
                             % ("operator " + e.node.op.name if e.node.op else "variable", e.index, e.node.name))
        return tuple(s), t

    for n in graph.variables():
        s, t = spec(n.out(0))
        low.slot(n.out(0).key(), n.name, s, t, True)
    for key, name in external_outputs.items():
        node_uid, idx = key
        node = next(n for n in graph.nodes if n.uid == node_uid)
        s, t = spec(node.out(idx))
        low.slot(key, name, s, t, True)
    for entry_name, nodes in phases:
        calls = []
        for node in nodes:
            in_specs = [spec(e) for e in node.inputs]
            out_specs = [spec(node.out(i)) for i in range(node.num_outputs)]
            k = low.kernel(node, in_specs, out_specs)
            args = [low.slot_of[e.key()] for e in node.inputs]
            for i, (s, t) in enumerate(out_specs):
                args.append(low.slot((node.uid, i), "%s_out%d" % (node.name, i), s, t, False))
            calls.append((k.name, args))
        low.calls[entry_name] = calls
    return low
