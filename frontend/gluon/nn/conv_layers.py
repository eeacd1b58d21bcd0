"""Convolution, transposed convolution and pooling layers over the registry's
Convolution, Deconvolution and Pooling operators (MXNet 1.x's gluon.nn names)."""
from __future__ import annotations

from ...base import MXNetError
from ..block import HybridBlock
from .activations import Activation

__all__ = ["Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
           "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
           "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D", "GlobalAvgPool1D", "GlobalAvgPool2D",
           "GlobalAvgPool3D", "ReflectionPad2D"]


def _tuple(value, n, what):
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise MXNetError("%s must be an int or a tuple of %d ints, got %r" % (what, n, value))
    return value


class _Conv(HybridBlock):
    """Shared by convolution and its transpose; the weight's input-channel size may be
    0 (deferred until the first input is seen)."""

    def __init__(self, channels, kernel_size, strides, padding, dilation, groups, layout, in_channels=0,
                 activation=None, use_bias=True, weight_initializer=None, bias_initializer="zeros",
                 op_name="Convolution", adj=None, **kwargs):
        super().__init__(**kwargs)
        n = len(layout) - 2
        kernel = _tuple(kernel_size, n, "kernel_size")
        with self.name_scope():
            self._channels = channels
            self._in_channels = in_channels
            self._op_name = op_name
            self._kwargs = {"kernel": kernel, "stride": _tuple(strides, n, "strides"),
                            "dilate": _tuple(dilation, n, "dilation"), "pad": _tuple(padding, n, "padding"),
                            "num_filter": channels, "num_group": groups, "no_bias": not use_bias, "layout": layout}
            if adj is not None:
                self._kwargs["adj"] = _tuple(adj, n, "output_padding")
            if op_name == "Convolution":
                wshape = (channels, in_channels // groups if in_channels else 0) + kernel
            else:
                wshape = (in_channels, channels // groups) + kernel
            if layout.index("C") != 1:  # channel-last: the second axis goes last, as MXNet's weights
                wshape = (wshape[0],) + wshape[2:] + (wshape[1],)
            self.weight = self.params.get("weight", shape=wshape, init=weight_initializer, allow_deferred_init=True)
            self.bias = self.params.get("bias", shape=(channels,), init=bias_initializer,
                                        allow_deferred_init=True) if use_bias else None
            self.act = Activation(activation, prefix=activation + "_") if activation is not None else None

    def _alias(self):
        return "conv"

    def hybrid_forward(self, F, x, weight, bias=None):
        op = getattr(F, self._op_name)
        out = op(x, weight, name="fwd", **self._kwargs) if bias is None else \
            op(x, weight, bias, name="fwd", **self._kwargs)
        return self.act(out) if self.act is not None else out

    def __repr__(self):
        return "%s(%s -> %s, kernel_size=%s, stride=%s)" % (
            type(self).__name__, self._in_channels or None, self._channels, self._kwargs["kernel"],
            self._kwargs["stride"])


def _conv_class(name, n, layout, transpose):
    def __init__(self, channels, kernel_size, strides=1, padding=0, *rest, **kwargs):
        if transpose:
            names = ("output_padding", "dilation", "groups", "layout")
            defaults = {"output_padding": 0, "dilation": 1, "groups": 1, "layout": layout}
        else:
            names = ("dilation", "groups", "layout")
            defaults = {"dilation": 1, "groups": 1, "layout": layout}
        values = dict(defaults, **dict(zip(names, rest)))
        for k in names:
            if k in kwargs:
                values[k] = kwargs.pop(k)
        if len(values["layout"]) != n + 2:
            raise MXNetError("%s: layout %r does not have %d dimensions" % (name, values["layout"], n + 2))
        _Conv.__init__(self, channels, kernel_size, strides, padding, values["dilation"], values["groups"],
                       values["layout"], op_name="Deconvolution" if transpose else "Convolution",
                       adj=values.get("output_padding") if transpose else None, **kwargs)
    doc = "%d-D %sconvolution (``%s`` layout by default)." % (n, "transposed " if transpose else "", layout)
    return type(name, (_Conv,), {"__init__": __init__, "__doc__": doc})


Conv1D = _conv_class("Conv1D", 1, "NCW", False)
Conv2D = _conv_class("Conv2D", 2, "NCHW", False)
Conv3D = _conv_class("Conv3D", 3, "NCDHW", False)
Conv1DTranspose = _conv_class("Conv1DTranspose", 1, "NCW", True)
Conv2DTranspose = _conv_class("Conv2DTranspose", 2, "NCHW", True)
Conv3DTranspose = _conv_class("Conv3DTranspose", 3, "NCDHW", True)


class _Pooling(HybridBlock):
    def __init__(self, n, pool_size, strides, padding, ceil_mode, global_pool, pool_type, layout,
                 count_include_pad=None, **kwargs):
        super().__init__(**kwargs)
        if len(layout) != n + 2:
            raise MXNetError("%s: layout %r does not have %d dimensions" % (type(self).__name__, layout, n + 2))
        pool_size = _tuple(pool_size, n, "pool_size")
        self._kwargs = {"kernel": pool_size, "stride": _tuple(pool_size if strides is None else strides, n, "strides"),
                        "pad": _tuple(padding, n, "padding"), "global_pool": global_pool, "pool_type": pool_type,
                        "layout": layout, "pooling_convention": "full" if ceil_mode else "valid"}
        if count_include_pad is not None:
            self._kwargs["count_include_pad"] = count_include_pad

    def _alias(self):
        return "pool"

    def hybrid_forward(self, F, x):
        return F.Pooling(x, name="fwd", **self._kwargs)

    def __repr__(self):
        return "%s(size=%s, stride=%s, padding=%s, ceil_mode=%s)" % (
            type(self).__name__, self._kwargs["kernel"], self._kwargs["stride"], self._kwargs["pad"],
            self._kwargs["pooling_convention"] == "full")


def _pool_class(name, n, layout, pool_type, global_pool):
    if global_pool:
        def __init__(self, layout=layout, **kwargs):
            _Pooling.__init__(self, n, (1,) * n, None, 0, True, True, pool_type, layout, **kwargs)
    elif pool_type == "avg":
        def __init__(self, pool_size=2, strides=None, padding=0, layout=layout, ceil_mode=False,
                     count_include_pad=True, **kwargs):
            _Pooling.__init__(self, n, pool_size, strides, padding, ceil_mode, False, pool_type, layout,
                              count_include_pad, **kwargs)
    else:
        def __init__(self, pool_size=2, strides=None, padding=0, layout=layout, ceil_mode=False, **kwargs):
            _Pooling.__init__(self, n, pool_size, strides, padding, ceil_mode, False, pool_type, layout, **kwargs)
    doc = "%s%s pooling over %d spatial dimension(s)." % ("global " if global_pool else "", pool_type, n)
    return type(name, (_Pooling,), {"__init__": __init__, "__doc__": doc})


MaxPool1D = _pool_class("MaxPool1D", 1, "NCW", "max", False)
MaxPool2D = _pool_class("MaxPool2D", 2, "NCHW", "max", False)
MaxPool3D = _pool_class("MaxPool3D", 3, "NCDHW", "max", False)
AvgPool1D = _pool_class("AvgPool1D", 1, "NCW", "avg", False)
AvgPool2D = _pool_class("AvgPool2D", 2, "NCHW", "avg", False)
AvgPool3D = _pool_class("AvgPool3D", 3, "NCDHW", "avg", False)
GlobalMaxPool1D = _pool_class("GlobalMaxPool1D", 1, "NCW", "max", True)
GlobalMaxPool2D = _pool_class("GlobalMaxPool2D", 2, "NCHW", "max", True)
GlobalMaxPool3D = _pool_class("GlobalMaxPool3D", 3, "NCDHW", "max", True)
GlobalAvgPool1D = _pool_class("GlobalAvgPool1D", 1, "NCW", "avg", True)
GlobalAvgPool2D = _pool_class("GlobalAvgPool2D", 2, "NCHW", "avg", True)
GlobalAvgPool3D = _pool_class("GlobalAvgPool3D", 3, "NCDHW", "avg", True)


class ReflectionPad2D(HybridBlock):
    """Pads the two spatial axes of NCHW input by reflection."""

    def __init__(self, padding=0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, int):
            padding = (0, 0, 0, 0) + (padding,) * 4
        if len(padding) != 8:
            raise MXNetError("ReflectionPad2D: padding must be an int or 8 numbers, got %r" % (padding,))
        self._padding = tuple(padding)

    def hybrid_forward(self, F, x):
        return F.Pad(x, mode="reflect", pad_width=self._padding)
