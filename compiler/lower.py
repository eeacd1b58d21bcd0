"""Lowering: fused groups of an inferred graph -> kernels, a slot table and launches.

Each group becomes one kernel: the root's stages with every load of a member's
output replaced by the member's expression at that index (members are single
``Compute`` stages by construction of the fusion pass). Kernels are
deduplicated by their structure, operators, attributes and buffer types.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..runtime.errors import MXNetError
from ..runtime.program import SlotSpec
from . import expr as E
from .kernel import Buffer, Compute, Gemm, Kernel, ScatterAdd, stage_exprs
from .ops.random import STREAM
from .symbolic_sizes import slot_shape


@dataclass
class Launch:
    """One kernel call: its slots (one per kernel parameter) and the nodes it computes."""

    kernel: Kernel
    slots: list
    nodes: list

    @property
    def ops(self):
        return [n.op.name for n in self.nodes]


class Lowered:
    """Kernels (deduplicated), slots, and the launches of each program entry.

    sizes: the ``symbolic_sizes.SizeTable`` of a program with run-time sizes, else None."""

    def __init__(self, sizes=None):
        self.kernels = []
        self.slots = []
        self.slot_of = {}  # entry key -> slot index
        self.phases = {}  # entry name -> [Launch]
        self.sizes = sizes
        self._by_key = {}

    def slot(self, key, name, shape, dtype, external):
        if key in self.slot_of:
            return self.slot_of[key]
        self.slot_of[key] = len(self.slots)
        self.slots.append(SlotSpec(name, slot_shape(shape), dtype, external))
        return self.slot_of[key]

    def byte_size(self, i):
        """Slot i's bytes: an int, or (c0, c1) meaning ``c0 + c1*N`` for a symbolic slot."""
        s = self.slots[i]
        return self.sizes.byte_poly(s.shape, s.dtype, "slot %r" % s.name) if s.symbolic else s.nbytes

    def placement(self, i):
        """(scaled, bytes) of an internal slot: see ``symbolic_sizes``."""
        s = self.slots[i]
        return self.sizes.placement(s.shape, s.dtype, "slot %r" % s.name) if s.symbolic else (False, s.nbytes)

    def extent(self, i):
        """(offset, bytes) of slot i's storage with N = 1: where every arena value sits
        relative to the others, for aliasing facts and the report."""
        s = self.slots[i]
        scaled, size = self.placement(i)
        return s.offset + s.offset_scale, size

    def calls(self):
        """``{entry: [(kernel name, slots)]}`` for the code generator."""
        return {p: [(l.kernel.name, l.slots) for l in launches] for p, launches in self.phases.items()}


def lower_node(node, params, ins, outs):
    """``node.op.lower`` on these buffers; a lowering that needs a number for a run-time size
    (an ``expr.Dim``: a dynamic batch) is a NotImplementedError naming the operator and node."""
    if node.op.lower is None:
        raise NotImplementedError("operator %s has no kernel on the CPU backend" % node.op.name)
    try:
        return node.op.lower(params, ins, outs)
    except TypeError as err:
        if all(E.is_static(d) for buf in ins + outs for d in buf.shape):
            raise
        raise NotImplementedError("operator %s (node %r) cannot take its sizes at run time (%s): %s"
                                  % (node.op.name, node.name, ", ".join(str(b.shape) for b in ins), err)) from err


def _inline_producers(stages, producers):
    """Substitute producer expressions into the loads of ``stages`` (recursively)."""
    memo, keys, done = {}, {}, {}

    def go(e):
        # memoised by object: a shared subtree (Philox rounds read each value twice) stays
        # one object instead of growing into a tree exponentially larger than the DAG
        hit = done.get(id(e))
        if hit is not None:
            return hit[1]
        if isinstance(e, E.Load) and id(e.buf) in producers:
            index = [go(i) for i in e.index]
            key = (id(e.buf),) + tuple(E.structural_key(i, keys) for i in index)
            out = memo.get(key)
            if out is None:
                axes, body = producers[id(e.buf)]
                out = go(E.substitute(body, {a.name: i for a, i in zip(axes, index)}))
                memo[key] = out
        else:
            out = E.map_children(e, go)
        done[id(e)] = (e, out)  # keeps e alive so that its id is not reused
        return out

    out = []
    for st in stages:
        if isinstance(st, Compute):
            out.append(Compute(st.out, st.axes, go(st.body)))
        elif isinstance(st, ScatterAdd):
            out.append(ScatterAdd(st.out, st.axes, st.extents, [go(t) for t in st.target], go(st.value)))
        else:
            if any(id(b) in producers for b in getattr(st, "inputs", ())):
                raise AssertionError("fused a producer into a stage that cannot inline it")
            out.append(st)
    return out


def lower_group(group, spec, rng=None, dims=None):
    """Kernel for ``group`` (root last) and the entries bound to its parameters.

    rng: (key variable node, {node uid: stream id}); a random node's lowering gets the key
    buffer as an extra last input and its stream id in ``params[ops.random.STREAM]``.
    dims: the dims buffer of a program with run-time sizes: every kernel takes it last
    among its inputs (its entry in the returned list is None)."""
    member_out = {(n.uid, 0) for n in group[:-1]}
    position = {(n.uid, 0): k for k, n in enumerate(group)}  # wiring keys must not depend on node ids
    ext_bufs, ext_entries, ext_index, virtual = {}, [], {}, {}
    producers = {}
    gemm = None
    wiring = []
    for node in group:
        ins, wires = [], []
        params = node.params
        node_inputs = node.inputs
        if node.op.random and rng is not None:
            params = dict(params, **{STREAM: rng[1][node.uid]})
            node_inputs = list(node_inputs) + [rng[0].out(0)]
        for e in node_inputs:
            key = e.key()
            if key in member_out:
                ins.append(virtual[key])
                wires.append(("m", position[key]))
            else:
                if key not in ext_bufs:
                    s, t = spec(e)
                    ext_index[key] = len(ext_entries)
                    ext_bufs[key] = Buffer("in%d" % len(ext_entries), s, t)
                    ext_entries.append(e)
                ins.append(ext_bufs[key])
                wires.append(("x", ext_index[key]))
        outs = [Buffer("%s_out%d" % (node.name, i), *spec(node.out(i))) for i in range(node.num_outputs)]
        stages = lower_node(node, params, ins, outs)
        if node is group[-1]:
            root_outs, root_stages = outs, stages
        else:
            (st,) = stages
            if isinstance(st, Gemm):
                gemm = st  # the group's root and members become its epilogue
            else:
                producers[id(outs[0])] = (st.axes, st.body)
            virtual[(node.uid, 0)] = outs[0]
        wiring.append((node.op.name, tuple(sorted((k, repr(v)) for k, v in params.items())), tuple(wires)))
    stages = _inline_producers(root_stages, producers)
    if gemm is not None:
        fused = gemm.with_epilogue(stages[0]) if len(stages) == 1 else None
        if fused is None:
            raise AssertionError("fusion grouped a GEMM with a consumer it cannot take as epilogue")
        stages = [fused]
    loaded = E.loaded_buffers([x for st in stages for x in stage_exprs(st)])
    ext_entries = [e for e in ext_entries if id(ext_bufs[e.key()]) in loaded]  # shape-only inputs need no slot
    inputs = [ext_bufs[e.key()] for e in ext_entries]
    if dims is not None:
        inputs.append(dims)
        ext_entries.append(None)
    kernel = Kernel(group[-1].op.name, inputs, root_outs, stages, dims=dims)
    key = (tuple(wiring), tuple((b.shape, b.dtype) for b in kernel.params))
    return kernel, ext_entries, key


def kernel_name(group, index):
    ops = [n.op.name.strip("_") for n in group]
    return ("fused_%s_%d" if len(ops) > 1 else "%s_%d") % ("_".join(ops[:6]), index)


def lower_graph(graph, shapes, dtypes, external_outputs, phases, rng=None, sizes=None):
    """``external_outputs``: entry key -> slot name; ``phases``: [(entry name, [group])];
    ``rng``: (key variable node, {random node uid: stream id}) when the graph samples (its
    shape and dtype are in ``shapes``/``dtypes``): the key becomes an external slot.
    ``sizes``: the SizeTable of shapes holding ``expr.Dim`` sizes; its dims array becomes an
    external slot every kernel reads."""
    low = Lowered(sizes)
    dims = sizes.buffer if sizes is not None else None

    def spec(e):
        s, t = shapes.get(e.key()), dtypes.get(e.key())
        if s is None or t is None:
            what = "operator " + e.node.op.name if e.node.op else "variable"
            raise MXNetError("cannot compile: the shape or dtype of output %d of %s %r is unknown"
                             % (e.index, what, e.node.name))
        return tuple(s), t

    for n in graph.variables() + ([rng[0]] if rng is not None else []):
        low.slot(n.out(0).key(), n.name, *spec(n.out(0)), True)
    nodes = {n.uid: n for n in graph.nodes}
    for (uid, idx), name in external_outputs.items():
        low.slot((uid, idx), name, *spec(nodes[uid].out(idx)), True)
    if dims is not None:
        low.slot(dims.name, dims.name, dims.shape, dims.dtype, True)
    for entry_name, groups in phases:
        launches = []
        for group in groups:
            kernel, entries, key = lower_group(group, spec, rng, dims)
            known = low._by_key.get(key)
            if known is None:
                kernel.name = kernel_name(group, len(low.kernels))
                low._by_key[key] = kernel
                low.kernels.append(kernel)
            else:
                kernel = known
            root = group[-1]
            slots = [low.slot_of[e.key() if e is not None else dims.name] for e in entries]
            for i in range(root.num_outputs):
                s, t = spec(root.out(i))
                slots.append(low.slot((root.uid, i), "%s_out%d" % (root.name, i), s, t, False))
            launches.append(Launch(kernel, slots, group))
        low.phases[entry_name] = launches
    return low


def plan_naive(low):
    """One aligned region per internal slot; the baseline the memory planner is measured against."""
    from ..runtime.program import ALIGN
    offset, scaled_slots = [0, 0], []  # fixed arena bytes, scaled arena bytes per unit of N
    for i, s in enumerate(low.slots):
        if not s.external:
            scaled, size = low.placement(i)
            if scaled:
                s.offset_scale = offset[1]
                scaled_slots.append(s)
            else:
                s.offset = offset[0]
            offset[scaled] += -(-max(size, 1) // ALIGN) * ALIGN
    for s in scaled_slots:  # the scaled arena follows the fixed one
        s.offset = offset[0]
    return {"arena_bytes": offset[0], "arena_scale": offset[1], "naive_bytes": offset[0] + offset[1],
            "inplace": 0, "reused": 0}
