"""Shape-manipulation operators: Concat, stack, SliceChannel (split), slice,
slice_axis, slice_like, tile, repeat, reverse (flip), SwapAxis (swapaxes),
squeeze and Pad (pad).

Most are ``injective``: each output element reads one input element through
an *index map* (output index -> input index, plus an optional validity
predicate for Pad's constant border). One index map drives the forward kernel
and the gradient: ``_backward_<op>`` scatter-adds the output gradient through
the same map (slices, tile, repeat and Pad edge/reflect, where several output
elements may read one input element), so forward and backward never drift.

kiln differences from MXNet, all more permissive: Pad accepts any rank and
padding on every axis (MXNet: 4-D/5-D, first two axes unpadded).
"""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import compute, numel, scatter_add
from . import params as P
from .layout import reshape_lower
from .registry import OpDef, register
from .shapes import InferError, known, norm_axis, unify, unify_all, unify_all_types, unify_type


def _i64(v):
    if isinstance(v, E.Expr):  # a symbolic size (shape-generic kernels): already int64
        return v
    return E.const(int(v), "int64")


def _and(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return E.call("and", a, b)


def _fill(value, dtype):
    if E.is_float(dtype):
        return E.const(float(value), dtype)
    return E.const(int(value), dtype)


def _schema_attrs(node):
    """The node's attributes as written (strings), schema keys only: safe to pass on."""
    return {k: v for k, v in node.attrs.items() if k in node.op.schema}


def _num_args_inputs(params):
    return ["arg%d" % i for i in range(params.get("num_args") or 0)]


# ---------------------------------------------------------------------------
# Injective single-input operators driven by an index map
# ---------------------------------------------------------------------------
def _register_mapped(name, schema, shape, imap, reference, aliases=(), inputs=("data",), fill=None,
                     gradient=None, dtype=None, doc=""):
    """Register ``name`` and ``_backward_<name>``.

    imap(params, in_shape, out_shape) -> fn(out_index) -> (in_index, valid_pred or None).
    fill(params) -> value written where ``valid`` is false.
    Extra inputs (slice_like's shape_like) only give shapes; they get no gradient.
    """
    n_in = len(inputs)

    def lower(params, ins, outs):
        x, out = ins[0], outs[0]
        f = imap(params, x.shape, out.shape)

        def body(*i):
            idx, valid = f(list(i))
            v = x.load(idx)
            if valid is not None:
                v = E.select(valid, v, _fill(fill(params), x.dtype))
            return v
        return [compute(out, body)]

    def grad(b, node, ogs):
        g = b.op("_backward_" + name, ogs[0], node.inputs[0], **_schema_attrs(node))
        return [g] + [None] * (n_in - 1)

    def bwd_lower(params, ins, outs):
        og, out = ins[0], outs[0]
        f = imap(params, out.shape, og.shape)

        def target(*i):
            return f(list(i))[0]

        def value(*i):
            valid = f(list(i))[1]
            v = og.load(list(i))
            return v if valid is None else E.select(valid, v, _fill(0, og.dtype))
        return [scatter_add(out, og.shape, target, value)]

    def bwd_shape(params, ins, outs):
        return [ins[0], unify(ins[1], outs[0])], [unify(ins[1], outs[0])]

    def bwd_type(params, ins, outs):
        t = unify_type(ins[0], outs[0])
        return [t, ins[1]], [t]

    def bwd_grad(b, node, ogs):
        attrs = _schema_attrs(node)
        if n_in == 1:
            return [b.op(name, ogs[0], **attrs), None]
        # slice_like: the incoming gradient has the forward output's shape
        return [b.op(name, ogs[0], node.inputs[0], **attrs), None]

    def fwd_type(params, ins, outs):
        t = unify_type(ins[0], outs[0])
        return [t] + list(ins[1:]), [t]

    register(OpDef(name, kind="injective", inputs=inputs, schema=schema, shape=shape,
                   dtype=dtype or (fwd_type if n_in > 1 else None), lower=lower,
                   gradient=gradient or grad, reference=reference, aliases=aliases, doc=doc))
    register(OpDef("_backward_" + name, kind="injective", inputs=("ograd", "data"), schema=schema,
                   shape=bwd_shape, dtype=bwd_type, lower=bwd_lower, gradient=bwd_grad))


# ---- slice ----
def _slice_ranges(params, shape):
    """Resolved (begin, step, length) per axis, with MXNet 1.9's numpy-style clamping."""
    begin, end = params["begin"], params["end"]
    step = params.get("step") or ()
    if len(begin) != len(end):
        raise InferError("begin %s and end %s must have the same length" % (begin, end))
    if len(begin) > len(shape):
        raise InferError("slicing %d axes of a %d-d input %s" % (len(begin), len(shape), tuple(shape)))
    if step and len(step) != len(begin):
        raise InferError("step %s must have the length of begin %s" % (step, begin))
    out = []
    for k, n in enumerate(shape):
        s = step[k] if k < len(step) and step[k] is not None else 1
        if k >= len(begin) or (not E.is_static(n) and begin[k] in (None, 0) and end[k] is None and s == 1):
            out.append((0, 1, n))  # the whole axis (a run-time size may be kept, not sliced)
            continue
        if s == 0:
            raise InferError("slice step[%d] cannot be 0" % k)
        b = begin[k] if begin[k] is not None else (n - 1 if s < 0 else 0)
        e = end[k] if end[k] is not None else (-1 if s < 0 else n)
        if b < 0:
            b += n
        if e < 0 and end[k] is not None:
            e += n
        if b < 0 and s > 0:
            b = 0
        if b > n - 1 and s < 0:
            b = n - 1
        if b < 0 or b > n - 1:
            b = -1
        e = min(max(e, -1), n)
        length = 0
        if b >= 0 and e != b:
            length = (e - b - 1) // s + 1 if s > 0 and e > b else ((b - e - 1) // -s + 1 if s < 0 and e < b else 0)
        if length <= 0:
            raise InferError("slicing axis %d of size %d with begin=%s, end=%s, step=%d selects nothing"
                             % (k, n, begin[k], end[k], s))
        out.append((b, s, length))
    return out


def _slice_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    return [x], [unify(tuple(r[2] for r in _slice_ranges(params, x)), outs[0])]


def _ranges_map(ranges):
    def f(i):
        return [r_b + ik * r_s if (r_b, r_s) != (0, 1) else ik for ik, (r_b, r_s, _) in zip(i, ranges)], None
    return f


def _slice_map(params, in_shape, out_shape):
    return _ranges_map(_slice_ranges(params, in_shape))


def _np_ranges(x, ranges):
    return x[np.ix_(*[b + s * np.arange(n) for b, s, n in ranges])].copy()


_register_mapped("slice", {"begin": P.Tuple(optional=True), "end": P.Tuple(optional=True),
                           "step": P.Tuple((), optional=True)},
                 _slice_shape, _slice_map, lambda params, x: _np_ranges(x, _slice_ranges(params, x.shape)),
                 aliases=("crop",))


# ---- slice_axis ----
def _slice_axis_ranges(params, shape):
    a = norm_axis(params["axis"], len(shape))
    n = shape[a]
    b, e = params["begin"], params["end"]
    b = b + n if b < 0 else b
    e = n if e is None else (e + n if e < 0 else e)
    if e > n:
        raise InferError("invalid end=%s for axis %d of size %d" % (params["end"], a, n))
    if not 0 <= b < e:
        raise InferError("invalid begin=%s, end=%s for axis %d of size %d" % (params["begin"], params["end"], a, n))
    return [(b, 1, e - b) if k == a else (0, 1, d) for k, d in enumerate(shape)]


def _slice_axis_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    return [x], [unify(tuple(r[2] for r in _slice_axis_ranges(params, x)), outs[0])]


_register_mapped("slice_axis", {"axis": P.Int(), "begin": P.Int(), "end": P.OptInt(None)},
                 _slice_axis_shape, lambda params, s, o: _ranges_map(_slice_axis_ranges(params, s)),
                 lambda params, x: _np_ranges(x, _slice_axis_ranges(params, x.shape)))


# ---- slice_like ----
def _slice_like_out(params, x, like):
    axes = params["axes"]
    if not axes:
        if len(x) != len(like):
            raise InferError("slice_like on all axes needs equal ranks, got %s and %s" % (x, like))
        axes = range(len(x))
    out = list(x)
    for a in axes:
        ax = norm_axis(a, len(x))
        if ax >= len(like):
            raise InferError("axis %d is out of range for shape_like %s" % (a, like))
        if like[ax] > x[ax]:
            raise InferError("slice axis %d with size %d exceeds the input size %d" % (ax, like[ax], x[ax]))
        out[ax] = like[ax]
    return tuple(out)


def _slice_like_shape(params, ins, outs):
    x, like = ins
    if not (known(x) and known(like)):
        return [x, like], [outs[0]]
    return [x, like], [unify(_slice_like_out(params, x, like), outs[0])]


_register_mapped("slice_like", {"axes": P.Tuple(())}, _slice_like_shape,
                 lambda params, s, o: (lambda i: (i, None)),
                 lambda params, x, like: x[tuple(slice(0, n) for n in _slice_like_out(params, x.shape,
                                                                                        like.shape))].copy(),
                 inputs=("data", "shape_like"))


# ---- tile ----
def _tile_out(params, x):
    reps = tuple(params["reps"])
    if any(r <= 0 for r in reps):
        raise InferError("reps %s must be positive" % (reps,))
    nd = max(len(reps), len(x))
    xs = (1,) * (nd - len(x)) + tuple(x)
    reps = (1,) * (nd - len(reps)) + reps
    return tuple(a * r for a, r in zip(xs, reps))


def _tile_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    return [x], [unify(_tile_out(params, x), outs[0])]


def _tile_map(params, in_shape, out_shape):
    lead = len(out_shape) - len(in_shape)
    return lambda i: ([i[lead + k] % _i64(n) if not E.is_static(n) or n > 1 else _i64(0)
                       for k, n in enumerate(in_shape)], None)


_register_mapped("tile", {"reps": P.Tuple()}, _tile_shape, _tile_map,
                 lambda params, x: np.tile(x, params["reps"]))


# ---- repeat ----
def _repeat_out(params, x):
    r = params["repeats"]
    if r <= 0:
        raise InferError("repeats=%d must be positive" % r)
    if params["axis"] is None:
        return (numel(x) * r,)
    a = norm_axis(params["axis"], len(x))
    return tuple(d * r if k == a else d for k, d in enumerate(x))


def _repeat_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    return [x], [unify(_repeat_out(params, x), outs[0])]


def _repeat_map(params, in_shape, out_shape):
    from .layout import unflatten
    r = _i64(params["repeats"])
    if params["axis"] is None:
        return lambda i: (unflatten(in_shape, i[0] // r), None)
    a = norm_axis(params["axis"], len(in_shape))
    return lambda i: ([ik // r if k == a else ik for k, ik in enumerate(i)], None)


_register_mapped("repeat", {"repeats": P.Int(), "axis": P.OptInt(None)}, _repeat_shape, _repeat_map,
                 lambda params, x: np.repeat(x, params["repeats"], axis=params["axis"]))


# ---- Pad ----
PAD_SCHEMA = {"mode": P.Str("constant", choices=("constant", "edge", "reflect")), "pad_width": P.Tuple(),
              "constant_value": P.Float(0.0)}


def _pad_pairs(params, x):
    pw = params["pad_width"]
    if len(pw) != 2 * len(x):
        raise InferError("pad_width %s needs 2 entries per axis of the %d-d input %s" % (pw, len(x), tuple(x)))
    pairs = [(pw[2 * k], pw[2 * k + 1]) for k in range(len(x))]
    for k, (lo, hi) in enumerate(pairs):
        if lo < 0 or hi < 0:
            raise InferError("pad_width %s must be non-negative" % (pw,))
        if params["mode"] == "reflect" and (lo >= x[k] or hi >= x[k]):
            raise InferError("reflect padding (%d, %d) on axis %d must be smaller than its size %d"
                             % (lo, hi, k, x[k]))
    return pairs


def _pad_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    return [x], [unify(tuple(d + lo + hi for d, (lo, hi) in zip(x, _pad_pairs(params, x))), outs[0])]


def _pad_map(params, in_shape, out_shape):
    pairs = _pad_pairs(params, in_shape)
    mode = params["mode"]

    def f(i):
        idx, valid = [], None
        for ik, n, (lo, _) in zip(i, in_shape, pairs):
            if lo == 0 and out_shape[len(idx)] == n:
                idx.append(ik)
                continue
            j = ik - _i64(lo)
            if mode == "constant":
                valid = _and(valid, _and(E.cmp("ge", j, _i64(0)), E.cmp("lt", j, _i64(n))))
            elif mode == "reflect":
                j = E.select(E.cmp("lt", j, _i64(0)), -j, j)
                j = E.select(E.cmp("ge", j, _i64(n)), _i64(2 * (n - 1)) - j, j)
            idx.append(E.clamp_index(j, n))
        return idx, valid
    return f


def _np_pad(params, x):
    pairs = _pad_pairs(params, x.shape)
    if params["mode"] == "constant":
        return np.pad(x, pairs, mode="constant", constant_values=params["constant_value"]).astype(x.dtype)
    return np.pad(x, pairs, mode=params["mode"])


_register_mapped("Pad", PAD_SCHEMA, _pad_shape, _pad_map, _np_pad, aliases=("pad",),
                 fill=lambda params: params["constant_value"])


# ---------------------------------------------------------------------------
# Bijective layout operators: their gradient is another layout operator
# ---------------------------------------------------------------------------
def _reverse_axes(params, ndim):
    return {norm_axis(a, ndim) for a in params["axis"]}


def _reverse_shape(params, ins, outs):
    s = unify(ins[0], outs[0])
    if known(s):
        _reverse_axes(params, len(s))
    return [s], [s]


def _reverse_lower(params, ins, outs):
    x, out = ins[0], outs[0]
    axes = _reverse_axes(params, x.ndim)
    return [compute(out, lambda *i: x.load([_i64(n - 1) - ik if k in axes else ik
                                            for k, (ik, n) in enumerate(zip(i, x.shape))]))]


register(OpDef("reverse", kind="injective", aliases=("flip",), schema={"axis": P.Tuple()}, shape=_reverse_shape,
               lower=_reverse_lower,
               gradient=lambda b, node, ogs: [b.op("reverse", ogs[0], **_schema_attrs(node))],
               reference=lambda params, x: np.flip(x, axis=tuple(sorted(_reverse_axes(params, x.ndim)))).copy()))


def _swap_dims(params, ndim):
    return norm_axis(params["dim1"], ndim, "dim1"), norm_axis(params["dim2"], ndim, "dim2")


def _swap_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    a, c = _swap_dims(params, len(x))
    s = list(x)
    s[a], s[c] = s[c], s[a]
    return [x], [unify(tuple(s), outs[0])]


def _swap_lower(params, ins, outs):
    x, out = ins[0], outs[0]
    a, c = _swap_dims(params, x.ndim)

    def body(*i):
        idx = list(i)
        idx[a], idx[c] = i[c], i[a]
        return x.load(idx)
    return [compute(out, body)]


register(OpDef("SwapAxis", kind="injective", aliases=("swapaxes",), schema={"dim1": P.Int(0), "dim2": P.Int(0)},
               shape=_swap_shape, lower=_swap_lower,
               gradient=lambda b, node, ogs: [b.op("SwapAxis", ogs[0], **_schema_attrs(node))],
               reference=lambda params, x: np.swapaxes(x, *_swap_dims(params, x.ndim)).copy()))


def _squeeze_out(params, x):
    if params["axis"] is None:
        out = tuple(d for d in x if d != 1)
    else:
        axes = {norm_axis(a, len(x)) for a in params["axis"]}
        for a in axes:
            if x[a] != 1:
                raise InferError("cannot squeeze axis %d of size %d" % (a, x[a]))
        out = tuple(d for k, d in enumerate(x) if k not in axes)
    return out or (1,)


def _squeeze_shape(params, ins, outs):
    x = ins[0]
    if not known(x):
        return [x], [outs[0]]
    return [x], [unify(_squeeze_out(params, x), outs[0])]


register(OpDef("squeeze", kind="injective", schema={"axis": P.Tuple(None)}, shape=_squeeze_shape,
               lower=reshape_lower, gradient=lambda b, node, ogs: [b.op("reshape_like", ogs[0], node.inputs[0])],
               reference=lambda params, x: x.reshape(_squeeze_out(params, x.shape))))


# ---------------------------------------------------------------------------
# Concat / stack / SliceChannel
# ---------------------------------------------------------------------------
def _concat_out(shapes, dim, where="Concat"):
    nd = len(shapes[0])
    d = norm_axis(dim, nd, "dim")
    for s in shapes:
        if len(s) != nd or any(a != b for k, (a, b) in enumerate(zip(s, shapes[0])) if k != d):
            raise InferError("all inputs must have the same shape except on dim %d, got %s"
                             % (d, ", ".join(str(tuple(x)) for x in shapes)))
    return d, tuple(sum(s[d] for s in shapes) if k == d else n for k, n in enumerate(shapes[0]))


def _concat_shape(params, ins, outs):
    ins = list(ins)
    if ins and all(known(s) for s in ins):
        _, out = _concat_out(ins, params["dim"])
        return ins, [unify(out, outs[0])]
    out = outs[0]
    missing = [k for k, s in enumerate(ins) if not known(s)]
    if known(out) and len(missing) == 1:
        d = norm_axis(params["dim"], len(out), "dim")
        rest = sum(s[d] for k, s in enumerate(ins) if k != missing[0])
        if out[d] - rest <= 0:
            raise InferError("output %s is too small for the given inputs" % (out,))
        ins[missing[0]] = unify(ins[missing[0]], tuple(out[d] - rest if k == d else n for k, n in enumerate(out)))
    return ins, [out]


def _concat_lower(params, ins, outs):
    out = outs[0]
    d = norm_axis(params["dim"], out.ndim, "dim")
    ends, acc = [], 0
    for x in ins:
        acc += x.shape[d]
        ends.append(acc)

    def load(k, i):
        idx = list(i)
        idx[d] = E.clamp_index(i[d] - _i64(ends[k] - ins[k].shape[d]), ins[k].shape[d])
        return ins[k].load(idx)

    def body(*i):
        v = load(len(ins) - 1, i)
        for k in range(len(ins) - 2, -1, -1):
            v = E.select(E.cmp("lt", i[d], _i64(ends[k])), load(k, i), v)
        return v
    return [compute(out, body)]


def _concat_grad(b, node, ogs):
    p = node.params
    return b.outputs("_backward_Concat", ogs[0], *node.inputs, num_args=p["num_args"], dim=p["dim"])


CONCAT_SCHEMA = {"num_args": P.Int(), "dim": P.Int(1)}

register(OpDef("Concat", kind="injective", aliases=("concat",), inputs=_num_args_inputs, schema=CONCAT_SCHEMA,
               num_args_key="num_args", shape=_concat_shape, lower=_concat_lower, gradient=_concat_grad,
               reference=lambda params, *xs: np.concatenate(xs, axis=params["dim"])))


def _rnn_param_concat_shape(params, ins, outs):
    """Concat, but several unknown inputs share what the known output leaves equally (MXNet's
    rule for gluon.rnn's packed vector, where every direction's first i2h weight is deferred)."""
    ins = list(ins)
    out = outs[0]
    missing = [k for k, s in enumerate(ins) if not known(s)]
    if known(out) and len(missing) > 1:
        d = norm_axis(params["dim"], len(out), "dim")
        rest, share = divmod(out[d] - sum(s[d] for k, s in enumerate(ins) if k not in missing), len(missing))
        if share or rest <= 0:
            raise InferError("output %s cannot be shared equally by the %d inputs of unknown size"
                             % (out, len(missing)))
        for k in missing:
            ins[k] = unify(ins[k], tuple(rest if j == d else n for j, n in enumerate(out)))
    return _concat_shape(params, ins, outs)


register(OpDef("_rnn_param_concat", kind="injective", inputs=_num_args_inputs, schema=CONCAT_SCHEMA,
               num_args_key="num_args", shape=_rnn_param_concat_shape, lower=_concat_lower, gradient=_concat_grad,
               reference=lambda params, *xs: np.concatenate(xs, axis=params["dim"]),
               doc="Concat of gluon.rnn's flattened parameters into the packed RNN vector."))


def _bconcat_shape(params, ins, outs):
    likes = [unify(a, b) for a, b in zip(ins[1:], outs)]
    return [ins[0]] + likes, likes


def _bconcat_type(params, ins, outs):
    t = unify_all_types([ins[0]] + list(outs))
    return [t] + list(ins[1:]), [t] * len(outs)


def _bconcat_lower(params, ins, outs):
    og = ins[0]
    d = norm_axis(params["dim"], og.ndim, "dim")
    stages, off = [], 0
    for out in outs:
        def body(*i, off=off):
            idx = list(i)
            idx[d] = i[d] + _i64(off)
            return og.load(idx)
        stages.append(compute(out, body))
        off += out.shape[d]
    return stages


register(OpDef("_backward_Concat", kind="injective",
               inputs=lambda params: ["ograd"] + _num_args_inputs(params), schema=CONCAT_SCHEMA,
               outputs=lambda params: params["num_args"], shape=_bconcat_shape, dtype=_bconcat_type,
               lower=_bconcat_lower,
               gradient=lambda b, node, ogs: [b.op("Concat", *ogs, num_args=len(ogs), dim=node.params["dim"])]
               + [None] * len(ogs)))


# ---- stack ----
def _stack_shape(params, ins, outs):
    n = params["num_args"]
    s = unify_all(list(ins))
    out = outs[0]
    if s is not None and known(s):
        a = norm_axis(params["axis"], len(s) + 1)
        out = unify(tuple(s[:a]) + (n,) + tuple(s[a:]), out)
    elif known(out):
        a = norm_axis(params["axis"], len(out))
        if out[a] != n:
            raise InferError("output %s does not have %d entries on axis %d" % (out, n, a))
        s = unify(s, tuple(out[:a]) + tuple(out[a + 1:]))
    return [s] * len(ins), [out]


def _stack_lower(params, ins, outs):
    out = outs[0]
    a = norm_axis(params["axis"], out.ndim)

    def body(*i):
        idx = list(i[:a]) + list(i[a + 1:])
        v = ins[-1].load(idx)
        for k in range(len(ins) - 2, -1, -1):
            v = E.select(E.cmp("eq", i[a], _i64(k)), ins[k].load(idx), v)
        return v
    return [compute(out, body)]


register(OpDef("stack", kind="injective", inputs=_num_args_inputs, schema={"axis": P.Int(0), "num_args": P.Int()},
               num_args_key="num_args", shape=_stack_shape, lower=_stack_lower,
               gradient=lambda b, node, ogs: b.outputs("SliceChannel", ogs[0], num_outputs=node.params["num_args"],
                                                       axis=node.params["axis"], squeeze_axis=True),
               reference=lambda params, *xs: np.stack(xs, axis=params["axis"])))


# ---- SliceChannel / split ----
SPLIT_SCHEMA = {"num_outputs": P.Int(), "axis": P.Int(1), "squeeze_axis": P.Bool(False)}


def _split_outs(params, x):
    n = params["num_outputs"]
    if n <= 0:
        raise InferError("num_outputs=%d must be positive" % n)
    a = norm_axis(params["axis"], len(x))
    if x[a] % n:
        raise InferError("num_outputs (%d) does not divide the size %d of axis %d" % (n, x[a], a))
    if params["squeeze_axis"] and x[a] != n:
        raise InferError("squeeze_axis needs the size of axis %d (%d) to equal num_outputs (%d)" % (a, x[a], n))
    part = x[a] // n
    if params["squeeze_axis"]:
        s = tuple(x[:a]) + tuple(x[a + 1:])
        return a, part, s or (1,)
    return a, part, tuple(part if k == a else d for k, d in enumerate(x))


def _split_shape(params, ins, outs):
    x = ins[0]
    n = params["num_outputs"]
    if not known(x):
        return [x], list(outs)
    _, _, s = _split_outs(params, x)
    return [x], [unify(s, o) for o in outs] if len(outs) == n else [s] * n


def _split_lower(params, ins, outs):
    x = ins[0]
    a, part, _ = _split_outs(params, x.shape)
    squeeze = params["squeeze_axis"]
    stages = []
    for k, out in enumerate(outs):
        def body(*i, k=k):
            if squeeze:
                idx = list(i[:a]) + [_i64(k)] + list(i[a:]) if x.ndim > 1 else [_i64(k)]
            else:
                idx = list(i)
                idx[a] = i[a] + _i64(k * part)
            return x.load(idx)
        stages.append(compute(out, body))
    return stages


def _split_grad(b, node, ogs):
    p = node.params
    if p["squeeze_axis"]:
        g = b.op("stack", *ogs, num_args=len(ogs), axis=p["axis"])
        return [b.op("reshape_like", g, node.inputs[0])]  # 1-d input: (1,) outputs stack to (n, 1)
    return [b.op("Concat", *ogs, num_args=len(ogs), dim=p["axis"])]


def _np_split(params, x):
    parts = np.split(x, params["num_outputs"], axis=params["axis"])
    if params["squeeze_axis"]:
        parts = [np.squeeze(q, axis=params["axis"]).reshape(_split_outs(params, x.shape)[2]) for q in parts]
    return tuple(q.copy() for q in parts)


register(OpDef("SliceChannel", kind="injective", aliases=("split",), schema=SPLIT_SCHEMA,
               outputs=lambda params: params["num_outputs"], shape=_split_shape,
               dtype=lambda params, ins, outs: (lambda t: ([t], [t] * params["num_outputs"]))(
                   unify_all_types([ins[0]] + list(outs))),
               lower=_split_lower, gradient=_split_grad, reference=_np_split))
