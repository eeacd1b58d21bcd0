"""Expand composite operators (softmax, FullyConnected, losses) into primitive ones."""
from __future__ import annotations

from ...runtime.errors import MXNetError
from ..builder import Builder
from ..graph import rewrite
from .infer import infer_shapes


def expand_composites(graph, keep_differentiable=False, var_shapes=None):
    """Replace every composite node by its expansion, repeatedly (expansions may nest).

    With ``keep_differentiable`` composites that declare their own gradient are
    kept, so the gradient pass uses the declared rule (SoftmaxOutput's is not the
    derivative of its forward). Operators with ``expand_shapes`` get their inputs'
    shapes, inferred from ``var_shapes`` (variable name -> shape)."""
    shapes = {}

    def fn(node, inputs):
        op = node.op
        if op.kind != "composite" or (keep_differentiable and op.gradient is not None):
            return None
        b = Builder(node.name)
        if not op.expand_shapes:
            return list(op.expand(b, inputs, node.params))
        in_shapes = [shapes.get(e.key()) for e in node.inputs]
        if any(s is None for s in in_shapes):
            raise MXNetError("operator %s (node %r): expanding it needs its input shapes, which are not known "
                             "here" % (op.name, node.name))
        return list(op.expand(b, inputs, node.params, in_shapes))

    for _ in range(16):
        if any(n.op is not None and n.op.expand_shapes for n in graph.nodes):
            shapes = infer_shapes(graph, var_shapes or {})
        graph, _ = rewrite(graph, fn)
        if not any(n.op is not None and n.op.kind == "composite" and not
                   (keep_differentiable and n.op.gradient is not None) for n in graph.nodes):
            return graph
    raise RuntimeError("composite expansion did not terminate")
