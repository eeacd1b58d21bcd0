"""Gluon parameters: named arrays with deferred initialisation and gradient buffers.

A Parameter owns one data array (and one gradient array) per context. Its
data arrays are autograd variables (``autograd.mark_variables``), so any
recorded computation that reads them, imperative or a hybridized block's
single tape node, accumulates into the gradient arrays with the parameter's
``grad_req``. Shapes may contain unknown (0) dimensions until the first
forward pass infers them (deferred initialisation), as in MXNet 1.x.
"""
from __future__ import annotations

import logging
import re
import warnings
from collections import OrderedDict

import numpy as np

from .. import autograd
from ..base import MXNetError
from ..context import Context, cpu, current_context

log = logging.getLogger(__name__)

GRAD_REQS = ("write", "add", "null")


class DeferredInitializationError(MXNetError):
    """A parameter's shape is not known yet; the first forward pass infers it."""


def shape_is_known(shape):
    return shape is not None and all(d > 0 for d in shape)


def _initializer():
    from .. import initializer  # written alongside gluon; imported when first needed
    return initializer


def _default_init():
    return _initializer().Uniform()


def _brief(names, limit=3):
    names = list(names)
    if len(names) > limit:
        return ", ".join("'%s'" % n for n in names[:limit - 1]) + ", ..., '%s'" % names[-1]
    return ", ".join("'%s'" % n for n in names)


class Parameter:
    """A weight of a Block: name, shape (0 = not known yet), dtype, initialiser, grad_req."""

    def __init__(self, name, grad_req="write", shape=None, dtype=np.float32, lr_mult=1.0, wd_mult=1.0,
                 init=None, allow_deferred_init=False, differentiable=True, stype="default",
                 grad_stype="default"):
        self._var = None
        self._data = None
        self._grad = None
        self._ctx_list = None
        self._ctx_map = None
        self._trainer = None
        self._deferred_init = ()
        self._differentiable = differentiable
        self._allow_deferred_init = allow_deferred_init
        self._grad_req = None
        if isinstance(shape, int):
            shape = (shape,)
        self._shape = tuple(shape) if shape is not None else None
        self.name = name
        self._dtype = dtype
        self.lr_mult = lr_mult
        self.wd_mult = wd_mult
        self.grad_req = grad_req
        self.init = init
        for what, st in (("stype", stype), ("grad_stype", grad_stype)):
            if st not in ("default", "row_sparse", "csr"):
                raise MXNetError("%s for Parameter '%s' must be one of 'default', 'row_sparse', 'csr', got %r"
                                 % (what, name, st))
            if st != "default":
                raise NotImplementedError("Parameter %s=%r: sparse storage" % (what, st))
        self._stype = stype
        self._grad_stype = grad_stype

    def __repr__(self):
        return "Parameter {name} (shape={shape}, dtype={dtype})".format(name=self.name, shape=self.shape,
                                                                       dtype=self.dtype)

    # ---- attributes ----
    @property
    def grad_req(self):
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req):
        if req not in GRAD_REQS:
            raise MXNetError("grad_req must be one of 'write', 'add', or 'null', but got '%s'" % req)
        if not self._differentiable:
            req = "null"
        if self._grad_req == req:
            return
        self._grad_req = req
        if req == "null" and self._grad is not None:
            self._grad = None
            self._data = [d.detach() for d in self._data]  # no longer an autograd variable
        elif self._data is not None:
            self._init_grad()

    @property
    def dtype(self):
        return self._dtype

    @dtype.setter
    def dtype(self, dtype):
        self.cast(dtype)

    @property
    def shape(self):
        return self._shape

    @shape.setter
    def shape(self, new_shape):
        new_shape = tuple(new_shape)
        if self._shape is None:
            self._shape = new_shape
            return
        if len(self._shape) != len(new_shape) or \
                not all(j in (0, -1, i) for i, j in zip(new_shape, self._shape)):
            raise MXNetError("Parameter '%s': expected shape %s is incompatible with given shape %s"
                             % (self.name, new_shape, self._shape))
        self._shape = new_shape

    @property
    def stype(self):
        return self._stype

    def _set_trainer(self, trainer):
        self._trainer = trainer

    # ---- access ----
    def _check_and_get(self, arr_list, ctx):
        if arr_list is not None:
            if ctx is list:
                return arr_list
            if ctx is None:
                if len(arr_list) == 1:
                    return arr_list[0]
                ctx = current_context()
            idx = self._ctx_map.get(ctx)
            if idx is not None:
                return arr_list[idx]
            raise RuntimeError("Parameter '%s' was not initialized on context %s. It was only initialized on %s."
                               % (self.name, ctx, self._ctx_list))
        if self._deferred_init:
            raise DeferredInitializationError(
                "Parameter '%s' has not been initialized yet because initialization was deferred. Actual "
                "initialization happens during the first forward pass. Please pass one batch of data through "
                "the network before accessing Parameters. You can also avoid deferred initialization by "
                "specifying in_units, num_features, etc., for network layers." % self.name)
        raise RuntimeError("Parameter '%s' has not been initialized. Note that you should initialize parameters "
                           "and create Trainer with Block.collect_params() instead of Block.params because the "
                           "later does not include Parameters of nested child Blocks" % self.name)

    def data(self, ctx=None):
        return self._check_and_get(self._data, ctx)

    def list_data(self):
        return self._check_and_get(self._data, list)

    def grad(self, ctx=None):
        if self._data is not None and self._grad is None:
            raise RuntimeError("Cannot get gradient array for Parameter '%s' because grad_req='null'" % self.name)
        return self._check_and_get(self._grad, ctx)

    def list_grad(self):
        if self._data is not None and self._grad is None:
            raise RuntimeError("Cannot get gradient array for Parameter '%s' because grad_req='null'" % self.name)
        return self._check_and_get(self._grad, list)

    def list_ctx(self):
        if self._data is None:
            if self._deferred_init:
                return self._deferred_init[1]
            raise RuntimeError("Parameter '%s' has not been initialized" % self.name)
        return self._ctx_list

    # ---- initialisation ----
    def initialize(self, init=None, ctx=None, default_init=None, force_reinit=False):
        """Allocate and fill the data (now, or at the first forward if the shape is not known)."""
        if default_init is None:
            default_init = _default_init()
        if self._data is not None and not force_reinit:
            warnings.warn("Parameter '%s' is already initialized, ignoring. Set force_reinit=True to "
                          "re-initialize." % self.name, stacklevel=2)
            return
        self._data = self._grad = None
        if ctx is None:
            ctx = [current_context()]
        if isinstance(ctx, Context):
            ctx = [ctx]
        if init is None:
            init = default_init if self.init is None else self.init
        if not shape_is_known(self.shape):
            if self._allow_deferred_init:
                self._deferred_init = (init, ctx, default_init, None)
                return
            raise MXNetError("Cannot initialize Parameter '%s' because it has invalid shape: %s."
                             % (self.name, self.shape))
        self._deferred_init = (init, ctx, default_init, None)
        self._finish_deferred_init()

    def _finish_deferred_init(self):
        if not self._deferred_init:
            return
        init, ctx, default_init, data = self._deferred_init
        self._deferred_init = ()
        if not shape_is_known(self.shape):
            raise MXNetError("Cannot initialize Parameter '%s' because it has invalid shape: %s. Please specify "
                             "in_units, in_channels, etc for `Block`s." % (self.name, self.shape))
        from .. import ndarray as nd
        with autograd.pause():
            if data is None:
                data = nd.zeros(self.shape, ctx=cpu(), dtype=self.dtype)
                ini = _initializer()
                # MXNet's path: the default initialiser dispatches to the parameter's own
                # ``__init__`` (whose _init_weight fills it), else to its own rule by name.
                ini.create(default_init)(ini.InitDesc(self.name, {"__init__": init}), data)
            self._init_impl(data, ctx)

    def _init_impl(self, data, ctx_list):
        self._ctx_list = list(ctx_list)
        self._ctx_map = {}
        for i, ctx in enumerate(self._ctx_list):
            self._ctx_map.setdefault(ctx, i)
        with autograd.pause():
            self._data = [data.copyto(ctx) for ctx in self._ctx_list]
        self._init_grad()

    def _init_grad(self):
        from .. import ndarray as nd
        if self.grad_req == "null":
            self._grad = None
            return
        self._grad = [nd.zeros(d.shape, ctx=d.context, dtype=d.dtype) for d in self._data]
        autograd.mark_variables(self._data, self._grad, self.grad_req)

    def _reduce(self):
        """The value on the CPU (the mean over contexts), as saving needs it."""
        from .. import ndarray as nd
        block = self.list_data()
        with autograd.pause():
            if len(block) > 1:
                return nd.add_n(*[w.copyto(cpu()) for w in block]) / len(block)
            return block[0].copyto(cpu())

    def _load_init(self, data, ctx, cast_dtype=False, dtype_source="current"):
        """Take a loaded array as this parameter's value (initialising it if needed)."""
        if self.shape:
            if len(self.shape) != len(data.shape) or \
                    any(d not in (0, -1, e) for d, e in zip(self.shape, data.shape)):
                raise MXNetError("Failed loading Parameter '%s' from saved params: shape incompatible "
                                 "expected %s vs saved %s" % (self.name, self.shape, data.shape))
            self.shape = tuple(j if i in (0, -1) else i for i, j in zip(self.shape, data.shape))
        else:
            self.shape = data.shape
        if self.dtype is not None and np.dtype(self.dtype) != np.dtype(data.dtype):
            if not cast_dtype:
                raise MXNetError("Failed loading Parameter '%s' from saved params: dtype incompatible expected %s "
                                 "vs saved %s. Set cast_dtype=True to cast the dtype of saved params."
                                 % (self.name, np.dtype(self.dtype).name, np.dtype(data.dtype).name))
            if dtype_source == "current":
                data = data.astype(self.dtype)
            else:
                self._dtype = data.dtype
        if isinstance(ctx, Context):
            ctx = [ctx]
        if self._data is None:
            if self._deferred_init:
                ctx = self._deferred_init[1] if ctx is None else ctx
            elif ctx is None:
                ctx = [cpu()]
            self._init_impl(data, ctx)
        else:
            if ctx is not None and set(ctx) != set(self.list_ctx()):
                raise MXNetError("Failed to load Parameter '%s' on %s because it was previous initialized on %s."
                                 % (self.name, ctx, self.list_ctx()))
            self.set_data(data)
        self._deferred_init = ()

    # ---- changes ----
    def set_data(self, data):
        self.shape = data.shape
        if self._data is None:
            if not self._deferred_init:
                raise MXNetError("Parameter '%s' has not been initialized" % self.name)
            self._deferred_init = self._deferred_init[:3] + (data,)
            return
        for arr in self._data:
            arr[:] = data

    def reset_ctx(self, ctx):
        if ctx is None:
            ctx = [current_context()]
        if isinstance(ctx, Context):
            ctx = [ctx]
        if self._data:
            data = self._reduce()
            self._init_impl(data, ctx)
        elif self._deferred_init:
            init, _, default_init, data = self._deferred_init
            self._deferred_init = (init, ctx, default_init, data)
        else:
            raise MXNetError("Cannot reset context for Parameter '%s' because it has not been initialized."
                             % self.name)

    def zero_grad(self):
        if self._grad is None:
            return
        for g in self._grad:
            g[:] = 0

    def cast(self, dtype):
        self._dtype = dtype
        self._var = None
        if self._data is None:
            return
        with autograd.pause():
            self._data = [d.astype(dtype) for d in self._data]
            if self._grad is None:
                return
            self._grad = [g.astype(dtype) for g in self._grad]
            autograd.mark_variables(self._data, self._grad, self.grad_req)

    def var(self):
        """The Symbol variable standing for this parameter in traced graphs (with MXNet's attributes)."""
        if self._var is None:
            from .. import symbol
            init = self.init
            if init is not None and not isinstance(init, str):
                init = init.dumps() if hasattr(init, "dumps") else None
            self._var = symbol.var(self.name, shape=self.shape, dtype=self.dtype, lr_mult=self.lr_mult,
                                   wd_mult=self.wd_mult, init=init, stype=self._stype)
        return self._var

    def row_sparse_data(self, row_id):
        raise NotImplementedError("Parameter.row_sparse_data: sparse storage")

    def list_row_sparse_data(self, row_id):
        raise NotImplementedError("Parameter.list_row_sparse_data: sparse storage")


class Constant(Parameter):
    """A parameter that never changes (grad_req 'null'), initialised to ``value``."""

    def __init__(self, name, value):
        from .. import ndarray as nd
        if not isinstance(value, nd.NDArray):
            value = nd.array(value)
        self.value = value
        super().__init__(name, grad_req="null", shape=value.shape, dtype=value.dtype, init=_ConstantInit(value))

    def __repr__(self):
        return "Constant {name} (shape={shape}, dtype={dtype})".format(name=self.name, shape=self.shape,
                                                                      dtype=self.dtype)

    @property
    def grad_req(self):
        return "null"

    @grad_req.setter
    def grad_req(self, req):
        if req != "null":
            warnings.warn("Constant parameter \"{}\" does not support grad_req other than \"null\", and new value "
                          "\"{}\" is ignored.".format(self.name, req))
        self._grad_req = "null"


def _ConstantInit(value):
    """Initialiser of a Constant: copies its value (an Initializer subclass, as MXNet registers)."""
    base = _initializer().Initializer

    class ConstantValue(base):
        def _init_weight(self, _, arr):
            value.copyto(arr)

        def _init_default(self, _, arr):
            value.copyto(arr)

        def __call__(self, desc, arr):
            value.copyto(arr)
    return ConstantValue()


class ParameterDict:
    """An ordered name -> Parameter mapping sharing a prefix (a Block's ``params``)."""

    def __init__(self, prefix="", shared=None):
        self._prefix = prefix
        self._params = OrderedDict()
        self._shared = shared

    def __repr__(self):
        name = self._prefix + " " if self._prefix else ""
        content = "\n".join(_indent("  {0}".format(v), 2) for v in self.values())
        return "{name}(\n{content}\n)".format(name=name, content=content)

    def __getitem__(self, key):
        return self._params[key]

    def __iter__(self):
        return iter(self._params)

    def __len__(self):
        return len(self._params)

    def __contains__(self, key):
        return key in self._params

    def items(self):
        return self._params.items()

    def keys(self):
        return self._params.keys()

    def values(self):
        return self._params.values()

    @property
    def prefix(self):
        return self._prefix

    def _get_impl(self, name):
        if name in self._params:
            return self._params[name]
        if self._shared is not None and name in self._shared._params:
            self._params[name] = self._shared._params[name]
            return self._params[name]
        return None

    def get(self, name, **kwargs):
        """The parameter ``prefix + name``, created with ``kwargs`` if absent; an existing one must agree."""
        name = self.prefix + name
        param = self._get_impl(name)
        if param is None:
            param = Parameter(name, **kwargs)
            self._params[name] = param
            return param
        for k, v in kwargs.items():
            if hasattr(param, k) and getattr(param, k) is not None:
                existing = getattr(param, k)
                if k == "shape" and v is not None and len(v) == len(existing):
                    merged, ok = [], True
                    for d1, d2 in zip(v, existing):
                        if d1 != d2 and d1 > 0 and d2 > 0:
                            ok = False
                            break
                        merged.append(d2 if d1 in (0, -1) else d1)
                    if ok:
                        param._shape = tuple(merged)
                        continue
                elif k == "dtype" and v is not None and np.dtype(v) == np.dtype(existing):
                    continue
                if v is not None and v != existing:
                    raise MXNetError("Cannot retrieve Parameter '%s' because desired attribute does not match with "
                                     "stored for attribute '%s': desired '%s' vs stored '%s'."
                                     % (name, k, v, existing))
            else:
                setattr(param, k, v)
        return param

    def get_constant(self, name, value=None):
        name = self.prefix + name
        param = self._get_impl(name)
        if param is None:
            if value is None:
                raise KeyError("No constant named '{}'. Please specify value if you want to create a new "
                               "constant.".format(name))
            param = Constant(name, value)
            self._params[name] = param
        elif value is not None:
            if not isinstance(param, Constant):
                raise MXNetError("Parameter '{}' already exists but it is not a constant.".format(name))
        return param

    def update(self, other):
        for k, v in other.items():
            if k in self._params and self._params[k] is not v:
                raise MXNetError("Cannot update self with other because they have different Parameters with the "
                                 "same name '%s'" % k)
        for k, v in other.items():
            self._params[k] = v

    def initialize(self, init=None, ctx=None, verbose=False, force_reinit=False):
        if init is None:
            init = _default_init()
        if verbose and hasattr(init, "set_verbosity"):
            init.set_verbosity(verbose=verbose)
        for v in self.values():
            v.initialize(None, ctx, init, force_reinit=force_reinit)

    def zero_grad(self):
        for p in self.values():
            p.zero_grad()

    def reset_ctx(self, ctx):
        for p in self.values():
            p.reset_ctx(ctx)

    def list_ctx(self):
        s = []
        for p in self.values():
            for c in p.list_ctx():
                if c not in s:
                    s.append(c)
        return s

    def setattr(self, name, value):
        for p in self.values():
            setattr(p, name, value)

    def select(self, pattern):
        """The parameters whose names match the regular expression (``re.match``)."""
        rx = re.compile(pattern)
        out = ParameterDict(self._prefix)
        out.update({k: v for k, v in self.items() if rx.match(k)})
        return out

    def save(self, filename, strip_prefix=""):
        from .. import ndarray as nd
        arg_dict = OrderedDict()
        for param in self.values():
            weight = param._reduce()
            if not param.name.startswith(strip_prefix):
                raise MXNetError("Prefix '%s' is to be striped before saving, but Parameter's name '%s' does not "
                                 "start with '%s'." % (strip_prefix, param.name, strip_prefix))
            arg_dict[param.name[len(strip_prefix):]] = weight
        nd.save(filename, arg_dict)

    def load(self, filename, ctx=None, allow_missing=False, ignore_extra=False, restore_prefix="",
             cast_dtype=False, dtype_source="current"):
        from .. import ndarray as nd
        if restore_prefix:
            for name in self.keys():
                if not name.startswith(restore_prefix):
                    raise MXNetError("restore_prefix is '%s' but Parameters name '%s' does not start with '%s'"
                                     % (restore_prefix, name, restore_prefix))
        self.load_dict(nd.load(filename), ctx, allow_missing, ignore_extra, restore_prefix, filename,
                       cast_dtype, dtype_source)

    def load_dict(self, param_dict, ctx=None, allow_missing=False, ignore_extra=False, restore_prefix="",
                  filename=None, cast_dtype=False, dtype_source="current"):
        lprefix = len(restore_prefix)
        if not isinstance(param_dict, dict):
            raise MXNetError("load_dict needs a dict of name -> NDArray (the file holds an unnamed list)")
        loaded = [(k[4:] if k.startswith(("arg:", "aux:")) else k, v) for k, v in param_dict.items()]
        arg_dict = {restore_prefix + k: v for k, v in loaded}
        where = "file: %s" % filename if filename else "param_dict"
        if not allow_missing:
            for name in self.keys():
                if name not in arg_dict:
                    raise MXNetError("Parameter '%s' is missing in %s, which contains parameters: %s. Please make "
                                     "sure source and target networks have the same prefix."
                                     % (name[lprefix:], where, _brief(arg_dict.keys())))
        for name in arg_dict:
            if name not in self._params:
                if not ignore_extra:
                    raise MXNetError("Parameter '%s' loaded from %s is not present in ParameterDict, choices are: "
                                     "%s. Set ignore_extra to True to ignore. Please make sure source and target "
                                     "networks have the same prefix." % (name[lprefix:], where,
                                                                         _brief(self._params.keys())))
                continue
            self[name]._load_init(arg_dict[name], ctx, cast_dtype=cast_dtype, dtype_source=dtype_source)


def _indent(s_, num_spaces):
    lines = s_.split("\n")
    if len(lines) == 1:
        return s_
    first = lines.pop(0)
    return "\n".join([first] + [(num_spaces * " ") + line for line in lines])
