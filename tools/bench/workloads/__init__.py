"""Benchmark workloads: one module each, one function per framework (see harness.py)."""
import importlib

ORDER = ("elemwise_transcendental", "elemwise_arith", "mlp_infer", "mlp_train_step",
         "compile_time", "elemwise_sweep", "lenet_infer", "sort_rows", "imperative_overhead", "gluon_mlp_train",
         "conv_infer", "gluon_lenet_infer", "lstm_train", "resnet18_infer")


def load(name):
    if name not in ORDER:
        raise KeyError("unknown workload %r (known: %s)" % (name, ", ".join(ORDER)))
    return importlib.import_module("%s.%s" % (__name__, name))
