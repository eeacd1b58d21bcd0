"""Distributed training over MPI: dist_sync/dist_async KVStores, kiln.distributed, kiln.launch.

Jobs run as ``python -m kiln.launch -n N python dist_worker.py MODE OUTDIR`` and are
skipped only where mpi4py or an MPI launcher is missing (``pip install 'kiln[dist]'``).
"""
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import kiln as mx
from kiln import launch

HERE = pathlib.Path(__file__).resolve().parent
WORKER = HERE / "dist_worker.py"
EXAMPLE = HERE.parents[1] / "examples" / "dist_train.py"

_HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
_MPIRUN = launch.find_mpirun()
needs_mpi = pytest.mark.skipif(not (_HAVE_MPI4PY and _MPIRUN),
                               reason="needs mpi4py and mpirun/mpiexec (pip install 'kiln[dist]'): %s"
                               % ("mpi4py missing" if not _HAVE_MPI4PY else "no MPI launcher found"))


def _run(args, n, env=None, timeout=120):
    full_env = dict(os.environ, KILN_DIST_TIMEOUT="30")
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "kiln.launch", "-n", str(n), "python"] + [str(a) for a in args]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def _job(mode, n, out, **kw):
    proc, elapsed = _run([WORKER, mode, out], n, **kw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [np.load(out / ("%s.%d.npz" % (mode, r)), allow_pickle=False) for r in range(n)]


@needs_mpi
def test_dist_sync_trainer_matches_one_process(tmp_path):
    r0, r1 = _job("sync_mlp", 2, tmp_path)
    dist = [k for k in r0.files if k.startswith("dist.")]
    assert len(dist) == 4
    for k in dist:
        np.testing.assert_array_equal(r0[k], r1[k])  # replicas identical
        np.testing.assert_allclose(r0[k], r0[k.replace("dist.", "ref.")], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(r1["probe"], np.ones(3))  # init took rank 0's value


@needs_mpi
def test_dead_worker_fails_within_timeout(tmp_path):
    proc, elapsed = _run([WORKER, "dead", tmp_path], 2, env={"KILN_DIST_TIMEOUT": "3"}, timeout=60)
    assert proc.returncode != 0
    assert "RANK0-ERROR" in proc.stderr, proc.stderr[-3000:]
    assert re.search(r"timed out after 3\.0 s in push of key 3 .*rank 0 of 2", proc.stderr), proc.stderr[-3000:]
    assert elapsed < 20


@needs_mpi
def test_mismatched_keys_name_key_and_ranks(tmp_path):
    proc, elapsed = _run([WORKER, "mismatch", tmp_path], 2, env={"KILN_DIST_TIMEOUT": "10"}, timeout=60)
    assert proc.returncode != 0
    assert "RANK0-ERROR: dist_sync: workers disagree in push of key 'w'" in proc.stderr, proc.stderr[-3000:]
    assert "ranks [1] differ from rank 0" in proc.stderr
    assert "push|'v'|2x3|float32" in proc.stderr
    assert elapsed < 10  # detected by the header exchange, not by a timeout


@needs_mpi
def test_kiln_distributed_collectives(tmp_path):
    res = _job("collectives", 2, tmp_path)
    t = np.arange(6, dtype=np.float32).reshape(2, 3)
    for r, a in enumerate(res):
        assert (int(a["rank"]), int(a["size"]), int(a["local_rank"]), int(a["local_size"])) == (r, 2, r, 2)
        np.testing.assert_allclose(a["allreduce_avg"], 1.5 * t)
        np.testing.assert_allclose(a["allreduce_sum"], 3 * t)
        np.testing.assert_allclose(a["allreduce_inplace"], 3 * t)
        np.testing.assert_array_equal(a["allreduce_int"], [3, 4])
        np.testing.assert_array_equal(a["allgather"], [[0, 0], [1, 1], [1, 1]])
        np.testing.assert_allclose(a["broadcast"], 2 * t)
        np.testing.assert_allclose(a["broadcast_inplace"], t)
        np.testing.assert_array_equal(a["bp_dict"], [6, 6, 6])
        for k in a.files:
            if k.startswith("dt."):  # DistributedTrainer == one process on the combined batch
                np.testing.assert_allclose(a[k], a[k.replace("dt.", "ref.")], rtol=1e-5, atol=1e-6)
    for k in res[0].files:
        if k.startswith(("bp.", "dt.", "hk.")):
            np.testing.assert_array_equal(res[0][k], res[1][k])


def _sequential_async_reference(pushes, momentum):
    kv = mx.kv.create("local")
    kv.init(0, mx.nd.ones((5,)))
    kv.set_optimizer(mx.optimizer.SGD(learning_rate=0.1, momentum=momentum, rescale_grad=0.5))
    for g in pushes:
        kv.push(0, mx.nd.array(g))
    out = mx.nd.zeros((5,))
    kv.pull(0, out=out)
    return out.asnumpy()


@needs_mpi
def test_dist_async_one_worker_is_sequential(tmp_path):
    (a,) = _job("async", 1, tmp_path)
    ref = _sequential_async_reference(a["pushes"], momentum=0.5)
    np.testing.assert_allclose(a["final"], ref, rtol=1e-6)
    np.testing.assert_allclose(a["mine"], ref, rtol=1e-6)


@needs_mpi
def test_dist_async_two_workers(tmp_path):
    res = _job("async", 2, tmp_path)
    pushes = np.concatenate([r["pushes"] for r in res])
    # momentum 0 with two workers: the result does not depend on the arrival order
    np.testing.assert_allclose(res[0]["final"], _sequential_async_reference(pushes, momentum=0.0), rtol=1e-6)
    np.testing.assert_array_equal(res[0]["final"], res[1]["final"])


@needs_mpi
def test_example_dist_train_two_workers():
    proc, _ = _run([EXAMPLE, "--steps", "30", "--batch-size", "32"], 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.findall(r"rank (\d)/2: loss ([\d.]+) -> ([\d.]+), .* checksum (\S+)", proc.stderr + proc.stdout)
    assert sorted(f[0] for f in found) == ["0", "1"], proc.stderr[-3000:]
    assert found[0][3] == found[1][3]  # identical replicas
    for _, first, last, _ in found:
        assert float(last) < 0.7 * float(first)


# ---- without MPI: the launcher's command line, the error messages ----
def test_launch_openmpi_as_root_flags():
    argv, env = launch.build_command("/x/mpirun", "openmpi", 2, ["python", "t.py", "--a"], {"FOO": "1"},
                                     is_root=True)
    assert argv[:4] == ["/x/mpirun", "--oversubscribe", "-np", "2"]
    assert argv[4] == sys.executable and argv[5:] == ["t.py", "--a"]
    assert env["OMPI_ALLOW_RUN_AS_ROOT"] == env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1" and env["FOO"] == "1"
    argv, env = launch.build_command("/x/mpiexec", "mpich", 3, ["./a.out"], is_root=True)
    assert argv == ["/x/mpiexec", "-np", "3", "./a.out"] and "OMPI_ALLOW_RUN_AS_ROOT" not in argv
    assert launch.parse_env(["A=1", "B:x=y"]) == {"A": "1", "B": "x=y"}


def test_launch_without_mpi_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("KILN_MPIRUN", raising=False)
    monkeypatch.setattr(launch.sys, "executable", "/nonexistent/bin/python")
    monkeypatch.setattr(launch.shutil, "which", lambda name: None)
    assert launch.main(["-n", "2", "python", "x.py"]) == 2
    assert "no MPI launcher (mpirun or mpiexec) was found" in capsys.readouterr().err
    assert launch.main(["-n", "2", "--launcher", "ssh", "python", "x.py"]) == 2


def test_kiln_works_without_mpi4py():
    script = ("import sys; sys.modules['mpi4py'] = None\n"
              "import kiln as mx\n"
              "kv = mx.kv.create('local'); kv.init(0, mx.nd.ones((2,)))\n"
              "try:\n    mx.kv.create('dist_sync')\nexcept mx.base.MXNetError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ERR distributed training needs mpi4py" in out.stdout and "pip install 'kiln[dist]'" in out.stdout
