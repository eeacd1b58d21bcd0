"""Run the MXNet conformance scenarios with the context switched to ``mx.gpu(0)``.

    python tools/gpu_conformance.py [--conformance ../shared/conformance] [--emulate] [-j N] [-k TEXT]

Each scenario is copied with ``mx.cpu()`` / ``mx.cpu(0)`` replaced by ``mx.gpu(0)`` and a
first line that makes ``gpu(0)`` the default context (what ``with mx.gpu(0):`` does), then
checked against the golden outputs recorded from MXNet 1.9.1 on the CPU by the conformance
runner. Other CPU contexts (``mx.cpu(1)``, used as a second device) stay on the CPU. The
golden outputs were recorded on the CPU, so strings emitted by a scenario have "gpu(0)"
read as "cpu(0)" (a ``sitecustomize`` module in each scenario process wraps
``conformance_lib.encode``); numbers are compared as recorded.

``--emulate`` runs on the CPU emulation of CUDA from kiln's tests (installed as gpu(0) by
the same ``sitecustomize``): a functional check on machines without a GPU, slow.
Exit status: the conformance runner's.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRELUDE = "import mxnet as _ctx_switch; _ctx_switch.Context('gpu', 0).__enter__()  # gpu_conformance.py\n"
CPU_CALL = re.compile(r"\bmx\.cpu\(\s*0?\s*\)")
SITE = """import conformance_lib

_encode = conformance_lib.encode


def _context_blind(value):
    if isinstance(value, str):
        value = value.replace("gpu(0)", "cpu(0)")
    return _encode(value)


conformance_lib.encode = _context_blind
"""
EMULATE = """import sys
sys.path.insert(0, %r)
from tests.cuda_emulator.device import EmulatedDevice
from kiln.runtime import cuda
cuda.install_devices([EmulatedDevice()])
"""


def switch_context(source):
    """The scenario's source with gpu(0) as default context and in place of cpu(0)."""
    lines = source.splitlines(keepends=True)
    at = 0
    if lines and lines[0].startswith("#!"):
        at = 1
    while at < len(lines) and (lines[at].startswith("from __future__") or lines[at].strip().startswith('"""')):
        if lines[at].strip().startswith('"""'):  # skip the docstring
            if lines[at].count('"""') == 1:
                at += 1
                while at < len(lines) and '"""' not in lines[at]:
                    at += 1
        at += 1
    body = CPU_CALL.sub("mx.gpu(0)", "".join(lines[at:]))
    return "".join(lines[:at]) + PRELUDE + body


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conformance", default=os.path.join(os.path.dirname(REPO), "shared", "conformance"),
                    help="the conformance folder (run_conformance.py, scenarios/, golden/)")
    ap.add_argument("--emulate", action="store_true", help="run on the CPU emulation of CUDA")
    ap.add_argument("-j", "--jobs", type=int, default=1)
    ap.add_argument("-k", dest="filter", action="append", default=[])
    ap.add_argument("--timeout", type=int, default=900)
    args = ap.parse_args(argv)
    runner = os.path.join(args.conformance, "run_conformance.py")
    if not os.path.exists(runner):
        print("no conformance runner at %s (use --conformance)" % runner, file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="kiln-gpu-conformance-")
    try:
        scenarios = os.path.join(work, "scenarios")
        os.makedirs(scenarios)
        src_dir = os.path.join(args.conformance, "scenarios")
        for name in sorted(os.listdir(src_dir)):
            path = os.path.join(src_dir, name)
            if name.endswith(".py"):
                with open(path) as f:
                    text = switch_context(f.read())
                with open(os.path.join(scenarios, name), "w") as f:
                    f.write(text)
            elif os.path.isfile(path):
                shutil.copy(path, scenarios)
        cmd = [sys.executable, runner, "--impl", "kiln", "--check", os.path.join(args.conformance, "golden"),
               "--scenarios", scenarios, "-j", str(args.jobs), "--timeout", str(args.timeout)]
        for k in args.filter:
            cmd += ["-k", k]
        site = os.path.join(work, "site")
        os.makedirs(site)
        with open(os.path.join(site, "sitecustomize.py"), "w") as f:
            f.write(SITE + (EMULATE % REPO if args.emulate else ""))
        cmd += ["--path", site]
        if not args.emulate:
            import kiln
            if kiln.context.num_gpus() == 0:
                print("no GPU: mx.context.num_gpus() is 0 (use --emulate for a functional run on the CUDA "
                      "emulator)", file=sys.stderr)
                return 2
        return subprocess.call(cmd)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
