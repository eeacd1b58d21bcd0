"""``mx.init``: MXNet 1.9's weight initialisers.

An initialiser is called with an ``InitDesc`` (a parameter name with attributes)
and an NDArray it fills in place. The name's suffix picks the rule, as in MXNet
(``*weight`` -> the initialiser's own rule, ``*bias``/``*beta`` -> 0,
``*gamma`` -> 1, ...), so ``Constant(0.5)`` applied to ``fc_bias`` gives zeros,
and a ``__init__`` attribute (``mx.sym.Variable(init=...)``) overrides it.
Random initialisers sample with ``mx.nd.random`` into the array (``out=``), so
``mx.random.seed`` makes them reproducible. ``dumps()`` is MXNet's JSON string,
which ``create`` accepts back.
"""
from __future__ import annotations

import json
import logging
import re
import warnings
from math import sqrt

import numpy as np

from .base import MXNetError
from .ndarray import NDArray
from .registry import Registry
from . import ndarray as _nd

__all__ = ["InitDesc", "Initializer", "register", "alias", "create", "Load", "Mixed", "Zero", "One", "Constant",
           "Uniform", "Normal", "Orthogonal", "Xavier", "MSRAPrelu", "Bilinear", "LSTMBias", "FusedRNN"]

_log = logging.getLogger(__name__)


class InitDesc(str):
    """A parameter name carrying its attributes and the global initialiser (MXNet's descriptor)."""

    def __new__(cls, name, attrs=None, global_init=None):
        ret = super(InitDesc, cls).__new__(cls, name)
        ret.attrs = attrs or {}
        ret.global_init = global_init
        return ret


class Initializer:
    """Base class: dispatches on the parameter name; subclasses define ``_init_weight``."""

    def __init__(self, **kwargs):
        self._kwargs = kwargs
        self._verbose = False
        self._print_func = None

    def set_verbosity(self, verbose=False, print_func=None):
        """Log a statistic of every initialised array (default: its root mean square)."""
        self._verbose = verbose
        if print_func is None:
            def asum_stat(x):
                return str((_nd.norm(x) / sqrt(x.size)).asscalar())
            print_func = asum_stat
        self._print_func = print_func
        return self

    def _verbose_print(self, desc, init, arr):
        if self._verbose and self._print_func:
            _log.info("Initialized %s as %s: %s", desc, init, self._print_func(arr))

    def dumps(self):
        """``'["name", {kwargs}]'``: what ``create`` and symbol ``__init__`` attributes read."""
        return json.dumps([self.__class__.__name__.lower(), self._kwargs])

    def __call__(self, desc, arr):
        if not isinstance(desc, InitDesc):
            self._legacy_init(desc, arr)
            return
        if desc.global_init is None:
            desc.global_init = self
        init = desc.attrs.get("__init__", "")
        if init:
            create(init)._init_weight(desc, arr)
            self._verbose_print(desc, init, arr)
            return
        for suffix, method in (("weight", self._init_weight), ("bias", self._init_bias),
                               ("gamma", self._init_gamma), ("beta", self._init_beta),
                               ("min", self._init_zero), ("max", self._init_one),
                               ("weight_quantize", self._init_quantized_weight),
                               ("bias_quantize", self._init_quantized_bias)):
            if desc.endswith(suffix):
                method(desc, arr)
                self._verbose_print(desc, suffix, arr)
                return
        self._init_default(desc, arr)

    def _legacy_init(self, name, arr):
        """``init(str, arr)``: deprecated in MXNet, with a longer suffix table."""
        warnings.warn("Calling initializer with init(str, NDArray) has been deprecated. "
                      "please use init(mx.init.InitDesc(...), NDArray) instead.", DeprecationWarning, stacklevel=3)
        if not isinstance(name, str):
            raise TypeError("name must be string")
        if not isinstance(arr, NDArray):
            raise TypeError("arr must be NDArray")
        if name.startswith("upsampling"):
            self._init_bilinear(name, arr)
        elif name.startswith("stn_loc") and name.endswith("weight"):
            self._init_zero(name, arr)
        elif name.startswith("stn_loc") and name.endswith("bias"):
            self._init_loc_bias(name, arr)
        elif name.endswith("bias"):
            self._init_bias(name, arr)
        elif name.endswith("gamma"):
            self._init_gamma(name, arr)
        elif name.endswith("beta"):
            self._init_beta(name, arr)
        elif name.endswith("weight"):
            self._init_weight(name, arr)
        elif name.endswith("moving_mean") or name.endswith("moving_inv_var") or name.endswith("moving_avg"):
            self._init_zero(name, arr)
        elif name.endswith("moving_var"):
            self._init_one(name, arr)
        elif name.endswith("min"):
            self._init_zero(name, arr)
        elif name.endswith("max"):
            self._init_one(name, arr)
        else:
            self._init_default(name, arr)

    def _init_bilinear(self, _, arr):
        arr[:] = _bilinear(arr.shape)

    def _init_loc_bias(self, _, arr):
        if arr.shape[0] != 6:
            raise MXNetError("stn_loc bias must have 6 elements, got shape %s" % (arr.shape,))
        arr[:] = np.array([1.0, 0, 0, 0, 1.0, 0])

    def _init_zero(self, _, arr):
        arr[:] = 0.0

    def _init_one(self, _, arr):
        arr[:] = 1.0

    def _init_bias(self, _, arr):
        arr[:] = 0.0

    def _init_quantized_bias(self, _, arr):
        arr[:] = 0

    def _init_gamma(self, _, arr):
        arr[:] = 1.0

    def _init_beta(self, _, arr):
        arr[:] = 0.0

    def _init_weight(self, name, arr):
        raise NotImplementedError("%s must define _init_weight" % type(self).__name__)

    def _init_quantized_weight(self, _, arr):
        arr[:] = _nd.random.randint(-127, 127, shape=arr.shape, dtype="int32").asnumpy().astype(np.int8)

    def _init_default(self, name, _):
        raise ValueError("Unknown initialization pattern for %s. Default initialization is now limited to "
                         '"weight", "bias", "gamma" (1.0), and "beta" (0.0).Please use '
                         "mx.sym.Variable(init=mx.init.*) to set initialization pattern" % name)

    def __eq__(self, other):
        if not isinstance(other, Initializer):
            return NotImplemented
        return type(self) is type(other) and self._kwargs == other._kwargs

    __hash__ = object.__hash__


# ---- registry (MXNet's rules, for this base class) ----
_registry = Registry(Initializer, "initializer")
_REGISTRY = _registry.classes
register, alias, create = _registry.register, _registry.alias, _registry.create


class Load:
    """Initialise from saved arrays (a dict or an ``nd.save`` file; ``arg:``/``aux:`` prefixes dropped),
    falling back to ``default_init`` for names not found."""

    def __init__(self, param, default_init=None, verbose=False):
        if isinstance(param, str):
            param = _nd.load(param)
        if not isinstance(param, dict):
            raise MXNetError("Load: param must be a dict of name -> NDArray or a file holding one")
        self.param = {}
        for name, arr in param.items():
            self.param[name[4:] if name.startswith(("arg:", "aux:")) else name] = arr
        self.default_init = default_init
        self.verbose = verbose

    def __call__(self, name, arr):
        if name in self.param:
            if arr.shape != self.param[name].shape:
                raise MXNetError("Parameter %s cannot be initialized from loading. Shape mismatch, target %s vs "
                                 "loaded %s" % (name, arr.shape, self.param[name].shape))
            arr[:] = self.param[name]
            if self.verbose:
                _log.info("Initialized %s by loading", name)
        else:
            if self.default_init is None:
                raise MXNetError("Cannot Initialize %s. Not found in loaded param and no default Initializer "
                                 "is provided." % name)
            self.default_init(name, arr)
            if self.verbose:
                _log.info("Initialized %s by default", name)


class Mixed:
    """The first initialiser whose regex matches the start of the name (``re.match``) is used."""

    def __init__(self, patterns, initializers):
        if len(patterns) != len(initializers):
            raise MXNetError("Mixed: %d patterns for %d initializers" % (len(patterns), len(initializers)))
        self.map = list(zip([re.compile(p) for p in patterns], initializers))

    def __call__(self, name, arr):
        for prog, init in self.map:
            if prog.match(name):
                init(name, arr)
                return
        raise ValueError('Parameter name %s did not match any pattern. Consider add a ".*" pattern at the end '
                         "with default Initializer." % name)


@register
@alias("zeros")
class Zero(Initializer):
    """Fills weights with 0."""

    def __init__(self):
        super().__init__()

    def _init_weight(self, _, arr):
        arr[:] = 0


@register
@alias("ones")
class One(Initializer):
    """Fills weights with 1."""

    def __init__(self):
        super().__init__()

    def _init_weight(self, _, arr):
        arr[:] = 1


@register
class Constant(Initializer):
    """Fills weights with ``value`` (a number or an array broadcast to the weight)."""

    def __init__(self, value):
        super().__init__(value=value)
        self.value = value

    def _init_weight(self, _, arr):
        arr[:] = self.value

    def dumps(self):
        val = self._kwargs["value"]
        if not np.isscalar(val):
            self._kwargs["value"] = val.tolist() if isinstance(val, np.ndarray) else val.asnumpy().tolist()
        return json.dumps([self.__class__.__name__.lower(), self._kwargs])


def _sample_into(kind, a, b, arr):
    """Sample with mx.nd.random straight into ``arr`` (its dtype), so mx.random.seed applies."""
    dtype = np.dtype(arr.dtype).name
    if dtype not in ("float16", "float32", "float64"):
        tmp = getattr(_nd.random, kind)(a, b, shape=arr.shape, ctx=arr.context)
        arr[:] = tmp
        return
    getattr(_nd.random, kind)(a, b, shape=arr.shape, dtype=dtype, out=arr)


@register
class Uniform(Initializer):
    """Weights ~ U(-scale, scale)."""

    def __init__(self, scale=0.07):
        super().__init__(scale=scale)
        self.scale = scale

    def _init_weight(self, _, arr):
        _sample_into("uniform", -self.scale, self.scale, arr)


@register
class Normal(Initializer):
    """Weights ~ N(0, sigma^2)."""

    def __init__(self, sigma=0.01):
        super().__init__(sigma=sigma)
        self.sigma = sigma

    def _init_weight(self, _, arr):
        _sample_into("normal", 0, self.sigma, arr)


@register
class Orthogonal(Initializer):
    """``scale`` times an orthonormal basis from the SVD of a random matrix (Saxe et al.)."""

    def __init__(self, scale=1.414, rand_type="uniform"):
        super().__init__(scale=scale, rand_type=rand_type)
        self.scale = scale
        self.rand_type = rand_type

    def _init_weight(self, _, arr):
        nout = arr.shape[0]
        nin = int(np.prod(arr.shape[1:]))
        if self.rand_type == "uniform":
            tmp = _nd.random.uniform(-1.0, 1.0, shape=(nout, nin)).asnumpy()
        elif self.rand_type == "normal":
            tmp = _nd.random.normal(0.0, 1.0, shape=(nout, nin)).asnumpy()
        else:
            raise MXNetError("Orthogonal: unknown rand_type %r (expected 'uniform' or 'normal')" % (self.rand_type,))
        u, _, v = np.linalg.svd(tmp, full_matrices=False)
        res = u if u.shape == tmp.shape else v
        arr[:] = self.scale * res.reshape(arr.shape)


@register
class Xavier(Initializer):
    """Glorot: uniform(+-sqrt(magnitude/factor)) or gaussian(0, sqrt(magnitude/factor)), factor from
    fan in/out ('avg', 'in', 'out'); dimensions beyond the second count as receptive field."""

    def __init__(self, rnd_type="uniform", factor_type="avg", magnitude=3):
        super().__init__(rnd_type=rnd_type, factor_type=factor_type, magnitude=magnitude)
        self.rnd_type = rnd_type
        self.factor_type = factor_type
        self.magnitude = float(magnitude)

    def _init_weight(self, name, arr):
        shape = arr.shape
        hw_scale = 1.0
        if len(shape) < 2:
            raise ValueError("Xavier initializer cannot be applied to vector {0}. It requires at least 2D."
                             .format(name))
        if len(shape) > 2:
            hw_scale = np.prod(shape[2:])
        fan_in, fan_out = shape[1] * hw_scale, shape[0] * hw_scale
        if self.factor_type == "avg":
            factor = (fan_in + fan_out) / 2.0
        elif self.factor_type == "in":
            factor = fan_in
        elif self.factor_type == "out":
            factor = fan_out
        else:
            raise ValueError("Incorrect factor type")
        scale = float(np.sqrt(self.magnitude / factor))
        if self.rnd_type == "uniform":
            _sample_into("uniform", -scale, scale, arr)
        elif self.rnd_type == "gaussian":
            _sample_into("normal", 0, scale, arr)
        else:
            raise ValueError("Unknown random type")


@register
class MSRAPrelu(Xavier):
    """He et al.: gaussian Xavier with magnitude 2 / (1 + slope^2)."""

    def __init__(self, factor_type="avg", slope=0.25):
        magnitude = 2.0 / (1 + slope ** 2)
        super().__init__("gaussian", factor_type, magnitude)
        self._kwargs = {"factor_type": factor_type, "slope": slope}


def _bilinear(shape):
    """Bilinear upsampling kernel weights (for Deconvolution), MXNet's loop vectorised."""
    size = int(np.prod(shape))
    f = np.ceil(shape[3] / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    i = np.arange(size)
    x = i % shape[3]
    y = (i // shape[3]) % shape[2]
    weight = ((1 - np.abs(x / f - c)) * (1 - np.abs(y / f - c))).astype(np.float32)
    return weight.reshape(shape)


@register
class Bilinear(Initializer):
    """Bilinear interpolation kernel (4-d weights)."""

    def __init__(self):
        super().__init__()

    def _init_weight(self, _, arr):
        if len(arr.shape) != 4:
            raise MXNetError("Bilinear initializer needs a 4-d weight, got shape %s" % (arr.shape,))
        arr[:] = _bilinear(arr.shape)


@register
class LSTMBias(Initializer):
    """Zeros, with the forget gate's quarter (MXNet's i, f, c, o order) set to ``forget_bias``."""

    def __init__(self, forget_bias=1.0):
        super().__init__(forget_bias=forget_bias)
        self.forget_bias = forget_bias

    def _init_weight(self, name, arr):
        arr[:] = 0.0
        num_hidden = int(arr.shape[0] / 4)
        arr[num_hidden:2 * num_hidden] = self.forget_bias


@register
class FusedRNN(Initializer):
    """Initialises the packed parameter vector of a fused RNN layer (needs the fused RNN layout)."""

    def __init__(self, init, num_hidden, num_layers, mode, bidirectional=False, forget_bias=1.0):
        if isinstance(init, str):
            klass, kwargs = json.loads(init)
            init = _REGISTRY[klass.lower()](**kwargs)
        super().__init__(init=init.dumps() if init is not None else None, num_hidden=num_hidden,
                         num_layers=num_layers, mode=mode, bidirectional=bidirectional, forget_bias=forget_bias)
        self._init = init
        self._num_hidden = num_hidden
        self._num_layers = num_layers
        self._mode = mode
        self._bidirectional = bidirectional
        self._forget_bias = forget_bias

    def _init_weight(self, desc, arr):
        """Each gate's (H, in) weight and (H,) bias block of the packed vector is initialised on
        its own by ``init`` (or the global initialiser) under MXNet's unpacked name
        (``l0_i2h_f_weight``); LSTM forget-gate biases (i2h and h2h) get ``forget_bias``."""
        from .compiler.ops.rnn import GATES, param_layout
        if self._mode not in GATES:
            raise MXNetError("FusedRNN: mode %r is not one of %s" % (self._mode, sorted(GATES)))
        h, nl, nd, ng = self._num_hidden, self._num_layers, 2 if self._bidirectional else 1, GATES[self._mode]
        params = {"state_size": h, "num_layers": nl, "bidirectional": self._bidirectional, "mode": self._mode}
        ni = arr.size // (nd * ng * h) - (nl - 1) * (nd * h + h + 2) - h - 2
        layout, total = param_layout(params, ni)
        if ni <= 0 or total != arr.size:
            raise MXNetError("FusedRNN: parameter %s has %d elements, which no input size gives for mode=%s, "
                             "num_hidden=%d, num_layers=%d, bidirectional=%s"
                             % (desc, arr.size, self._mode, h, nl, self._bidirectional))
        gates = {"rnn_relu": [""], "rnn_tanh": [""], "lstm": ["_i", "_f", "_c", "_o"],
                 "gru": ["_r", "_z", "_o"]}[self._mode]
        packed = np.empty(arr.size, dtype=arr.dtype)
        for layer, d, wi_off, in_size, wh_off, bi_off, bh_off in layout:
            prefix = "%s%d_" % ("lr"[d], layer)
            blocks = [("i2h", "weight", wi_off, (h, in_size)), ("h2h", "weight", wh_off, (h, h)),
                      ("i2h", "bias", bi_off, (h,)), ("h2h", "bias", bh_off, (h,))]
            for group, kind, off, shape in blocks:
                size = int(np.prod(shape))
                for k, gate in enumerate(gates):
                    name = "%s%s%s_%s" % (prefix, group, gate, kind)
                    piece = _nd.zeros(shape, dtype=arr.dtype)
                    if self._mode == "lstm" and name.endswith("_f_bias"):
                        piece[:] = self._forget_bias
                    elif self._init is None:
                        desc.global_init(InitDesc(name, global_init=desc.global_init), piece)
                    else:
                        self._init(InitDesc(name, global_init=desc.global_init), piece)
                    packed[off + k * size:off + (k + 1) * size] = piece.asnumpy().ravel()
        arr[:] = packed
