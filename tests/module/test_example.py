"""examples/module_mlp.py trains with Module.fit, logs MXNet's lines and writes a checkpoint."""
import importlib.util
import logging
import os
import pathlib
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "module_mlp.py"


def _load():
    spec = importlib.util.spec_from_file_location("module_mlp", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_module_mlp_learns(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        accuracies, prefix = _load().train(epochs=3, n=512, contexts=2, prefix=str(tmp_path / "mlp"))
    assert len(accuracies) == 3 and accuracies[-1] > 0.6 and accuracies[-1] > accuracies[0]
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Epoch[2] Validation-accuracy=") for m in msgs)
    assert any("samples/sec" in m for m in msgs)
    assert os.path.exists(prefix + "-0003.params") and os.path.exists(prefix + "-symbol.json")


def test_module_mlp_quick_prints_nothing():
    env = dict(os.environ, KILN_EXAMPLE_QUICK="1")
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "Epoch[2] Train-accuracy=" in proc.stderr
