"""Every example runs, and does what it claims."""
import importlib.util
import pathlib
import shutil

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / (name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mlp_symbolic_loss_falls():
    losses = _load("mlp_symbolic").train(epochs=3, n=512)
    assert len(losses) == 3
    assert losses[-1] < 0.5 * losses[0]


def test_autograd_regression_loss_falls():
    losses = _load("autograd_regression").train(steps=60, n=64)
    assert len(losses) == 60
    assert losses[-1] < 0.5 * losses[0]


def test_lenet_gluon_learns():
    accuracies = _load("lenet_gluon").train(epochs=4, n=1024)
    assert accuracies[-1] > 0.6 and accuracies[-1] > 2 * accuracies[0]


def test_char_rnn_loss_falls():
    losses = _load("char_rnn").train(epochs=3, n_sentences=200, seq_len=16)
    assert len(losses) == 3
    assert losses[-1] < 0.7 * losses[0]


def test_plot_lenet_writes_both_pictures(tmp_path):
    pytest.importorskip("graphviz")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program is not installed")
    paths = _load("plot_lenet").main(str(tmp_path))
    assert [pathlib.Path(p).name for p in paths] == ["lenet.svg", "lenet_compiled.svg"]
    plain, compiled = (pathlib.Path(p).read_text() for p in paths)
    assert "<svg" in plain and "conv1" in plain
    assert "cluster_" in compiled and "_conv_fwd_gemm" in compiled
