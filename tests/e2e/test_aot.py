"""Ahead-of-time builds (``kiln compile`` / ``kiln run`` / ``load_compiled``): Gluon models
exported to files, compiled into standalone libraries, run from Python and from a C
program, compared with the Executor; every C ABI error path; the library's dependencies;
and the CLI's one-line errors."""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import kiln as mx
from kiln.cli import main as cli_main
from kiln.gluon import nn
from kiln.runtime import MXNetError, load_compiled
from kiln.runtime.compiled import open_library

EXAMPLE_C = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "aot", "main.c")
needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler")
pytestmark = needs_cc
SHAPES = {"mlp": (32, 64), "cnn": (2, 3, 10, 10)}


def _mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(128, activation="relu"), nn.Dense(4))  # large enough for threaded kernels
    return net


def _cnn():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"), nn.MaxPool2D(),
            nn.Flatten(), nn.Dense(5))
    return net


def _export(tmp, kind):
    mx.random.seed(7)
    net = _mlp() if kind == "mlp" else _cnn()
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros(SHAPES[kind]))
    if kind == "cnn":  # running statistics that matter in inference
        bn = net[1]
        bn.running_mean.set_data(mx.nd.array(np.linspace(-0.5, 0.5, 6)))
        bn.running_var.set_data(mx.nd.array(np.linspace(0.5, 2.0, 6)))
    prefix = os.path.join(tmp, kind)
    net.export(prefix)
    return prefix + "-symbol.json", prefix + "-0000.params"


def _executor_outputs(symbol_file, params_file, x):
    sym = mx.sym.load(symbol_file)
    params = {k.split(":", 1)[1]: v for k, v in mx.nd.load(params_file).items()}
    args = dict({n: params[n] for n in sym.list_arguments() if n in params}, data=mx.nd.array(x))
    aux = {n: params[n] for n in sym.list_auxiliary_states()}
    ex = sym.bind(mx.cpu(), args, aux_states=aux, grad_req="null")
    return [o.asnumpy() for o in ex.forward(is_train=False)]


def compile_cli(*args):
    """Run ``kiln compile`` in this process; (exit status, stderr lines) via capture by the caller."""
    return cli_main(["compile", *map(str, args)])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """kind -> (symbol file, params file, build dir, input, Executor outputs); built as 'model'."""
    tmp = tmp_path_factory.mktemp("aot")
    out = {}
    rng = np.random.default_rng(0)
    for kind in ("mlp", "cnn"):
        sym, params = _export(str(tmp), kind)
        build = tmp / ("build_" + kind)
        shape = ",".join(map(str, SHAPES[kind]))
        assert compile_cli(sym, "--params", params, "--shape", "data=" + shape, "-o", build, "--name", "model",
                           "--threads", 4) == 0
        x = rng.standard_normal(SHAPES[kind]).astype(np.float32)
        out[kind] = (sym, params, build, x, _executor_outputs(sym, params, x))
    return out


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_load_compiled_matches_executor(models, kind):
    _, _, build, x, ref = models[kind]
    assert sorted(os.listdir(build)) == ["libmodel.so", "model.h", "model.weights"]
    m = load_compiled(str(build))
    assert m.input_names == ["data"] and m.input_shapes == [x.shape]
    outs = m.run(data=x)
    assert len(outs) == len(ref)
    np.testing.assert_allclose(outs[0], ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(m.run(data=x)[0], outs[0])  # inputs and state reusable
    m.close()


def _build_c(build, tmp):
    exe = os.path.join(str(tmp), "main")
    subprocess.run([os.environ.get("CC") or "cc", "-O2", EXAMPLE_C, "-I", str(build), "-L", str(build), "-lmodel",
                    "-Wl,-rpath," + str(build), "-o", exe], check=True, capture_output=True)
    return exe


def _run_c(exe, weights, x, tmp, shape):
    xin, yout = os.path.join(str(tmp), "x.raw"), os.path.join(str(tmp), "y.raw")
    x.tofile(xin)
    r = subprocess.run([exe, weights, xin, yout], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return np.fromfile(yout, dtype=np.float32).reshape(shape)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_c_program_matches_executor(models, kind, tmp_path):
    _, _, build, x, ref = models[kind]
    exe = _build_c(build, tmp_path)
    y = _run_c(exe, str(build / "model.weights"), x, tmp_path, ref[0].shape)
    np.testing.assert_allclose(y, ref[0], rtol=1e-5, atol=1e-5)
    r = subprocess.run([exe, str(tmp_path / "nope.weights"), str(tmp_path / "x.raw"), str(tmp_path / "y.raw")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot open weights file" in r.stderr


def test_embedded_portable_build(models, tmp_path):
    """--embed-params with a portable target (x86-64, no features) and 3 threads."""
    sym, params, _, x, ref = models["cnn"]
    build = tmp_path / "embedded"
    build.mkdir()
    (build / "model.weights").write_bytes(b"stale")  # an earlier build's file must not shadow the embedded one
    assert compile_cli(sym, "--params", params, "--shape", "data=2,3,10,10", "-o", build, "--name", "model",
                       "--embed-params", "--cpu", "x86-64", "--features", "", "--threads", "3") == 0
    assert sorted(os.listdir(build)) == ["libmodel.so", "model.h"]
    m = load_compiled(str(build))
    np.testing.assert_allclose(m.run(data=x)[0], ref[0], rtol=1e-5, atol=1e-5)
    exe = _build_c(build, tmp_path)
    np.testing.assert_allclose(_run_c(exe, "-", x, tmp_path, ref[0].shape), ref[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_two_instances_in_two_threads(models, kind):
    _, _, build, x, _ = models[kind]
    inputs = [x, x[::-1].copy() * 2]
    expected = [load_compiled(str(build)).run(data=a)[0] for a in inputs]
    instances = [load_compiled(str(build)) for _ in inputs]
    errors = []

    def work(k):
        try:
            for _ in range(30):
                np.testing.assert_array_equal(instances[k].run(data=inputs[k])[0], expected[k])
        except Exception as exc:  # reported by the main thread
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_abi_errors(models, tmp_path):
    """Every argument check of the C ABI, called through ctypes: an error code and a message."""
    _, _, build, x, _ = models["cnn"]
    lib = open_library(str(build / "libmodel.so"))
    err = lambda: lib.kiln_last_error().decode()  # noqa: E731
    weights = str(build / "model.weights").encode()
    m = ctypes.c_void_p()
    assert lib.kiln_model_has_embedded_weights() == 0
    assert lib.kiln_model_create(weights, None) != 0 and "out is NULL" in err()
    assert lib.kiln_model_create(None, ctypes.byref(m)) != 0 and "no embedded weights" in err()
    assert lib.kiln_model_create(b"/nonexistent/w", ctypes.byref(m)) != 0 and "cannot open" in err()
    blob = open(weights, "rb").read()
    for name, data, words in (("magic", b"XXXX" + blob[4:], "bad magic"),
                              ("truncated", blob[:-10], "truncated"),
                              ("trailing", blob + b"\0" * 64, "after the last tensor"),
                              ("count", blob[:12] + (99).to_bytes(4, "little") + blob[16:], "99 tensors")):
        path = tmp_path / name
        path.write_bytes(data)
        assert lib.kiln_model_create(str(path).encode(), ctypes.byref(m)) != 0 and words in err(), (name, err())
    assert lib.kiln_model_create(weights, ctypes.byref(m)) == 0 and m.value
    assert lib.kiln_model_num_inputs(None) == -1 and "NULL" in err()
    assert lib.kiln_model_num_outputs(m) == 1
    assert lib.kiln_model_input_name(m, 5) is None and "out of range" in err()
    assert lib.kiln_model_input_name(m, 0) == b"data"
    out = np.empty((2, 5), np.float32)
    assert lib.kiln_model_get_output(m, 0, out.ctypes.data, out.nbytes) != 0 and "has not been called" in err()
    assert lib.kiln_model_run(m) != 0 and "'data' was not set" in err()
    shape = (ctypes.c_int64 * 4)(*x.shape)
    p = x.ctypes.data
    assert lib.kiln_model_set_input(None, b"data", p, shape, 4) != 0 and "model is NULL" in err()
    assert lib.kiln_model_set_input(m, None, p, shape, 4) != 0 and "name is NULL" in err()
    assert lib.kiln_model_set_input(m, b"data", None, shape, 4) != 0 and "data is NULL" in err()
    assert lib.kiln_model_set_input(m, b"date", p, shape, 4) != 0 and "no input named 'date'" in err()
    assert lib.kiln_model_set_input(m, b"data", p, shape, 3) != 0 and "ndim=3" in err()
    assert lib.kiln_model_set_input(m, b"data", p, None, 4) != 0 and "shape is NULL" in err()
    bad = (ctypes.c_int64 * 4)(2, 3, 10, 11)
    assert lib.kiln_model_set_input(m, b"data", p, bad, 4) != 0 and "dim 3 must be 10, got 11" in err()
    assert lib.kiln_model_set_input(m, b"data", p, shape, 4) == 0
    assert lib.kiln_model_run(None) != 0 and lib.kiln_model_run(m) == 0
    assert lib.kiln_model_get_output(m, 0, out.ctypes.data, out.nbytes - 1) != 0 and "needs 40 bytes" in err()
    assert lib.kiln_model_get_output(m, 0, None, out.nbytes) != 0 and "data is NULL" in err()
    assert lib.kiln_model_get_output(m, 1, out.ctypes.data, out.nbytes) != 0 and "out of range" in err()
    dims, ndim = (ctypes.c_int64 * 8)(), ctypes.c_int()
    assert lib.kiln_model_output_shape(m, 0, None, ctypes.byref(ndim)) != 0 and "NULL" in err()
    assert lib.kiln_model_output_shape(m, 0, dims, ctypes.byref(ndim)) == 0 and tuple(dims[:ndim.value]) == (2, 5)
    assert lib.kiln_model_get_output(m, 0, out.ctypes.data, out.nbytes) == 0 and np.isfinite(out).all()
    lib.kiln_model_free(m)
    lib.kiln_model_free(None)
    with pytest.raises(MXNetError, match="no input named 'image'"):
        load_compiled(str(build)).run(image=x)
    with pytest.raises(MXNetError, match="needs dtype float32"):
        load_compiled(str(build)).run(data=x.astype(np.float64))


@pytest.fixture(scope="module")
def dynamic_cnn(models, tmp_path_factory):
    """The CNN compiled with --shape data=?,3,10,10 (batch size chosen at run time)."""
    sym, params = models["cnn"][:2]
    build = tmp_path_factory.mktemp("dynamic") / "build"
    assert compile_cli(sym, "--params", params, "--shape", "data=?,3,10,10", "-o", build, "--name", "model",
                       "--threads", 2) == 0
    return sym, params, build


def test_dynamic_batch_library(dynamic_cnn, tmp_path):
    """One library, several batch sizes in turn, from Python and from the C example: each equals
    the Executor at that batch size."""
    sym, params, build = dynamic_cnn
    assert "data float32 (N, 3, 10, 10)" in (build / "model.h").read_text()
    m = load_compiled(str(build))
    assert m.dynamic_batch and m.input_shapes == [(-1, 3, 10, 10)] and m.output_shapes == [(-1, 5)]
    assert m.batch_size == 0
    rng = np.random.default_rng(3)
    exe = _build_c(build, tmp_path)
    for n in (4, 1, 7, 4):
        x = rng.standard_normal((n, 3, 10, 10)).astype(np.float32)
        ref = _executor_outputs(sym, params, x)[0]
        np.testing.assert_allclose(m.run(data=x)[0], ref, rtol=1e-5, atol=1e-5)
        assert m.batch_size == n
        np.testing.assert_allclose(_run_c(exe, str(build / "model.weights"), x, tmp_path, ref.shape), ref,
                                   rtol=1e-5, atol=1e-5)
    m.close()


def test_dynamic_batch_abi(dynamic_cnn):
    """A batch size is any integer >= 1; changing it makes the last run's outputs unavailable."""
    build = dynamic_cnn[2]
    lib = open_library(str(build / "libmodel.so"))
    err = lambda: lib.kiln_last_error().decode()  # noqa: E731
    m = ctypes.c_void_p()
    assert lib.kiln_model_create(str(build / "model.weights").encode(), ctypes.byref(m)) == 0
    dims, ndim = (ctypes.c_int64 * 8)(), ctypes.c_int()
    assert lib.kiln_model_input_shape(m, 0, dims, ctypes.byref(ndim)) == 0 and tuple(dims[:4]) == (-1, 3, 10, 10)
    assert lib.kiln_model_output_shape(m, 0, dims, ctypes.byref(ndim)) == 0 and tuple(dims[:2]) == (-1, 5)
    assert lib.kiln_model_batch_size(m) == 0 and lib.kiln_model_batch_size(None) == -1
    assert lib.kiln_model_run(m) != 0 and "not set" in err() and "at this batch size" in err()
    x = np.ones((6, 3, 10, 10), np.float32)
    for bad in (0, -2):
        shape = (ctypes.c_int64 * 4)(bad, 3, 10, 10)
        assert lib.kiln_model_set_input(m, b"data", x.ctypes.data, shape, 4) != 0 and "batch size from 1" in err()
    shape = (ctypes.c_int64 * 4)(6, 3, 10, 10)
    assert lib.kiln_model_set_input(m, b"data", x.ctypes.data, shape, 4) == 0 and lib.kiln_model_run(m) == 0
    assert lib.kiln_model_output_shape(m, 0, dims, ctypes.byref(ndim)) == 0 and tuple(dims[:2]) == (6, 5)
    out = np.empty((6, 5), np.float32)
    assert lib.kiln_model_get_output(m, 0, out.ctypes.data, out.nbytes - 4) != 0 and "needs 120 bytes" in err()
    assert lib.kiln_model_get_output(m, 0, out.ctypes.data, out.nbytes) == 0
    shape[0] = 2
    assert lib.kiln_model_set_input(m, b"data", x.ctypes.data, shape, 4) == 0 and lib.kiln_model_batch_size(m) == 2
    assert lib.kiln_model_get_output(m, 0, out.ctypes.data, out.nbytes) != 0 and "at this batch size" in err()
    assert lib.kiln_model_run(m) == 0 and lib.kiln_model_get_output(m, 0, out.ctypes.data, out.nbytes) == 0
    np.testing.assert_array_equal(out[:2], np.repeat(out[:1], 2, axis=0))  # equal rows in, equal rows out
    lib.kiln_model_free(m)


def test_inspect_dynamic_batch(dynamic_cnn, capsys):
    sym = dynamic_cnn[0]
    assert cli_main(["inspect", sym, "--shape", "data=?,3,10,10"]) == 0
    out = capsys.readouterr().out
    assert "data=?,3,10,10" in out and "per batch element" in out and "conv_fwd_gemm" in out
    _one_line(capsys, 2, cli_main(["inspect", sym, "--shape", "data=?,3,10,10", "--grad"]), "inference programs")


def test_library_dependencies(models):
    """Only the C library, libm and pthreads; no libgomp symbol; only kiln_* exported."""
    lib = str(models["cnn"][2] / "libmodel.so")
    dynamic = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
    needed = {line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line}
    allowed = ("libc.so", "libm.so", "libpthread.so", "ld-linux")
    assert needed and all(n.startswith(allowed) for n in needed), needed
    ldd = subprocess.run(["ldd", lib], capture_output=True, text=True, check=True).stdout
    assert "gomp" not in ldd and "not found" not in ldd, ldd
    undefined = subprocess.run(["nm", "-D", "--undefined-only", lib], capture_output=True, text=True,
                               check=True).stdout
    assert "GOMP" not in undefined and "omp_" not in undefined, undefined
    exported = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True,
                              check=True).stdout.split()[2::3]
    assert exported and all(s.startswith("kiln_") for s in exported), exported


def test_emit_ll_and_obj(models, tmp_path):
    sym, params, *_ = models["mlp"]
    for emit, name in (("ll", "mlp.ll"), ("obj", "mlp.o")):
        assert compile_cli(sym, "--params", params, "--shape", "data=32,64", "-o", tmp_path, "--emit", emit,
                           "--threads", 4) == 0
    ir = (tmp_path / "mlp.ll").read_text()
    assert "define void @forward" in ir and "@GOMP_parallel" in ir  # the libraries run threaded kernels
    assert (tmp_path / "mlp.o").read_bytes()[:4] == b"\x7fELF"


def test_kiln_run_command(models, tmp_path):
    """``kiln run`` as a user runs it: .npy in, .npy or .npz out."""
    _, _, build, x, ref = models["cnn"]
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-m", "kiln.cli", "run", str(build), "--input",
                        "data=%s" % (tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref[0], rtol=1e-5, atol=1e-5)
    assert cli_main(["run", str(build), "--input", "data=%s" % (tmp_path / "x.npy"), "-o",
                     str(tmp_path / "y.npz")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["output0"], ref[0], rtol=1e-5, atol=1e-5)


def _one_line(capsys, status, got, *words):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert got == status and len(lines) == 1 and lines[0].startswith("kiln: error: "), (got, err)
    for w in words:
        assert w in lines[0], lines[0]


def test_compile_errors(models, tmp_path, capsys):
    sym, params, *_ = models["cnn"]
    base = ["--params", params, "--shape", "data=2,3,10,10", "-o", tmp_path / "out"]
    _one_line(capsys, 1, compile_cli(tmp_path / "missing-symbol.json", *base), "no such file", "missing-symbol")
    _one_line(capsys, 1, compile_cli(sym, "--params", tmp_path / "none.params", "--shape", "data=2,3,10,10",
                                     "-o", tmp_path / "out"), "no such file", "none.params")
    (tmp_path / "bad.json").write_text('{"nodes": [')
    _one_line(capsys, 1, compile_cli(tmp_path / "bad.json", *base), "malformed symbol JSON")
    graph = json.load(open(sym))
    for node in graph["nodes"]:
        if node["op"] == "FullyConnected":
            node["op"] = "NoSuchOp"
    (tmp_path / "unknown-symbol.json").write_text(json.dumps(graph))
    _one_line(capsys, 1, compile_cli(tmp_path / "unknown-symbol.json", *base), "NoSuchOp")
    _one_line(capsys, 1, compile_cli(sym, *base, "--shape", "image=1,2"), "--shape names image")
    _one_line(capsys, 2, compile_cli(sym, "--params", params, "--shape", "data=?,3,x,10", "-o", tmp_path),
              "bad --shape", "? for the batch size")
    _one_line(capsys, 2, compile_cli(sym, *base, "--name", "my-model"), "C identifier")
    _one_line(capsys, 2, compile_cli(sym, *base, "--target", "cuda"), "CUDA libraries", "not built yet")
    # weights that do not match the graph: wrong shape, missing, extra, wrong dtype
    fc = [n for n in mx.sym.load(sym).list_arguments() if n.startswith("dense")][0][:-len("_weight")]
    _one_line(capsys, 1, compile_cli(sym, "--params", params, "--shape", "data=2,3,12,12", "-o", tmp_path / "o"),
              fc + "_weight has shape (5, 150)", "needs (5, 216)")
    weights = {k: v for k, v in mx.nd.load(params).items()}
    del weights["arg:%s_bias" % fc]
    mx.nd.save(str(tmp_path / "missing.params"), weights)
    _one_line(capsys, 1, compile_cli(sym, "--params", tmp_path / "missing.params", *base[2:]),
              "no weight for %s_bias" % fc)
    weights = dict(mx.nd.load(params), **{"arg:stray": mx.nd.zeros((2,))})
    mx.nd.save(str(tmp_path / "extra.params"), weights)
    _one_line(capsys, 1, compile_cli(sym, "--params", tmp_path / "extra.params", *base[2:]), "stray",
              "does not use")
    weights = dict(mx.nd.load(params))
    weights["arg:%s_bias" % fc] = weights["arg:%s_bias" % fc].astype("float64")
    mx.nd.save(str(tmp_path / "dtype.params"), weights)
    _one_line(capsys, 1, compile_cli(sym, "--params", tmp_path / "dtype.params", *base[2:]),
              fc + "_bias has dtype float64")


def test_run_errors(models, tmp_path, capsys):
    _, _, build, x, _ = models["cnn"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "small.npy", x[:1])
    inp = "data=%s" % (tmp_path / "x.npy")
    _one_line(capsys, 1, cli_main(["run", str(tmp_path / "nowhere"), "--input", inp, "-o", str(tmp_path / "y.npy")]),
              "no compiled model")
    _one_line(capsys, 1, cli_main(["run", str(build), "--input", "image=%s" % (tmp_path / "x.npy"),
                                   "-o", str(tmp_path / "y.npy")]), "no input named 'image'")
    _one_line(capsys, 1, cli_main(["run", str(build), "--input", "data=%s" % (tmp_path / "small.npy"),
                                   "-o", str(tmp_path / "y.npy")]), "dim 0 must be 2, got 1")
    _one_line(capsys, 1, cli_main(["run", str(build), "--input", "data=%s" % (tmp_path / "no.npy"),
                                   "-o", str(tmp_path / "y.npy")]), "no.npy")
    _one_line(capsys, 2, cli_main(["run", str(build), "--input", inp, "-o", str(tmp_path / "y.txt")]), ".npy or .npz")


def test_legacy_mxnet_file_through_library_and_c_program(models, tmp_path):
    """The CNN's symbol file respelled as MXNet 0.11 wrote it (operator attributes under
    ``param``, hidden ones under ``attr``, two-element entries, no node_row_ptr, the
    operators' old aliases) compiles to the same library results as the modern file."""
    from tests.compiler.test_serialization import _legacy_spelling
    sym_file, params, _, x, ref = models["cnn"]
    modern = mx.sym.load(sym_file)
    legacy = _legacy_spelling(modern.tojson(), 1100, modern.list_auxiliary_states(), None)
    assert '"param"' in legacy and "node_row_ptr" not in legacy
    legacy_file = tmp_path / "legacy-symbol.json"
    legacy_file.write_text(legacy)
    build = tmp_path / "legacy"
    assert compile_cli(legacy_file, "--params", params, "--shape", "data=" + ",".join(map(str, SHAPES["cnn"])),
                       "-o", build, "--name", "model") == 0
    m = load_compiled(str(build))
    np.testing.assert_allclose(m.run(data=x)[0], ref[0], rtol=1e-5, atol=1e-5)
    m.close()
    y = _run_c(_build_c(build, tmp_path), str(build / "model.weights"), x, tmp_path, ref[0].shape)
    np.testing.assert_allclose(y, ref[0], rtol=1e-5, atol=1e-5)
