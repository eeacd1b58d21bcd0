"""Rematerialisation: recompute forward values in backward instead of keeping them.

A forward value that backward reads lives in the arena from forward to the
end of backward. This pass gives backward its own copies of forward nodes so
that fewer forward values cross the phase boundary, in two steps:

1. cheap values (elementwise, broadcast or injective nodes without a
   reduction, fusion's notion) get a private copy of their cheap producer
   cone for each backward reader, so fusion computes them inside that
   reader's kernel. A value is recomputed only when the cone's non-cheap
   inputs that do not cross already cost fewer bytes than the value itself:
   ``tanh(dot(x, w) + b)`` is kept, since recomputing it would keep the GEMM
   result instead.
2. with ``mode="checkpoint"`` (what ``remat=True`` means), the remaining
   crossing values are checkpointed as in Chen et al. 2016: walking them in
   forward order, one is kept each time the bytes since the last kept one
   reach ``total / sqrt(count)``; the others are recomputed, GEMMs included,
   from the nearest kept values by one shared backward copy of their
   producers (about one extra forward pass of work, O(sqrt(n)) memory for a
   chain of n layers).

Random operators, operators that mutate auxiliary states and operators with
training gaps are never copied. Forward program outputs and variables are
external memory and cost nothing to read.
"""
from __future__ import annotations

import math

import numpy as np

from .. import expr as E
from ..graph import Entry, Graph, Node, topo_order
from .fuse import MAX_GROUP_OPS, Probe

MODES = ("cheap", "checkpoint")
CHEAP_KINDS = ("elementwise", "broadcast", "injective")


def _recomputable(node):
    return (node.op is not None and node.op.lower is not None and not node.op.random
            and not node.op.aux_inputs(node.params)
            and not node.control_deps)


def rematerialise(graph, n_fwd, shapes, dtypes, mode="checkpoint"):
    """``graph.outputs[:n_fwd]`` are the forward outputs, the rest backward outputs;
    returns the graph with backward readers rewired to recomputed copies."""
    fwd_out = graph.outputs[:n_fwd]
    fwd_ids = {n.uid for n in topo_order(fwd_out) if n.op is not None}
    bwd_nodes = [n for n in graph.nodes if n.op is not None and n.uid not in fwd_ids]
    if not bwd_nodes:
        return graph
    probe = Probe(shapes, dtypes)
    free = {e.key() for e in fwd_out}

    def internal(e):
        return e.node.uid in fwd_ids and e.key() not in free

    def nbytes(key):
        return int(np.prod(shapes[key], dtype=np.int64)) * np.dtype(dtypes[key]).itemsize

    def cheap(node):
        if not _recomputable(node) or node.op.kind not in CHEAP_KINDS:
            return False
        stage = probe.single_compute(node)
        return stage is not None and not E.contains_reduce(stage.body)

    def read_inputs(node):
        return [e for k, e in enumerate(node.inputs) if probe.reads(node, k)]

    def cone(e):
        """Internal entries not kept so far at which recomputing ``e`` from cheap nodes stops
        (None if that takes too many nodes)."""
        nodes, stops, stack = set(), set(), [e]
        while stack:
            x = stack.pop()
            if not internal(x) or x.node.uid in nodes or (x.key() != e.key() and x.key() in kept):
                continue
            if not cheap(x.node):
                stops.add(x.key())
                continue
            nodes.add(x.node.uid)
            if len(nodes) > MAX_GROUP_OPS:
                return None
            stack.extend(read_inputs(x.node))
        return stops

    crossing = {}
    for n in bwd_nodes:
        for e in read_inputs(n):
            if internal(e):
                crossing[e.key()] = e
    order = {n.uid: k for k, n in enumerate(graph.nodes)}
    by_position = sorted(crossing.values(), key=lambda e: (order[e.node.uid], e.index))

    kept = set(crossing)
    per_reader = set()
    for e in by_position:
        if not cheap(e.node):
            continue
        stops = cone(e)
        if stops is not None and sum(nbytes(k) for k in stops) < nbytes(e.key()):
            per_reader.add(e.key())
            kept.discard(e.key())
            kept |= stops
    if mode == "checkpoint":
        kept -= _recomputed(kept, graph.nodes, order, nbytes)

    shared = {}

    def value(e):
        """What backward reads for forward entry ``e``: itself if kept, else a shared copy."""
        node = e.node
        if not internal(e) or e.key() in kept or not _recomputable(node):
            return e
        copy = shared.get(node.uid)
        if copy is None:
            inputs = [value(x) if probe.reads(node, k) else x for k, x in enumerate(node.inputs)]
            copy = shared[node.uid] = Node(node.op, node.name + "_remat", node.attrs, inputs, params=node.params)
        return Entry(copy, e.index)

    def private(e, memo):
        """A copy of the cheap cone of ``e`` for one backward reader."""
        if not internal(e) or not cheap(e.node) or e.key() in kept:
            return value(e)
        node = e.node
        if node.uid not in memo:
            inputs = [private(x, memo) if probe.reads(node, k) else x for k, x in enumerate(node.inputs)]
            memo[node.uid] = Node(node.op, node.name + "_remat", node.attrs, inputs, params=node.params)
        return Entry(memo[node.uid], e.index)

    mapping = {}
    for n in bwd_nodes:
        memo = {}
        inputs = []
        for k, e in enumerate(n.inputs):
            if e.node.uid in mapping:
                e = Entry(mapping[e.node.uid], e.index)
            elif internal(e) and probe.reads(n, k):
                e = private(e, memo) if e.key() in per_reader else value(e)
            inputs.append(e)
        if inputs != n.inputs:
            mapping[n.uid] = Node(n.op, n.name, n.attrs, inputs, params=n.params)
    return Graph([Entry(mapping.get(e.node.uid, e.node), e.index) for e in graph.outputs])


def _recomputed(kept, nodes, order, nbytes):
    """Crossing entries to recompute instead of keeping: all but one per ``total / sqrt(count)``
    bytes, in forward order; entries of nodes that cannot be copied stay."""
    node_of = {n.uid: n for n in nodes}
    keys = sorted(kept, key=lambda k: (order[k[0]], k[1]))
    if len(keys) < 2:
        return set()
    budget = sum(nbytes(k) for k in keys) / math.sqrt(len(keys))
    out, acc = set(), 0
    for key in keys:
        acc += nbytes(key)
        if acc >= budget or not _recomputable(node_of[key[0]]):
            acc = 0
        else:
            out.add(key)
    return out
