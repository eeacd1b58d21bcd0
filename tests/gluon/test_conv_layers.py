"""gluon.nn convolution and pooling layers: hybridized equals imperative (outputs and
gradients), weight shapes and deferred input channels, names; channel-last layouts equal
the channel-first layers with transposed weights."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from kiln.gluon import nn
from tests.gluon.test_block import RS, _compare, _run

LAYERS = {
    "conv1d": (lambda: nn.Conv1D(3, 3, in_channels=2), (2, 2, 7)),
    "conv2d_pad_relu": (lambda: nn.Conv2D(4, 3, padding=1, activation="relu"), (2, 2, 5, 5)),
    "conv2d_stride_group_nobias": (lambda: nn.Conv2D(4, (3, 2), strides=(2, 1), groups=2, use_bias=False,
                                                     in_channels=2), (2, 2, 6, 6)),
    "conv2d_dilate": (lambda: nn.Conv2D(2, 2, dilation=2), (1, 3, 6, 6)),
    "conv3d": (lambda: nn.Conv3D(2, 2, in_channels=1), (1, 1, 4, 4, 4)),
    "conv2d_transpose": (lambda: nn.Conv2DTranspose(2, 3, strides=2, padding=1, output_padding=1, in_channels=2),
                         (2, 2, 3, 3)),
    "conv1d_transpose": (lambda: nn.Conv1DTranspose(2, 3, in_channels=3), (2, 3, 4)),
    "maxpool2d": (lambda: nn.MaxPool2D(), (2, 2, 6, 6)),
    "maxpool2d_ceil": (lambda: nn.MaxPool2D(pool_size=4, strides=3, ceil_mode=True), (1, 2, 6, 6)),
    "avgpool2d_exclude_pad": (lambda: nn.AvgPool2D(3, 1, 1, count_include_pad=False), (1, 2, 5, 5)),
    "maxpool1d": (lambda: nn.MaxPool1D(2), (1, 2, 6)),
    "avgpool3d": (lambda: nn.AvgPool3D(2), (1, 1, 4, 4, 4)),
    "global_max2d": (lambda: nn.GlobalMaxPool2D(), (2, 3, 4, 4)),
    "global_avg1d": (lambda: nn.GlobalAvgPool1D(), (2, 3, 5)),
    "reflection_pad": (lambda: nn.ReflectionPad2D(1), (1, 2, 3, 3)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_hybrid_equals_imperative(name):
    make, shape = LAYERS[name]
    _compare(make, mx.nd.array(RS.uniform(-1, 1, size=shape)))


def test_weight_shapes_names_and_deferred_channels():
    c = nn.Conv2D(channels=3, kernel_size=3, in_channels=2)
    assert c.weight.shape == (3, 2, 3, 3) and c.bias.shape == (3,)
    assert c.prefix.startswith("conv")  # conv0_, conv1_...: MXNet's global counter
    assert sorted(k[len(c.prefix):] for k in c.collect_params().keys()) == ["bias", "weight"]
    d = nn.Conv2D(channels=4, kernel_size=2)
    d.initialize()
    assert d(mx.nd.ones((1, 5, 4, 4))).shape == (1, 4, 3, 3)
    assert d.weight.shape == (4, 5, 2, 2)
    t = nn.Conv2DTranspose(channels=6, kernel_size=2, groups=2, in_channels=4)
    assert t.weight.shape == (4, 3, 2, 2)
    assert nn.MaxPool2D().name.startswith("pool")


def test_lenet_trains_hybridized():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, activation="relu"), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(2))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    rs = np.random.RandomState(0)
    y = rs.randint(0, 2, 16)
    x = rs.normal(0, 0.3, (16, 1, 8, 8)).astype(np.float32)
    x[y == 1, :, 2:6, 2:6] += 1.0  # a bright square marks class 1
    data, label = mx.nd.array(x), mx.nd.array(y)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.2})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    losses = []
    for _ in range(30):
        with mx.autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(16)
        losses.append(float(loss.mean().asscalar()))
    assert losses[-1] < 0.5 * losses[0]


# Channel-last layers: (factory(layout), channel-first input shape, channel-last layout).
CHANNEL_LAST = {
    "conv1d_nwc": (lambda layout: nn.Conv1D(3, 3, padding=1, layout=layout), (2, 2, 7), "NWC"),
    "conv2d_nhwc_deferred_relu": (lambda layout: nn.Conv2D(4, 3, padding=1, activation="relu", layout=layout),
                                  (2, 3, 5, 6), "NHWC"),
    "conv2d_nhwc_group_stride_dilate_nobias": (
        lambda layout: nn.Conv2D(4, (3, 2), strides=(2, 1), dilation=(1, 2), groups=2, use_bias=False,
                                 in_channels=2, layout=layout), (2, 2, 7, 6), "NHWC"),
    "conv3d_ndhwc": (lambda layout: nn.Conv3D(2, 2, layout=layout), (1, 2, 3, 4, 3), "NDHWC"),
    "conv1d_transpose_nwc": (lambda layout: nn.Conv1DTranspose(2, 3, strides=2, layout=layout), (2, 3, 4), "NWC"),
    "conv2d_transpose_nhwc": (lambda layout: nn.Conv2DTranspose(4, 3, strides=2, padding=1, output_padding=1,
                                                                groups=2, in_channels=2, layout=layout),
                              (2, 2, 3, 3), "NHWC"),
    "conv3d_transpose_ndhwc": (lambda layout: nn.Conv3DTranspose(2, 2, strides=(1, 2, 1), layout=layout),
                               (1, 2, 2, 3, 2), "NDHWC"),
    "maxpool1d_nwc": (lambda layout: nn.MaxPool1D(3, 2, layout=layout), (2, 3, 7), "NWC"),
    "maxpool2d_nhwc_ceil": (lambda layout: nn.MaxPool2D(3, 2, ceil_mode=True, layout=layout), (1, 2, 6, 7), "NHWC"),
    "avgpool2d_nhwc_exclude_pad": (lambda layout: nn.AvgPool2D(3, 1, 1, count_include_pad=False, layout=layout),
                                   (1, 2, 5, 4), "NHWC"),
    "avgpool3d_ndhwc": (lambda layout: nn.AvgPool3D(2, layout=layout), (1, 2, 4, 4, 2), "NDHWC"),
    "global_avg2d_nhwc": (lambda layout: nn.GlobalAvgPool2D(layout=layout), (2, 3, 4, 5), "NHWC"),
    "global_max1d_nwc": (lambda layout: nn.GlobalMaxPool1D(layout=layout), (2, 3, 5), "NWC"),
    "global_max3d_ndhwc": (lambda layout: nn.GlobalMaxPool3D(layout=layout), (1, 2, 3, 2, 2), "NDHWC"),
}


def _last(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


@pytest.mark.parametrize("name", sorted(CHANNEL_LAST))
def test_channel_last_layer_hybrid_equals_imperative(name):
    make, shape, layout = CHANNEL_LAST[name]
    _compare(lambda: make(layout), mx.nd.array(_last(RS.uniform(-1, 1, size=shape))))


@pytest.mark.parametrize("name", sorted(CHANNEL_LAST))
def test_channel_last_layer_equals_channel_first_layer(name):
    """Same (transposed) weights and data: outputs and every gradient equal, transposed."""
    make, shape, layout = CHANNEL_LAST[name]
    x = RS.uniform(-1, 1, size=shape)
    first, last = make(layout[:1] + "C" + layout[1:-1]), make(layout)
    for net, data in ((first, x), (last, _last(x))):
        net.initialize()
        net(mx.nd.array(data))  # finish deferred init
    for (k, p), q in zip(first.collect_params().items(), last.collect_params().values()):
        value = RS.uniform(-0.5, 0.5, size=p.shape)
        moved = _last(value) if value.ndim > 2 else value  # weights, not biases
        assert q.shape == moved.shape, k
        p.set_data(mx.nd.array(value))
        q.set_data(mx.nd.array(moved))
    last.hybridize()
    out = first(mx.nd.array(x))
    head = RS.uniform(-1, 1, size=out.shape)
    o1, gx1, g1 = _run(first, mx.nd.array(x), mx.nd.array(head))
    o2, gx2, g2 = _run(last, mx.nd.array(_last(x)), mx.nd.array(_last(head)))
    np.testing.assert_allclose(o2, _last(o1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx2, _last(gx1), rtol=1e-4, atol=1e-5)
    for (k, a), b in zip(g1.items(), g2.values()):
        np.testing.assert_allclose(b, _last(a) if a.ndim > 2 else a, rtol=1e-4, atol=1e-5, err_msg=k)


def test_channel_last_weight_shapes_and_deferred_channels():
    """MXNet's channel-last weights: (channels, *kernel, in/groups), transposed
    (in_channels, *kernel, channels/groups); a deferred input-channel size comes from the data."""
    assert nn.Conv2D(6, (3, 2), groups=2, in_channels=4, layout="NHWC").weight.shape == (6, 3, 2, 2)
    assert nn.Conv2DTranspose(6, 3, groups=2, in_channels=4, layout="NHWC").weight.shape == (4, 3, 3, 3)
    conv = nn.Conv3D(4, 2, layout="NDHWC")
    conv.initialize()
    conv.hybridize()
    assert conv(mx.nd.ones((1, 3, 3, 3, 5))).shape == (1, 2, 2, 2, 4)
    assert conv.weight.shape == (4, 2, 2, 2, 5)
    deconv = nn.Conv1DTranspose(4, 3, layout="NWC")
    deconv.initialize()
    assert deconv(mx.nd.ones((2, 5, 3))).shape == (2, 7, 4)
    assert deconv.weight.shape == (3, 3, 4)
    with pytest.raises(MXNetError, match="MaxPool2D.*NCW"):
        nn.MaxPool2D(layout="NCW")
