"""Symbol: a handle on graph outputs, with MXNet 1.x's API and naming rules."""
from __future__ import annotations

import numpy as np

from ..attribute import AttrScope, normalize_attrs
from ..base import OPERATOR_METHODS, MXNetError, numeric_types
from ..compiler import serialization
from ..compiler.graph import Entry, Graph, Node, topo_order
from ..compiler.ops import registry
from ..compiler.ops.params import DTYPES, DTYPE_BY_FLAG
from ..compiler.passes.infer import infer_shapes, infer_types
from ..name import NameManager


class Symbol:
    __array_priority__ = 1000.0

    def __init__(self, outputs):
        self._outputs = list(outputs)

    # ---- structure ----
    @property
    def name(self):
        if len(self._outputs) != 1:
            return None
        return self._outputs[0].node.name

    def _graph(self):
        return Graph(self._outputs)

    def list_arguments(self):
        return [n.name for n in self._graph().arguments()]

    def list_auxiliary_states(self):
        return [n.name for n in self._graph().auxiliary_states()]

    def list_inputs(self):
        return [n.name for n in self._graph().variables()]

    def list_outputs(self):
        out = []
        for e in self._outputs:
            out.append(e.node.output_names()[e.index] if not e.node.is_variable else e.node.name)
        return out

    def __len__(self):
        return len(self._outputs)

    def __iter__(self):
        return (Symbol([e]) for e in self._outputs)

    def __getitem__(self, index):
        if isinstance(index, str):
            names = self.list_outputs()
            matches = [i for i, n in enumerate(names) if n == index]
            if not matches:
                raise ValueError("Cannot find output that matches name %r" % index)
            if len(matches) > 1:
                raise ValueError("There are multiple outputs with name %r" % index)
            index = matches[0]
        if isinstance(index, slice):
            return Symbol(self._outputs[index])
        if not -len(self._outputs) <= index < len(self._outputs):
            raise IndexError("Index %d out of range for %d outputs" % (index, len(self._outputs)))
        return Symbol([self._outputs[index]])

    def get_internals(self):
        outs = []
        for n in topo_order(self._outputs):
            outs.extend(Entry(n, i) for i in range(n.num_visible_outputs))
        return Symbol(outs)

    def get_children(self):
        if len(self._outputs) != 1:
            raise MXNetError("get_children needs a symbol with one output")
        node = self._outputs[0].node
        if node.is_variable or not node.inputs:
            return None
        return Symbol(node.inputs)

    # ---- attributes ----
    def attr(self, key):
        if len(self._outputs) != 1:
            return None
        attrs = self._outputs[0].node.attrs
        return attrs.get(key, attrs.get("__%s__" % key))

    def list_attr(self, recursive=False):
        if recursive:
            raise DeprecationWarning("Symbol.list_attr with recursive=True has been deprecated. Please use attr_dict instead.")
        return dict(self._outputs[0].node.attrs) if len(self._outputs) == 1 else {}

    def attr_dict(self):
        return {n.name: dict(n.attrs) for n in topo_order(self._outputs) if n.attrs}

    def _set_attr(self, **kwargs):
        for v in kwargs.values():
            if not isinstance(v, str):
                raise ValueError("Set Attr only accepts string values")
        for k, v in normalize_attrs(kwargs).items():
            for e in self._outputs:
                e.node.attrs[k] = v

    # ---- composition ----
    def __call__(self, *args, **kwargs):
        s = self.__copy__()
        s._compose(*args, **kwargs)
        return s

    def _compose(self, *args, name=None, **kwargs):
        free = [n for n in topo_order(self._outputs) if n.is_variable]
        subst = {}
        if args and kwargs:
            raise TypeError("compose only accept input Symbols either as positional or keyword arguments, not both")
        for var, arg in zip(free, args):
            subst[var.name] = _as_symbol(arg)._single("compose")
        for k, v in kwargs.items():
            subst[k] = _as_symbol(v)._single("compose")
        self._outputs = _substitute(self._outputs, subst)
        if name is not None and len(self._outputs) == 1 and not self._outputs[0].node.is_variable:
            self._outputs[0].node.name = name

    def _single(self, what):
        if len(self._outputs) != 1:
            raise MXNetError("%s needs single-output symbols" % what)
        return self._outputs[0]

    def __copy__(self):
        return Symbol(_substitute(self._outputs, {}))

    def __deepcopy__(self, memo):
        return self.__copy__()

    def copy(self):
        return self.__copy__()

    # ---- inference ----
    def _infer(self, fn, args, kwargs, attr_key, convert):
        given = {}
        names = self.list_arguments()
        if args:
            for n, v in zip(names, args):
                if v is not None:
                    given[n] = convert(v)
        for k, v in kwargs.items():
            if v is not None:
                given[k] = convert(v)
        graph = self._graph()
        inputs = {n.name for n in graph.variables()}
        unknown = [k for k in given if k not in inputs]
        if unknown:
            raise MXNetError("infer: %s are not inputs of the symbol (inputs: %s)" % (unknown, sorted(inputs)))
        for n in graph.variables():
            if n.name not in given and attr_key in n.attrs:
                hint = _parse_hint(attr_key, n.attrs[attr_key])
                if hint is not None:
                    given[n.name] = hint
        values = fn(graph, given)
        arg = [values.get(n.out(0).key()) for n in graph.arguments()]
        out = [values.get(e.key()) for e in self._outputs]
        aux = [values.get(n.out(0).key()) for n in graph.auxiliary_states()]
        return arg, out, aux

    def infer_shape(self, *args, **kwargs):
        arg, out, aux = self._infer(infer_shapes, args, kwargs, "__shape__", _shape_tuple)
        if any(not _complete(s) for s in arg + out + aux):
            return None, None, None
        return arg, out, aux

    def infer_shape_partial(self, *args, **kwargs):
        arg, out, aux = self._infer(infer_shapes, args, kwargs, "__shape__", _shape_tuple)
        fix = lambda ls: [tuple(s) if s is not None else () for s in ls]  # noqa: E731
        return fix(arg), fix(out), fix(aux)

    def infer_type(self, *args, **kwargs):
        arg, out, aux = self._infer(infer_types, args, kwargs, "__dtype__", _dtype_name)
        if any(t is None for t in arg + out + aux):
            return None, None, None
        return [np.dtype(t).type for t in arg], [np.dtype(t).type for t in out], [np.dtype(t).type for t in aux]

    def infer_type_partial(self, *args, **kwargs):
        arg, out, aux = self._infer(infer_types, args, kwargs, "__dtype__", _dtype_name)
        conv = lambda ls: [np.dtype(t).type if t is not None else None for t in ls]  # noqa: E731
        return conv(arg), conv(out), conv(aux)

    # ---- serialisation ----
    def tojson(self):
        return serialization.to_json(self._outputs)

    def save(self, fname, remove_amp_cast=True):
        with open(fname, "w", encoding="utf-8") as f:
            f.write(self.tojson())

    # ---- execution ----
    def simple_bind(self, ctx, grad_req="write", type_dict=None, stype_dict=None, group2ctx=None,
                    shared_arg_names=None, shared_exec=None, shared_buffer=None, remat=False, **kwargs):
        """``remat`` (kiln's extra keyword): recompute forward values in backward to save memory.
        ``shared_arg_names``/``shared_exec``/``shared_buffer`` share arrays as MXNet does
        (``Executor.simple_bind``); ``group2ctx`` places nothing (one device per executor)."""
        from ..executor import Executor
        return Executor.simple_bind(self, ctx, grad_req=grad_req, type_dict=type_dict, shapes=kwargs, remat=remat,
                                    shared_arg_names=shared_arg_names, shared_exec=shared_exec,
                                    shared_buffer=shared_buffer)

    def bind(self, ctx, args, args_grad=None, grad_req="write", aux_states=None, group2ctx=None,
             shared_exec=None, remat=False):
        from ..executor import Executor
        return Executor(self, ctx, args, args_grad, grad_req, aux_states, remat=remat)

    def eval(self, ctx=None, **kwargs):
        from ..context import current_context
        ex = self.bind(ctx or current_context(), kwargs, grad_req="null")
        return ex.forward()

    # ---- printing ----
    def __repr__(self):
        if len(self._outputs) == 1:
            return "<Symbol %s>" % self.name
        return "<Symbol group [%s]>" % ", ".join(self.list_outputs())

    def debug_str(self):
        lines = []
        for n in topo_order(self._outputs):
            if n.is_variable:
                lines.append("Variable:%s" % n.name)
                continue
            lines.append("-" * 20)
            lines.append("Op:%s, Name=%s" % (n.op.name, n.name))
            lines.append("Inputs:")
            for i, e in enumerate(n.inputs):
                lines.append("\targ[%d]=%s(%d)" % (i, e.node.name, e.index))
            if n.attrs:
                lines.append("Attrs:")
                for k, v in sorted(n.attrs.items()):
                    lines.append("\t%s=%s" % (k, v))
        return "\n".join(lines) + "\n"

    # ---- operators ----
    def _binary(self, other, op, scalar_op, reverse=False):
        if isinstance(other, Symbol):
            lhs, rhs = (other, self) if reverse else (self, other)
            return _create(op, [lhs, rhs], {})
        if isinstance(other, numeric_types):
            return _create(scalar_op, [self], {"scalar": other})
        raise TypeError("type %s not supported" % type(other).__name__)

    def __add__(self, o):
        return self._binary(o, "_Plus", "_PlusScalar")

    def __radd__(self, o):
        return self._binary(o, "_Plus", "_PlusScalar", True)

    def __sub__(self, o):
        return self._binary(o, "_Minus", "_MinusScalar")

    def __rsub__(self, o):
        return self._binary(o, "_Minus", "_RMinusScalar", True)

    def __mul__(self, o):
        return self._binary(o, "_Mul", "_MulScalar")

    def __rmul__(self, o):
        return self._binary(o, "_Mul", "_MulScalar", True)

    def __truediv__(self, o):
        return self._binary(o, "_Div", "_DivScalar")

    def __rtruediv__(self, o):
        return self._binary(o, "_Div", "_RDivScalar", True)

    def __mod__(self, o):
        return self._binary(o, "_Mod", "_ModScalar")

    def __rmod__(self, o):
        return self._binary(o, "_Mod", "_RModScalar", True)

    def __pow__(self, o):
        return self._binary(o, "_Power", "_PowerScalar")

    def __rpow__(self, o):
        return self._binary(o, "_Power", "_rpower_scalar", True)

    def __neg__(self):
        return self.__mul__(-1.0)

    def __eq__(self, o):
        return self._binary(o, "_equal", "_equal_scalar")

    def __ne__(self, o):
        return self._binary(o, "_not_equal", "_not_equal_scalar")

    def __gt__(self, o):
        return self._binary(o, "_greater", "_greater_scalar")

    def __ge__(self, o):
        return self._binary(o, "_greater_equal", "_greater_equal_scalar")

    def __lt__(self, o):
        return self._binary(o, "_lesser", "_lesser_scalar")

    def __le__(self, o):
        return self._binary(o, "_lesser_equal", "_lesser_equal_scalar")

    __hash__ = object.__hash__

    def __bool__(self):
        raise NotImplementedError("A Symbol has no truth value: it is a graph, not data")

    def reshape(self, *shape, **kwargs):
        if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
            shape = tuple(shape[0])
        if not shape:
            shape = kwargs.pop("shape")
        return _create("Reshape", [self], dict(kwargs, shape=tuple(shape)))

    def astype(self, dtype):
        return _create("Cast", [self], {"dtype": np.dtype(dtype).name})

    @property
    def T(self):
        return _create("transpose", [self], {})

    def flatten(self, **kwargs):
        return _create("Flatten", [self], kwargs)

    def zeros_like(self, **kwargs):
        return _create("zeros_like", [self], kwargs)

    def ones_like(self, **kwargs):
        return _create("ones_like", [self], kwargs)

    def broadcast_to(self, shape):
        return _create("broadcast_to", [self], {"shape": tuple(shape)})

    def broadcast_like(self, other):
        return _create("broadcast_like", [self, other], {})


def _method(name):
    def method(self, *args, **kwargs):
        from .. import symbol as sym
        return getattr(sym, name)(self, *args, **kwargs)
    method.__name__ = name
    method.__doc__ = "Same as ``sym.%s(self, ...)``." % name
    return method


for _name in OPERATOR_METHODS:
    setattr(Symbol, _name, _method(_name))


def _substitute(outputs, subst):
    """Copy the graph behind ``outputs``, replacing variables named in ``subst``."""
    mapping = {}
    for n in topo_order(outputs):
        if n.is_variable:
            mapping[(n.uid, 0)] = subst.get(n.name, Entry(n, 0))
            continue
        copy = Node(n.op, n.name, n.attrs, [mapping[e.key()] for e in n.inputs], params=n.params)
        for i in range(n.num_outputs):
            mapping[(n.uid, i)] = Entry(copy, i)
    return [mapping[e.key()] for e in outputs]


def _shape_tuple(v):
    return tuple(int(d) for d in v)


def _dtype_name(v):
    return np.dtype(v).name


def _complete(s):
    return s is not None and all(d > 0 for d in s)


def _parse_hint(key, text):
    from ..compiler.ops.params import Tuple
    if key == "__shape__":
        s = Tuple().convert(text)
        return s or None  # 0 dims stay unknown, but the rank and the known sizes are used
    if key == "__dtype__":
        return DTYPE_BY_FLAG.get(int(text))
    return None


def _as_symbol(x):
    if not isinstance(x, Symbol):
        raise TypeError("expected a Symbol, got %s" % type(x).__name__)
    return x


def _create(fname, args, kwargs, name=None, attr=None):
    """Apply registry operator ``fname`` (any alias) to Symbols, MXNet style."""
    op = registry.get(fname)
    sym_kwargs = {k: v for k, v in kwargs.items() if isinstance(v, Symbol)}
    attrs_in = {k: v for k, v in kwargs.items() if not isinstance(v, Symbol)}
    pos, values = [], []
    for a in args:
        if isinstance(a, Symbol):
            pos.append(a)
        elif isinstance(a, (list, tuple)) and a and all(isinstance(x, Symbol) for x in a):
            pos.extend(a)
        else:
            values.append(a)
    attrs_in.update(positional_attrs(op, values, attrs_in, fname))
    if op.num_args_key and op.num_args_key not in attrs_in:
        attrs_in[op.num_args_key] = len(pos) + len(sym_kwargs)
    hint = fname.lower()
    node_name = NameManager.current().get(name, hint)
    attrs = op.format_attrs(attrs_in, node_name)
    params = op.parse_attrs(attrs, node_name)
    input_names = op.input_names(params)
    scope_attrs = AttrScope.current().get(attr)
    inputs = []
    for i, iname in enumerate(input_names):
        if i < len(pos):
            inputs.append(pos[i]._single("operator %s" % op.name))
        elif iname in sym_kwargs:
            inputs.append(sym_kwargs.pop(iname)._single("operator %s" % op.name))
        else:
            var_attrs = dict(scope_attrs)
            var_attrs.update(attrs)
            var_attrs.update(op.var_attrs.get(iname, {}))
            inputs.append(Entry(Node(None, "%s_%s" % (node_name, iname), var_attrs), 0))
    if len(pos) > len(input_names):
        raise MXNetError("operator %s (node %r) takes %d inputs (%s), got %d"
                         % (op.name, node_name, len(input_names), input_names, len(pos)))
    if sym_kwargs:
        raise MXNetError("operator %s (node %r): unknown inputs %s; inputs are %s"
                         % (op.name, node_name, sorted(sym_kwargs), input_names))
    node_attrs = dict(scope_attrs)
    node_attrs.update(attrs)
    node = Node(op, node_name, node_attrs, inputs, params=params)
    return Symbol([Entry(node, i) for i in range(node.num_visible_outputs)])


def positional_attrs(op, values, given, fname):
    """Map positional non-array arguments onto the schema in declaration order (MXNet's signatures).
    A positional None stands for an absent optional input (``F.CTCLoss(x, y, None, None)``)."""
    values = [v for v in values if v is not None]
    free = [k for k in op.schema if k not in given and k != op.num_args_key]
    if len(values) > len(free):
        raise TypeError("operator %s takes %d attribute arguments (%s), got %d positional ones"
                        % (fname, len(free), free, len(values)))
    return dict(zip(free, values))


def Variable(name, attr=None, shape=None, lr_mult=None, wd_mult=None, dtype=None, init=None,
             stype=None, **kwargs):
    """A named input of the graph (MXNet's ``Variable``/``var``)."""
    if not isinstance(name, str):
        raise TypeError("Expect a string for variable `name`")
    attrs = AttrScope.current().get(attr)
    if shape is not None:
        attrs["__shape__"] = str(tuple(shape))
    if lr_mult is not None:
        attrs["__lr_mult__"] = str(lr_mult)
    if wd_mult is not None:
        attrs["__wd_mult__"] = str(wd_mult)
    if dtype is not None:
        attrs["__dtype__"] = str(DTYPES[np.dtype(dtype).name])
    if init is not None:
        attrs["__init__"] = init if isinstance(init, str) else init.dumps()
    if stype is not None:
        attrs["__storage_type__"] = str({"default": 0, "row_sparse": 1, "csr": 2}[stype])
    for k, v in kwargs.items():
        if k.startswith("__") and k.endswith("__"):
            attrs[k] = str(v)
        else:
            raise ValueError("Attribute name=%s is not supported. Additional attributes must start and end "
                             "with double underscores, e.g, __yourattr__" % k)
    return Symbol([Entry(Node(None, name, attrs), 0)])


var = Variable


def Group(symbols):
    if not symbols or any(not isinstance(s, Symbol) for s in symbols):
        raise TypeError("Expected a list of symbols as input")
    outs = []
    for s in symbols:
        outs.extend(s._outputs)
    return Symbol(outs)


def load_json(json_str):
    return Symbol(serialization.from_json(json_str))


def load(fname):
    with open(fname, encoding="utf-8") as f:
        return load_json(f.read())


def fromjson(json_str):
    return load_json(json_str)
