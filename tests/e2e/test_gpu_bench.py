"""tools/bench/gpu_bench.py runs end to end on the CUDA emulator, and refuses to run without a GPU."""
import json
import pathlib
import subprocess
import sys

import pytest

from tests.cuda_emulator import device as emu

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCH = ROOT / "tools" / "bench" / "gpu_bench.py"


@pytest.mark.skipif(not emu.available(), reason="no host C++ compiler for the CUDA emulator")
def test_emulated_run_writes_both_sections(tmp_path):
    out_json = tmp_path / "gpu_bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--emulate", "--repeat", "1", "--json", str(out_json)],
                          capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "EMULATED" in out, out
    assert "== elementwise chain: 8 ops" in out and "== MLP training step" in out, out
    assert "kernels after fusion: 1" in out, out
    assert "n/a: " in out, out  # no PyTorch comparison on the emulator

    raw = json.loads(out_json.read_text())
    assert raw["emulated"] is True
    chain, mlp = raw["chain"], raw["mlp"]
    assert chain["check"] == "PASS", chain
    assert chain["kernels"] == 1, chain
    assert len(chain["chain_s"]) == len(chain["copy_s"]) == 1
    assert all(t > 0 for t in chain["chain_s"] + chain["copy_s"]), chain
    assert chain["chain_gbps"] > 0 and chain["copy_gbps"] > 0 and chain["ratio"] > 0
    assert mlp["kiln_s"] and all(t > 0 for t in mlp["kiln_s"]), mlp
    assert mlp["torch_s"] is None and mlp["torch_note"]


def test_without_gpu_exits_2():
    import kiln as mx
    if mx.context.num_gpus() > 0:
        pytest.skip("a real GPU is present: the script would run the benchmark")
    proc = subprocess.run([sys.executable, str(BENCH), "--repeat", "1"],
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no GPU: ") and "--emulate" in lines[0], proc.stderr
