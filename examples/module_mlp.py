"""Train an MLP with the Module API (``mx.mod.Module.fit``) on synthetic data.

Points are drawn around random centres and labelled by centre. ``fit`` runs the
epochs with a validation set, ``mx.callback.Speedometer`` and ``mx.callback.ProgressBar``
report progress through logging, and a checkpoint is written after the last epoch.
Everything is reported through logging (MXNet's 'Epoch[%d] Train-accuracy=...' lines).

    python examples/module_mlp.py [--epochs 8] [--contexts 2] [--quick]

``--quick`` (or KILN_EXAMPLE_QUICK=1) trains a small set for a few epochs (for tests).
"""
import argparse
import logging
import os
import tempfile

import numpy as np

import kiln as mx

log = logging.getLogger("module_mlp")


def make_data(n, dim, classes, rng):
    centres = rng.normal(0, 0.3, size=(classes, dim)).astype(np.float32)
    labels = rng.randint(0, classes, size=n)
    points = centres[labels] + rng.normal(0, 0.5, size=(n, dim)).astype(np.float32)
    return points.astype(np.float32), labels.astype(np.float32)


def build(hidden, classes):
    data = mx.sym.Variable("data")
    net = mx.sym.FullyConnected(data, num_hidden=hidden, name="fc1")
    net = mx.sym.Activation(net, act_type="relu", name="relu1")
    net = mx.sym.FullyConnected(net, num_hidden=classes, name="fc2")
    return mx.sym.SoftmaxOutput(net, name="softmax")


def train(epochs=8, n=2048, batch=64, contexts=1, prefix=None, seed=0):
    """Fit the MLP; returns (validation accuracy per epoch, checkpoint prefix)."""
    rng = np.random.RandomState(seed)
    mx.random.seed(seed)  # Xavier's draws and the iterator's shuffle
    dim, classes = 16, 8
    x, y = make_data(n, dim, classes, rng)
    split = n * 3 // 4
    train_iter = mx.io.NDArrayIter(x[:split], y[:split], batch_size=batch, shuffle=True,
                                   label_name="softmax_label")
    val_iter = mx.io.NDArrayIter(x[split:], y[split:], batch_size=batch, label_name="softmax_label")
    ctx = [mx.cpu(i) for i in range(contexts)]
    mod = mx.mod.Module(build(64, classes), context=ctx)
    accuracies = []

    def record(param):
        accuracies.append(param.eval_metric.get()[1])

    if prefix is None:
        prefix = os.path.join(tempfile.mkdtemp(prefix="module_mlp-"), "mlp")
    batches = (split + batch - 1) // batch
    mod.fit(train_iter, eval_data=val_iter, eval_metric="acc", num_epoch=epochs,
            optimizer="sgd", optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4},
            initializer=mx.init.Xavier(), kvstore="local",
            batch_end_callback=[mx.callback.Speedometer(batch, frequent=max(1, batches // 2)),
                                mx.callback.ProgressBar(batches)],
            eval_end_callback=record,
            epoch_end_callback=mx.callback.module_checkpoint(mod, prefix, period=epochs))
    log.info("final validation accuracy %.3f; checkpoint %s-%04d.params", accuracies[-1], prefix, epochs)
    return accuracies, prefix


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--contexts", type=int, default=1, help="data-parallel over cpu(0..N-1)")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("KILN_EXAMPLE_QUICK") == "1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        train(epochs=3, n=512, contexts=args.contexts)
    else:
        train(epochs=args.epochs, contexts=args.contexts)


if __name__ == "__main__":
    main()
