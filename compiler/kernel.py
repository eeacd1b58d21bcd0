"""Kernel IR: loop nests over typed, dense, row-major buffers.

A kernel is a list of stages over its buffer parameters. ``Compute`` writes
every element of its output once from an expression of the output indices;
``ScatterAdd`` zero-fills its output, then adds an expression into positions
computed from a source index space (the gradients of take, Embedding and
pick). Shapes are static (one kernel per operator, shapes and dtypes), or
symbolic for shape-generic kernels (``compiler/generic.py``): a size other
than 0 or 1 may then be an ``expr.Dim`` read at run time from the kernel's
``dims`` buffer; sizes 0 and 1 always stay literal ints.
"""
from __future__ import annotations

import math

from . import expr as E
from .expr import Expr, Load, Var, map_children


def numel(shape):
    """Element count: an int for static shapes, an int64 expression for symbolic ones."""
    static = [s for s in shape if not isinstance(s, Expr)]
    count = int(math.prod(static))
    sym = [s for s in shape if isinstance(s, Expr)]
    if not sym or count == 0:
        return count
    out = sym[0]
    for s in sym[1:]:
        out = out * s
    return out if count == 1 else out * count


def _size(s):
    """A static size as int; symbolic sizes (``expr.Dim``/expressions) are kept."""
    return s if isinstance(s, Expr) else int(s)


class Buffer:
    """A kernel parameter; ``load`` builds an element read."""

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, name, shape, dtype):
        self.name = name
        self.shape = tuple(_size(s) for s in shape)
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
        self.extents = tuple(_size(e) for e in extents)
        self.target = tuple(target)
        self.value = value


class Kernel:
    """``dims``: for a shape-generic kernel, the int64 input buffer its ``expr.Dim`` sizes are
    read from (also listed in ``inputs``); None for static kernels."""

    def __init__(self, name, inputs, outputs, stages, dims=None):
        self.name = name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.stages = list(stages)
        self.dims = dims

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


def _gemm_size(x, what, static=False):
    """A GEMM size in normal form: an int, or a product of ``Dim``s (``expr.monomial``)."""
    m = E.monomial(x)
    if m is None or (static and m[1]):
        raise TypeError("Gemm: %s %r must be %s" % (what, x, "a static size" if static else "a product of sizes"))
    return E.from_monomial(m)


def _index_size(x):
    """A size as an index operand: a constant, or the run-time expression itself."""
    return x if isinstance(x, Expr) else E.const(x, "int64")


def _product(*sizes):
    """The monomial of a product of GEMM sizes."""
    coef, dims = 1, ()
    for x in sizes:
        c, d = E.monomial(x)
        coef, dims = coef * c, tuple(sorted(dims + d))
    return (coef, dims) if coef else (0, ())


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

    ``a_batch`` (default ``batch``): ``a`` holds that many matrices and batch
    ``i`` reads matrix ``i % a_batch`` (a convolution's per-group weights,
    shared by every image). An N-d ``out`` is read through ``out_view()``.

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
                 epilogue=None, extra_inputs=(), a_batch=None):
        self.out, self.a, self.b = out, a, b
        self.transpose_a, self.transpose_b = bool(transpose_a), bool(transpose_b)
        self.batch = _gemm_size(batch, "batch")
        # ``a`` holds a_batch matrices and batch i reads matrix i % a_batch (convolution: one
        # weight per group, shared by every image); a_batch == batch is the plain batched product
        self.a_batch = self.batch if a_batch is None else _gemm_size(a_batch, "a_batch")
        self.shares_a = E.monomial(self.a_batch) != E.monomial(self.batch)
        if self.shares_a and not (E.is_static(self.a_batch) and E.divides(E.monomial(self.a_batch),
                                                                           E.monomial(self.batch))):
            raise ValueError("Gemm: a_batch %r does not divide batch %r" % (self.a_batch, self.batch))
        if dims is None:
            sa, sb = (s.shape[1:] if len(s.shape) == 3 else s.shape for s in (a, b))
            m, k = sa[::-1] if transpose_a else sa
            n = sb[0] if transpose_b else sb[1]
            dims = (m, n, k)
        # m and the batch may be run-time sizes (a dynamic batch); n and k are the kernel's blocking
        self.m = _gemm_size(dims[0], "m")
        self.n, self.k = (_gemm_size(d, name, static=True) for d, name in zip(dims[1:], "nk"))
        for buf, count, rows, cols in ((a, self.a_batch, self.m, self.k), (b, self.batch, self.k, self.n),
                                       (out, self.batch, self.m, self.n)):
            if E.monomial(buf.size) != _product(count, rows, cols):
                raise ValueError("Gemm: %r is not %r matrices of %rx%r" % (buf, count, rows, cols))
        if not (a.dtype == b.dtype == out.dtype):
            raise TypeError("Gemm: operand dtypes %s, %s, %s differ" % (a.dtype, b.dtype, out.dtype))
        if epilogue is not None and epilogue.dtype != out.dtype:
            raise TypeError("Gemm: epilogue gives %s for a %s output" % (epilogue.dtype, out.dtype))
        self.epilogue = epilogue
        self.extra_inputs = list(extra_inputs)

    @property
    def symbolic(self):
        """Whether the product's row count or batch is read at run time."""
        return not (E.is_static(self.m) and E.is_static(self.batch))

    @property
    def inputs(self):
        return [self.a, self.b] + self.extra_inputs

    def out_view(self):
        """How ``out``'s axes flatten onto (batch, row, col): per axis (index var, divisor,
        extent), or None when some axis straddles two of them (grouped convolution's filters).
        A [batch, m, n] or [m, n] output maps axis to index directly; an N-d one (a
        convolution's [N, F, H, W] as [N][F][H*W]) through divisions."""
        targets = [(Gemm.BATCH, E.monomial(self.batch)), (Gemm.ROW, E.monomial(self.m)),
                   (Gemm.COL, E.monomial(self.n))]
        shape = [E.monomial(d) for d in self.out.shape]  # sizes as monomials: run-time ones compare too
        groups, g, cur = [[], [], []], 0, (1, ())
        for axis, d in enumerate(shape):
            if d == (1, ()):
                continue
            while g < 3 and cur == targets[g][1]:
                g, cur = g + 1, (1, ())
            if g == 3 or not E.divides(_product(E.from_monomial(cur), E.from_monomial(d)), targets[g][1]):
                return None
            cur = _product(E.from_monomial(cur), E.from_monomial(d))
            groups[g].append(axis)
        if any(_product(*[self.out.shape[a] for a in groups[i]]) != targets[i][1] for i in range(3)):
            return None
        view = [None] * len(self.out.shape)
        for (var, _), axes in zip(targets, groups):
            for j, axis in enumerate(axes):
                inner = E.from_monomial(_product(*[self.out.shape[a] for a in axes[j + 1:]]))
                view[axis] = (var, inner, self.out.shape[axis] if j else None)
        return view

    def with_epilogue(self, stage):
        """This product with ``stage`` (a ``Compute`` reading its output at its own index) as
        epilogue, writing ``stage.out``; None when the consumer does not fit that shape."""
        view = self.out_view()
        if not isinstance(stage, Compute) or not E.same_shape(stage.out.shape, self.out.shape) or view is None \
                or stage.out.dtype != self.out.dtype:
            return None
        names = [a.name for a in stage.axes]
        index = {}
        for name, v in zip(names, view):
            if v is None:
                index[name] = E.const(0, "int64")
                continue
            var, inner, extent = v
            x = var if E.monomial(inner) == (1, ()) else var // _index_size(inner)
            index[name] = x if extent is None else x % _index_size(extent)
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
                    hit = index.get(e.name, e) if isinstance(e, Var) else map_children(e, go)
                memo[id(e)] = hit
            return hit
        body = go(stage.body)
        if not ok[0]:
            return None
        extra_inputs = self.extra_inputs + [x for x in extra.values() if x not in self.extra_inputs]
        return Gemm(stage.out, self.a, self.b, self.transpose_a, self.transpose_b, self.batch,
                    (self.m, self.n, self.k), body, extra_inputs, a_batch=self.a_batch if self.shares_a else None)

    def exprs(self):
        """Stand-in loads of both operands plus the epilogue: what analyses of reads need."""
        loads = [buf.load([0] * buf.ndim) for buf in (self.a, self.b)]
        return loads + ([self.epilogue] if self.epilogue is not None else [])


class Sort:
    """Sort every row of ``data`` along ``axis`` and write the first ``k`` of each sorted row.

    A sort is its own stage because no per-element expression describes it:
    backends emit a whole-row algorithm. ``axis=None`` sorts the flattened
    array as one row. The order is stable (equal keys keep their positions'
    order, in both directions) and total: NaN sorts after every number when
    ascending and before every number when descending (NaN is the largest
    key). Outputs, each optional: ``values`` and ``indices`` (``data``'s
    shape with the axis cut to ``k``; flattened: ``(k,)``), positions along
    the axis in ``indices``' dtype, and ``mask`` (``data``'s shape, 1 at the
    sources of the first ``k``, 0 elsewhere).

    ``workspace`` (uint8, ``workspace_bytes(...)``) is a 64-byte header (a
    row counter) and, per work unit, two (key, index) arrays of one row. A
    unit claims rows from the counter until none is left, sorting each in
    its own scratch slice: units may run on different threads without
    sharing scratch, and rows are balanced dynamically over the threads.
    """

    MAX_UNITS = 64  # work units (scratch slices): the most rows sorted at once
    WORKSPACE_CAP = 32 << 20  # scratch bytes beyond which fewer units share the rows
    HEADER = 64  # bytes before the first unit: the shared row counter
    KEY_BYTES, INDEX_BYTES = 8, 4  # scratch per element, sized for any dtype (shape rules see no dtypes)

    def __init__(self, data, axis, k, is_ascend, values=None, indices=None, mask=None, workspace=None):
        self.data = data
        self.axis = None if axis is None else int(axis)
        if self.axis is None:
            self.outer, self.n, self.inner = 1, data.size, 1
        else:
            self.outer = numel(data.shape[:self.axis])
            self.n = data.shape[self.axis]
            self.inner = numel(data.shape[self.axis + 1:])
        self.k = int(k)
        self.is_ascend = bool(is_ascend)
        self.values, self.indices, self.mask, self.workspace = values, indices, mask, workspace
        self.rows = self.outer * self.inner
        self.units, self.unit_bytes = Sort.layout(self.outer * self.n * self.inner, self.n)
        if not 0 <= self.k <= self.n:
            raise ValueError("Sort: k=%d for rows of %d" % (self.k, self.n))
        need = Sort.workspace_bytes(self.outer * self.n * self.inner, self.n)
        if workspace is None or workspace.size * _itemsize(workspace.dtype) < need:
            raise ValueError("Sort: workspace %r is smaller than %d bytes" % (workspace, need))

    @staticmethod
    def region(count, nbytes):
        """Bytes of one scratch array, rounded up to 64 so every array stays aligned."""
        return -(-count * nbytes // 64) * 64

    @staticmethod
    def layout(size, n):
        """(units, bytes per unit) for ``size`` elements in rows of ``n``."""
        if n == 0 or size == 0:
            return 1, 0
        per = 2 * Sort.region(n, Sort.KEY_BYTES) + 2 * Sort.region(n, Sort.INDEX_BYTES)
        units = max(1, min(size // n, Sort.MAX_UNITS, Sort.WORKSPACE_CAP // per))
        return units, per

    @staticmethod
    def workspace_bytes(size, n):
        units, per = Sort.layout(size, n)
        return Sort.HEADER + units * per

    @property
    def inputs(self):
        return [self.data]

    @property
    def outputs(self):
        return [b for b in (self.values, self.indices, self.mask, self.workspace) if b is not None]

    def exprs(self):
        """A stand-in load of ``data``: what analyses of reads need."""
        return [self.data.load([0] * self.data.ndim)]


class CTC:
    """Connectionist temporal classification: per batch element, the negative log-likelihood
    of its label under ``softmax(data)`` and that loss's gradient w.r.t. ``data``.

    A stage of its own because the alpha-beta recursion is serial in time with
    data-dependent label indices, which no per-element expression describes.
    ``data`` (T, N, C); ``label`` (N, L); optional ``data_lengths`` and
    ``label_lengths`` (N,). Without ``label_lengths`` a label ends at its first
    padding value (0 with the blank first, -1 with it last). Outputs ``loss``
    (N,) and ``grad`` (T, N, C).

    ``workspace`` (uint8, ``workspace_bytes``) holds one slice per batch
    element, so elements run in parallel without sharing scratch and nothing
    is allocated at run time: the alpha table (T rows of S + 2 values, S = 2L
    + 1 states after two -inf pads), two beta rows and one emission row (S +
    2 values, pads after), the skip mask (S + 2 values: 0 where a transition
    may skip a blank, else -inf) and the blank-extended label (S int32). The
    pads and the mask let the state loops run without branches or selects.
    """

    VALUE_BYTES, INDEX_BYTES = 8, 4  # scratch per value, sized for any dtype (shape rules see no dtypes)
    PARTS = ("alpha", "beta", "emission", "mask", "ext")

    def __init__(self, data, label, loss, grad, workspace, blank_first, data_lengths=None, label_lengths=None):
        self.data, self.label, self.loss, self.grad, self.workspace = data, label, loss, grad, workspace
        self.data_lengths, self.label_lengths = data_lengths, label_lengths
        self.blank_first = bool(blank_first)
        self.T, self.N, self.C = (int(d) for d in data.shape)
        self.L = int(label.shape[1])
        self.S = 2 * self.L + 1
        need = CTC.workspace_bytes(self.T, self.N, self.L)
        if workspace.size * _itemsize(workspace.dtype) < need:
            raise ValueError("CTC: workspace %r is smaller than %d bytes" % (workspace, need))

    @staticmethod
    def layout(t, l):
        """({part: byte offset} in one batch element's slice, slice bytes)."""
        row = 2 * l + 3  # S + 2
        sizes = {"alpha": Sort.region(t * row, CTC.VALUE_BYTES), "beta": Sort.region(2 * row, CTC.VALUE_BYTES),
                 "emission": Sort.region(row, CTC.VALUE_BYTES), "mask": Sort.region(row, CTC.VALUE_BYTES),
                 "ext": Sort.region(row, CTC.INDEX_BYTES)}
        offsets, at = {}, 0
        for part in CTC.PARTS:
            offsets[part] = at
            at += sizes[part]
        return offsets, at

    @staticmethod
    def workspace_bytes(t, n, l):
        return n * CTC.layout(t, l)[1]

    @property
    def inputs(self):
        return [b for b in (self.data, self.label, self.data_lengths, self.label_lengths) if b is not None]

    @property
    def outputs(self):
        return [self.loss, self.grad, self.workspace]

    def exprs(self):
        """Stand-in loads of every input: what analyses of reads need."""
        return [b.load([0] * b.ndim) for b in self.inputs]

def _itemsize(dtype):
    return {"float16": 2, "float32": 4, "float64": 8, "int8": 1, "uint8": 1, "bool": 1,
            "int32": 4, "int64": 8}[dtype]
