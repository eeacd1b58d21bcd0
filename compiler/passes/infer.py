"""Shape and dtype inference over a graph, in both directions, to a fixed point.

Each operator's rule sees every input and output (None when unknown) and may
fill in either side, so weights get their shapes from the data and an
elementwise ``a * b`` learns ``b`` from ``a``. Conflicts raise MXNetError naming
the node, the operator and the shapes involved.
"""
from __future__ import annotations

from ...runtime.errors import MXNetError
from ..ops.shapes import InferError, unify, unify_type


def _describe(node, values, graph_values, what):
    names = node.op.input_names(node.params)
    parts = []
    for k, e in enumerate(node.inputs):
        label = names[k] if k < len(names) else "arg%d" % k
        parts.append("%s=%s" % (label, graph_values.get(e.key())))
    return "%s of operator %s (node %r) with inputs %s" % (what, node.op.name, node.name, ", ".join(parts))


def _run(graph, known, rule_name, merge, max_sweeps=8):
    """Generic fixed point: ``known`` maps entry keys to values (filled in place)."""
    ops = [n for n in graph.nodes if n.op is not None]
    for _ in range(max_sweeps):
        changed = False
        for sweep in (ops, reversed(ops)):
            for node in sweep:
                ins = [known.get(e.key()) for e in node.inputs]
                outs = [known.get((node.uid, i)) for i in range(node.num_outputs)]
                rule = getattr(node.op, rule_name)
                try:
                    new_ins, new_outs = rule(node.params, ins, outs)
                except InferError as err:
                    what = "shape" if rule_name == "infer_shape" else "dtype"
                    raise MXNetError("%s inference failed: %s: %s"
                                     % (what, _describe(node, ins, known, "node"), err)) from None
                for e, old, new in zip(node.inputs, ins, new_ins):
                    changed |= _update(known, e.key(), old, new, merge, node)
                for i, (old, new) in enumerate(zip(outs, new_outs)):
                    changed |= _update(known, (node.uid, i), old, new, merge, node)
        if not changed:
            break
    return known


def _update(known, key, old, new, merge, node):
    if new is None:
        return False
    try:
        merged = merge(old, new)
    except InferError as err:
        raise MXNetError("inference conflict at operator %s (node %r): %s" % (node.op.name, node.name, err)) from None
    if merged != old:
        known[key] = merged
        return True
    return False


def infer_shapes(graph, var_shapes):
    """``var_shapes``: variable name -> shape. Returns entry key -> shape (or None)."""
    known = {}
    for n in graph.variables():
        s = var_shapes.get(n.name)
        if s is not None:
            known[(n.uid, 0)] = tuple(int(d) for d in s)
    return _run(graph, known, "infer_shape", unify)


def infer_types(graph, var_types):
    known = {}
    for n in graph.variables():
        t = var_types.get(n.name)
        if t is not None:
            known[(n.uid, 0)] = t
    return _run(graph, known, "infer_type", unify_type)


def is_complete(shape):
    return shape is not None and all(d > 0 for d in shape)
