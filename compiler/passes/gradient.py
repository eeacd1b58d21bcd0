"""Reverse-mode differentiation as a graph transformation.

Every operator declares its gradient as a graph of other operators, so the
backward graph is an ordinary graph: it is inferred, expanded, lowered and
planned together with the forward graph, and can be differentiated again.
"""
from __future__ import annotations

from ...runtime.errors import MXNetError
from ..builder import Builder
from ..graph import Entry


def _total(b, entries):
    if not entries:
        return None
    if len(entries) == 1:
        return entries[0]
    if len(entries) == 2:
        return b.add(entries[0], entries[1])
    return b.op("add_n", *entries, num_args=len(entries))


def gradient(graph, wrt, head_grads):
    """Gradient entries of ``graph.outputs`` (seeded with ``head_grads``) w.r.t. variable
    nodes ``wrt``; a variable the outputs do not depend on gets ``zeros_like``."""
    grads = {}
    for head, hg in zip(graph.outputs, head_grads):
        if hg is not None:
            grads.setdefault(head.key(), []).append(hg)
    needed = _depends_on(graph, {n.uid for n in wrt})
    for node in reversed(graph.nodes):
        if node.is_variable or node.uid not in needed:
            continue
        pending = [grads.get((node.uid, i)) for i in range(node.num_outputs)]
        if not any(pending):
            continue
        b = Builder(node.name + "_backward")
        ogs = [_total(b, g) if g else None for g in pending]
        ogs = [g if g is not None else b.zeros_like(Entry(node, i)) for i, g in enumerate(ogs)]
        if node.op.gradient is None:
            raise MXNetError("operator %s (node %r) has no gradient" % (node.op.name, node.name))
        in_grads = node.op.gradient(b, node, ogs)
        if len(in_grads) != len(node.inputs):
            raise AssertionError("gradient of %s gave %d entries for %d inputs"
                                 % (node.op.name, len(in_grads), len(node.inputs)))
        for e, g in zip(node.inputs, in_grads):
            if g is not None and e.node.uid in needed:
                grads.setdefault(e.key(), []).append(g)
    out = []
    for v in wrt:
        b = Builder(v.name + "_grad")
        g = _total(b, grads.get((v.uid, 0), []))
        out.append(g if g is not None else b.zeros_like(Entry(v, 0)))
    return out


def _depends_on(graph, var_ids):
    """Nodes from which some variable in ``var_ids`` is reachable (gradient flows there)."""
    needed = set()
    for node in graph.nodes:
        if node.uid in var_ids or any(e.node.uid in needed for e in node.inputs):
            needed.add(node.uid)
    return needed
