"""``python -m kiln.launch -n 2 python train.py [args]``: start N workers under MPI.

The shape of MXNet's ``tools/launch.py`` (``-n/--num-workers``, ``--launcher local``,
``--env``), carried out by the installed ``mpirun``/``mpiexec`` rather than by a
home-made transport: kiln's dist KVStores and ``kiln.distributed`` talk MPI (mpi4py).
The MPI flavour is read from ``mpirun --version``: Open MPI gets ``--oversubscribe``
(more workers than cores is fine on a small machine) and, when run as root, the
OMPI_ALLOW_RUN_AS_ROOT variables; MPICH/Hydra (and Intel MPI) need nothing. Unless set,
``KILN_NUM_THREADS`` is the machine's cores divided among the local workers so their
kernels do not fight over the cores. The exit status is the job's.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys

__all__ = ["find_mpirun", "mpi_flavour", "build_command", "main"]

_log = logging.getLogger("kiln.launch")

NO_MPI = ("no MPI launcher (mpirun or mpiexec) was found: install MPI and mpi4py, e.g. `pip install "
          "'kiln[dist]'` (mpi4py and the mpich wheel, which puts mpirun next to python) or Debian's "
          "`apt-get install openmpi-bin libopenmpi-dev` then `pip install mpi4py`; or name one with --mpirun "
          "or KILN_MPIRUN")


class LaunchError(RuntimeError):
    """The job could not be started (no MPI, bad arguments)."""


def find_mpirun(explicit=None):
    """Path of the MPI launcher: --mpirun/KILN_MPIRUN, then next to this Python (a venv's
    wheel-installed MPI), then PATH; None when there is none."""
    explicit = explicit or os.environ.get("KILN_MPIRUN")
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise LaunchError("MPI launcher %r not found" % explicit)
        return found
    dirs = [os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))]
    for name in ("mpirun", "mpiexec"):
        for d in dirs:
            path = os.path.join(d, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    for name in ("mpirun", "mpiexec"):
        found = shutil.which(name)
        if found:
            return found
    return None


def mpi_flavour(mpirun):
    """'openmpi', 'mpich' (Hydra, Intel MPI) or 'unknown', from ``mpirun --version``."""
    try:
        out = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LaunchError("could not run %s --version: %s" % (mpirun, err)) from None
    text = (out.stdout + out.stderr).lower()
    if "open mpi" in text or "open-mpi" in text or "openrte" in text:
        return "openmpi"
    if "hydra" in text or "mpich" in text or "intel(r) mpi" in text:
        return "mpich"
    return "unknown"


def parse_env(items):
    """``--env`` values, ``NAME=VALUE`` (or MXNet's ``NAME:VALUE``), as a dict."""
    env = {}
    for item in items or []:
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)[=:](.*)$", item, re.S)
        if m is None:
            raise LaunchError("--env %r: expected NAME=VALUE" % item)
        env[m.group(1)] = m.group(2)
    return env


def build_command(mpirun, flavour, num_workers, command, extra_env=None, is_root=None):
    """(argv, environment) that start ``command`` as ``num_workers`` MPI processes."""
    env = dict(os.environ)
    env.update(extra_env or {})
    argv = [mpirun]
    if flavour == "openmpi":
        argv.append("--oversubscribe")
        if is_root if is_root is not None else (hasattr(os, "geteuid") and os.geteuid() == 0):
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    argv += ["-np", str(num_workers)]
    if "KILN_NUM_THREADS" not in env:
        env["KILN_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_workers))
    command = list(command)
    if command and command[0] in ("python", "python3"):
        command[0] = sys.executable  # the interpreter (and venv) that has kiln
    return argv + command, env


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m kiln.launch",
        description="Launch a distributed kiln job (dist_sync/dist_async KVStores, kiln.distributed) with MPI.")
    parser.add_argument("-n", "--num-workers", type=int, required=True, help="number of worker processes")
    parser.add_argument("-s", "--num-servers", type=int, default=None,
                        help="accepted for MXNet compatibility; kiln has no separate server processes")
    parser.add_argument("--launcher", default="local", choices=["local", "ssh", "mpi", "sge", "yarn"],
                        help="only 'local' (all workers on this machine) is supported")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable for every worker (repeatable)")
    parser.add_argument("--mpirun", default=None, help="MPI launcher to use (default: found automatically)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the mpirun command")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to run, e.g. python train.py")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        if args.launcher != "local":
            raise LaunchError("--launcher %s is not supported: kiln launches local workers only (for several "
                              "machines, call mpirun with a hostfile yourself)" % args.launcher)
        if args.num_workers < 1:
            raise LaunchError("-n/--num-workers must be at least 1")
        if not args.command:
            raise LaunchError("no command given (e.g. python -m kiln.launch -n 2 python train.py)")
        if args.num_servers:
            _log.info("-s/--num-servers %d ignored: rank 0 owns the parameters in dist_async", args.num_servers)
        mpirun = find_mpirun(args.mpirun)
        if mpirun is None:
            raise LaunchError(NO_MPI)
        flavour = mpi_flavour(mpirun)
        cmd, env = build_command(mpirun, flavour, args.num_workers, args.command, parse_env(args.env))
    except LaunchError as err:
        sys.stderr.write("kiln.launch: error: %s\n" % err)
        return 2
    _log.info("%s (%s): %s", mpirun, flavour, " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main())
