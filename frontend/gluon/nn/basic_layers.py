"""Basic layers: containers, Dense, Dropout, BatchNorm, Layer/Group/InstanceNorm, Embedding, Flatten, Lambda."""
import logging
import warnings

import numpy as np

from ...base import MXNetError
from ..block import Block, HybridBlock
from ..parameter import _indent
from .activations import Activation

_log = logging.getLogger(__name__)

__all__ = ["Sequential", "HybridSequential", "Dense", "Dropout", "BatchNorm", "LayerNorm", "GroupNorm",
           "InstanceNorm", "Embedding", "Flatten", "Lambda", "HybridLambda"]


def _container_repr(self):
    modstr = "\n".join("  ({key}): {block}".format(key=key, block=_indent(block.__repr__(), 2))
                       for key, block in self._children.items())
    return "{name}(\n{modstr}\n)".format(name=self.__class__.__name__, modstr=modstr)


def _container_getitem(self, key):
    layers = list(self._children.values())[key]
    if isinstance(layers, list):
        net = type(self)(prefix=self._prefix)
        with net.name_scope():
            net.add(*layers)
        return net
    return layers


def _chain(blocks, x, args):
    for block in blocks:
        x = block(x, *args)
        args = []
        if isinstance(x, (tuple, list)):
            args = x[1:]
            x = x[0]
    if args:
        x = tuple([x] + list(args))
    return x


class _Chain:
    """What Sequential and HybridSequential share: children in order, indexing, len."""

    def __init__(self, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self._layers = []

    def add(self, *blocks):
        for block in blocks:
            self._layers.append(block)
            self.register_child(block)

    __repr__ = _container_repr
    __getitem__ = _container_getitem

    def __len__(self):
        return len(self._children)


class Sequential(_Chain, Block):
    """Runs its children one after another."""

    def forward(self, x, *args):
        return _chain(self._children.values(), x, args)

    def hybridize(self, active=True, **kwargs):
        if self._children and all(isinstance(c, HybridBlock) for c in self._children.values()):
            warnings.warn("All children of this Sequential layer '%s' are HybridBlocks. Consider using "
                          "HybridSequential for the best performance." % self.prefix, stacklevel=2)
        super().hybridize(active, **kwargs)


class HybridSequential(_Chain, HybridBlock):
    """Sequential whose children are HybridBlocks: hybridizing compiles the whole chain."""

    def hybrid_forward(self, F, x, *args):
        return _chain(self._children.values(), x, args)


class Dense(HybridBlock):
    """``activation(dot(x, weight.T) + bias)``; ``in_units=0`` defers the weight's shape."""

    def __init__(self, units, activation=None, use_bias=True, flatten=True, dtype="float32",
                 weight_initializer=None, bias_initializer="zeros", in_units=0, **kwargs):
        super().__init__(**kwargs)
        self._flatten = flatten
        with self.name_scope():
            self._units = units
            self._in_units = in_units
            self.weight = self.params.get("weight", shape=(units, in_units), init=weight_initializer, dtype=dtype,
                                          allow_deferred_init=True)
            if use_bias:
                self.bias = self.params.get("bias", shape=(units,), init=bias_initializer, dtype=dtype,
                                            allow_deferred_init=True)
            else:
                self.bias = None
            if activation is not None:
                self.act = Activation(activation, prefix=activation + "_")
            else:
                self.act = None

    def hybrid_forward(self, F, x, weight, bias=None):
        if bias is None:
            act = F.FullyConnected(x, weight, no_bias=True, num_hidden=self._units, flatten=self._flatten,
                                   name="fwd")
        else:
            act = F.FullyConnected(x, weight, bias, no_bias=False, num_hidden=self._units, flatten=self._flatten,
                                   name="fwd")
        if self.act is not None:
            act = self.act(act)
        return act

    def __repr__(self):
        shape = self.weight.shape
        return "{name}({layout}, {act})".format(name=self.__class__.__name__, act=self.act if self.act else "linear",
                                                layout="{0} -> {1}".format(shape[1] if shape[1] else None, shape[0]))


class Dropout(HybridBlock):
    """Zeroes elements with probability ``rate`` in training (scaling the rest by 1/(1-rate))."""

    def __init__(self, rate, axes=(), **kwargs):
        super().__init__(**kwargs)
        self._rate = rate
        self._axes = axes

    def hybrid_forward(self, F, x):
        if self._rate > 0:
            return F.Dropout(x, p=self._rate, axes=self._axes, name="fwd", cudnn_off=False)
        return F.identity(x)

    def __repr__(self):
        return "{name}(p = {rate}, axes={axes})".format(name=self.__class__.__name__, rate=self._rate,
                                                        axes=self._axes)


class BatchNorm(HybridBlock):
    """Batch normalisation; running_mean/running_var are auxiliary states (grad_req 'null')
    updated by training-mode forward passes."""

    def __init__(self, axis=1, momentum=0.9, epsilon=1e-5, center=True, scale=True, use_global_stats=False,
                 beta_initializer="zeros", gamma_initializer="ones", running_mean_initializer="zeros",
                 running_variance_initializer="ones", in_channels=0, **kwargs):
        super().__init__(**kwargs)
        self._kwargs = {"axis": axis, "eps": epsilon, "momentum": momentum, "fix_gamma": not scale,
                        "use_global_stats": use_global_stats}
        self._axis = axis
        if in_channels != 0:
            self.in_channels = in_channels
        self.gamma = self.params.get("gamma", grad_req="write" if scale else "null", shape=(in_channels,),
                                     init=gamma_initializer, allow_deferred_init=True, differentiable=scale)
        self.beta = self.params.get("beta", grad_req="write" if center else "null", shape=(in_channels,),
                                    init=beta_initializer, allow_deferred_init=True, differentiable=center)
        self.running_mean = self.params.get("running_mean", grad_req="null", shape=(in_channels,),
                                            init=running_mean_initializer, allow_deferred_init=True,
                                            differentiable=False)
        self.running_var = self.params.get("running_var", grad_req="null", shape=(in_channels,),
                                           init=running_variance_initializer, allow_deferred_init=True,
                                           differentiable=False)

    def cast(self, dtype):
        if np.dtype(dtype).name == "float16":
            dtype = "float32"
        super().cast(dtype)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        return F.BatchNorm(x, gamma, beta, running_mean, running_var, name="fwd", **self._kwargs)

    def __repr__(self):
        in_channels = self.gamma.shape[0]
        content = ", ".join("=".join([k, v.__repr__()]) for k, v in self._kwargs.items())
        return "{name}({content}, in_channels={ch})".format(name=self.__class__.__name__, content=content,
                                                            ch=in_channels if in_channels else None)


class _Norm(HybridBlock):
    """LayerNorm / GroupNorm / InstanceNorm: gamma and beta, deferred to the first input
    unless their size is known; ``scale``/``center`` False freeze them (grad_req 'null')."""

    def __init__(self, kwargs, size, center, scale, beta_initializer, gamma_initializer, **block_kwargs):
        super().__init__(**block_kwargs)
        self._kwargs = kwargs
        self.gamma = self.params.get("gamma", grad_req="write" if scale else "null", shape=(size,),
                                     init=gamma_initializer, allow_deferred_init=True)
        self.beta = self.params.get("beta", grad_req="write" if center else "null", shape=(size,),
                                    init=beta_initializer, allow_deferred_init=True)

    def __repr__(self):
        content = ", ".join("=".join([k, v.__repr__()]) for k, v in self._kwargs.items())
        return "{name}({content}, in_channels={ch})".format(name=self.__class__.__name__, content=content,
                                                            ch=self.gamma.shape[0])


class LayerNorm(_Norm):
    """Normalises over ``axis`` (the last by default) per sample; gamma/beta along that axis."""

    def __init__(self, axis=-1, epsilon=1e-5, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", in_channels=0, **kwargs):
        super().__init__({"eps": epsilon, "axis": axis, "center": center, "scale": scale}, in_channels, center,
                         scale, beta_initializer, gamma_initializer, **kwargs)
        self._axis, self._epsilon = axis, epsilon

    def hybrid_forward(self, F, data, gamma, beta):
        return F.LayerNorm(data, gamma=gamma, beta=beta, axis=self._axis, eps=self._epsilon)


class GroupNorm(_Norm):
    """Normalises each group of channels per sample; gamma/beta have one value per group (MXNet 1.x)."""

    def __init__(self, num_groups=1, epsilon=1e-5, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", **kwargs):
        super().__init__({"eps": epsilon, "num_groups": num_groups, "center": center, "scale": scale}, num_groups,
                         center, scale, beta_initializer, gamma_initializer, **kwargs)
        self._num_groups, self._epsilon = num_groups, epsilon

    def __repr__(self):
        content = ", ".join("=".join([k, v.__repr__()]) for k, v in self._kwargs.items())
        return "{name}({content})".format(name=self.__class__.__name__, content=content)

    def hybrid_forward(self, F, data, gamma, beta):
        return F.GroupNorm(data, gamma=gamma, beta=beta, num_groups=self._num_groups, eps=self._epsilon)


class InstanceNorm(_Norm):
    """Normalises each (sample, channel) over its spatial positions; ``axis`` names the channel axis."""

    def __init__(self, axis=1, epsilon=1e-5, center=True, scale=False, beta_initializer="zeros",
                 gamma_initializer="ones", in_channels=0, **kwargs):
        super().__init__({"eps": epsilon, "axis": axis, "center": center, "scale": scale}, in_channels, center,
                         scale, beta_initializer, gamma_initializer, **kwargs)
        self._axis, self._epsilon = axis, epsilon

    def hybrid_forward(self, F, x, gamma, beta):
        if self._axis == 1:
            return F.InstanceNorm(x, gamma, beta, name="fwd", eps=self._epsilon)
        x = x.swapaxes(1, self._axis)
        return F.InstanceNorm(x, gamma, beta, name="fwd", eps=self._epsilon).swapaxes(1, self._axis)


class Embedding(HybridBlock):
    """Rows of ``weight`` (input_dim x output_dim) picked by integer indices.

    kiln has no row_sparse storage: with ``sparse_grad=True`` the weight's gradient is dense
    (the same values; rows no index picked are zero, and an optimiser's weight decay then
    reaches every row, where MXNet's lazy sparse update touches only the picked ones)."""

    def __init__(self, input_dim, output_dim, dtype="float32", weight_initializer=None, sparse_grad=False,
                 **kwargs):
        super().__init__(**kwargs)
        if sparse_grad:
            _log.info("%s: sparse_grad=True falls back to a dense weight gradient", self.name)
        self._kwargs = {"input_dim": input_dim, "output_dim": output_dim, "dtype": dtype,
                        "sparse_grad": sparse_grad}
        self.weight = self.params.get("weight", shape=(input_dim, output_dim), init=weight_initializer,
                                      dtype=dtype, allow_deferred_init=True)

    def hybrid_forward(self, F, x, weight):
        return F.Embedding(x, weight, name="fwd", **self._kwargs)

    def __repr__(self):
        return "{block_name}({input_dim} -> {output_dim}, {dtype})".format(block_name=self.__class__.__name__,
                                                                          **self._kwargs)


class Flatten(HybridBlock):
    """Collapses every axis but the first."""

    def hybrid_forward(self, F, x):
        return F.Flatten(x)

    def __repr__(self):
        return self.__class__.__name__


class Lambda(Block):
    """Wraps a function (or the name of an ``nd`` operator) as a Block."""

    def __init__(self, function, prefix=None):
        super().__init__(prefix=prefix)
        if isinstance(function, str):
            from ... import ndarray as nd
            if not hasattr(nd, function):
                raise MXNetError("Function name %s is not found in ndarray." % function)
            self._func_impl = getattr(nd, function)
        elif callable(function):
            self._func_impl = function
        else:
            raise ValueError("Unrecognized function in lambda: {} of type {}".format(function, type(function)))

    def forward(self, *args):
        return self._func_impl(*args)

    def __repr__(self):
        return "{name}({function})".format(name=self.__class__.__name__, function=self._func_impl.__name__)


class HybridLambda(HybridBlock):
    """Wraps ``function(F, *args)`` (or the name of an operator available as F.<name>)."""

    def __init__(self, function, prefix=None):
        super().__init__(prefix=prefix)
        if isinstance(function, str):
            from ... import ndarray as nd, symbol as sym
            if not (hasattr(nd, function) and hasattr(sym, function)):
                raise MXNetError("Function name %s is not found in symbol/ndarray." % function)
            func_dict = {sym: getattr(sym, function), nd: getattr(nd, function)}
            self._func = lambda F, *args: func_dict[F](*args)
            self._func_name = function
        elif callable(function):
            self._func = function
            self._func_name = function.__name__
        else:
            raise ValueError("Unrecognized function in lambda: {} of type {}".format(function, type(function)))

    def hybrid_forward(self, F, x, *args):
        return self._func(F, x, *args)

    def __repr__(self):
        return "{name}({function})".format(name=self.__class__.__name__, function=self._func_name)
