"""Scalar expressions: the body language of every kernel.

An operator's lowering describes one output element as an expression over
loop indices (``Var``) and loads from its input buffers (``Load``). Index
arithmetic is int64; values carry the dtype they are stored as. ``Reduce``
folds a body over extra loop variables. Backends compile these trees; fusion
later substitutes one operator's expression into another's loads.
"""
from __future__ import annotations

from numbers import Number

FLOATS = ("float16", "float32", "float64")
SIGNED = ("int8", "int32", "int64")
UNSIGNED = ("uint8", "bool")

# Scalar functions a backend must provide: name -> arity.
UNARY_FUNCS = (
    "neg", "abs", "sqrt", "exp", "expm1", "log", "log1p", "log2", "log10", "sin", "cos", "tan",
    "asin", "acos", "atan", "sinh", "cosh", "tanh", "floor", "ceil", "round", "rint", "trunc",
    "erf", "tgamma", "lgamma", "not",
)
BINARY_FUNCS = ("add", "sub", "mul", "div", "fmod", "pow", "max", "min", "hypot", "atan2",
                "and", "or", "xor") + ("bitand", "bitor", "bitxor", "shl", "lshr")
# Integer-only bit operations (same dtype in and out; the random generator's Philox rounds):
# bitwise and/or/xor, shift left, logical (zero-filling) shift right. ``mul`` on int64 wraps
# modulo 2**64, which gives a full 32x32 -> 64 bit product of zero-extended 32-bit values.
BIT_FUNCS = ("bitand", "bitor", "bitxor", "shl", "lshr")
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
PRED = "pred"  # an i1 truth value (comparisons); never stored in a buffer
REDUCERS = ("sum", "prod", "max", "min", "argmax", "argmin")


def is_float(dtype):
    return dtype in FLOATS


def _wrap(value, dtype):
    return value if isinstance(value, Expr) else Const(value, dtype)


class Expr:
    __slots__ = ("dtype",)

    # Comparing an expression with a Python number is a lowering asking a question about a
    # symbolic size (shape-generic kernels) that has no compile-time answer: refuse it rather
    # than let object identity answer False. Expressions compare by identity otherwise.
    def __eq__(self, other):
        if isinstance(other, Number):
            raise TypeError("symbolic value %r compared with %r" % (self, other))
        return self is other

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = object.__hash__

    def __bool__(self):
        raise TypeError("truth value of symbolic value %r" % (self,))

    # Arithmetic sugar for lowering code; constants take the other side's dtype.
    def _bin(self, fn, other, rev=False):
        if isinstance(other, float) and not is_float(self.dtype):
            # e.g. ``scale / (size // n)`` with a symbolic size: int64 arithmetic would truncate
            raise TypeError("float %r in %s arithmetic on %r" % (other, self.dtype, self))
        other = _wrap(other, self.dtype)
        return Call(fn, (other, self) if rev else (self, other))

    def __add__(self, o):
        return self._bin("add", o)

    def __radd__(self, o):
        return self._bin("add", o, True)

    def __sub__(self, o):
        return self._bin("sub", o)

    def __rsub__(self, o):
        return self._bin("sub", o, True)

    def __mul__(self, o):
        return self._bin("mul", o)

    def __rmul__(self, o):
        return self._bin("mul", o, True)

    def __truediv__(self, o):
        return self._bin("div", o)

    def __rtruediv__(self, o):
        return self._bin("div", o, True)

    def __floordiv__(self, o):  # index arithmetic: both sides non-negative int64
        return self._bin("div", o)

    def __mod__(self, o):  # index arithmetic only; value modulo is ops.elemwise's job
        return self._bin("fmod", o)

    def __neg__(self):
        return Call("neg", (self,))


class Const(Expr):
    __slots__ = ("value",)

    def __init__(self, value, dtype):
        if isinstance(value, Expr):
            raise TypeError("constant from symbolic value %r" % (value,))
        self.value = value
        self.dtype = dtype

    def __repr__(self):
        return "%r:%s" % (self.value, self.dtype)


class Var(Expr):
    """A loop index (int64)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name
        self.dtype = "int64"

    def __repr__(self):
        return self.name


class Dim(Expr):
    """Size number ``index`` of a shape-generic kernel, read at run time from its dims array.

    Sizes 0 and 1 stay literal ints in such kernels and equal sizes share one
    ``Dim``, so ``Dim == 0``/``== 1`` is truthfully False and two Dims are equal
    exactly when their runtime values are; any other question about the value
    (``int()``, ``range``, ``<``, ``== 5``) raises TypeError, which the generic
    planner takes as "this lowering needs concrete sizes".
    """

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = int(index)
        self.dtype = "int64"

    def __eq__(self, other):
        if isinstance(other, Dim):
            return self.index == other.index
        if other is None:
            return False
        if isinstance(other, Number) and other in (0, 1):
            return False
        if isinstance(other, Expr):
            return False
        raise TypeError("symbolic size %r compared with %r" % (self, other))

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(("dim", self.index))

    def __repr__(self):
        return "d%d" % self.index


def is_static(size):
    """True for a compile-time (int) size, False for a symbolic one."""
    return not isinstance(size, Expr)


def monomial(x):
    """``(coefficient, sorted Dim indices)`` when size ``x`` is a product of ints and ``Dim``s
    (``numel`` of a symbolic shape), else None: a normal form in which equal products of
    run-time sizes compare equal and divisibility can be decided."""
    if is_static(x):
        return (int(x), ())
    if isinstance(x, Dim):
        return (1, (x.index,))
    if isinstance(x, Call) and x.fn == "mul":
        a, b = (monomial(y) for y in x.args)
        if a is not None and b is not None:
            coef = a[0] * b[0]
            return (coef, tuple(sorted(a[1] + b[1]))) if coef else (0, ())
    if isinstance(x, Const) and x.dtype == "int64":
        return (int(x.value), ())
    return None


def from_monomial(m):
    """The size (an int, or an int64 expression of ``Dim``s) of a ``monomial``."""
    coef, dims = m
    if not dims or coef == 0:
        return coef
    out = Dim(dims[0])
    for k in dims[1:]:
        out = out * Dim(k)
    return out if coef == 1 else out * coef


def divides(a, b):
    """Whether monomial ``a`` divides ``b`` for every run-time size (None: undecidable)."""
    if a is None or b is None:
        return None
    rest = list(b[1])
    for k in a[1]:
        if k not in rest:
            return False
        rest.remove(k)
    return a[0] != 0 and b[0] % a[0] == 0


def int_value(x, dims):
    """Value of an int64 size expression (``Dim``s, ints, add/sub/mul/div) for run-time sizes ``dims``."""
    if is_static(x):
        return int(x)
    if isinstance(x, Dim):
        return int(dims[x.index])
    if isinstance(x, Const):
        return int(x.value)
    if isinstance(x, Call) and x.fn in ("add", "sub", "mul", "div", "fmod", "max", "min"):
        a, b = (int_value(y, dims) for y in x.args)
        return {"add": a + b, "sub": a - b, "mul": a * b, "div": a // b if b else 0,
                "fmod": a % b if b else 0, "max": max(a, b), "min": min(a, b)}[x.fn]
    raise TypeError("not a size expression: %r" % (x,))


def same_shape(a, b):
    """Whether two shapes (ints and ``Dim`` sizes) are equal for every run-time size; unlike
    ``==`` it never asks a symbolic size about a number."""
    return len(a) == len(b) and all(
        (x.index == y.index) if isinstance(x, Dim) and isinstance(y, Dim)
        else (is_static(x) and is_static(y) and x == y) for x, y in zip(a, b))


class Load(Expr):
    """Element ``index`` of kernel buffer ``buf`` (a ``kernel.Buffer``)."""

    __slots__ = ("buf", "index")

    def __init__(self, buf, index):
        if len(index) != len(buf.shape):
            raise ValueError("load of %d-d buffer with %d indices" % (len(buf.shape), len(index)))
        self.buf = buf
        self.index = tuple(_wrap(i, "int64") for i in index)
        self.dtype = buf.dtype


class Call(Expr):
    """A scalar function (``UNARY_FUNCS``/``BINARY_FUNCS``); comparisons and logic give PRED."""

    __slots__ = ("fn", "args")

    def __init__(self, fn, args):
        self.fn = fn
        self.args = tuple(args)
        if fn in COMPARISONS or fn in ("and", "or", "xor", "not"):
            self.dtype = PRED
        else:
            self.dtype = self.args[0].dtype
        if fn in BINARY_FUNCS or fn in COMPARISONS:
            a, b = self.args
            if a.dtype != b.dtype:
                raise TypeError("%s of %s and %s" % (fn, a.dtype, b.dtype))


class Select(Expr):
    __slots__ = ("cond", "a", "b")

    def __init__(self, cond, a, b):
        self.cond = cond
        self.a = a
        self.b = _wrap(b, a.dtype)
        self.dtype = a.dtype


class Cast(Expr):
    __slots__ = ("x",)

    def __init__(self, x, dtype):
        self.x = x
        self.dtype = dtype


class Reduce(Expr):
    """Fold ``body`` over loop variables ``rvars`` with extents ``extents``.

    ``argmax``/``argmin`` give the flat position (row-major over ``rvars``) of
    the first extreme value, in ``dtype``.
    """

    __slots__ = ("kind", "rvars", "extents", "body")

    def __init__(self, kind, rvars, extents, body, dtype=None):
        if kind not in REDUCERS:
            raise ValueError("unknown reducer %r" % kind)
        self.kind = kind
        self.rvars = tuple(rvars)
        self.extents = tuple(e if isinstance(e, Expr) else int(e) for e in extents)  # Exprs: runtime
        self.body = body
        self.dtype = dtype or body.dtype


# Helpers used throughout operator lowerings.
def call(fn, *args):
    return Call(fn, args)


def cmp(op, a, b):
    return Call(op, (a, _wrap(b, a.dtype)))


def select(cond, a, b):
    return Select(cond, a, _wrap(b, a.dtype))


def cast(x, dtype):
    return x if x.dtype == dtype else Cast(x, dtype)


def const(value, dtype):
    """A constant; a symbolic size (shape-generic kernels) becomes its value cast to ``dtype``."""
    if isinstance(value, Expr):
        return cast(value, dtype)
    return Const(value, dtype)


def maximum(a, b):
    return Call("max", (a, _wrap(b, a.dtype)))


def minimum(a, b):
    return Call("min", (a, _wrap(b, a.dtype)))


def clamp_index(i, n):
    """Clamp an int64 index into [0, n)."""
    return maximum(minimum(i, n - 1), 0)


def to_index(x):
    """A value used as an index (take, Embedding, pick): truncate towards zero, int64."""
    if is_float(x.dtype):
        x = Call("trunc", (x,))
    return cast(x, "int64")


_counter = [0]


def fresh_vars(n, prefix="r"):
    _counter[0] += 1
    return [Var("%s%d_%d" % (prefix, _counter[0], k)) for k in range(n)]


def map_children(e, fn):
    """A copy of ``e`` with ``fn`` applied to each direct child (``e`` itself for leaves)."""
    if isinstance(e, Load):
        return Load(e.buf, [fn(i) for i in e.index])
    if isinstance(e, Call):
        return Call(e.fn, [fn(a) for a in e.args])
    if isinstance(e, Select):
        return Select(fn(e.cond), fn(e.a), fn(e.b))
    if isinstance(e, Cast):
        return Cast(fn(e.x), e.dtype)
    if isinstance(e, Reduce):
        return Reduce(e.kind, e.rvars, e.extents, fn(e.body), e.dtype)
    return e


def substitute(e, env, memo=None):
    """Replace loop variables by name (``env``: name -> Expr); shared subtrees stay shared."""
    memo = {} if memo is None else memo

    def go(x):
        hit = memo.get(id(x))
        if hit is not None:
            return hit
        out = env.get(x.name, x) if isinstance(x, Var) else map_children(x, go)
        memo[id(x)] = out
        return out
    return go(e)


def structural_key(e, memo):
    """A hashable key equal for structurally equal expressions (memoised by object)."""
    hit = memo.get(id(e))
    if hit is not None:
        return hit
    if isinstance(e, Const):
        key = ("c", e.value, e.dtype)
    elif isinstance(e, Var):
        key = ("v", e.name)
    elif isinstance(e, Dim):
        key = ("d", e.index)
    elif isinstance(e, Load):
        key = ("l", id(e.buf)) + tuple(structural_key(i, memo) for i in e.index)
    elif isinstance(e, Call):
        key = ("f", e.fn) + tuple(structural_key(a, memo) for a in e.args)
    elif isinstance(e, Select):
        key = ("s", structural_key(e.cond, memo), structural_key(e.a, memo), structural_key(e.b, memo))
    elif isinstance(e, Cast):
        key = ("t", e.dtype, structural_key(e.x, memo))
    else:
        extents = tuple(x if isinstance(x, int) else structural_key(x, memo) for x in e.extents)
        key = ("r", e.kind, tuple(v.name for v in e.rvars), extents, e.dtype, structural_key(e.body, memo))
    memo[id(e)] = key
    return key


def contains_reduce(e):
    seen = set()

    def go(x):
        if id(x) in seen:
            return False
        seen.add(id(x))
        if isinstance(x, Reduce):
            return True
        found = []
        map_children(x, lambda c: found.append(go(c)) or c)
        return any(found)
    return go(e)


def loaded_buffers(exprs):
    """ids of the buffers that ``exprs`` load from."""
    seen, found = set(), set()

    def go(x):
        if id(x) in seen:
            return x
        seen.add(id(x))
        if isinstance(x, Load):
            found.add(id(x.buf))
        map_children(x, go)
        return x
    for e in exprs:
        go(e)
    return found
