"""tools/bench/run.py runs end to end in its --quick mode and prints the table it promises."""
import json
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = ROOT / "tools" / "bench" / "run.py"

# one table row: impl, median, "min - max", ratio, per-item (note optional)
_TIME = r"[0-9.]+(?:e[+-]?\d+)? (?:s|ms|us|ns)"
_ROW = re.compile(r"^(?P<case>.*?)\s{2,}(?P<impl>[a-z]+(?::[a-z]+)?)\s+(?P<median>%s)\s+(?P<lo>%s) - (?P<hi>%s)"
                  r"\s+(?P<ratio>[0-9.]+|-)\s+(?P<per>%s/\w+)" % (_TIME, _TIME, _TIME, _TIME))


def _seconds(text):
    value, unit = text.split()
    return float(value) * {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]


def _blocks(stdout):
    """{workload: [row dicts]} from the printed tables."""
    blocks, current = {}, None
    for line in stdout.splitlines():
        head = re.match(r"^== (\w+):", line)
        if head:
            current = blocks.setdefault(head.group(1), [])
            continue
        m = _ROW.match(line)
        if m and current is not None:
            current.append(m.groupdict())
    return blocks


def test_quick_run_prints_table_and_ratios(tmp_path):
    out_json = tmp_path / "bench.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--fw", "kiln,numpy,notaframework",
         "--repeat", "2", "--json", str(out_json), "elemwise_arith", "mlp_infer"],
        capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert elapsed < 30, "quick benchmark took %.1f s" % elapsed

    # header: the machine's limits, versions, env, and the skipped framework
    assert re.search(r"memory bandwidth \(numpy copy .*\): [0-9.]+ GB/s", out), out
    assert re.search(r"numpy float32 GEMM 1024\^3: [0-9.]+ GFLOP/s", out), out
    assert re.search(r"^numpy [0-9.]+, BLAS .* threads$", out, re.M), out
    assert re.search(r"^env: ", out, re.M)
    assert re.search(r"^skip notaframework: ", out, re.M), out

    blocks = _blocks(out)
    assert set(blocks) == {"elemwise_arith", "mlp_infer"}, out

    arith = {r["impl"]: r for r in blocks["elemwise_arith"]}
    assert set(arith) == {"kiln", "numpy", "numpy:copy"}, out
    assert arith["kiln"]["ratio"] == "1.00"
    assert float(arith["numpy"]["ratio"]) > 0
    assert arith["kiln"]["per"].endswith("/elem")
    for r in arith.values():
        assert _seconds(r["lo"]) <= _seconds(r["median"]) <= _seconds(r["hi"])

    mlp = blocks["mlp_infer"]
    assert [r["impl"] for r in mlp] == ["kiln", "numpy", "kiln", "numpy"], out
    assert re.search(r"b=32", mlp[0]["case"]) and re.search(r"b=1$", mlp[2]["case"].strip()), out
    assert all(r["ratio"] == "1.00" for r in mlp if r["impl"] == "kiln")
    assert all(float(r["ratio"]) > 0 for r in mlp if r["impl"] == "numpy")
    # kiln and numpy computed the same numbers (the cross-check notes a mismatch on the row)
    assert "MISMATCH" not in out, out

    data = json.loads(out_json.read_text())
    assert data["machine"]["gemm_gflops"] > 0 and data["machine"]["copy_gbs"] > 0
    assert "notaframework" in data["skipped"]
    results = {(r["workload"], r["impl"]) for r in data["results"]}
    assert ("elemwise_arith", "numpy:copy") in results and ("mlp_infer", "kiln") in results
    assert all(len(r["times_s"]) == 2 for r in data["results"] if not r["error"])
