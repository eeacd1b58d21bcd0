"""Training-mode specialisation: the program of a graph with training-sensitive nodes
depends on ``is_train``.

Operators declare a variant in ``ops.registry.TRAINING_VARIANTS`` (Dropout: identity
outside training, sampling in training or with mode='always'; BatchNorm: batch statistics
and a moving-average update in training unless use_global_stats). This pass rewrites every
such node for the mode being compiled, before gradients are taken, so the inference program
contains no sampling and the training program's gradient reads the sampled mask and flows
through the batch statistics. Variants may also give new values for auxiliary states; they
are returned by name so the pipeline can make them program outputs the caller writes back.
"""
from __future__ import annotations

import logging

from ..graph import rewrite
from ..ops import registry
from ..ops.registry import TRAINING_VARIANTS

log = logging.getLogger(__name__)


def training_sensitive(graph):
    """Whether compiling ``graph`` for training and for inference gives different programs."""
    for n in graph.nodes:
        entry = TRAINING_VARIANTS.get(n.op.name) if n.op is not None else None
        if entry is not None and entry[0](n.params):
            return True
    return False


def op_training_sensitive(op, params):
    """The same question for one operator application (imperative calls)."""
    entry = TRAINING_VARIANTS.get(op.name)
    return entry is not None and entry[0](params)


def training_op(op, params):
    """The operator a training-mode call of ``op`` really applies (what an autograd tape must
    record so its gradient is the training one): BatchNorm -> _batch_norm_train."""
    entry = TRAINING_VARIANTS.get(op.name)
    if entry is None or len(entry) < 3 or not entry[0](params):
        return op
    return registry.get(entry[2])


def specialise_training(graph, is_train, shapes):
    """(graph for this mode, {auxiliary variable name: Entry of its new value}); ``shapes``
    (entry key -> shape, from inference on ``graph``) gives each variant its input shapes."""
    updates = {}

    def fn(node, inputs):
        entry = TRAINING_VARIANTS.get(node.op.name)
        in_shapes = [shapes.get(e.key()) for e in node.inputs]
        out = entry[1](node, inputs, is_train, in_shapes) if entry is not None else None
        if isinstance(out, tuple):
            out, new_aux = out
            for k, value in new_aux.items():
                var = inputs[k].node
                if not var.is_variable:  # computed "statistics": nothing to write back
                    log.debug("%s (node %r): input %d is not a variable; its update is dropped",
                              node.op.name, node.name, k)
                    continue
                if var.name in updates:
                    log.warning("auxiliary state %r is updated by several nodes; node %r's update is kept",
                                var.name, node.name)
                updates[var.name] = value
        return out
    return rewrite(graph, fn)[0], updates
