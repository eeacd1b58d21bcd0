"""CTCLoss (MXNet 1.9.1's ``CTCLoss`` / ``ctc_loss`` / ``contrib.ctc_loss``).

``CTCLoss(data, label[, data_lengths][, label_lengths])``: ``data`` (T, N, C)
holds activations (the softmax is applied inside), ``label`` (N, L) class
indices, the lengths (N,) are read when ``use_data_lengths`` /
``use_label_lengths`` are set. ``blank_label='first'``: blank 0, labels
1..C-1, padding 0; ``'last'``: blank C-1, labels 0..C-2, padding -1. Without
``label_lengths`` a label ends at its first padding value; with them, the
given number of values is used as is. Lengths and label values are truncated
toward zero, as MXNet's integer cast.

Output: the loss (N,), ``-log p(label | data)``. As in MXNet the gradient
w.r.t. ``data`` is computed by the forward pass and kept as hidden output 1;
the gradient rule scales it by each element's head gradient. Labels and
lengths get no gradient; second-order gradients are not supported (MXNet
has none either).

Defined results where MXNet's kernel has none (tested):

* infeasible alignments (``label length + repeated neighbours > data
  length``): loss 0 and a zero gradient. Loss 0 is what MXNet 1.9.1
  returns (warp-ctc's convention); its gradient is left unset there.
* invalid elements (a length outside [0, T] or [0, L], a label value used
  within the length outside [0, C), NaN included): loss NaN and a NaN
  gradient for that element. MXNet reads out of bounds there.

Hidden output 2 is the kernel's scratch ``workspace`` (see ``kernel.CTC``),
planned in the arena like any value. float32 and float64 (MXNet 1.9.1
itself fails on float64).
"""
from __future__ import annotations

import numpy as np

from ..graph import Entry
from ..kernel import CTC
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, known, unify, unify_type

SCHEMA = {"use_data_lengths": P.Bool(False), "use_label_lengths": P.Bool(False),
          "blank_label": P.Str("first", choices=("first", "last"))}
DTYPES = ("float32", "float64")


def _inputs(params):
    return (["data", "label"] + (["data_lengths"] if params.get("use_data_lengths") else [])
            + (["label_lengths"] if params.get("use_label_lengths") else []))


def _shape(params, ins, outs):
    names = _inputs(params)
    data, label = ins[0], ins[1]
    if data is not None and len(data) != 3:
        raise InferError("data must be 3-d (sequence length, batch, alphabet size), got shape %s" % (tuple(data),))
    if label is not None and len(label) != 2:
        raise InferError("label must be 2-d (batch, label length), got shape %s" % (tuple(label),))
    for name, shape in zip(names[2:], ins[2:]):
        if shape is not None and len(shape) != 1:
            raise InferError("%s must be 1-d (batch,), got shape %s" % (name, tuple(shape)))
    batch = [(name, shape, shape[axis]) for name, shape, axis in zip(names, ins, [1, 0, 0, 0])
             if shape is not None and shape[axis] > 0]
    if len({n for _, _, n in batch}) > 1:
        raise InferError("batch sizes differ: %s" % ", ".join("%s %s has %d" % (name, tuple(s), n)
                                                              for name, s, n in batch))
    if known(data) and known(label) and label[1] > data[0]:
        raise InferError("label length %d exceeds the sequence length %d (label %s, data %s)"
                         % (label[1], data[0], tuple(label), tuple(data)))
    n = batch[0][2] if batch else None
    new_ins = [data, label] + [unify(x, (n,)) if n is not None else x for x in ins[2:]]
    loss = unify((n,), outs[0]) if n is not None else outs[0]
    grad = unify(data, outs[1])
    work = outs[2]
    if known(data) and known(label):
        work = unify((CTC.workspace_bytes(data[0], data[1], label[1]),), work)
    return [unify(data, grad)] + new_ins[1:], [loss, grad, work]


def _type(params, ins, outs):
    t = unify_type(unify_type(ins[0], outs[0]), outs[1])
    if t is not None and t not in DTYPES:
        raise InferError("data must be float32 or float64, got %s" % t)
    return [t] + [x or t for x in ins[1:]], [t, t, "uint8"]


def _lower(params, ins, outs):
    bufs = dict(zip(_inputs(params), ins))
    return [CTC(bufs["data"], bufs["label"], outs[0], outs[1], outs[2], params["blank_label"] == "first",
                data_lengths=bufs.get("data_lengths"), label_lengths=bufs.get("label_lengths"))]


def _gradient(b, node, ogs):
    """d data = the forward's gradient (hidden output 1) times each element's head gradient."""
    scale = b.op("Reshape", ogs[0], shape=(1, -1, 1))
    return [b.op("broadcast_mul", Entry(node, 1), scale)] + [None] * (len(node.inputs) - 1)


# ---- numpy reference (tests only) ----
def _np_int(v):
    """MXNet's integer cast of a label or length value; None for NaN or infinity."""
    v = float(v)
    return int(v) if np.isfinite(v) else None


def _np_ctc(params, data, label, *lengths):
    """Log-space alpha recursion per element, with the operator's conventions."""
    t_max, batch, classes = data.shape
    first = params["blank_label"] == "first"
    blank, pad = (0, 0) if first else (classes - 1, -1)
    lengths = list(lengths)
    dl = lengths.pop(0) if params["use_data_lengths"] else None
    ll = lengths.pop(0) if params["use_label_lengths"] else None
    out = np.empty(batch, data.dtype)
    for n in range(batch):
        row = [_np_int(v) for v in label[n]]
        tn = t_max if dl is None else _np_int(dl[n])
        if ll is not None:
            ln = _np_int(ll[n])
        else:
            ln = row.index(pad) if pad in row else len(row)
        if tn is None or ln is None or not (0 <= tn <= t_max and 0 <= ln <= len(row)) \
                or any(v is None or not 0 <= v < classes for v in row[:ln]):
            out[n] = np.nan
            continue
        seq = row[:ln]
        repeats = sum(a == b for a, b in zip(seq, seq[1:]))
        if ln + repeats > tn or tn == 0:
            out[n] = 0.0
            continue
        x = data[:tn, n].astype(np.float64)
        m = x.max(axis=1, keepdims=True)
        lp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
        ext = np.full(2 * ln + 1, blank)
        ext[1::2] = seq
        skip = np.zeros(len(ext), bool)
        skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
        alpha = np.full(len(ext), -np.inf)
        alpha[:2] = lp[0, ext[:2]]
        for t in range(1, tn):
            prev = alpha.copy()
            alpha[1:] = np.logaddexp(alpha[1:], prev[:-1])
            alpha[2:] = np.where(skip[2:], np.logaddexp(alpha[2:], prev[:-2]), alpha[2:])
            alpha = alpha + lp[t, ext]
        out[n] = -np.logaddexp.reduce(alpha[-2:])
    return out


register(OpDef("CTCLoss", kind="opaque", aliases=("ctc_loss", "_contrib_CTCLoss", "_contrib_ctc_loss"),
               inputs=_inputs, schema=SCHEMA, outputs=3, visible=1,
               output_names=lambda params: ["output0", "output1", "output2"],
               shape=_shape, dtype=_type, lower=_lower, gradient=_gradient, reference=_np_ctc,
               doc="CTCLoss(data (T, N, C), label (N, L)[, data_lengths][, label_lengths], use_data_lengths=False, "
                   "use_label_lengths=False, blank_label='first'): per-element negative log-likelihood; "
                   "infeasible labels give 0, invalid ones NaN."))
