"""gluon.nn convolution and pooling layers: hybridized equals imperative (outputs and
gradients), weight shapes and deferred input channels, names."""
import numpy as np
import pytest

import kiln as mx
from kiln.gluon import nn
from tests.gluon.test_block import RS, _compare

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
