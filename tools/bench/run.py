#!/usr/bin/env python3
"""Benchmark kiln against the other frameworks installed here.

    python tools/bench/run.py [--fw kiln,numpy,mxnet,torch,jax] [--repeat N]
                              [--quick] [--json out.json] [workload ...]

Runs the same workloads on every requested framework that imports (the rest
are skipped with a one-line message), round-robin across frameworks per
repetition, after warm-up, and prints per workload and case: the median,
min - max, and each framework's median divided by kiln's (below 1: faster
than kiln). The header reports the machine's limits measured in the same run:
numpy copy bandwidth and numpy float32 GEMM throughput at 1024^3.

Workloads: elemwise_transcendental, elemwise_arith, mlp_infer, mlp_train_step,
compile_time, elemwise_sweep, lenet_infer, ... lstm_train (default: all; see workloads/__init__.py). --quick shrinks
every workload (used by the tests).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness  # noqa: E402
import workloads  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("workloads", nargs="*", help="workloads to run (default: all)")
    p.add_argument("--fw", default=",".join(harness.FRAMEWORKS),
                   help="comma-separated frameworks (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed repetitions per bench (default: 7, or 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions")
    p.add_argument("--min-sample", type=float, default=None,
                   help="minimum seconds per timed sample; fast calls are looped (default: 0.05, quick 0.005)")
    p.add_argument("--blas-threads", type=int, default=None, metavar="N",
                   help="set numpy's BLAS thread count in this process (default: leave it as configured)")
    p.add_argument("--json", metavar="PATH", help="write the raw timings as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="progress on stderr")
    args = p.parse_args(argv)
    names = args.workloads or list(workloads.ORDER)
    for name in names:
        if name not in workloads.ORDER:
            p.error("unknown workload %r (known: %s)" % (name, ", ".join(workloads.ORDER)))
    args.workloads = names
    args.frameworks = [f.strip() for f in args.fw.split(",") if f.strip()]
    if args.repeat is None:
        args.repeat = 3 if args.quick else 7
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.min_sample is None:
        args.min_sample = 0.005 if args.quick else 0.05
    return args


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    # kiln may cache compiled code on disk ($KILN_CACHE_DIR): a private, empty
    # directory for this run, so that earlier runs cannot answer its compiles
    # and the user's cache is not filled with benchmark graphs.
    cache_dir = tempfile.mkdtemp(prefix="kiln-bench-cache-")
    os.environ["KILN_CACHE_DIR"] = cache_dir
    try:
        return _run(args, t_start)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def _run(args, t_start):
    found, skipped = harness.probe_frameworks(args.frameworks)
    if "kiln" not in found:
        sys.stderr.write("note: kiln is not among the frameworks run; ratios are shown as '-'\n")
    if args.blas_threads is not None:
        import numpy as np
        if not harness.set_blas_threads(np, args.blas_threads):
            sys.stderr.write("note: could not set the BLAS thread count (no OpenBLAS or threadpoolctl found)\n")
    info = harness.machine_info(args.quick)
    versions = harness.framework_versions(found)
    print("kiln benchmark%s: repeat %d, samples of at least %g s, timer time.perf_counter" % (
        " (quick)" if args.quick else "", args.repeat, args.min_sample))
    print(harness.format_header(info, versions, skipped))
    sys.stdout.flush()
    log = harness.log_stderr if args.verbose else None
    rows, descriptions = [], {}
    for name in args.workloads:
        module = workloads.load(name)
        descriptions[module.NAME] = module.DESCRIPTION
        t0 = time.perf_counter()
        wrows = harness.run_workload(module, list(found), args.repeat, args.quick, args.min_sample, log=log)
        rows.extend(wrows)
        print(harness.format_table(wrows, descriptions))
        print("(%s took %.1f s)" % (name, time.perf_counter() - t0))
        sys.stdout.flush()
    load = " ".join("%.2f" % v for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print("\ntotal %.1f s; load average at the end %s; 'vs kiln' = median / kiln's median "
          "(below 1: faster than kiln)" % (time.perf_counter() - t_start, load))
    if args.json:
        harness.write_json(args.json, info, versions, skipped, rows,
                           {"frameworks": args.frameworks, "repeat": args.repeat, "quick": args.quick,
                            "min_sample_s": args.min_sample, "workloads": args.workloads})
    return 0


if __name__ == "__main__":
    sys.exit(main())
