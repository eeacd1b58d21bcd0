"""Kernel IR: loop nests over typed, dense, row-major buffers.

A kernel is a list of stages over its buffer parameters. ``Compute`` writes
every element of its output once from an expression of the output indices;
``ScatterAdd`` zero-fills its output, then adds an expression into positions
computed from a source index space (the gradients of take, Embedding and
pick). Shapes are static: one kernel per (operator, shapes, dtypes).
"""
from __future__ import annotations

import math

from .expr import Load, Var


def numel(shape):
    return int(math.prod(shape))


class Buffer:
    """A kernel parameter; ``load`` builds an element read."""

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, name, shape, dtype):
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return numel(self.shape)

    def load(self, *index):
        if len(index) == 1 and isinstance(index[0], (list, tuple)):
            index = tuple(index[0])
        return Load(self, index)

    def __repr__(self):
        return "Buffer(%s, %s, %s)" % (self.name, self.shape, self.dtype)


class Compute:
    """``out[axes] = body`` for every index of ``out``."""

    def __init__(self, out, axes, body):
        self.out = out
        self.axes = tuple(axes)
        self.body = body


class ScatterAdd:
    """``out = 0; for idx in extents: out[target(idx)] += value(idx)``."""

    def __init__(self, out, axes, extents, target, value):
        self.out = out
        self.axes = tuple(axes)
        self.extents = tuple(int(e) for e in extents)
        self.target = tuple(target)
        self.value = value


class Kernel:
    def __init__(self, name, inputs, outputs, stages):
        self.name = name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.stages = list(stages)

    @property
    def params(self):
        return self.inputs + self.outputs


def compute(out, fn):
    """Stage that sets ``out[i...] = fn(*i)``."""
    axes = [Var("i%d" % k) for k in range(out.ndim)]
    return Compute(out, axes, fn(*axes))


def scatter_add(out, extents, target_fn, value_fn):
    axes = [Var("s%d" % k) for k in range(len(extents))]
    return ScatterAdd(out, axes, extents, target_fn(*axes), value_fn(*axes))
