"""Expand composite operators (softmax, FullyConnected, losses) into primitive ones."""
from __future__ import annotations

from ..builder import Builder
from ..graph import rewrite


def expand_composites(graph, keep_differentiable=False):
    """Replace every composite node by its expansion, repeatedly (expansions may nest).

    With ``keep_differentiable`` composites that declare their own gradient are
    kept, so the gradient pass uses the declared rule (SoftmaxOutput's is not the
    derivative of its forward)."""
    def fn(node, inputs):
        op = node.op
        if op.kind != "composite" or (keep_differentiable and op.gradient is not None):
            return None
        b = Builder(node.name)
        outs = op.expand(b, inputs, node.params)
        return list(outs)

    for _ in range(16):
        graph, _ = rewrite(graph, fn)
        if not any(n.op is not None and n.op.kind == "composite" and not
                   (keep_differentiable and n.op.gradient is not None) for n in graph.nodes):
            return graph
    raise RuntimeError("composite expansion did not terminate")
