"""The MXNet conformance scenarios with gpu(0) as context (``tools/gpu_conformance.py``) must
pass wherever they pass on the CPU. Marked ``gpu`` and ``slow``: minutes on a GPU, far longer
on the emulator."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFORMANCE = os.path.join(os.path.dirname(REPO), "shared", "conformance")
# 006 and 090 record MXNet 1.9.1 bugs that kiln does not reproduce on any device (see the closing
# notes); 063 calls load_parameters() without ctx, which loads onto cpu() (as MXNet does), and then
# runs the network on gpu(0) data: the rewritten scenario is not valid on a GPU
KNOWN = {"006_sym_group_internals", "063_gluon_save_load_params", "090_mod_bind_forward"}


@pytest.mark.gpu
@pytest.mark.slow
def test_conformance_on_gpu():
    if not os.path.exists(os.path.join(CONFORMANCE, "run_conformance.py")):
        pytest.skip("no conformance scenarios beside the checkout")
    cmd = [sys.executable, os.path.join(REPO, "tools", "gpu_conformance.py"), "--conformance", CONFORMANCE, "-j", "2"]
    if os.environ.get("KILN_TEST_EMULATED_GPU") == "1":
        cmd.append("--emulate")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=7200).stdout
    passed = re.findall(r"^PASS\s+(\S+)", out, re.M)
    failed = set(re.findall(r"^FAIL\s+(\S+)", out, re.M))
    assert passed, out[-3000:]
    assert failed <= KNOWN, "\n".join(line for line in out.splitlines() if line.startswith("FAIL"))
