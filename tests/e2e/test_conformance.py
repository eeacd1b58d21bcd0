"""The Symbol, NDArray, autograd, Gluon, initialiser and visualisation scenarios recorded from MXNet 1.9.1
(../shared/conformance).

Scenarios listed in KNOWN_FAILING record an MXNet bug that kiln does not copy,
or need a part of MXNet kiln does not have yet; every other scenario of those
families must pass.
"""
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT.parent / "shared" / "conformance"

KNOWN_FAILING = {
    "006_sym_group_internals": "MXNet 1.9.1 computed group_eval_fc2 without the relu between fc1 and fc2",
    "081_init_mixed_pattern": "uses mx.mod.Module, which belongs to the Module/KVStore work",
}
FAMILIES = ("_sym_", "_nd_", "_ag_", "_gluon_", "_init_", "_viz_")


def _scenarios():
    if not CONFORMANCE.is_dir():
        return []
    return sorted(p.stem for p in (CONFORMANCE / "scenarios").glob("0*.py") if any(f in p.stem for f in FAMILIES))


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="../shared/conformance is not beside this checkout")
@pytest.mark.parametrize("scenario", _scenarios())
def test_scenario(scenario, tmp_path):
    if scenario in KNOWN_FAILING:
        pytest.xfail(KNOWN_FAILING[scenario])
    out = subprocess.run(
        [sys.executable, str(CONFORMANCE / "run_conformance.py"), "--impl", "kiln", "--check",
         str(CONFORMANCE / "golden"), "-k", scenario, "--timeout", "120"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"
