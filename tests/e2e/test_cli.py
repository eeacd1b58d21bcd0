"""The ``kiln`` command line, run as a user would (``python -m kiln.cli`` and the console
script): pictures out, and every bad input a one-line error with a non-zero exit status."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

import kiln as mx

pytest.importorskip("graphviz")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")


def kiln(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "kiln.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def failed(result, status, *words):
    """Exit ``status`` with exactly one stderr line naming ``words``, no traceback."""
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kiln: error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def model(tmp_path):
    x = mx.sym.Convolution(mx.sym.var("data"), kernel=(3, 3), num_filter=4, name="conv1")
    x = mx.sym.Activation(x, act_type="relu", name="relu1")
    x = mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=10, name="fc1")
    path = tmp_path / "model-symbol.json"
    mx.sym.SoftmaxOutput(x, name="softmax").save(str(path))
    return path


@needs_dot
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_compiled_picture(model, tmp_path, fmt):
    out = tmp_path / ("model." + fmt)
    r = kiln("plot", model, "--shape", "data=1,3,8,8", "-o", out, "--compiled", "--title", "T")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if fmt == "png" else (b"<svg" in data and b"cluster_" in data)


@needs_dot
def test_format_option_and_default_name(model, tmp_path):
    r = kiln("plot", model, "--shape", "data=1,3,8,8", "--format", "svg", "--compiled", "--show-weights",
             "--dtype", "data=float64", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    svg = (tmp_path / "model.svg").read_text()  # model-symbol.json -> model.svg
    assert "conv1_weight" in svg and "float64" in svg


@needs_dot
def test_plain_picture(model, tmp_path):
    if importlib.util.find_spec("kiln.visualization") is None:
        pytest.skip("kiln.visualization (plot_network) is not in this tree yet")
    out = tmp_path / "plain.svg"
    r = kiln("plot", model, "--shape", "data=1,3,8,8", "-o", out)
    assert r.returncode == 0, r.stderr
    assert b"<svg" in out.read_bytes()


def test_console_script(model, tmp_path):
    script = shutil.which("kiln")
    if script is None:
        pytest.skip("the kiln console script is not installed")
    r = subprocess.run([script, "plot", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--compiled" in r.stdout and "--shape" in r.stdout


def test_help():
    r = kiln("--help")
    assert r.returncode == 0 and "plot" in r.stdout
    r = kiln("plot", "--help")
    assert r.returncode == 0 and "NAME=D1,D2" in r.stdout and "--show-weights" in r.stdout


def test_missing_file(tmp_path):
    failed(kiln("plot", tmp_path / "nope.json", "--compiled"), 1, "nope.json")


def test_malformed_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [')
    failed(kiln("plot", bad, "--shape", "data=1"), 1, "malformed symbol JSON")
    bad.write_bytes(b"\xff\xfe\x00binary")
    failed(kiln("plot", bad, "--shape", "data=1"), 1)


def test_unknown_operator(model, tmp_path):
    doc = json.loads(model.read_text())
    for node in doc["nodes"]:
        if node["op"] == "Activation":
            node["op"] = "FancyOp"
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(doc))
    failed(kiln("plot", path, "--shape", "data=1,3,8,8", "--compiled"), 1, "FancyOp")


def test_shape_for_unknown_input(model):
    failed(kiln("plot", model, "--shape", "label=1,3", "--compiled"), 1, "label", "not an input")
    failed(kiln("plot", model, "--shape", "data=1,3,8,8", "--dtype", "foo=float16", "--compiled"), 1, "foo")


@pytest.mark.parametrize("text", ["data", "data=", "=1,2", "data=1,x", "data=1,-2", "data=1,,2"])
def test_bad_shape_syntax(model, text):
    failed(kiln("plot", model, "--shape", text, "--compiled"), 2, "--shape")


def test_bad_options(model, tmp_path):
    failed(kiln("plot", model, "--shape", "data=1,3,8,8", "--dtype", "data=float99"), 2, "float99")
    failed(kiln("plot", model, "--shape", "data=1,3,8,8", "-o", tmp_path / "x.gif"), 2, "x.gif")
    failed(kiln("plot", model, "-o", tmp_path / "x.png", "--format", "svg"), 2, "x.png")
    failed(kiln("plot", model, "--format", "gif"), 2, "gif")
    failed(kiln("plot", model, "--bogus"), 2, "--bogus")
    failed(kiln(), 2, "command")


def test_shapes_that_do_not_fit(model):
    failed(kiln("plot", model, "--shape", "data=1,3", "--compiled"), 1)  # conv needs a 4-d input
    failed(kiln("plot", model, "--compiled"), 1, "shape")  # compiling needs the input shapes


def test_missing_dot(model, tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no dot on PATH
    failed(kiln("plot", model, "--shape", "data=1,3,8,8", "--compiled", "-o", tmp_path / "m.svg", env=env), 1,
           "dot")
    assert not (tmp_path / "m.svg").exists()
