"""kiln.sym: Symbol, Variable, Group, JSON loading, and every registry operator."""
from ..base import numeric_types
from ..compiler.ops import registry as _registry
from .symbol import Group, Symbol, Variable, _create, fromjson, load, load_json, var  # noqa: F401
from . import random  # noqa: F401  (mx.sym.random)


def _make_op(fname):
    def fn(*args, name=None, attr=None, **kwargs):
        return _create(fname, args, kwargs, name=name, attr=attr)
    fn.__name__ = fname
    op = _registry.get(fname)
    fn.__doc__ = op.doc or "Operator %s (from the kiln registry)." % op.name
    return fn


def _scalar_or_symbol(sym_op, scalar_op, rscalar_op=None):
    """MXNet's Python-level helpers (maximum, power...): Symbols or numbers on either side."""
    def fn(left, right, name=None):
        from .symbol import Symbol as S
        if isinstance(left, S) and isinstance(right, S):
            return _create(sym_op, [left, right], {}, name=name)
        if isinstance(left, S) and isinstance(right, numeric_types):
            return _create(scalar_op, [left], {"scalar": right}, name=name)
        if isinstance(right, S) and isinstance(left, numeric_types):
            return _create(rscalar_op or scalar_op, [right], {"scalar": left}, name=name)
        raise TypeError("types (%s, %s) not supported" % (type(left).__name__, type(right).__name__))
    return fn


for _fname in _registry.all_names():
    globals()[_fname] = _make_op(_fname)

maximum = _scalar_or_symbol("_Maximum", "_MaximumScalar")
minimum = _scalar_or_symbol("_Minimum", "_MinimumScalar")
power = _scalar_or_symbol("_Power", "_PowerScalar", "_rpower_scalar")
pow = power  # noqa: A001
hypot = _scalar_or_symbol("_Hypot", "_HypotScalar")


def zeros(shape, dtype=None, name=None, attr=None, **kwargs):
    return _create("_zeros", [], dict(kwargs, shape=shape, dtype=dtype or "float32"), name=name, attr=attr)


def ones(shape, dtype=None, name=None, attr=None, **kwargs):
    return _create("_ones", [], dict(kwargs, shape=shape, dtype=dtype or "float32"), name=name, attr=attr)


def full(shape, val, dtype=None, name=None, attr=None, **kwargs):
    return _create("_full", [], dict(kwargs, shape=shape, value=val, dtype=dtype or "float32"), name=name,
                   attr=attr)


def arange(start, stop=None, step=1.0, repeat=1, infer_range=False, name=None, dtype=None):
    # MXNet writes an absent stop as "None" in the graph's JSON
    return _create("_arange", [], dict(start=start, stop="None" if stop is None else stop, step=step, repeat=repeat, infer_range=infer_range,
                                       dtype=dtype or "float32"), name=name)


def eye(N, M=0, k=0, dtype=None, name=None, attr=None, **kwargs):
    return _create("_eye", [], dict(kwargs, N=N, M=M, k=k, dtype=dtype or "float32"), name=name, attr=attr)


def linspace(start, stop, num, endpoint=True, name=None, dtype=None):
    return _create("_linspace", [], dict(start=start, stop=stop, num=num, endpoint=endpoint,
                                         dtype=dtype or "float32"), name=name)


from . import contrib  # noqa: F401,E402  (mx.sym.contrib, built from the operators above)


def _split_v2_attrs(indices_or_sections, axis, squeeze_axis):
    """MXNet's Python-level split_v2: an int is a section count, a tuple the split points."""
    if isinstance(indices_or_sections, int):
        return {"indices": [], "axis": axis, "squeeze_axis": squeeze_axis, "sections": indices_or_sections}
    if isinstance(indices_or_sections, tuple):
        return {"indices": [0] + list(indices_or_sections), "axis": axis, "squeeze_axis": squeeze_axis,
                "sections": 0}
    raise ValueError("indices_or_sections must either int or tuple of ints")


def split_v2(ary, indices_or_sections, axis=0, squeeze_axis=False):
    """Split ``ary`` into equal sections or at the given indices along ``axis`` (numpy's split)."""
    return _create("_split_v2", [ary], _split_v2_attrs(indices_or_sections, axis, squeeze_axis))
