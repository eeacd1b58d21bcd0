"""Training-mode specialisation: the program of a graph with training-sensitive nodes
depends on ``is_train``.

Operators declare a variant in ``ops.random.TRAINING_VARIANTS`` (Dropout: identity outside
training, sampling in training or with mode='always'); this pass rewrites every such
node for the mode being compiled, before gradients are taken, so the inference program
contains no sampling and the training program's gradient reads the sampled mask.
"""
from __future__ import annotations

from ..graph import rewrite
from ..ops.random import TRAINING_VARIANTS


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


def specialise_training(graph, is_train):
    def fn(node, inputs):
        entry = TRAINING_VARIANTS.get(node.op.name)
        return entry[1](node, inputs, is_train) if entry is not None else None
    return rewrite(graph, fn)[0]
