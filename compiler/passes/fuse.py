"""Fusion: partition operator nodes into groups that become one kernel each.

A group is a root (its output is written to memory) plus producers that are
computed inside the root's loops by substituting their expressions into the
root's loads (TVM's compute_inline). A producer joins the group of its
consumers when *all* its consumers are already in that group, so every path
from a member leaves the group through the root and no cycle can form;
diamonds fuse. Producers that contain a reduction (dot, sum) join only a
consumer that reads each of their elements once (elementwise or broadcast of
the same shape: the epilogue; a GEMM stage takes such consumers as its
epilogue, applied as each output tile is stored), and nothing is substituted into opaque
consumers (GEMM, convolution, pooling), which would recompute it per tap.
"""
from __future__ import annotations

from .. import expr as E
from ..kernel import Buffer, Compute, Gemm, stage_exprs
from ..lower import lower_node

MAX_GROUP_OPS = 32
MAX_GROUP_INPUTS = 16
READS_ONCE_KINDS = ("elementwise", "broadcast", "injective", "reduce")


class Probe:
    """Each node lowered once on stand-in buffers: its stages and which inputs it reads."""

    def __init__(self, shapes, dtypes):
        self.shapes, self.dtypes = shapes, dtypes
        self._cache = {}

    def _lower(self, node):
        hit = self._cache.get(node.uid)
        if hit is None:
            ins = [Buffer("in%d" % i, self.shapes[e.key()], self.dtypes[e.key()]) for i, e in enumerate(node.inputs)]
            outs = [Buffer("out%d" % i, self.shapes[(node.uid, i)], self.dtypes[(node.uid, i)])
                    for i in range(node.num_outputs)]
            stages = lower_node(node, node.params, ins, outs) if node.op.lower is not None else None
            hit = self._cache[node.uid] = (ins, outs, stages)
        return hit

    def single_compute(self, node):
        """The node's lone ``Compute`` stage when it lowers to exactly one, else None."""
        ins, outs, stages = self._lower(node)
        if node.num_outputs == 1 and stages and len(stages) == 1 and isinstance(stages[0], Compute) \
                and stages[0].out is outs[0]:
            return stages[0]
        return None

    def single_gemm(self, node):
        """The node's lone ``Gemm`` stage writing its output (a GEMM that can take an epilogue)."""
        _, outs, stages = self._lower(node)
        if node.num_outputs == 1 and stages and len(stages) == 1 and isinstance(stages[0], Gemm) \
                and stages[0].out is outs[0] and stages[0].epilogue is None:
            return stages[0]
        return None

    def input_buffer(self, node, position):
        return self._lower(node)[0][position]

    def reads(self, node, position):
        """Whether ``node`` loads its input ``position`` (``*_like`` inputs give only a shape)."""
        ins, _, stages = self._lower(node)
        if stages is None:
            return True
        loaded = E.loaded_buffers([x for st in stages for x in stage_exprs(st)])
        return id(ins[position]) in loaded


def fuse(nodes_by_phase, shapes, dtypes, pinned, enabled=True):
    """Groups (lists of nodes, root last, topological order) per phase.

    ``nodes_by_phase``: [(phase, [op nodes in topological order])]; ``pinned``:
    entry keys that must be materialised (program outputs)."""
    probe = Probe(shapes, dtypes)
    consumers = {}
    for _, nodes in nodes_by_phase:
        for n in nodes:
            for k, e in enumerate(n.inputs):
                if probe.reads(n, k):
                    consumers.setdefault(e.node.uid, []).append(n)
    result = []
    for phase, nodes in nodes_by_phase:
        group_of = {}
        members = {}
        inputs = {}
        for n in reversed(nodes):
            target = _join_target(n, consumers.get(n.uid, []), group_of, members, inputs, shapes, probe,
                                  pinned) if enabled else None
            if target is None:
                group_of[n.uid] = n.uid
                members[n.uid] = [n]
                inputs[n.uid] = {e.key() for e in n.inputs}
            else:
                group_of[n.uid] = target
                members[target].append(n)
                inputs[target] |= {e.key() for e in n.inputs}
                inputs[target].discard((n.uid, 0))
        order = {n.uid: k for k, n in enumerate(nodes)}
        groups = [sorted(m, key=lambda x: order[x.uid]) for m in members.values()]
        groups.sort(key=lambda g: order[g[-1].uid])
        result.append((phase, groups))
    return result


def _join_target(n, users, group_of, members, inputs, shapes, probe, pinned):
    if not users or n.num_outputs != 1 or (n.uid, 0) in pinned:
        return None
    groups = {group_of.get(u.uid) for u in users}
    if len(groups) != 1 or None in groups:
        return None
    target = groups.pop()
    if len(members[target]) >= MAX_GROUP_OPS:
        return None
    if any(u.op.kind not in READS_ONCE_KINDS for u in users):
        return None
    stage = probe.single_compute(n)
    if stage is None:
        return target if _gemm_epilogue_fits(n, users, members[target], shapes, probe) else None
    if E.contains_reduce(stage.body):
        out_shape = shapes[(n.uid, 0)]
        once = len(users) == 1 and users[0].op.kind in ("elementwise", "broadcast") \
            and E.same_shape(shapes[(users[0].uid, 0)], out_shape)
        if not once:
            return None
    new_inputs = (inputs[target] | {e.key() for e in n.inputs}) - {(n.uid, 0)}
    new_inputs -= {(m.uid, 0) for m in members[target]}
    if len(new_inputs) > MAX_GROUP_INPUTS:
        return None
    return target


def _gemm_epilogue_fits(n, users, group, shapes, probe):
    """A GEMM joins as the producer of its consumers' epilogue: its output is one matrix
    (or a batch of them) in row-major order, its only reader reads it at the reader's own
    index, and every member so far is elementwise or broadcast of that shape."""
    gemm = probe.single_gemm(n)
    if gemm is None or len(users) != 1 or gemm.out_view() is None:
        return False
    shape = shapes[(n.uid, 0)]
    if not all(m.op.kind in ("elementwise", "broadcast") and m.num_outputs == 1 and E.same_shape(shapes[(m.uid, 0)], shape)
               and probe.single_compute(m) is not None for m in group):
        return False
    user = users[0]
    stage = probe.single_compute(user)
    return all(_reads_at_own_index(stage, probe.input_buffer(user, k))
               for k, e in enumerate(user.inputs) if e.node is n)


def _reads_at_own_index(stage, buf):
    ok = [True]

    def go(e):
        if isinstance(e, E.Load) and e.buf is buf:
            ok[0] = ok[0] and len(e.index) == len(stage.axes) and all(i is a for i, a in zip(e.index, stage.axes))
        return E.map_children(e, go)
    go(stage.body)
    return ok[0]
