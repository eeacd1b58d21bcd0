"""Variable-length sequence operators: SequenceLast, SequenceReverse (SequenceMask
lives in indexing.py).

Data is (T, N, ...) with ``axis=0`` or (N, T, ...) with ``axis=1`` (SequenceLast;
SequenceReverse accepts only ``axis=0``, as MXNet 1.9.1 does). ``sequence_length``
is (N,), float or integer; a length is truncated towards zero, as MXNet's
``static_cast<int>``. MXNet reads out of bounds for a length outside [1, T]; here
a length is clamped into [0, T] first, so nothing is ever read out of range:

* SequenceLast: step ``clamp(L, 1, T) - 1`` (length 0 or less gives step 0).
* SequenceReverse: steps ``[0, L)`` are reversed, steps ``[L, T)`` are copied
  (length 0 or less copies everything).

Both lower to one gather-style Compute stage. Gradients: SequenceLast's puts the
head gradient at the selected step and zeros elsewhere (``_backward_SequenceLast``);
SequenceReverse's is the same reversal of the head gradient, since a reversal with
a length in [0, T] is its own inverse. ``sequence_length`` gets no gradient.
"""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import compute
from . import params as P
from .indexing import _const, _i64
from .registry import OpDef, register
from .shapes import InferError, known, unify, unify_type

SCHEMA = {"use_sequence_length": P.Bool(False), "axis": P.Int(0)}


def _inputs(params):
    return ["data", "sequence_length"] if params.get("use_sequence_length") else ["data"]


def _check(name, params, data, axes):
    """Validate ``axis`` and the data rank; return (time axis, batch axis)."""
    ax = params["axis"]
    if ax not in axes:
        raise InferError("%s: axis=%d is not supported; axis must be %s"
                         % (name, ax, " or ".join(str(a) for a in axes)))
    if known(data) and len(data) < 2:
        raise InferError("%s: data must have at least 2 dimensions (time and batch), got shape %s"
                         % (name, tuple(data)))
    return ax, 1 - ax


def _lens_shape(name, data, lens, b_axis):
    """sequence_length must be (N,), N the data's batch size."""
    if not known(data):
        return lens
    try:
        return unify(lens, (data[b_axis],))
    except InferError:
        raise InferError("%s: sequence_length shape %s must be (%d,), the batch size of data %s"
                         % (name, tuple(lens), data[b_axis], tuple(data))) from None


def _length(lens, b, t_size):
    """Sequence b's length as an int64 in [0, T]."""
    return E.clamp_index(E.to_index(lens.load([b])), _i64(t_size) + 1)


def _np_length(lens, t_size):
    i = np.trunc(lens).astype(np.int64) if np.issubdtype(lens.dtype, np.floating) else lens.astype(np.int64)
    return np.clip(i, 0, t_size)


def _type(params, ins, outs):
    t = unify_type(ins[0], outs[0])
    return [t] + list(ins[1:]), [t]


def _no_index_grad(node, first):
    return [first] + [None] * (len(node.inputs) - 1)


# ---- SequenceLast: each sequence's last valid step ----
def _last_shape(params, ins, outs):
    data = ins[0]
    t_axis, b_axis = _check("SequenceLast", params, data, (0, 1))
    rest = [_lens_shape("SequenceLast", data, ins[1], b_axis)] if len(ins) > 1 else []
    out = outs[0]
    if known(data):
        out = unify(tuple(d for k, d in enumerate(data) if k != t_axis), out)
    return [data] + rest, [out]


def _last_step(params, ins, b, t_size):
    """The selected time step of sequence b (int64 in [0, T))."""
    if len(ins) == 1:
        return _i64(t_size) - 1
    return E.maximum(_length(ins[1], b, t_size) - 1, _i64(0))


def _last_lower(params, ins, outs):
    data, out = ins[0], outs[0]
    t_axis = params["axis"]
    t_size = data.shape[t_axis]

    def body(*i):
        src = list(i[:t_axis]) + [_last_step(params, ins, i[0], t_size)] + list(i[t_axis:])
        return data.load(src)
    return [compute(out, body)]


def _np_last_steps(params, data, lens):
    t_size, n = data.shape[params["axis"]], data.shape[1 - params["axis"]]
    if lens is None:
        return np.full(n, t_size - 1)
    return np.maximum(_np_length(lens, t_size) - 1, 0)


def _np_last(params, data, lens=None):
    steps = _np_last_steps(params, data, lens)
    if params["axis"] == 0:
        return np.stack([data[s, b] for b, s in enumerate(steps)])
    return np.stack([data[b, s] for b, s in enumerate(steps)])


def _last_grad(b, node, ogs):
    return _no_index_grad(node, b.op("_backward_SequenceLast", ogs[0], *node.inputs[1:], node.inputs[0],
                                     **node.params))


register(OpDef("SequenceLast", kind="injective", inputs=_inputs, schema=SCHEMA, shape=_last_shape,
               dtype=_type, lower=_last_lower, gradient=_last_grad, reference=_np_last,
               doc="SequenceLast(data, sequence_length, use_sequence_length=False, axis=0); lengths are "
                   "clamped into [1, T] (MXNet reads out of bounds)."))


def _blast_inputs(params):
    return ["ograd"] + (["sequence_length"] if params.get("use_sequence_length") else []) + ["data"]


def _blast_shape(params, ins, outs):
    s = unify(ins[-1], outs[0])
    return list(ins[:-1]) + [s], [s]


def _blast_type(params, ins, outs):
    t = unify_type(ins[0], outs[0])
    return [t] + list(ins[1:]), [t]


def _blast_lower(params, ins, outs):
    og, out = ins[0], outs[0]
    t_axis = params["axis"]
    t_size = out.shape[t_axis]
    zero = _const(0, out.dtype)

    def body(*i):
        bat = i[1 - t_axis]
        at = E.cmp("eq", i[t_axis], _last_step(params, ins[:-1], bat, t_size))
        return E.select(at, og.load([ik for k, ik in enumerate(i) if k != t_axis]), zero)
    return [compute(out, body)]


def _blast_grad(b, node, ogs):
    last = b.op("SequenceLast", ogs[0], *node.inputs[1:-1], **node.params)
    return [last] + [None] * (len(node.inputs) - 1)


register(OpDef("_backward_SequenceLast", kind="injective", inputs=_blast_inputs, schema=SCHEMA,
               shape=_blast_shape, dtype=_blast_type, lower=_blast_lower, gradient=_blast_grad))


# ---- SequenceReverse: each sequence's valid prefix reversed in time ----
def _rev_shape(params, ins, outs):
    data = unify(ins[0], outs[0])
    _check("SequenceReverse", params, data, (0,))
    rest = [_lens_shape("SequenceReverse", data, ins[1], 1)] if len(ins) > 1 else []
    return [data] + rest, [data]


def _rev_lower(params, ins, outs):
    data, out = ins[0], outs[0]
    t_size = data.shape[0]
    last = _i64(t_size) - 1

    def body(*i):
        if len(ins) == 1:
            src = last - i[0]
        else:
            n = _length(ins[1], i[1], t_size)
            src = E.select(E.cmp("lt", i[0], n), n - 1 - i[0], i[0])
        return data.load([src] + list(i[1:]))
    return [compute(out, body)]


def _np_rev(params, data, lens=None):
    if lens is None:
        return data[::-1].copy()
    out = data.copy()
    for b, n in enumerate(_np_length(lens, data.shape[0])):
        out[:n, b] = data[:n, b][::-1]
    return out


def _rev_grad(b, node, ogs):
    return _no_index_grad(node, b.op("SequenceReverse", ogs[0], *node.inputs[1:], **node.params))


register(OpDef("SequenceReverse", kind="injective", inputs=_inputs, schema=SCHEMA, shape=_rev_shape,
               dtype=_type, lower=_rev_lower, gradient=_rev_grad, reference=_np_rev,
               doc="SequenceReverse(data, sequence_length, use_sequence_length=False, axis=0); lengths "
                   "are clamped into [0, T] (MXNet reads out of bounds)."))
