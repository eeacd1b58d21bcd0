"""Shape and dtype helpers shared by the operators' inference rules.

A shape is a tuple of ints, or None when unknown; a 0 dimension is unknown
too, as in MXNet 1.x. Rules raise ``InferError``; the inference pass adds the
node, operator and input shapes to the message.
"""
from __future__ import annotations


class InferError(Exception):
    pass


def known(shape):
    return shape is not None and all(d > 0 for d in shape) if shape is not None else False


def unify(a, b):
    """Merge two partial shapes or raise if they disagree."""
    if a is None:
        return b
    if b is None:
        return a
    if len(a) != len(b):
        raise InferError("shapes %s and %s differ" % (a, b))
    out = []
    for x, y in zip(a, b):
        if x == 0:
            out.append(y)
        elif y == 0 or x == y:
            out.append(x)
        else:
            raise InferError("shapes %s and %s differ" % (a, b))
    return tuple(out)


def unify_all(shapes):
    s = None
    for x in shapes:
        s = unify(s, x)
    return s


def unify_type(a, b):
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise InferError("dtypes %s and %s differ" % (a, b))


def unify_all_types(types):
    t = None
    for x in types:
        t = unify_type(t, x)
    return t


def broadcast(a, b):
    """numpy broadcasting of two known shapes (MXNet's broadcast_* rule)."""
    nd = max(len(a), len(b))
    a = (1,) * (nd - len(a)) + tuple(a)
    b = (1,) * (nd - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise InferError("shapes %s and %s cannot be broadcast together" % (a, b))
    return tuple(out)


def norm_axis(axis, ndim, opname="axis"):
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise InferError("%s %d out of range for %d dimensions" % (opname, axis, ndim))
    return a


def norm_axes(axes, ndim):
    return tuple(sorted({norm_axis(a, ndim) for a in axes}))


def passthrough_types(n_in, n_out):
    """Dtype rule for ops whose first input fixes every other dtype."""
    def rule(params, ins, outs):
        t = unify_all_types(list(ins) + list(outs))
        return [t] * n_in, [t] * n_out
    return rule
