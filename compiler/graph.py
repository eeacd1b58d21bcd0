"""The graph IR: nodes, entries and graphs, as MXNet's nnvm describes them.

A node is a variable (``op is None``) or an operator application. Operator
attributes are kept as MXNet keeps them, a ``str -> str`` map, so they
round-trip through symbol JSON unchanged; ``node.params`` is the typed view
parsed once by the operator's schema.
"""
from __future__ import annotations

import itertools

from ..runtime.errors import MXNetError

_ids = itertools.count()


class Node:
    __slots__ = ("op", "name", "attrs", "inputs", "params", "control_deps", "uid", "__weakref__")

    def __init__(self, op, name, attrs=None, inputs=(), params=None):
        self.op = op  # OpDef or None for a variable
        self.name = name
        self.attrs = dict(attrs or {})
        self.inputs = list(inputs)  # list[Entry]
        self.params = params if params is not None else (op.parse_attrs(self.attrs, name) if op else {})
        self.control_deps = []
        self.uid = next(_ids)

    @property
    def is_variable(self):
        return self.op is None

    @property
    def num_outputs(self):
        return 1 if self.op is None else self.op.num_outputs(self.params)

    @property
    def num_visible_outputs(self):
        return 1 if self.op is None else self.op.num_visible_outputs(self.params)

    def output_names(self):
        if self.op is None:
            return [self.name]
        names = self.op.output_names(self.params)
        if names is None:
            n = self.num_visible_outputs
            names = ["output"] if n == 1 else ["output%d" % i for i in range(n)]
        return ["%s_%s" % (self.name, s) for s in names]

    def out(self, index=0):
        return Entry(self, index)

    def __repr__(self):
        return "Node(%s, %s)" % (self.op.name if self.op else "null", self.name)


class Entry:
    """One output of one node."""

    __slots__ = ("node", "index")

    def __init__(self, node, index=0):
        self.node = node
        self.index = index

    def key(self):
        return (self.node.uid, self.index)

    def __eq__(self, other):
        return isinstance(other, Entry) and self.node is other.node and self.index == other.index

    def __hash__(self):
        return hash((self.node.uid, self.index))

    def __repr__(self):
        return "Entry(%s[%d])" % (self.node.name, self.index)


def topo_order(outputs):
    """Post-order DFS from the outputs, inputs first in order (MXNet's node order)."""
    order, seen = [], set()
    for head in outputs:
        root = head.node
        if root.uid in seen:
            continue
        stack = [(root, iter(list(root.inputs) + [Entry(c) for c in root.control_deps]))]
        seen.add(root.uid)
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                order.append(node)
            elif nxt.node.uid not in seen:
                seen.add(nxt.node.uid)
                child = nxt.node
                stack.append((child, iter(list(child.inputs) + [Entry(c) for c in child.control_deps])))
    return order


class Graph:
    """Output entries plus the nodes reachable from them, in topological order."""

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.nodes = topo_order(self.outputs)

    def variables(self):
        return [n for n in self.nodes if n.is_variable]

    def aux_variable_ids(self):
        """uids of variables that some operator mutates (auxiliary states)."""
        aux = set()
        for n in self.nodes:
            if n.op is not None:
                for i in n.op.aux_inputs(n.params):
                    if i < len(n.inputs):
                        aux.add(n.inputs[i].node.uid)
        return aux

    def arguments(self):
        aux = self.aux_variable_ids()
        return [n for n in self.variables() if n.uid not in aux]

    def auxiliary_states(self):
        aux = self.aux_variable_ids()
        return [n for n in self.variables() if n.uid in aux]

    def consumers(self):
        """entry key -> list of (node, input position)."""
        users = {}
        for n in self.nodes:
            for pos, e in enumerate(n.inputs):
                users.setdefault(e.key(), []).append((n, pos))
        return users

    def find_variable(self, name):
        for n in self.variables():
            if n.name == name:
                return n
        raise MXNetError("graph has no variable named %r" % name)


def rewrite(graph, fn):
    """Copy ``graph`` node by node; ``fn(node, new_inputs)`` may return replacement
    output entries (list) or None to keep a copy of the node. User graphs are
    never mutated: every pass works on copies."""
    mapping = {}
    for node in graph.nodes:
        inputs = [mapping[e.key()] for e in node.inputs]
        if node.is_variable:
            outs = [Entry(node, 0)]
        else:
            outs = fn(node, inputs)
            if outs is None:
                copy = Node(node.op, node.name, node.attrs, inputs, params=node.params)
                outs = [Entry(copy, i) for i in range(node.num_outputs)]
        for i, e in enumerate(outs):
            mapping[(node.uid, i)] = e
    return Graph([mapping[e.key()] for e in graph.outputs]), mapping
