"""Draw LeNet as written (lenet.svg) and as kiln compiles it (lenet_compiled.svg).

    python examples/plot_lenet.py [output directory]

The compiled picture shows each fused kernel as a cluster of the operators it
computes, and each buffer between kernels with its arena offset and size, so
one can see what was fused and which buffers reuse the same memory. Needs the
graphviz Python package and Graphviz's `dot` program (pip install 'kiln[viz]').
The same pictures from the command line:
``kiln plot lenet-symbol.json --shape data=1,1,28,28 [--compiled]``.
"""
import os
import sys

import kiln as mx
from kiln.viz_compiled import plot_compiled

SHAPE = {"data": (1, 1, 28, 28)}


def lenet():
    data = mx.sym.var("data")
    x = mx.sym.Convolution(data, kernel=(5, 5), num_filter=20, name="conv1")
    x = mx.sym.Activation(x, act_type="tanh", name="tanh1")
    x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool1")
    x = mx.sym.Convolution(x, kernel=(5, 5), num_filter=50, name="conv2")
    x = mx.sym.Activation(x, act_type="tanh", name="tanh2")
    x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool2")
    x = mx.sym.Flatten(x, name="flatten")
    x = mx.sym.FullyConnected(x, num_hidden=500, name="fc1")
    x = mx.sym.Activation(x, act_type="tanh", name="tanh3")
    x = mx.sym.FullyConnected(x, num_hidden=10, name="fc2")
    return mx.sym.SoftmaxOutput(x, name="softmax")


def main(out_dir="."):
    """Write both pictures into ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    net = lenet()
    paths = []
    for name, dot in (("lenet", mx.viz.plot_network(net, title="lenet", save_format="svg", shape=SHAPE)),
                      ("lenet_compiled", plot_compiled(net, shape=SHAPE, title="lenet", save_format="svg"))):
        path = os.path.join(out_dir, name + ".svg")
        with open(path, "wb") as f:
            f.write(dot.pipe(format="svg", quiet=True))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in main(*sys.argv[1:2]):
        print(p)
