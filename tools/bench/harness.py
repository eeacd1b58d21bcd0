"""Shared timing and reporting code of the benchmark suite (tools/bench/run.py).

A workload module (``workloads/<name>.py``) declares:

- ``NAME`` and ``DESCRIPTION``;
- ``cases(quick)``: a list of :class:`Case` (one group of table rows each);
- one function per framework, named like the framework (``kiln``, ``numpy``,
  ``mxnet``, ``torch``, ``jax``), taking a case and returning a :class:`Bench`
  or a dict ``{variant: Bench}`` (rows ``torch:eager``, ``torch:compile``...).
  A framework that lacks the feature raises :class:`Unsupported`; a missing
  function means the same.

Timing: set-up (compilation, allocation) is not timed. Every bench is warmed
up, an inner loop count is calibrated so that one sample lasts at least
``target_s``, then ``repeat`` samples are taken round-robin: repetition r
runs every bench once, starting at a rotating position, so machine noise
(other processes, frequency changes) is spread over all frameworks evenly.
A self-timed bench (``Bench(self_timed=True)``) returns the seconds it
measured itself (compile times measured in a subprocess, for example).
"""
from __future__ import annotations

import ctypes
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

FRAMEWORKS = ("kiln", "numpy", "mxnet", "torch", "jax")

# Module imported for each framework name (kiln is imported as mx, like MXNet).
_IMPORT = {"kiln": "kiln", "numpy": "numpy", "mxnet": "mxnet", "torch": "torch", "jax": "jax"}


class Unsupported(Exception):
    """A framework lacks the feature a workload needs (printed as n/a)."""


@dataclass
class Case:
    name: str
    params: dict = field(default_factory=dict)
    per: tuple | None = None          # (count, unit): adds a "per unit" column
    warmup: int = 2
    max_repeat: int | None = None     # caps --repeat for expensive cases
    target_s: float | None = None     # overrides the run's minimum sample time


@dataclass
class Bench:
    run: object                        # callable, no arguments
    output: object = None              # callable returning a numpy array, for the cross-check
    self_timed: bool = False           # run() returns the seconds to record
    note: str = ""


@dataclass
class Row:
    workload: str
    case: str
    impl: str
    times: list = field(default_factory=list)   # seconds per call, one per repetition
    number: int = 1                              # calls per sample
    per: tuple | None = None
    note: str = ""
    error: str = ""

    @property
    def median(self):
        return statistics.median(self.times) if self.times else None

    def as_json(self):
        return {"workload": self.workload, "case": self.case, "impl": self.impl,
                "times_s": self.times, "number": self.number,
                "median_s": self.median,
                "min_s": min(self.times) if self.times else None,
                "max_s": max(self.times) if self.times else None,
                "per": list(self.per) if self.per else None,
                "note": self.note, "error": self.error}


# ---------------------------------------------------------------- frameworks

def probe_frameworks(names):
    """Imports each framework; returns ({name: module}, {name: why skipped})."""
    found, skipped = {}, {}
    for name in names:
        if name not in _IMPORT:
            skipped[name] = "unknown framework (known: %s)" % ", ".join(FRAMEWORKS)
            continue
        try:
            found[name] = importlib.import_module(_IMPORT[name])
        except Exception as exc:  # ImportError, or a broken install
            skipped[name] = "not installed (%s: %s)" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    return found, skipped


# ---------------------------------------------------------------- timing

def _time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _sample(bench, number):
    if bench.self_timed:
        return float(bench.run())
    run = bench.run
    t0 = time.perf_counter()
    for _ in range(number):
        run()
    return (time.perf_counter() - t0) / number


def measure(entries, case, repeat, target_s):
    """entries: list of (Row, Bench). Fills each row's times, round-robin."""
    repeat = min(repeat, case.max_repeat) if case.max_repeat else repeat
    target = case.target_s if case.target_s is not None else target_s
    live = []
    for row, bench in entries:
        try:
            for _ in range(case.warmup):
                bench.run()
            if bench.self_timed or target <= 0:
                row.number = 1
            else:
                once = max(_time_once(bench.run), 1e-7)
                row.number = max(1, min(100000, math.ceil(target / once)))
            live.append((row, bench))
        except Exception as exc:
            row.error = "failed: %s: %s" % (type(exc).__name__, _first_line(exc))
    for r in range(repeat):
        k = r % len(live) if live else 0
        for row, bench in live[k:] + live[:k]:
            if row.error:
                continue
            try:
                row.times.append(_sample(bench, row.number))
            except Exception as exc:
                row.error = "failed: %s: %s" % (type(exc).__name__, _first_line(exc))


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else ""


def cross_check(entries, rtol=2e-3, atol=1e-4):
    """Compares every bench's output with the first one that has an output
    (kiln's when present); notes a mismatch on the row. Returns nothing."""
    import numpy as np
    ref = None
    for row, bench in entries:
        if bench.output is None or row.error:
            continue
        try:
            value = np.asarray(bench.output(), dtype=np.float64)
        except Exception as exc:
            row.note = _join(row.note, "output unavailable: %s" % _first_line(exc))
            continue
        if ref is None:
            ref = (row.impl, value)
            continue
        if value.shape != ref[1].shape:
            row.note = _join(row.note, "MISMATCH vs %s: shape %s != %s" % (ref[0], value.shape, ref[1].shape))
        elif not np.allclose(value, ref[1], rtol=rtol, atol=atol, equal_nan=True):
            err = float(np.max(np.abs(value - ref[1]) / (atol + rtol * np.abs(ref[1]))))
            row.note = _join(row.note, "MISMATCH vs %s (max err %.3g tol)" % (ref[0], err))


def _join(a, b):
    return "%s; %s" % (a, b) if a else b


# ---------------------------------------------------------------- workloads

def run_workload(module, frameworks, repeat, quick, target_s, log=None):
    """Runs every case of one workload module on the given frameworks.
    frameworks: {name: imported module}. Returns a list of Row."""
    rows = []
    for case in module.cases(quick):
        entries = []
        for fw in frameworks:
            impl = getattr(module, fw, None)
            if impl is None:
                rows.append(Row(module.NAME, case.name, fw, per=case.per,
                                error="n/a: no %s implementation" % fw))
                continue
            try:
                made = impl(case)
            except Unsupported as exc:
                rows.append(Row(module.NAME, case.name, fw, per=case.per, error="n/a: %s" % exc))
                continue
            except Exception as exc:
                rows.append(Row(module.NAME, case.name, fw, per=case.per,
                                error="set-up failed: %s: %s" % (type(exc).__name__, _first_line(exc))))
                continue
            variants = made if isinstance(made, dict) else {"": made}
            for variant, bench in variants.items():
                label = fw + (":" + variant if variant else "")
                row = Row(module.NAME, case.name, label, per=case.per)
                if isinstance(bench, Unsupported):
                    row.error = "n/a: %s" % bench
                    rows.append(row)
                    continue
                row.note = bench.note
                entries.append((row, bench))
                rows.append(row)
        if log:
            log("  %s / %s: %d benches" % (module.NAME, case.name, len(entries)))
        measure(entries, case, repeat, target_s)
        cross_check(entries)
        entries.clear()  # drop the benches (and their buffers) before the next case
    return rows


# ---------------------------------------------------------------- machine

_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "KILN_", "XLA_", "TORCH", "GOTO", "BLIS_", "NVPL_")


def _openblas_libs():
    """ctypes handles of the OpenBLAS libraries loaded in this process."""
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                part = line.split()[-1]
                if "openblas" in os.path.basename(part).lower() and part.startswith("/"):
                    paths.add(part)
    except OSError:
        return []
    libs = []
    for path in sorted(paths):
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            pass
    return libs


def _openblas_fn(lib, name):
    for prefix in ("scipy_openblas_", "openblas_"):
        for suffix in ("64_", "", "_64"):
            fn = getattr(lib, prefix + name + suffix, None)
            if fn is not None:
                return fn
    return None


def blas_info(np):
    """What numpy's BLAS is and runs: threadpoolctl when installed, else
    OpenBLAS's own query functions found in the loaded libraries."""
    info = {}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["name"] = "%s %s" % (blas.get("name", "?"), blas.get("version", ""))
    except Exception:
        pass
    try:
        import threadpoolctl
        for lib in threadpoolctl.threadpool_info():
            if lib.get("user_api") == "blas":
                info.update(threads=lib.get("num_threads"), core=lib.get("architecture"),
                            internal_api=lib.get("internal_api"))
                return info
    except Exception:
        pass
    for lib in _openblas_libs():
        core, threads = _openblas_fn(lib, "get_corename"), _openblas_fn(lib, "get_num_threads")
        if core is not None and threads is not None:
            core.restype = ctypes.c_char_p
            info.update(core=core().decode(), threads=int(threads()))
            return info
    return info


def set_blas_threads(np, n):
    """Sets numpy's BLAS thread count for this process (--blas-threads);
    returns False when no BLAS library could be steered."""
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(n, user_api="blas")
        return True
    except Exception:
        pass
    np.ones(1) @ np.ones(1)   # make sure the BLAS library is loaded
    done = False
    for lib in _openblas_libs():
        fn = _openblas_fn(lib, "set_num_threads")
        if fn is not None:
            fn(ctypes.c_int(n))
            done = True
    return done


def machine_info(quick):
    """Measures memory bandwidth and numpy GEMM throughput; collects versions,
    thread counts and the environment variables that steer BLAS and kiln."""
    import numpy as np
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "blas": blas_info(np),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(_ENV_PREFIXES)},
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    # Memory bandwidth: numpy copy of a large array; bytes read + written.
    n = (16 if quick else 64) * (1 << 20)  # float32 elements: 64 MiB / 256 MiB
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = [_time_once(lambda: np.copyto(dst, src)) for _ in range(3 if quick else 7)]
    info["copy_bytes"] = int(src.nbytes)
    info["copy_gbs"] = 2 * src.nbytes / min(times) / 1e9
    info["copy_gbs_median"] = 2 * src.nbytes / statistics.median(times) / 1e9
    del src, dst
    # float32 GEMM at 1024^3.
    m = 1024
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, m), dtype=np.float32)
    b = rng.standard_normal((m, m), dtype=np.float32)
    c = np.empty((m, m), dtype=np.float32)
    np.matmul(a, b, out=c)
    times = [_time_once(lambda: np.matmul(a, b, out=c)) for _ in range(3 if quick else 7)]
    info["gemm_n"] = m
    info["gemm_gflops"] = 2 * m ** 3 / min(times) / 1e9
    info["gemm_gflops_median"] = 2 * m ** 3 / statistics.median(times) / 1e9
    return info


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def framework_versions(found):
    out = {}
    for name, mod in found.items():
        out[name] = getattr(mod, "__version__", "?")
        if name == "kiln":
            try:
                import llvmlite
                import llvmlite.binding as llvm
                out[name] += " (llvmlite %s, LLVM %s, host %s)" % (
                    llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)),
                    llvm.get_host_cpu_name())
            except Exception:
                pass
        elif name == "torch":
            try:
                out[name] += " (%d threads)" % mod.get_num_threads()
            except Exception:
                pass
        elif name == "jax":
            try:
                out[name] += " (%s)" % ", ".join(str(d) for d in mod.devices())
            except Exception:
                pass
    return out


def format_header(info, versions, skipped):
    blas = info["blas"]
    lines = [
        "machine: %s; %s cores (%s usable); load average %s; Python %s" % (
            info["cpu"], info["cpu_count"], info["affinity"],
            " ".join("%.2f" % v for v in info["loadavg_start"]) if info["loadavg_start"] else "?",
            info["python"]),
        "numpy %s, BLAS %s, core %s, %s threads" % (
            info["numpy"], blas.get("name", "?").strip(), blas.get("core", "?"), blas.get("threads", "?")),
        "memory bandwidth (numpy copy of %d MiB, read+write): %.1f GB/s best, %.1f GB/s median" % (
            info["copy_bytes"] >> 20, info["copy_gbs"], info["copy_gbs_median"]),
        "numpy float32 GEMM %d^3: %.1f GFLOP/s best, %.1f GFLOP/s median" % (
            info["gemm_n"], info["gemm_gflops"], info["gemm_gflops_median"]),
        "env: " + (" ".join("%s=%s" % kv for kv in info["env"].items()) or "(no BLAS/thread variables set)"),
    ]
    if "OPENBLAS_CORETYPE" in info["env"]:
        lines.append("note: OPENBLAS_CORETYPE forces OpenBLAS's %s kernels; numpy's BLAS numbers "
                     "are for that kernel, not necessarily the CPU's best" % info["env"]["OPENBLAS_CORETYPE"])
    for name, ver in versions.items():
        lines.append("%s %s" % (name, ver))
    for name, why in skipped.items():
        lines.append("skip %s: %s" % (name, why))
    return "\n".join(lines)


# ---------------------------------------------------------------- table

def fmt_time(s):
    if s is None:
        return "-"
    if s >= 1.0:
        return "%.3g s" % s if s < 100 else "%.0f s" % s
    if s >= 1e-3:
        return "%.3g ms" % (s * 1e3)
    if s >= 1e-6:
        return "%.3g us" % (s * 1e6)
    return "%.3g ns" % (s * 1e9)


def fmt_per(row):
    if not row.per or not row.times:
        return ""
    count, unit = row.per
    return "%s/%s" % (fmt_time(row.median / count), unit)


def format_table(rows, descriptions):
    """One block per workload; ratio = framework median / kiln median of the
    same case (below 1: faster than kiln)."""
    out = []
    header = ("case", "impl", "median", "min - max", "vs kiln", "per item", "note")
    by_workload = {}
    for row in rows:
        by_workload.setdefault(row.workload, []).append(row)
    for workload, wrows in by_workload.items():
        kiln_median = {}
        for row in wrows:
            if row.impl == "kiln" and row.times:
                kiln_median[row.case] = row.median
        body = []   # (is_message, cells)
        last_case = None
        for row in wrows:
            case = row.case if row.case != last_case else ""
            last_case = row.case
            if row.error or not row.times:
                body.append((True, (case, row.impl, row.error or "no samples")))
                continue
            ref = kiln_median.get(row.case)
            ratio = "%.2f" % (row.median / ref) if ref else "-"
            body.append((False, (case, row.impl, fmt_time(row.median),
                                 "%s - %s" % (fmt_time(min(row.times)), fmt_time(max(row.times))),
                                 ratio, fmt_per(row), row.note)))
        out.append("")
        out.append("== %s: %s" % (workload, descriptions.get(workload, "")))
        cells = [header] + [c for msg, c in body if not msg]
        widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
        for msg, c in body:
            widths[0] = max(widths[0], len(c[0]))
            widths[1] = max(widths[1], len(c[1]))
        out.append(_line(header, widths))
        for msg, c in body:
            if msg:
                out.append(("%-*s  %-*s  %s" % (widths[0], c[0], widths[1], c[1], c[2])).rstrip())
            else:
                out.append(_line(c, widths))
    return "\n".join(out)


def _line(cells, widths):
    parts = []
    for i, (c, w) in enumerate(zip(cells, widths)):
        parts.append(c.rjust(w) if i in (2, 3, 4, 5) else c.ljust(w))
    return "  ".join(parts).rstrip()


def write_json(path, info, versions, skipped, rows, args):
    with open(path, "w") as f:
        json.dump({"machine": info, "frameworks": versions, "skipped": skipped,
                   "args": args, "results": [r.as_json() for r in rows]}, f, indent=1)


def log_stderr(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()
