"""Sizes known only at run time, as linear functions of one scale: a dynamic batch.

A program compiled for a dynamic batch has, besides static sizes, sizes ``a*N + b``
of the batch size ``N`` (the batch itself, ``N*T`` after a reshape, ``N + 1`` after
concatenating a row). Each distinct ``(a, b)`` is one ``expr.Dim`` (row ``k`` of the
table is ``"$k"`` in slot shapes); the runtime computes every row from ``N`` into the
program's int64 dims array, which the kernels read their sizes from (the mechanism of
shape-generic kernels, ``generic.py``). Row 0 is always ``N``.

Memory: a value's byte size is then ``c0 + c1*N``. Values with ``c1 == 0`` live in a
fixed arena; the others get ``unit*N`` bytes in a scaled arena that follows it, with
``unit = c1 + max(c0, 0)`` (enough for every ``N >= 1``). Planning the scaled arena in
units and multiplying every offset by ``N`` keeps disjoint values disjoint and 64-byte
offsets 64-byte aligned for every ``N``.
"""
from __future__ import annotations

import numpy as np

from . import expr as E
from .kernel import Buffer

DIMS_SLOT = "__dims__"


class SizeTable:
    """rows[k] = (a, b): size ``"$k"`` is ``a*N + b``; rows[0] == (1, 0)."""

    def __init__(self, rows):
        self.rows = [tuple(int(v) for v in r) for r in rows]
        if not self.rows or self.rows[0] != (1, 0):
            raise ValueError("row 0 of a size table must be the scale itself, (1, 0)")
        self._buffer = None

    @property
    def buffer(self):
        """The kernels' dims parameter; the table is complete once a kernel holds it."""
        if self._buffer is None:
            self._buffer = Buffer(DIMS_SLOT, (len(self.rows),), "int64")
        return self._buffer

    def dim(self, a, b):
        """The ``expr.Dim`` for ``a*N + b`` (a new row when unseen)."""
        key = (int(a), int(b))
        if key not in self.rows:
            if self._buffer is not None:
                raise AssertionError("size %d*N%+d added after kernels took the table" % key)
            self.rows.append(key)
        return E.Dim(self.rows.index(key))

    def values(self, n):
        """The dims array for scale ``n``."""
        return np.array([a * n + b for a, b in self.rows], dtype=np.int64)

    def byte_poly(self, shape, dtype, what="value"):
        """(c0, c1) with bytes = c0 + c1*N for a slot shape (ints and ``"$k"``)."""
        poly = [np.dtype(dtype).itemsize]  # coefficients of N**0, N**1, ...
        for d in shape:
            a, b = self.rows[int(d[1:])] if isinstance(d, str) else (0, int(d))
            nxt = [0] * (len(poly) + 1)
            for p, c in enumerate(poly):
                nxt[p] += c * b
                nxt[p + 1] += c * a
            poly = nxt
        while len(poly) > 2 and poly[-1] == 0:
            poly.pop()
        if len(poly) > 2:
            raise NotImplementedError("dynamic batch: %s has shape %s, whose size grows faster than the batch "
                                      "(several batch-dependent axes)" % (what, self.describe(shape)))
        return (poly[0], poly[1] if len(poly) > 1 else 0)

    def placement(self, shape, dtype, what="value"):
        """(scaled, bytes): bytes in the fixed arena, or bytes per unit of N in the scaled one."""
        c0, c1 = self.byte_poly(shape, dtype, what)
        return (False, c0) if c1 == 0 else (True, c1 + max(c0, 0))

    def describe(self, shape):
        """A shape with its symbolic sizes written in N (``(N, 3, 224, 224)``)."""
        def one(d):
            if not isinstance(d, str):
                return str(d)
            a, b = self.rows[int(d[1:])]
            text = "N" if a == 1 else "%d*N" % a
            return text if b == 0 else "%s%+d" % (text, b)
        return "(%s)" % ", ".join(one(d) for d in shape)


def slot_shape(shape):
    """A Buffer shape (ints and ``expr.Dim``) as a SlotSpec shape (ints and ``"$k"``)."""
    return tuple("$%d" % d.index if isinstance(d, E.Dim) else int(d) for d in shape)
