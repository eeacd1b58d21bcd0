"""Distributed-training numbers: dist_sync throughput (N workers vs 1) and allreduce bandwidth.

    python tools/bench/dist_bench.py [--workers 2] [--runs 5] [--steps 60] [--batch-size 64] [--quick]

Each run is a fresh MPI job started by ``python -m kiln.launch`` (which gives each of the
N local workers cores/N kernel threads). Throughput: examples/dist_train.py's MLP
(64-128-64-10, SGD with momentum) with the same per-worker batch, samples/s summed
over workers, step 0 (compile, broadcast) not timed. Allreduce: ``kiln.distributed.allreduce``
of float32 messages, the median of ``--iters`` calls per run; algbw = bytes / time,
busbw = algbw * 2(N-1)/N (the bytes each worker sends and receives in a ring allreduce,
nccl-tests' convention). Tables show the median over ``--runs`` jobs, with min - max.
Not part of tools/bench/run.py: its harness times calls inside one process, and these
are multi-process jobs.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
SIZES_MB = (1, 16, 64)


def _worker_train(args):
    sys.path.insert(0, str(ROOT / "examples"))
    import dist_train
    r = dist_train.train(steps=args.steps, batch_size=args.batch_size, kvstore=args.kvstore or None)
    if r["rank"] == 0:
        print("BENCH " + json.dumps({"samples_per_s": r["samples_per_s"]}), flush=True)


def _worker_allreduce(args):
    import numpy as np
    import kiln as mx
    import kiln.distributed as hvd
    hvd.init()
    out = {}
    for mb in args.sizes:
        x = mx.nd.array(np.ones(mb * (1 << 20) // 4, dtype=np.float32))
        times = []
        for i in range(args.iters + 2):
            hvd.allreduce(mx.nd.zeros((1,)), name="sync")  # start together
            t0 = time.perf_counter()
            y = hvd.allreduce(x, average=False, name="m%d" % mb)
            y.wait_to_read()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        out[str(mb)] = statistics.median(times)
    if hvd.rank() == 0:
        print("BENCH " + json.dumps({"seconds": out, "size": hvd.size()}), flush=True)


def _job(n, worker_args):
    env = dict(os.environ)
    env.setdefault("KILN_CACHE_DIR", str(pathlib.Path("/tmp") / ("kiln-bench-dist-%d" % os.getpid())))
    cmd = [sys.executable, "-m", "kiln.launch", "-n", str(n), "python", __file__, "--worker"] + worker_args
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit("job failed (%d):\n%s" % (proc.returncode, proc.stderr[-3000:]))
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise SystemExit("no result from job:\n" + proc.stdout[-2000:] + proc.stderr[-2000:])


def _fmt(values, scale=1.0, digits=0):
    med = statistics.median(values) * scale
    lo, hi = min(values) * scale, max(values) * scale
    return "%.*f (%.*f - %.*f)" % (digits, med, digits, lo, digits, hi)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--kvstore", default="dist_sync")
    p.add_argument("--sizes", type=int, nargs="*", default=list(SIZES_MB), help="allreduce sizes in MB")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", help="write the raw numbers here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--what", default="train", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        (_worker_train if args.what == "train" else _worker_allreduce)(args)
        return
    if args.quick:
        args.runs, args.steps, args.iters, args.sizes = 2, 10, 3, [1]
    common = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--kvstore", args.kvstore]
    raw = {"train": {}, "allreduce": {}}
    for n in (1, args.workers):
        raw["train"][n] = [_job(n, ["--what", "train"] + common)["samples_per_s"] for _ in range(args.runs)]
    ar_args = ["--what", "allreduce", "--iters", str(args.iters), "--sizes"] + [str(s) for s in args.sizes]
    runs = [_job(args.workers, ar_args)["seconds"] for _ in range(args.runs)]
    for mb in args.sizes:
        raw["allreduce"][mb] = [r[str(mb)] for r in runs]
    print("dist_sync MLP training, per-worker batch %d, %d steps, %d runs (median, min - max), cpus %d"
          % (args.batch_size, args.steps, args.runs, os.cpu_count() or 0))
    t1 = statistics.median(raw["train"][1])
    for n, v in raw["train"].items():
        print("  %d worker(s): %s samples/s  (x%.2f vs 1)" % (n, _fmt(v), statistics.median(v) / t1))
    print("kiln.distributed.allreduce, float32, %d workers, median of %d calls per run" % (args.workers, args.iters))
    for mb, v in raw["allreduce"].items():
        nbytes = mb * (1 << 20)
        alg = [nbytes / t / 1e9 for t in v]
        bus = [a * 2 * (args.workers - 1) / args.workers for a in alg]
        print("  %3d MB: %s ms, algbw %s GB/s, busbw %s GB/s"
              % (mb, _fmt(v, 1e3, 2), _fmt(alg, digits=2), _fmt(bus, digits=2)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
