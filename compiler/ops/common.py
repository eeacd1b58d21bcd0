"""Lowering and reference helpers shared by operator families."""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import compute


def broadcast_index(buf, out_index, out_shape):
    """Index into ``buf`` for output index ``out_index`` under numpy broadcasting.

    A dimension of 1 that is not broadcast keeps the loop variable, so a buffer
    of the output's shape is read at exactly the output's index (fusion relies
    on recognising such 1:1 reads)."""
    lead = len(out_index) - buf.ndim
    return [E.const(0, "int64") if n == 1 and out_shape[lead + k] != 1 else out_index[lead + k]
            for k, n in enumerate(buf.shape)]


def map_lower(fn):
    """Lowering for an elementwise operator: ``out[i] = fn(params, *loads)``; inputs broadcast."""
    def lower(params, ins, outs):
        out = outs[0]

        def body(*i):
            loads = [b.load(broadcast_index(b, i, out.shape)) for b in ins]
            return E.cast(fn(params, *loads), out.dtype)
        return [compute(out, body)]
    return lower


def np_result(x, dtype):
    return np.asarray(x).astype(dtype, copy=False)


def scalar_of(params, like):
    """The ``scalar`` attribute as a constant of ``like``'s dtype."""
    value = float(params["scalar"])
    if not E.is_float(like.dtype):
        value = int(value)
    return E.const(value, like.dtype)
