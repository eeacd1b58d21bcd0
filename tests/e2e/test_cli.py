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

needs_graphviz = pytest.mark.skipif(importlib.util.find_spec("graphviz") is None,
                                    reason="the graphviz Python package is not installed")
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


@needs_graphviz
@needs_dot
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_compiled_picture(model, tmp_path, fmt):
    out = tmp_path / ("model." + fmt)
    r = kiln("plot", model, "--shape", "data=1,3,8,8", "-o", out, "--compiled", "--title", "T")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if fmt == "png" else (b"<svg" in data and b"cluster_" in data)


@needs_graphviz
@needs_dot
def test_format_option_and_default_name(model, tmp_path):
    r = kiln("plot", model, "--shape", "data=1,3,8,8", "--format", "svg", "--compiled", "--show-weights",
             "--dtype", "data=float64", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    svg = (tmp_path / "model.svg").read_text()  # model-symbol.json -> model.svg
    assert "conv1_weight" in svg and "float64" in svg


@needs_graphviz
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


@needs_graphviz
def test_shapes_that_do_not_fit(model):
    failed(kiln("plot", model, "--shape", "data=1,3", "--compiled"), 1)  # conv needs a 4-d input
    failed(kiln("plot", model, "--compiled"), 1, "shape")  # compiling needs the input shapes


@needs_graphviz
def test_missing_dot(model, tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no dot on PATH
    failed(kiln("plot", model, "--shape", "data=1,3,8,8", "--compiled", "-o", tmp_path / "m.svg", env=env), 1,
           "dot")
    assert not (tmp_path / "m.svg").exists()


# ---------------------------------------------------------------------------
# kiln inspect


@pytest.fixture
def mlp(tmp_path):
    x = mx.sym.FullyConnected(mx.sym.var("data"), num_hidden=32, name="fc1")
    x = mx.sym.Activation(x, act_type="relu", name="relu1")
    path = tmp_path / "mlp-symbol.json"
    mx.sym.FullyConnected(x, num_hidden=10, name="fc2").save(str(path))
    return path


MLP_GEMM = 2 * 4 * 32 * 20 + 2 * 4 * 10 * 32  # 2*m*n*k of fc1 and fc2 for data 4x20
# batch 4: conv1 (4 filters of 3x3x3 over 6x6 outputs) through its GEMM, fc1 (144 -> 10)
MODEL_GEMM = 4 * (2 * 4 * 6 * 6 * 3 * 3 * 3) + 2 * 4 * 10 * (4 * 6 * 6)


def inspect_json(*args):
    r = kiln("inspect", *args, "--json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return json.loads(r.stdout)


def test_inspect_json_mlp_flops(mlp):
    rep = inspect_json(mlp, "--shape", "data=4,20")
    assert rep["flops"]["gemm"] == rep["flops"]["forward"]["gemm"] == MLP_GEMM
    assert rep["flops"]["total"] == rep["flops"]["gemm"] + rep["flops"]["other"] > MLP_GEMM  # bias, relu
    assert "backward" not in rep["flops"]
    assert sum(k["flops"]["gemm"] * k["launches"] for k in rep["kernels"]) == MLP_GEMM
    fused = [k for k in rep["kernels"] if "relu" in k["ops"]]
    assert fused and "dot" in fused[0]["ops"] and fused[0]["flops"]["gemm"] == 2 * 4 * 32 * 20
    assert {"fuse", "lower", "memory"} <= {p["name"] for p in rep["passes"]}
    assert 0 < rep["memory"]["arena_bytes"] <= rep["memory"]["naive_bytes"]


def test_inspect_grad_doubles_the_products(mlp):
    rep = inspect_json(mlp, "--shape", "data=4,20", "--grad")
    # each dense layer's backward: d(data) = dY . W and d(W) = dY^T . X, each 2*m*n*k
    assert rep["flops"]["forward"]["gemm"] == MLP_GEMM and rep["flops"]["backward"]["gemm"] == 2 * MLP_GEMM
    assert rep["flops"]["gemm"] == 3 * MLP_GEMM
    assert any(launch["phase"] == "backward" for launch in rep["program"]["launches"])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_inspect_convolution_counts_its_gemm(model, dtype):
    rep = inspect_json(model, "--shape", "data=4,3,8,8", "--dtype", "data=" + dtype)
    assert rep["flops"]["gemm"] == MODEL_GEMM  # float16 products are reductions, counted the same


def test_inspect_text(model, tmp_path):
    # the program is in the disk cache already: inspect compiles afresh to report every pass
    env = dict(os.environ, KILN_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("KILN_DISABLE_PROGRAM_CACHE", None)
    warm = ("import kiln as mx; s = mx.sym.load(%r); s.simple_bind(mx.cpu(), grad_req='null', data=(1, 3, 8, 8))"
            % str(model))
    subprocess.run([sys.executable, "-c", warm], check=True, env=env, timeout=120)
    assert os.listdir(tmp_path / "cache")
    r = kiln("inspect", model, "--shape", "data=1,3,8,8", env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = r.stdout
    assert out.startswith("%s: inference program for data=1,3,8,8" % model)
    for text in ("passes:", "fuse", "codegen_llvm", "kernels (", "calls", "_conv_fwd_gemm", "memory: arena",
                 "forward flops:", "total flops:"):
        assert text in out, text
    assert "backward flops" not in out and "cache" not in out
    r = kiln("inspect", model, "--shape", "data=1,3,8,8", "--grad")
    assert r.returncode == 0 and "training program" in r.stdout and "backward flops:" in r.stdout


def test_inspect_help():
    r = kiln("inspect", "--help")
    assert r.returncode == 0 and "--grad" in r.stdout and "--json" in r.stdout
    assert "inspect" in kiln("--help").stdout


def test_inspect_errors(model, tmp_path):
    failed(kiln("inspect", tmp_path / "nope.json", "--shape", "data=1"), 1, "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [')
    failed(kiln("inspect", bad, "--shape", "data=1"), 1, "malformed symbol JSON")
    doc = json.loads(model.read_text())
    for node in doc["nodes"]:
        if node["op"] == "Activation":
            node["op"] = "FancyOp"
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(doc))
    failed(kiln("inspect", unknown, "--shape", "data=1,3,8,8"), 1, "FancyOp")
    failed(kiln("inspect", model, "--shape", "label=1,3"), 1, "label", "not an input")
    failed(kiln("inspect", model, "--shape", "data=1,3,8,8", "--dtype", "foo=float16"), 1, "foo")
    failed(kiln("inspect", model, "--shape", "data=1,3"), 1)  # conv needs a 4-d input
    failed(kiln("inspect", model), 2, "--shape")  # compiling needs the input shapes
    failed(kiln("inspect", model, "--shape", "data=1,3,8,8", "--dtype", "data=float99"), 2, "float99")


def test_inspect_reads_legacy_symbol_json(model, tmp_path):
    """A file as MXNet 0.11 wrote it (``param``, two-element entries, no ``node_row_ptr``)
    compiles to the same program as the modern one."""
    doc = json.loads(model.read_text())
    for node in doc["nodes"]:
        node["param"] = node.pop("attrs", {})
        node["inputs"] = [e[:2] for e in node["inputs"]]
        node["backward_source_id"] = -1
    doc["heads"] = [e[:2] for e in doc["heads"]]
    del doc["node_row_ptr"]
    doc["attrs"] = {"mxnet_version": ["int", 1100]}
    legacy = tmp_path / "legacy-symbol.json"
    legacy.write_text(json.dumps(doc))
    old, new = (inspect_json(path, "--shape", "data=4,3,8,8") for path in (legacy, model))
    assert old["flops"] == new["flops"] and old["flops"]["gemm"] == MODEL_GEMM
    assert [k["ops"] for k in old["kernels"]] == [k["ops"] for k in new["kernels"]]


@pytest.mark.parametrize("text", ["data", "data=", "=1,2", "data=1,x", "data=1,-2", "data=1,,2"])
def test_inspect_bad_shape_syntax(model, text):
    failed(kiln("inspect", model, "--shape", text), 2, "--shape")
