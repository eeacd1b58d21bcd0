"""The operator registry: one ``OpDef`` per operator, read by every layer.

Symbol and NDArray functions, JSON parsing, shape and type inference, the
gradient pass, composite expansion and lowering all look operators up here,
so an operator is declared once and never drifts between layers.
"""
from __future__ import annotations

from ...runtime.errors import MXNetError
from . import params as P

_REGISTRY = {}
_ALIASES = {}

# op name -> (sensitive(params) -> bool, variant(node, inputs, is_train, in_shapes) -> replacement
# or None): operators whose program depends on training mode (Dropout, BatchNorm, RNN);
# passes/training.py applies them, right after shape inference. A replacement is a list of Entries for the node's outputs, or a pair
# (entries, {aux input index: Entry}) whose second part is the new value of auxiliary states
# the training program must write back (BatchNorm's moving statistics).
TRAINING_VARIANTS = {}

KINDS = ("elementwise", "broadcast", "injective", "reduce", "composite", "opaque")


def _same_shape(params, ins, outs):
    """Default shape rule: every input and output has one shape."""
    from .shapes import unify_all
    s = unify_all(list(ins) + list(outs))
    return [s] * len(ins), [s] * len(outs)


def _same_type(params, ins, outs):
    from .shapes import unify_all_types
    t = unify_all_types(list(ins) + list(outs))
    return [t] * len(ins), [t] * len(outs)


class OpDef:
    """Declaration of one operator.

    inputs: list of input names, or ``fn(params) -> names`` for variadic ops.
    outputs: number of outputs, or ``fn(params) -> int``; ``visible`` likewise.
    output_names: ``fn(params) -> names`` for operators that name outputs.
    shape/dtype: ``fn(params, in, out) -> (in, out)``, entries None when unknown.
    gradient: ``fn(b, node, out_grads) -> [Entry or None per input]``.
    lower: ``fn(params, in_buffers, out_buffers) -> [stages]`` (not composite).
    expand: ``fn(b, inputs, params) -> [Entry]`` (composite only); with ``expand_shapes``
    ``fn(b, inputs, params, in_shapes)``, for expansions whose structure depends on sizes
    (an unrolled RNN).
    reference: ``fn(params, *numpy inputs) -> array or tuple`` (tests only).
    var_attrs: ``{input name: {attribute: value}}`` for variables the frontend creates for
    missing inputs (BatchNorm's moving statistics carry MXNet's ``__init__``).
    """

    def __init__(self, name, *, kind, inputs=("data",), schema=None, outputs=1, visible=None,
                 output_names=None, shape=None, dtype=None, gradient=None, lower=None, expand=None,
                 reference=None, aliases=(), hint=None, aux=(), random=False, num_args_key=None,
                 expand_shapes=False, var_attrs=None, doc=""):
        if kind not in KINDS:
            raise ValueError("unknown kernel kind %r" % kind)
        self.name = name
        self.kind = kind
        self._inputs = inputs
        self.schema = dict(schema or {})
        self._outputs = outputs
        self._visible = visible
        self._output_names = output_names
        self.infer_shape = shape or _same_shape
        self.infer_type = dtype or _same_type
        self.gradient = gradient
        self.lower = lower
        self.expand = expand
        self.expand_shapes = expand_shapes
        self.var_attrs = dict(var_attrs or {})
        self.reference = reference
        self.aliases = tuple(aliases)
        self.hint = hint or name.lower()
        self._aux = aux
        self.random = random
        self.num_args_key = num_args_key
        self.doc = doc

    def __repr__(self):
        return "OpDef(%s)" % self.name

    def input_names(self, params):
        return list(self._inputs(params) if callable(self._inputs) else self._inputs)

    def num_outputs(self, params):
        return self._outputs(params) if callable(self._outputs) else self._outputs

    def num_visible_outputs(self, params):
        if self._visible is None:
            return self.num_outputs(params)
        return self._visible(params) if callable(self._visible) else self._visible

    def output_names(self, params):
        return self._output_names(params) if self._output_names else None

    def aux_inputs(self, params):
        return list(self._aux(params) if callable(self._aux) else self._aux)

    def parse_attrs(self, attrs, node_name):
        return P.parse_attrs(self.name, self.schema, attrs, node_name)

    def format_attrs(self, kwargs, node_name):
        """Python keyword arguments -> MXNet's string attributes, validated."""
        out = {}
        for key, value in kwargs.items():
            field = self.schema.get(key)
            if field is None:
                if P.is_hidden_key(key):
                    out[key] = str(value)
                    continue
                raise MXNetError("operator %s (node %r): unknown attribute %r; valid attributes are %s"
                                 % (self.name, node_name, key, sorted(self.schema) or "none"))
            if value is None and field.default is None:
                continue
            try:
                typed = field.convert(value)
            except (TypeError, ValueError) as err:
                raise P.MXNetTypeError("operator %s (node %r): attribute %s=%r is invalid: %s (expected %s)"
                                       % (self.name, node_name, key, value, err, field.kind)) from None
            if isinstance(value, str):
                out[key] = value
            elif isinstance(field, P.Tuple) and isinstance(value, (int, list)) and not isinstance(value, bool):
                out[key] = _as_written(value)  # MXNet writes axis=1 as "1" and [1, 0] as "[1, 0]"
            elif isinstance(field, (P.DType, P.Tuple)):
                out[key] = field.format(typed)
            else:
                out[key] = str(value)  # MXNet keeps str() of the argument as given
        return out


def _as_written(value):
    if isinstance(value, list):
        return "[%s]" % ", ".join(_as_written(v) for v in value)
    return str(int(value)) if value is not None else "None"


def register(op):
    for n in (op.name,) + op.aliases:
        if n in _REGISTRY:
            raise ValueError("operator %r registered twice" % n)
        _REGISTRY[n] = op
    for a in op.aliases:
        _ALIASES[a] = op.name
    return op


def get(name, node_name=None):
    op = _REGISTRY.get(name)
    if op is None:
        where = " (node %r)" % node_name if node_name else ""
        raise MXNetError("unknown operator %r%s" % (name, where))
    return op


def exists(name):
    return name in _REGISTRY


def all_names():
    """Every registered name, aliases included."""
    return sorted(_REGISTRY)


def all_ops():
    seen, out = set(), []
    for op in _REGISTRY.values():
        if id(op) not in seen:
            seen.add(id(op))
            out.append(op)
    return out
