"""kiln's CUDA backend: fused elementwise bandwidth against a device copy, and a hybridized MLP step against PyTorch.

    python tools/bench/gpu_bench.py [--repeat N] [--elements N | --size-mb M] [--batch B]
                                    [--json out.json] [--emulate]

1. Fused elementwise chain: an 8-operator Symbol graph,
   ``y = relu((x*1.5 + 0.25) * sigmoid(x) - 0.5) / 2 + x``, over ``--elements`` float32
   (default 64M), bound with ``simple_bind`` on gpu(0). The compile report's kernel count
   is printed (one kernel means the chain fused). Bandwidth = bytes read + written / time
   = 2*4*n / t, compared with a device-to-device copy of the same n floats
   (``DeviceArray`` + ``device.copy``, 2*nbytes / t); the project's goal is chain >= 70% of
   copy. The first 1M outputs are checked against numpy (rtol 1e-5, atol 1e-6).
2. Gluon MLP training step, 784-512-512-10 (Dense relu, Dense relu, Dense), batch
   ``--batch``, softmax cross-entropy, SGD lr 0.1, hybridized, against the same model in
   PyTorch eager on CUDA when torch is installed and sees a GPU.

Timing: set-up (binding, compiling, allocating) is not timed; each case is warmed up, then
``--repeat`` samples are taken round-robin between the cases of a table. A sample loops
the call until it lasts ``--min-sample`` seconds and reports the time per call; every
call ends with a device synchronisation (``cuda.device(0).synchronize()``, or
``torch.cuda.synchronize()``), so launch latency is included. Tables show median and
min - max of the samples.

Without a GPU the script exits with status 2. ``--emulate`` runs on the CPU emulation of
CUDA that kiln's tests use (tests/cuda_emulator, needs a C++ compiler) at tiny sizes: a
functional smoke run whose numbers mean nothing.
"""
import argparse
import json
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHECK_ELEMENTS = 1 << 20
EMULATED = {"elements": 4096, "batch": 8, "hidden": 64, "repeat": 2}


# ---------------------------------------------------------------- helpers

def _fmt(values, scale=1.0, digits=2):
    med = statistics.median(values) * scale
    return "%.*f (%.*f - %.*f)" % (digits, med, digits, min(values) * scale, digits, max(values) * scale)


def _calibrate(call, min_sample, cap=1000):
    """How many calls make one sample last ``min_sample`` seconds (from one timed call)."""
    t0 = time.perf_counter()
    call()
    dt = time.perf_counter() - t0
    return max(1, min(cap, int(min_sample / max(dt, 1e-9)) + 1))


def _sample(call, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        call()
    return (time.perf_counter() - t0) / inner


def _round_robin(cases, repeat, min_sample, warmup):
    """{name: [seconds per call] * repeat}; ``cases`` is [(name, call)], warmed up first and
    sampled in a rotating order."""
    inner = {}
    for name, call in cases:
        for _ in range(warmup):
            call()
        inner[name] = _calibrate(call, min_sample)
    out = {name: [] for name, _ in cases}
    for r in range(repeat):
        for k in range(len(cases)):
            name, call = cases[(r + k) % len(cases)]
            out[name].append(_sample(call, inner[name]))
    return out


# ---------------------------------------------------------------- 1. elementwise chain

def chain_symbol(mx):
    """Exactly 8 operators: mul, add, sigmoid, mul, sub, relu, div, add."""
    x = mx.sym.var("x")
    return mx.sym.relu((x * 1.5 + 0.25) * mx.sym.sigmoid(x) - 0.5) / 2 + x


def chain_numpy(x):
    f = np.float32
    sig = f(1) / (f(1) + np.exp(-x))
    return np.maximum((x * f(1.5) + f(0.25)) * sig - f(0.5), f(0)) / f(2) + x


def bench_chain(mx, cuda, n, args):
    from kiln.runtime.cuda_program import DeviceArray
    dev = cuda.device(0)
    ex = chain_symbol(mx).simple_bind(mx.gpu(0), x=(n,), grad_req="null")
    report = ex.compile_report()
    kernels = list(report.kernels)
    host = np.random.RandomState(0).uniform(-4, 4, n).astype(np.float32)
    ex.arg_dict["x"][:] = host

    def chain():
        ex.forward()
        dev.synchronize()

    nbytes = 4 * n
    src = DeviceArray.empty(dev, (n,), "float32")
    dst = DeviceArray.empty(dev, (n,), "float32")
    dev.memset(src.ptr, 0, nbytes)

    def copy():
        dev.copy(dst.ptr, src.ptr, nbytes)
        dev.synchronize()

    times = _round_robin([("chain", chain), ("copy", copy)], args.repeat, args.min_sample, args.warmup)

    ex.forward()
    dev.synchronize()
    m = min(n, CHECK_ELEMENTS)
    got = ex.outputs[0][0:m].asnumpy()
    want = chain_numpy(host[:m])
    ok = bool(np.allclose(got, want, rtol=1e-5, atol=1e-6))
    err = float(np.abs(got.astype(np.float64) - want).max()) if m else 0.0
    return {
        "elements": n,
        "bytes_moved": 2 * nbytes,
        "kernels": len(kernels),
        "kernel_names": [k.get("name") for k in kernels],
        "chain_s": times["chain"],
        "copy_s": times["copy"],
        "check": "PASS" if ok else "MISMATCH",
        "check_elements": m,
        "max_abs_err": err,
    }


def print_chain(r, emulated=False):
    n, moved = r["elements"], r["bytes_moved"]
    chain_bw = [moved / t / 1e9 for t in r["chain_s"]]
    copy_bw = [moved / t / 1e9 for t in r["copy_s"]]
    ratio = statistics.median(chain_bw) / statistics.median(copy_bw)
    r["chain_gbps"], r["copy_gbps"], r["ratio"] = statistics.median(chain_bw), statistics.median(copy_bw), ratio
    print("== elementwise chain: 8 ops, %d float32 (%.4g MiB), %d samples (median, min - max)"
          % (n, 4 * n / 2 ** 20, len(r["chain_s"])))
    print("  kernels after fusion: %d%s" % (r["kernels"], "" if r["kernels"] == 1 else "  (NOT fused into one)"))
    print("  %-22s %-30s %-30s" % ("case", "time ms", "GB/s (read + written)"))
    print("  %-22s %-30s %-30s" % ("kiln fused chain", _fmt(r["chain_s"], 1e3, 3), _fmt(chain_bw)))
    print("  %-22s %-30s %-30s" % ("device copy (DtoD)", _fmt(r["copy_s"], 1e3, 3), _fmt(copy_bw)))
    verdict = "n/a, emulated" if emulated else ("met" if ratio >= 0.70 else "NOT met")
    print("  chain / copy bandwidth: %.2f  (goal >= 0.70: %s)" % (ratio, verdict))
    print("  output check vs numpy, first %d elements: %s (max abs err %.3g)"
          % (r["check_elements"], r["check"], r["max_abs_err"]))


# ---------------------------------------------------------------- 2. MLP training step

def kiln_mlp_step(mx, cuda, sizes, batch):
    from kiln import gluon
    ctx, dev = mx.gpu(0), cuda.device(0)
    mx.random.seed(0)
    net = gluon.nn.HybridSequential()
    for h in sizes[1:-1]:
        net.add(gluon.nn.Dense(h, activation="relu"))
    net.add(gluon.nn.Dense(sizes[-1]))
    net.initialize(mx.init.Xavier(), ctx=ctx)
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rs = np.random.RandomState(1)
    x = mx.nd.array(rs.randn(batch, sizes[0]).astype(np.float32), ctx=ctx)
    y = mx.nd.array((np.arange(batch) % sizes[-1]).astype(np.float32), ctx=ctx)
    first = next(iter(net.collect_params().values()))

    def step():
        with mx.autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(batch)
        first.data().wait_to_read()
        dev.synchronize()

    return step


def torch_mlp_step(sizes, batch):
    """(step, version) or (None, why)."""
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    if not torch.cuda.is_available():
        return None, "torch %s sees no CUDA device" % torch.__version__
    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(sizes[-2], sizes[-1]))
    net = torch.nn.Sequential(*layers).cuda()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, sizes[0], device="cuda")
    y = torch.arange(batch, device="cuda") % sizes[-1]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()

    return step, torch.__version__


def bench_mlp(mx, cuda, sizes, batch, args):
    cases = [("kiln", kiln_mlp_step(mx, cuda, sizes, batch))]
    if args.emulate:
        torch_note = "emulated GPU: no PyTorch comparison"
    else:
        step, torch_note = torch_mlp_step(sizes, batch)
        if step is not None:
            cases.append(("torch", step))
            torch_note = None
    times = _round_robin(cases, args.repeat, args.min_sample, args.warmup)
    return {"sizes": list(sizes), "batch": batch, "kiln_s": times["kiln"], "torch_s": times.get("torch"),
            "torch_note": torch_note}


def print_mlp(r):
    batch = r["batch"]
    print("== MLP training step %s, batch %d, softmax CE, SGD lr 0.1, %d samples (median, min - max)"
          % ("-".join(map(str, r["sizes"])), batch, len(r["kiln_s"])))
    print("  %-26s %-30s %-26s %s" % ("impl", "ms/step", "samples/s", "vs torch"))
    kiln_med = statistics.median(r["kiln_s"])
    torch_med = statistics.median(r["torch_s"]) if r["torch_s"] else None
    ratio = "%.2f" % (kiln_med / torch_med) if torch_med else "-"
    r["kiln_over_torch"] = kiln_med / torch_med if torch_med else None
    print("  %-26s %-30s %-26s %s" % ("kiln (hybridized)", _fmt(r["kiln_s"], 1e3, 3),
                                      "%.0f" % (batch / kiln_med), ratio))
    if torch_med:
        print("  %-26s %-30s %-26s %s" % ("torch (eager)", _fmt(r["torch_s"], 1e3, 3), "%.0f" % (batch / torch_med),
                                          "1.00"))
        print("  kiln / torch time per step: %s (below 1: kiln faster)" % ratio)
    else:
        print("  %-26s n/a: %s" % ("torch (eager)", r["torch_note"]))


# ---------------------------------------------------------------- main

def _install_emulator():
    sys.path.insert(0, str(ROOT))
    from tests.cuda_emulator import device as emu
    if not emu.available():
        raise SystemExit("--emulate needs a host C++ compiler ($CXX, c++ or g++) for the CUDA emulator")
    from kiln.runtime import cuda
    cuda.install_devices([emu.EmulatedDevice()])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10, help="samples per case (default 10)")
    p.add_argument("--elements", type=int, default=64 * 2 ** 20, help="float32 elements of the chain and the copy")
    p.add_argument("--size-mb", type=float, help="the same as a size in MiB of one array (overrides --elements)")
    p.add_argument("--batch", type=int, default=256, help="MLP batch size (default 256)")
    p.add_argument("--min-sample", type=float, default=0.02, help="seconds a sample lasts at least (calls are looped)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per case before sampling")
    p.add_argument("--json", help="write the raw numbers here")
    p.add_argument("--emulate", action="store_true",
                   help="no GPU: run on kiln's CPU emulation of CUDA at tiny sizes (a functional check)")
    args = p.parse_args(argv)

    import kiln as mx
    sizes = (784, 512, 512, 10)
    n = int(args.size_mb * 2 ** 20 // 4) if args.size_mb else args.elements
    if args.emulate:
        _install_emulator()
        n, args.batch = EMULATED["elements"], EMULATED["batch"]
        args.repeat = min(args.repeat, EMULATED["repeat"])
        args.min_sample = 0.0
        sizes = (784, EMULATED["hidden"], EMULATED["hidden"], 10)
    elif mx.context.num_gpus() == 0:
        print("no GPU: kiln sees no CUDA device (num_gpus() == 0); use --emulate for a functional smoke run "
              "at tiny sizes", file=sys.stderr)
        return 2
    from kiln.runtime import cuda

    dev = cuda.device(0)
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    print("device: %r%s" % (dev, "  (EMULATED on the CPU: the numbers below mean nothing)" if args.emulate else ""))
    print("kiln %s, numpy %s, torch %s" % (mx.__version__, np.__version__, torch_version or "not installed"))
    if args.emulate:
        print("emulated sizes: %d elements, MLP %s batch %d, %d samples"
              % (n, "-".join(map(str, sizes)), args.batch, args.repeat))

    chain = bench_chain(mx, cuda, n, args)
    print_chain(chain, args.emulate)
    mlp = bench_mlp(mx, cuda, sizes, args.batch, args)
    print_mlp(mlp)

    if args.json:
        raw = {"device": repr(dev), "emulated": bool(args.emulate), "kiln": mx.__version__, "numpy": np.__version__,
               "torch": torch_version, "repeat": args.repeat, "chain": chain, "mlp": mlp}
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    return 0 if chain["check"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
