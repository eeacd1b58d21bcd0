"""Kernel IR: loop nests over typed, dense, row-major buffers.

A kernel is a list of stages over its buffer parameters. ``Compute`` writes
every element of its output once from an expression of the output indices;
``ScatterAdd`` zero-fills its output, then adds an expression into positions
computed from a source index space (the gradients of take, Embedding and
pick). Shapes are static: one kernel per (operator, shapes, dtypes).
"""
from __future__ import annotations

import math

from .expr import Load, Var, map_children


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


def stage_exprs(stage):
    """Every expression a stage evaluates (for analyses such as which buffers it reads)."""
    if isinstance(stage, Compute):
        return [stage.body]
    if isinstance(stage, ScatterAdd):
        return list(stage.target) + [stage.value]
    return list(getattr(stage, "exprs", lambda: [])())


def compute(out, fn):
    """Stage that sets ``out[i...] = fn(*i)``."""
    axes = [Var("i%d" % k) for k in range(out.ndim)]
    return Compute(out, axes, fn(*axes))


def scatter_add(out, extents, target_fn, value_fn):
    axes = [Var("s%d" % k) for k in range(len(extents))]
    return ScatterAdd(out, axes, extents, target_fn(*axes), value_fn(*axes))


class Gemm:
    """``out = epilogue(a . b)`` for ``batch`` matrix products of static shape.

    A dense matrix product is its own stage so that backends can emit a
    blocked, packed kernel instead of one reduction per output element.
    Operands are read as row-major matrices: ``a`` as [m, k] (stored [k, m]
    when ``transpose_a``), ``b`` as [k, n] (stored [n, k] when
    ``transpose_b``), ``out`` as [m, n]; batch ``i`` starts at element
    ``i * m * k`` (``i * k * n``, ``i * m * n``). ``dims=(m, n, k)`` gives the
    matrix view of N-d buffers; without it the operands are 2-d, or 3-d with a
    leading batch dimension.

    ``epilogue`` is an expression applied to each finished element before it
    is stored (fusion attaches bias and activation here): it reads
    ``Gemm.acc(out.dtype)``, the indices ``Gemm.ROW``, ``Gemm.COL`` and
    ``Gemm.BATCH``, and loads from ``extra_inputs``.
    """

    ROW = Var("gemm_row")
    COL = Var("gemm_col")
    BATCH = Var("gemm_batch")
    ACC_NAME = "gemm_acc"

    @staticmethod
    def acc(dtype):
        """The accumulated value, as an expression of the output dtype."""
        v = Var(Gemm.ACC_NAME)
        v.dtype = dtype
        return v

    def __init__(self, out, a, b, transpose_a=False, transpose_b=False, batch=1, dims=None,
                 epilogue=None, extra_inputs=()):
        self.out, self.a, self.b = out, a, b
        self.transpose_a, self.transpose_b = bool(transpose_a), bool(transpose_b)
        self.batch = int(batch)
        if dims is None:
            sa, sb = (s.shape[1:] if len(s.shape) == 3 else s.shape for s in (a, b))
            m, k = sa[::-1] if transpose_a else sa
            n = sb[0] if transpose_b else sb[1]
            dims = (m, n, k)
        self.m, self.n, self.k = (int(d) for d in dims)
        for buf, rows, cols in ((a, self.m, self.k), (b, self.k, self.n), (out, self.m, self.n)):
            if buf.size != self.batch * rows * cols:
                raise ValueError("Gemm: %r is not %d matrices of %dx%d" % (buf, self.batch, rows, cols))
        if not (a.dtype == b.dtype == out.dtype):
            raise TypeError("Gemm: operand dtypes %s, %s, %s differ" % (a.dtype, b.dtype, out.dtype))
        if epilogue is not None and epilogue.dtype != out.dtype:
            raise TypeError("Gemm: epilogue gives %s for a %s output" % (epilogue.dtype, out.dtype))
        self.epilogue = epilogue
        self.extra_inputs = list(extra_inputs)

    @property
    def inputs(self):
        return [self.a, self.b] + self.extra_inputs

    def with_epilogue(self, stage):
        """This product with ``stage`` (a ``Compute`` reading its output at its own index) as
        epilogue, writing ``stage.out``; None when the consumer does not fit that shape."""
        rows = (self.batch, self.m, self.n) if self.batch > 1 else (self.m, self.n)
        if not isinstance(stage, Compute) or stage.out.shape != rows or self.out.shape != rows \
                or stage.out.dtype != self.out.dtype:
            return None
        index = [Gemm.BATCH, Gemm.ROW, Gemm.COL][-len(rows):]
        names = [a.name for a in stage.axes]
        acc = self.epilogue if self.epilogue is not None else Gemm.acc(self.out.dtype)
        memo, extra, ok = {}, {}, [True]

        def go(e):
            hit = memo.get(id(e))
            if hit is None:
                if isinstance(e, Load) and e.buf is self.out:
                    ok[0] = ok[0] and [getattr(i, "name", None) for i in e.index] == names
                    hit = acc
                else:
                    if isinstance(e, Load):
                        extra.setdefault(id(e.buf), e.buf)
                    hit = dict(zip(names, index)).get(e.name, e) if isinstance(e, Var) else map_children(e, go)
                memo[id(e)] = hit
            return hit
        body = go(stage.body)
        if not ok[0]:
            return None
        extra_inputs = self.extra_inputs + [x for x in extra.values() if x not in self.extra_inputs]
        return Gemm(stage.out, self.a, self.b, self.transpose_a, self.transpose_b, self.batch,
                    (self.m, self.n, self.k), body, extra_inputs)

    def exprs(self):
        """Stand-in loads of both operands plus the epilogue: what analyses of reads need."""
        loads = [buf.load([0] * buf.ndim) for buf in (self.a, self.b)]
        return loads + ([self.epilogue] if self.epilogue is not None else [])
