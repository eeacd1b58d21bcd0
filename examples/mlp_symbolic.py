"""Train a two-layer MLP with simple_bind and a hand-written SGD loop.

The data is synthetic: points drawn around ten random centres, labelled by
centre. Forward and backward run as one compiled native program each.

    python examples/mlp_symbolic.py [--epochs 10]
"""
import argparse
import logging
import time

import numpy as np

import kiln as mx

log = logging.getLogger("mlp_symbolic")


def make_data(n, dim, classes, rng):
    centres = rng.normal(0, 0.12, size=(classes, dim)).astype(np.float32)
    labels = rng.randint(0, classes, size=n)
    points = centres[labels] + rng.normal(0, 1.0, size=(n, dim)).astype(np.float32)
    return points.astype(np.float32), labels.astype(np.float32)


def build(num_hidden, classes):
    data = mx.sym.Variable("data")
    label = mx.sym.Variable("softmax_label")
    fc1 = mx.sym.FullyConnected(data, num_hidden=num_hidden, name="fc1")
    act = mx.sym.Activation(fc1, act_type="relu", name="relu1")
    fc2 = mx.sym.FullyConnected(act, num_hidden=classes, name="fc2")
    return mx.sym.SoftmaxOutput(fc2, label, name="softmax")


def train(epochs=10, batch=32, dim=784, hidden=128, classes=10, n=2048, lr=0.1, seed=0):
    """Returns the mean cross-entropy of each epoch."""
    rng = np.random.RandomState(seed)
    x, y = make_data(n, dim, classes, rng)
    net = build(hidden, classes)
    t0 = time.perf_counter()
    ex = net.simple_bind(mx.cpu(), data=(batch, dim), grad_req="write")
    log.info("compiled forward+backward in %.2fs", time.perf_counter() - t0)
    for name, arr in ex.arg_dict.items():
        if name.endswith("_weight"):
            fan_in = arr.shape[1]
            arr[:] = rng.uniform(-1, 1, arr.shape).astype(np.float32) * np.sqrt(6.0 / (fan_in + arr.shape[0]))
    params = [n for n in ex.arg_names if n not in ("data", "softmax_label")]
    losses = []
    for epoch in range(epochs):
        order = rng.permutation(n)
        total, batches = 0.0, 0
        for start in range(0, n - batch + 1, batch):
            idx = order[start:start + batch]
            ex.forward(is_train=True, data=mx.nd.array(x[idx]), softmax_label=mx.nd.array(y[idx]))
            ex.backward()
            prob = ex.outputs[0].asnumpy()
            total += float(-np.mean(np.log(prob[np.arange(batch), y[idx].astype(int)] + 1e-12)))
            batches += 1
            for name in params:
                w, g = ex.arg_dict[name], ex.grad_dict[name]
                w[:] = w.asnumpy() - lr / batch * g.asnumpy()
        losses.append(total / batches)
        log.info("epoch %d: loss %.4f", epoch, losses[-1])
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    losses = train(epochs=args.epochs)
    print("loss per epoch: " + ", ".join("%.4f" % v for v in losses))


if __name__ == "__main__":
    main()
