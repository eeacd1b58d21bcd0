"""The fused ``RNN`` operator (MXNet 1.x: rnn_relu, rnn_tanh, lstm, gru; layers, directions).

``parameters`` is MXNet's packed vector: for each layer, then each direction, the i2h
weight ``(G*H, in)`` and the h2h weight ``(G*H, H)``; after every weight, the i2h and h2h
biases in the same order (G = 1, 4, 3; LSTM gates i, f, g, o; GRU gates r, z, n).

The operator is unrolled into existing operators: per layer and direction one GEMM projects
every time step's input at once, then each step is one h2h GEMM plus the gate arithmetic
(which fusion turns into one kernel per step). An unrolled graph depends on the sequence
length, so the expansions take their input shapes (``expand_shapes``), and the rewrite
happens in the training pass, right after inference, which hands variants their input
shapes: ``TRAINING_VARIANTS["RNN"]`` unrolls every RNN node, with ``Dropout(mode='always')``
between layers when training with ``p > 0``. Compiled gradients are then those of the parts.
With ``use_sequence_length`` (cuDNN's semantics, MXNet's GPU path; MXNet 1.9.1's CPU kernel
ignores ``sequence_length``), each step's state update is selected per sequence: past a
sequence's length the state is carried and the output is zero, so the final states are the
last valid step's and the reverse direction starts at each sequence's own end. Lengths are
truncated; a length of 0 or less keeps the begin state, one above T acts as T.
The dropout masks are hidden outputs (ones outside training) so an autograd tape keeps them;
the tape differentiates an RNN node with ``_rnn_backward``, which unrolls the forward again
(with those masks) and differentiates it.
"""
from __future__ import annotations

import numpy as np

from ..graph import Entry, Graph, Node
from . import params as P
from .registry import TRAINING_VARIANTS, OpDef, register
from .shapes import InferError, known, unify, unify_all_types, unify_type

GATES = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3}
SCHEMA = {"state_size": P.Int(), "num_layers": P.Int(), "bidirectional": P.Bool(False),
          "mode": P.Str(choices=tuple(GATES)), "p": P.Float(0.0), "state_outputs": P.Bool(False),
          "projection_size": P.OptInt(None), "lstm_state_clip_min": P.OptFloat(None),
          "lstm_state_clip_max": P.OptFloat(None), "lstm_state_clip_nan": P.Bool(False),
          "use_sequence_length": P.Bool(False)}


def _dirs(params):
    return 2 if params["bidirectional"] else 1


def _num_states(params):
    return 2 if params["mode"] == "lstm" else 1


def _num_visible(params):
    return 1 + (_num_states(params) if params["state_outputs"] else 0)


def _num_masks(params):
    """Hidden outputs: the dropout mask applied to each layer's output but the last."""
    return params["num_layers"] - 1 if params["p"] > 0 else 0


def _inputs(params):
    names = ["data", "parameters", "state"] + (["state_cell"] if params["mode"] == "lstm" else [])
    return names + (["sequence_length"] if params["use_sequence_length"] else [])


def _output_names(params):
    names = ["output", "state_output", "statecell_output"][:_num_visible(params)]
    return names + ["mask%d" % k for k in range(_num_masks(params))]


def _check_supported(params):
    if params["projection_size"] is not None:
        raise NotImplementedError("RNN: projection_size (LSTM with projection) is not implemented")
    if params["lstm_state_clip_nan"] and (params["lstm_state_clip_min"] is not None
                                          or params["lstm_state_clip_max"] is not None):
        raise NotImplementedError("RNN: lstm_state_clip_nan is not implemented")
    if params["state_size"] <= 0 or params["num_layers"] <= 0:
        raise InferError("state_size=%d and num_layers=%d must be positive"
                         % (params["state_size"], params["num_layers"]))
    if not 0.0 <= params["p"] <= 1.0:
        raise InferError("dropout p=%r must be in [0, 1]" % params["p"])


def param_layout(params, input_size):
    """[(layer, direction, i2h weight offset, in size, h2h weight offset, i2h bias offset,
    h2h bias offset)] and the total length of the packed vector (MXNet's order)."""
    g, h, nl, nd = GATES[params["mode"]], params["state_size"], params["num_layers"], _dirs(params)
    off, weights = 0, []
    for layer in range(nl):
        ni = input_size if layer == 0 else nd * h
        for d in range(nd):
            weights.append((layer, d, off, ni, off + g * h * ni))
            off += g * h * (ni + h)
    out = []
    for w in weights:
        out.append(w + (off, off + g * h))
        off += 2 * g * h
    return out, off


def _rnn_shape(params, ins, outs):
    _check_supported(params)
    data = ins[0]
    if data is not None and len(data) != 3:
        raise InferError("data must be 3-d (sequence, batch, features) in layout TNC, got %s" % (data,))
    if not known(data):
        return list(ins), list(outs)
    t, n, i = data
    h, nd, nl = params["state_size"], _dirs(params), params["num_layers"]
    _, total = param_layout(params, i)
    new_ins = [data]
    if ins[1] is not None and tuple(ins[1]) != (total,) and known(ins[1]):
        raise InferError("parameters has shape %s, but mode=%s, state_size=%d, num_layers=%d, "
                         "bidirectional=%s with input size %d need (%d,)"
                         % (tuple(ins[1]), params["mode"], h, nl, params["bidirectional"], i, total))
    new_ins.append(unify(ins[1], (total,)))
    state = (nl * nd, n, h)
    names = _inputs(params)
    if params["use_sequence_length"]:
        lens = ins[len(names) - 1]
        if known(lens) and tuple(lens) != (n,):
            raise InferError("sequence_length has shape %s, expected (batch,) = (%d,)" % (tuple(lens), n))
        names = names[:-1]
    for k, name in enumerate(names[2:], start=2):
        if ins[k] is not None and known(ins[k]) and tuple(ins[k]) != state:
            raise InferError("%s has shape %s, expected (num_layers*directions, batch, state_size) = %s"
                             % (name, tuple(ins[k]), state))
        new_ins.append(unify(ins[k], state))
    seq = (t, n, nd * h)
    if params["use_sequence_length"]:
        new_ins.append(unify(ins[len(names)], (n,)))
    new_outs = [unify(outs[0], seq)] + [unify(o, state) for o in outs[1:_num_visible(params)]]
    new_outs += [unify(o, seq) for o in outs[_num_visible(params):]]
    return new_ins, new_outs


def _rnn_type(params, ins, outs):
    """One float type for everything but sequence_length, which may be float or integer."""
    n_len = 1 if params["use_sequence_length"] else 0
    n_in = len(_inputs(params)) - n_len
    t = unify_all_types(list(ins[:n_in]) + list(ins[n_in + n_len:]) + list(outs))
    lens = list(ins[n_in:n_in + n_len])
    return [t] * n_in + lens + [t] * (len(ins) - n_in - n_len), [t] * len(outs)


# ---------------------------------------------------------------- the unrolled graph
def _cell(b, mode, xw, h, c, wh, bh, params):
    """One time step from the precomputed input projection ``xw`` (N, G*H): (h', c')."""
    hh = b.op("dot", h, wh, transpose_b=True)
    if mode == "gru":  # n = tanh(x_n + r * (h_n + b_hn)): the h2h bias stays inside
        hh = b.op("broadcast_add", hh, bh)
        xr, xz, xn = b.outputs("SliceChannel", xw, num_outputs=3, axis=1)
        hr, hz, hn = b.outputs("SliceChannel", hh, num_outputs=3, axis=1)
        r = b.op("sigmoid", b.add(xr, hr))
        z = b.op("sigmoid", b.add(xz, hz))
        cand = b.op("tanh", b.add(xn, b.mul(r, hn)))
        return b.add(b.mul(b.scalar("_rminus_scalar", z, 1.0), cand), b.mul(z, h)), None
    pre = b.add(xw, hh)
    if mode != "lstm":
        return b.op("relu" if mode == "rnn_relu" else "tanh", pre), None
    i, f, g, o = b.outputs("SliceChannel", pre, num_outputs=4, axis=1)
    c = b.add(b.mul(b.op("sigmoid", f), c), b.mul(b.op("sigmoid", i), b.op("tanh", g)))
    lo, hi = params["lstm_state_clip_min"], params["lstm_state_clip_max"]
    if lo is not None or hi is not None:  # cuDNN's cell-state clipping (MXNet's CPU kernel ignores it)
        c = b.op("clip", c, a_min=-np.inf if lo is None else lo, a_max=np.inf if hi is None else hi)
    return b.mul(b.op("sigmoid", o), b.op("tanh", c)), c


def _split(b, x, n, axis):
    """The ``n`` slices of ``x`` along ``axis``, that axis removed."""
    if n == 1:
        return [b.op("squeeze", x, axis=(axis,))]
    return b.outputs("SliceChannel", x, num_outputs=n, axis=axis, squeeze_axis=True)


def _join(b, xs, axis):
    return b.op("expand_dims", xs[0], axis=axis) if len(xs) == 1 else b.op("stack", *xs, axis=axis, num_args=len(xs))


def unroll(b, inputs, params, sizes, masks=None, sample=False):
    """Outputs [out, hy, (cy)] and the dropout masks between layers of the RNN applied to
    ``inputs`` (data, parameters, state, state_cell, sequence_length) of data shape ``sizes``.
    ``masks``: entries to multiply layer outputs by (a tape's saved masks); ``sample``: draw them with
    Dropout(mode='always') (training); otherwise, with p > 0, the masks are ones."""
    mode, h, nl, nd = params["mode"], params["state_size"], params["num_layers"], _dirs(params)
    g = GATES[mode]
    t, n, ni = sizes
    x, w = inputs[0], inputs[1]
    layout, _ = param_layout(params, ni)
    h0 = _split(b, inputs[2], nl * nd, 0)
    c0 = _split(b, inputs[3], nl * nd, 0) if mode == "lstm" else [None] * (nl * nd)
    # valid[k] (N,): nonzero where step k < the sequence's length (truncated, as MXNet's int cast)
    valid = ([b.scalar("_greater_equal_scalar", inputs[-1], k + 1) for k in range(t)]
             if params["use_sequence_length"] else None)

    def piece(begin, shape):
        size = int(np.prod(shape))
        return b.op("Reshape", b.op("slice_axis", w, axis=0, begin=begin, end=begin + size), shape=shape)
    hy, cy, used = [], [], []
    for layer in range(nl):
        outs = []
        for d in range(nd):
            _, _, wi_off, in_size, wh_off, bi_off, bh_off = layout[layer * nd + d]
            wi, wh = piece(wi_off, (g * h, in_size)), piece(wh_off, (g * h, h))
            bi, bh = piece(bi_off, (g * h,)), piece(bh_off, (g * h,))
            # Reshape codes rather than N itself: the unrolled graph then serves every batch size
            flat = b.op("Reshape", x, shape=(-3, -2))  # (T*N, in)
            bias = bi if mode == "gru" else b.add(bi, bh)
            xw = b.op("broadcast_add", b.op("dot", flat, wi, transpose_b=True), bias)
            steps = _split(b, b.op("Reshape", xw, shape=(t, -1, g * h)), t, 0)
            hs, hcur, ccur = [None] * t, h0[layer * nd + d], c0[layer * nd + d]
            for k in (range(t) if d == 0 else reversed(range(t))):
                hnew, cnew = _cell(b, mode, steps[k], hcur, ccur, wh, bh, params)
                if valid is None:
                    hcur, ccur, hs[k] = hnew, cnew, hnew
                    continue
                # past a sequence's length the state is carried unchanged and the output is zero, so
                # the final state is the last valid step's and the reverse direction starts at L-1
                hs[k] = b.op("where", valid[k], hnew, b.zeros_like(hnew))
                hcur = b.op("where", valid[k], hnew, hcur)
                ccur = b.op("where", valid[k], cnew, ccur) if mode == "lstm" else None
            outs.append(_join(b, hs, 0))
            hy.append(hcur)
            cy.append(ccur)
        x = outs[0] if nd == 1 else b.op("Concat", *outs, dim=2, num_args=nd)
        if layer < nl - 1 and params["p"] > 0:
            if masks is not None:
                mask = masks[layer]
            elif sample:
                mask = b.outputs("Dropout", x, p=params["p"], mode="always")[1]
            else:
                mask = b.ones_like(x)
            used.append(mask)
            x = b.mul(x, mask)
    states = [_join(b, hy, 0)] + ([_join(b, cy, 0)] if mode == "lstm" else [])
    return [x] + (states if params["state_outputs"] else []), used


def _rnn_expand(b, inputs, params, in_shapes):
    outs, masks = unroll(b, inputs, params, in_shapes[0])
    return outs + masks


def _rnn_sensitive(params):
    return params["p"] > 0 and params["num_layers"] > 1


def _rnn_variant(node, inputs, is_train, in_shapes):
    """Every RNN node is unrolled here (before gradients, so compiled gradients are those of
    the parts); training samples the masks."""
    from ..builder import Builder  # the builder imports the registry this module belongs to
    outs, masks = unroll(Builder(node.name), inputs, node.params, in_shapes[0],
                         sample=is_train and _rnn_sensitive(node.params))
    return outs + masks


def _rnn_grad(b, node, ogs):
    params = node.params
    nv, nm = _num_visible(params), _num_masks(params)
    n_in = len(node.inputs)
    masks = [node.out(nv + k) for k in range(nm)]
    bwd = b.node("_rnn_backward", list(node.inputs) + masks + list(ogs[:nv]), dict(node.attrs))
    return [Entry(bwd, k) for k in range(n_in)]


def _np_rnn(params, x, w, h0, *rest):
    """Reference: the same equations step by step in float64 (tests only)."""
    mode, h, nl, nd = params["mode"], params["state_size"], params["num_layers"], _dirs(params)
    c0 = rest[0] if mode == "lstm" else None
    if params["use_sequence_length"]:
        lens = np.trunc(rest[-1].astype(np.float64)).astype(np.int64)
    else:
        lens = np.full(x.shape[1], x.shape[0])
    g = GATES[mode]
    layout, _ = param_layout(params, x.shape[2])
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    seq = x.astype(np.float64)
    w = w.astype(np.float64)
    hy, cy = [], []
    for layer in range(nl):
        outs = []
        for d in range(nd):
            _, _, wi_off, ni, wh_off, bi_off, bh_off = layout[layer * nd + d]
            wi = w[wi_off:wi_off + g * h * ni].reshape(g * h, ni)
            wh = w[wh_off:wh_off + g * h * h].reshape(g * h, h)
            bi, bh = w[bi_off:bi_off + g * h], w[bh_off:bh_off + g * h]
            hc = h0[layer * nd + d].astype(np.float64)
            cc = c0[layer * nd + d].astype(np.float64) if c0 is not None else None
            ys = [None] * len(seq)
            for k in (range(len(seq)) if d == 0 else reversed(range(len(seq)))):
                xw, hw = seq[k] @ wi.T + bi, hc @ wh.T + bh
                if mode == "lstm":
                    i, f, gg, o = np.split(xw + hw, 4, axis=1)
                    cn = sig(f) * cc + sig(i) * np.tanh(gg)
                    if params["lstm_state_clip_min"] is not None or params["lstm_state_clip_max"] is not None:
                        cn = np.clip(cn, params["lstm_state_clip_min"], params["lstm_state_clip_max"])
                    hn = sig(o) * np.tanh(cn)
                elif mode == "gru":
                    xr, xz, xn = np.split(xw, 3, axis=1)
                    hr, hz, hhn = np.split(hw, 3, axis=1)
                    r, z = sig(xr + hr), sig(xz + hz)
                    hn = (1 - z) * np.tanh(xn + r * hhn) + z * hc
                else:
                    hn = np.maximum(xw + hw, 0) if mode == "rnn_relu" else np.tanh(xw + hw)
                keep = (k < lens)[:, None]
                hc = np.where(keep, hn, hc)
                if mode == "lstm":
                    cc = np.where(keep, cn, cc)
                ys[k] = np.where(keep, hn, 0.0)
            outs.append(np.stack(ys))
            hy.append(hc)
            cy.append(cc)
        seq = np.concatenate(outs, axis=2)
    res = [seq.astype(x.dtype)]
    if params["state_outputs"]:
        res.append(np.stack(hy).astype(x.dtype))
        if mode == "lstm":
            res.append(np.stack(cy).astype(x.dtype))
    return res[0] if len(res) == 1 else tuple(res)


register(OpDef("RNN", kind="composite", inputs=_inputs, schema=SCHEMA, outputs=lambda p: _num_visible(p) + _num_masks(p),
               visible=_num_visible, output_names=_output_names, shape=_rnn_shape, dtype=_rnn_type,
               expand=_rnn_expand, expand_shapes=True, gradient=_rnn_grad, reference=_np_rnn,
               doc="Multi-layer (bidirectional) Elman RNN, LSTM or GRU over data (T, N, I) with MXNet's "
                   "packed parameter vector; dropout p between layers in training. Outputs: output "
                   "(T, N, D*H) and, with state_outputs, the final hidden (and cell) states."))
TRAINING_VARIANTS["RNN"] = (_rnn_sensitive, _rnn_variant)


# ---------------------------------------------------------------- the tape's gradient
def _bwd_split(params):
    n_in = len(_inputs(params))
    return n_in, _num_masks(params), _num_visible(params)


def _bwd_inputs(params):
    n_in, nm, nv = _bwd_split(params)
    return _inputs(params) + ["mask%d" % k for k in range(nm)] + ["ograd%d" % k for k in range(nv)]


def _bwd_shape(params, ins, outs):
    n_in, nm, nv = _bwd_split(params)
    fwd_outs = list(ins[n_in + nm:]) + list(ins[n_in:n_in + nm])
    new_ins, new_fwd = _rnn_shape(params, [unify(a, o) for a, o in zip(ins[:n_in], outs)], fwd_outs)
    new_ins = [unify(a, o) for a, o in zip(new_ins, outs)]
    return new_ins + new_fwd[nv:] + new_fwd[:nv], list(new_ins)


def _bwd_type(params, ins, outs):
    """Each gradient has its input's type (sequence_length's may be an integer type)."""
    n_in = len(_inputs(params))
    fwd_ins = [unify_type(a, o) for a, o in zip(ins[:n_in], outs)]
    new_ins, _ = _rnn_type(params, fwd_ins + list(ins[n_in:]), [])
    return new_ins, new_ins[:n_in]


def _bwd_expand(b, inputs, params, in_shapes):
    """Unroll the forward on stand-in variables, differentiate it, then read the real inputs."""
    from ..passes.gradient import gradient  # passes import the registry this module belongs to
    n_in, nm, nv = _bwd_split(params)
    stand_in = [Node(None, "%s_in%d" % (b.prefix, k)) for k in range(n_in)]
    outs, _ = unroll(b, [Entry(v) for v in stand_in], params, in_shapes[0],
                     masks=list(inputs[n_in:n_in + nm]))
    grads = gradient(Graph(outs), stand_in, list(inputs[n_in + nm:]))
    return _substitute(grads, {v.uid: e for v, e in zip(stand_in, inputs[:n_in])})


def _substitute(entries, replace):
    """Copies of the nodes between ``entries`` and the variables in ``replace`` (uid -> Entry),
    reading the replacements; nodes that read none of them are kept."""
    mapping = {}
    for node in Graph(entries).nodes:
        if node.is_variable:
            mapping[(node.uid, 0)] = replace.get(node.uid, Entry(node))
            continue
        inputs = [mapping[e.key()] for e in node.inputs]
        if all(a == e for a, e in zip(inputs, node.inputs)):
            copy = node
        else:
            copy = Node(node.op, node.name, node.attrs, inputs, params=node.params)
        for i in range(node.num_outputs):
            mapping[(node.uid, i)] = Entry(copy, i)
    return [mapping[e.key()] for e in entries]


register(OpDef("_rnn_backward", kind="composite", inputs=_bwd_inputs, schema=SCHEMA,
               outputs=lambda p: len(_inputs(p)), shape=_bwd_shape, dtype=_bwd_type, expand=_bwd_expand,
               expand_shapes=True,
               doc="Gradients of RNN's inputs (autograd tapes): the forward unrolled again with the "
                   "saved dropout masks, differentiated."))
