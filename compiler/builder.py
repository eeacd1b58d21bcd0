"""Build operator nodes from inside the compiler (gradients, composite expansion)."""
from __future__ import annotations

import itertools

from .graph import Entry, Node
from .ops import registry


class Builder:
    """Creates nodes named ``<prefix>_<op hint><n>`` so generated graphs stay readable."""

    def __init__(self, prefix):
        self.prefix = prefix
        self._count = itertools.count()
        self.created = []

    def node(self, opname, inputs, attrs=None, name=None):
        op = registry.get(opname)
        name = name or "%s_%s%d" % (self.prefix, op.hint.strip("_"), next(self._count))
        node = Node(op, name, op.format_attrs(attrs or {}, name), inputs)
        self.created.append(node)
        return node

    def op(self, opname, *inputs, **attrs):
        """One-output operator applied to entries; returns its Entry."""
        return Entry(self.node(opname, inputs, attrs), 0)

    def outputs(self, opname, *inputs, **attrs):
        n = self.node(opname, inputs, attrs)
        return [Entry(n, i) for i in range(n.num_outputs)]

    # shorthands used by many gradients
    def mul(self, a, b):
        return self.op("elemwise_mul", a, b)

    def add(self, a, b):
        return self.op("elemwise_add", a, b)

    def sub(self, a, b):
        return self.op("elemwise_sub", a, b)

    def div(self, a, b):
        return self.op("elemwise_div", a, b)

    def neg(self, a):
        return self.op("negative", a)

    def scalar(self, opname, a, scalar):
        return self.op(opname, a, scalar=scalar)

    def zeros_like(self, a):
        return self.op("zeros_like", a)

    def ones_like(self, a):
        return self.op("ones_like", a)

    def sum_like(self, grad, like):
        """Sum a broadcast gradient back to the shape of ``like``."""
        return self.op("_reduce_sum_like", grad, like)
