"""The CUDA backend's numbers, checked without a GPU: rendered kernels run on the CPU CUDA
emulator (tests/cuda_emulator) and must agree with the LLVM backend running the very same
lowered program (same kernels, same slots), for a sample of every registry operator (forward
and gradient), whole graphs and shape-generic kernels; plus unit tests of the emulator.
Kernels are batched into one LLVM module and one emulator module per operator family."""
import copy
import ctypes
import re
import time

import numpy as np
import pytest

from kiln.compiler import expr as E
from kiln.compiler.codegen.cuda import render_kernel
from kiln.compiler.codegen.llvm import emit_program
from kiln.compiler.kernel import CTC, Sort
from kiln.compiler.ops import registry
from kiln.compiler.ops.random import KEY_SLOT
from kiln.runtime.llvm_jit import compile_ir
from tests.cuda_emulator.device import EmulatedDevice, EmulatorError, available, direct_functions, patch_source

pytestmark = pytest.mark.skipif(not available(), reason="no C++ compiler ($CXX, c++ or g++) for the CUDA emulator")

FAMILIES = 8
TOL = {"float16": (4e-3, 2e-3), "float32": (2e-4, 2e-5), "float64": (1e-9, 1e-12)}


@pytest.fixture(scope="module")
def dev():
    d = EmulatedDevice()
    yield d
    d.close()


def run1(dev, source, fn, grid, block, arrays, outs=None, shared=0):
    """Compile ``source``, run ``fn`` over ``arrays`` (numpy, copied in), return copies of the
    arrays whose indices are in ``outs`` (all by default)."""
    mod = dev.module(source, "unit_" + fn)
    ptrs = [dev.alloc(a.nbytes) for a in arrays]
    try:
        for p, a in zip(ptrs, arrays):
            dev.copy_in(p, a)
        dev.launch(mod.function(fn), grid, block, shared, ptrs)
        got = []
        for i, (p, a) in enumerate(zip(ptrs, arrays)):
            if outs is None or i in outs:
                r = np.empty_like(a)
                dev.copy_out(r, p)
                got.append(r)
        return got
    finally:
        for p in ptrs:
            dev.free(p)


# ---- (a) the emulator itself ----
UNIT_SRC = r"""
extern "C" __global__ void block_sum(const float* x, float* out) {
  __shared__ float part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)((blockDim.x + 31) >> 5) ? part[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) out[blockIdx.x] = v;
  }
}
extern "C" __global__ void shuffles(const int* x, int* out) {
  const int t = threadIdx.x, v = x[t];
  out[4 * t] = __shfl_sync(0xffffffffu, v, (t * 7) & 31);
  out[4 * t + 1] = __shfl_xor_sync(0xffffffffu, v, 5);
  out[4 * t + 2] = __shfl_up_sync(0xffffffffu, v, 3, 8);
  out[4 * t + 3] = (int)__ballot_sync(0xffffffffu, v & 1);
}
extern "C" __global__ void reverse_across_warps(const double* x, double* out) {
  __shared__ double buf[256];
  buf[threadIdx.x] = x[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}
extern "C" __global__ void missing_barrier(const double* x, double* out) {
  __shared__ double buf[256];
  buf[threadIdx.x] = x[threadIdx.x];
  out[threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}
extern "C" __global__ void atomics(const float* x, float* fsum, int* isum, unsigned long long* usum, double* dsum) {
  for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < 1000; g += (long long)gridDim.x * blockDim.x) {
    atomicAdd(fsum, x[g]);
    atomicAdd(isum, (int)g);
    atomicAdd(usum, (unsigned long long)g * 3ull);
    atomicAdd(dsum + (g & 3), (double)x[g]);
  }
}
extern "C" __global__ void deadlock(float* out) {
  if (threadIdx.x == 0) __syncthreads();
  else out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f, 1);
}
extern "C" __global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 64) { __syncthreads(); out[threadIdx.x] = 1.0f; }
  else { out[threadIdx.x] = 2.0f; __syncthreads(); }
}
extern "C" __global__ void early_exit_barrier(float* out) {
  if (threadIdx.x >= 100) return;
  out[threadIdx.x] = 1.0f;
  __syncthreads();
  const float v = out[99 - threadIdx.x];
  __syncthreads();
  out[threadIdx.x] += v;
}
extern "C" __global__ void out_of_bounds(const float* x, float* out) {
  out[threadIdx.x] = x[threadIdx.x + 1024];
}
extern "C" __global__ void endless(int* flag) { while (*(volatile int*)flag == 0) { } }
extern "C" __global__ void builtins(unsigned* out) {
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  unsigned* o = out + 4 * (b * blockDim.x * blockDim.y * blockDim.z + t);
  o[0] = threadIdx.x | threadIdx.y << 8 | threadIdx.z << 16; o[1] = blockIdx.x | blockIdx.y << 8 | blockIdx.z << 16;
  o[2] = blockDim.x | blockDim.y << 8 | blockDim.z << 16; o[3] = gridDim.x | gridDim.y << 8 | gridDim.z << 16;
}
extern "C" __global__ void math_overloads(const float* x, const double* y, float* fo, double* d_out) {
  const int i = threadIdx.x;
  fo[i] = sin(x[i]) + expf(x[i]) + max(x[i], 0.5f) + fabs(-x[i]) + pow(x[i], 2.0f);  /* float overloads */
  d_out[i] = sin(y[i]) + exp(y[i]) + max(y[i], 0.5) + (double)__int_as_float(0x3f800000)
           + __longlong_as_double(0x4000000000000000LL);
}
extern "C" __global__ void halves(const unsigned short* h, float* f, const float* g, unsigned short* back) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < 65536; i += (long long)gridDim.x * blockDim.x) {
    f[i] = kiln_h2f(h[i]); back[i] = kiln_f2h(g[i]); }
}
"""
PRELUDE_HALF = r"""
__device__ __forceinline__ float kiln_h2f(unsigned short h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ unsigned short kiln_f2h(float f) {
  unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
"""
UNIT = PRELUDE_HALF + UNIT_SRC


def test_block_reduction_with_shuffles_and_shared_memory(dev):
    x = np.random.RandomState(0).uniform(-1, 1, 7 * 256).astype("float32")
    out, = run1(dev, UNIT, "block_sum", 7, 256, [x, np.zeros(7, "float32")], outs={1})
    np.testing.assert_allclose(out, x.reshape(7, 256).astype("float64").sum(1), rtol=1e-5, atol=1e-5)
    # a partial last warp (200 threads): lanes beyond the block do not exist and are not waited for
    out, = run1(dev, UNIT, "block_sum", 1, 200, [x[:200].copy(), np.zeros(1, "float32")], outs={1})
    assert np.isnan(out[0])  # lanes 8..31 of warp 6 read missing lanes: CUDA leaves that undefined


def test_warp_shuffles_follow_cuda_lane_rules(dev):
    x = np.arange(64, dtype="int32") * 3 + 1
    out, = run1(dev, UNIT, "shuffles", 1, 64, [x, np.zeros(256, "int32")], outs={1})
    out = out.reshape(64, 4)
    lane = np.arange(64) & 31
    base = np.arange(64) - lane
    np.testing.assert_array_equal(out[:, 0], x[base + ((np.arange(64) * 7) & 31)])
    np.testing.assert_array_equal(out[:, 1], x[base + (lane ^ 5)])
    up = np.where((lane & 7) >= 3, np.arange(64) - 3, np.arange(64))
    np.testing.assert_array_equal(out[:, 2], x[up])
    ballot = [sum(1 << k for k in range(32) if x[w * 32 + k] & 1) for w in range(2)]
    np.testing.assert_array_equal(out[:, 3].view("uint32"), np.repeat(ballot, 32).astype("uint32"))


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_shared_memory_across_warps_and_schedules(order):
    d = EmulatedDevice(order=order)
    x = np.arange(256, dtype="float64")
    out, = run1(d, UNIT, "reverse_across_warps", 3, 256, [x, np.zeros(256)], outs={1})
    np.testing.assert_array_equal(out, x[::-1])
    # without the barrier, threads read shared memory before its writer ran: the scheduling order
    # decides which half is garbage (shared memory starts poisoned in every block)
    bad, = run1(d, UNIT, "missing_barrier", 1, 256, [x, np.zeros(256)], outs={1})
    wrong = bad != x[::-1]
    assert wrong.any()
    assert wrong[:128].all() if order == "forward" else wrong[128:].all()
    d.close()


def test_atomics(dev):
    x = np.random.RandomState(1).uniform(0, 1, 1000).astype("float32")
    f, i, u, dd = run1(dev, UNIT, "atomics", 3, 128, [x, np.zeros(1, "float32"), np.zeros(1, "int32"),
                                                       np.zeros(1, "uint64"), np.zeros(4)], outs={1, 2, 3, 4})
    assert abs(f[0] - x.astype("float64").sum()) < 1e-2
    assert i[0] == sum(range(1000)) and u[0] == 3 * sum(range(1000))
    np.testing.assert_allclose(dd, x.astype("float64").reshape(250, 4).sum(0), rtol=1e-6)


def test_barrier_counts_only_live_threads(dev):
    out, = run1(dev, UNIT, "early_exit_barrier", 1, 128, [np.zeros(128, "float32")])
    np.testing.assert_array_equal(out[:100], 2.0)


def test_deadlock_and_divergent_barrier_raise(dev):
    with pytest.raises(EmulatorError, match="deadlock.*thread 0 waits at __syncthreads"):
        run1(dev, UNIT, "deadlock", 2, 64, [np.zeros(64, "float32")])
    with pytest.raises(EmulatorError, match="divergent __syncthreads"):
        run1(dev, UNIT, "divergent_barrier", 1, 128, [np.zeros(128, "float32")])
    out, = run1(dev, UNIT, "block_sum", 1, 64, [np.ones(64, "float32"), np.zeros(1, "float32")], outs={1})
    assert out[0] == 64  # the device still works after an aborted launch


def test_out_of_bounds_and_time_limit_raise():
    d = EmulatedDevice(timeout=0.5)
    with pytest.raises(EmulatorError, match="SIGSEGV.*past the end of allocation"):
        run1(d, UNIT, "out_of_bounds", 1, 32, [np.zeros(1024, "float32"), np.zeros(32, "float32")])
    with pytest.raises(EmulatorError, match="time limit"):
        run1(d, UNIT, "endless", 1, 1, [np.zeros(1, "int32")])
    with pytest.raises(EmulatorError, match="not a device allocation"):
        d.launch(d.module(UNIT, "u").function("endless"), 1, 1, 0, [12345])
    d.close()


def test_builtin_variables_in_three_dimensions(dev):
    out, = run1(dev, UNIT, "builtins", (2, 3, 1), (4, 2, 3), [np.zeros(6 * 24 * 4, "uint32")])
    flat = out.reshape(-1, 4)
    tx, ty, tz = 1, 1, 2
    k = (1 + 2 * 1) * 24 + tx + 4 * (ty + 2 * tz)  # block (1, 1, 0), thread (1, 1, 2)
    assert list(flat[k]) == [tx | ty << 8 | tz << 16, 1 | 1 << 8, 4 | 2 << 8 | 3 << 16, 2 | 3 << 8 | 1 << 16]


def test_math_overloads_resolve_as_on_cuda(dev):
    x = np.linspace(0.1, 2, 32).astype("float32")
    y = x.astype("float64")
    f, dd = run1(dev, UNIT, "math_overloads", 1, 32, [x, y, np.zeros(32, "float32"), np.zeros(32)], outs={2, 3})
    want = (np.sin(x) + np.exp(x) + np.maximum(x, np.float32(0.5)) + x + x * x).astype("float32")
    np.testing.assert_allclose(f, want, rtol=1e-6)
    np.testing.assert_allclose(dd, np.sin(y) + np.exp(y) + np.maximum(y, 0.5) + 3.0, rtol=1e-15)


def test_float16_conversions_match_numpy(dev):
    h = np.arange(65536, dtype="uint16")
    rng = np.random.RandomState(2)
    g = np.concatenate([rng.uniform(-70000, 70000, 30000), rng.uniform(-1e-4, 1e-4, 30000),
                        [65504, 65519.99, 65520, 2 ** -25, 2 ** -24 * 1.5, -0.0, np.inf, -np.inf, np.nan],
                        h[:5527].view("float16").astype("float64")]).astype("float32")
    f, back = run1(dev, UNIT, "halves", 64, 256, [h, np.zeros(65536, "float32"), g, np.zeros(65536, "uint16")],
                   outs={1, 3})
    want = h.view("float16").astype("float32")
    np.testing.assert_array_equal(f.view("uint32")[~np.isnan(want)], want.view("uint32")[~np.isnan(want)])
    assert np.isnan(f[np.isnan(want)]).all()
    with np.errstate(over="ignore"):
        wantb = g.astype("float16")
    np.testing.assert_array_equal(back.view("float16"), wantb)


def test_source_patching_and_direct_detection():
    src = PRELUDE_HALF + UNIT_SRC
    assert "asm" not in patch_source(src) and "kiln_emu_h2f(h)" in patch_source(src)
    with pytest.raises(EmulatorError, match="inline assembly"):
        patch_source('__device__ int f() { int r; asm("mov.u32 %0, %%laneid;" : "=r"(r)); return r; }')
    direct = direct_functions(src)
    assert {"out_of_bounds", "atomics", "halves", "endless"} <= direct
    assert "missing_barrier" in direct and not direct & {"block_sum", "shuffles", "deadlock", "early_exit_barrier"}
    # a kernel reaching a barrier through a device function needs fibers too
    helper = "__device__ void sync_all() { __syncthreads(); }\n" \
             'extern "C" __global__ void k(float* p) { sync_all(); p[0] = 1.0f; }\n'
    assert direct_functions(helper) == set()


def test_dynamic_shared_memory(dev):
    src = r"""extern "C" __global__ void dyn(const int* x, int* out) {
      extern __shared__ int s[];
      s[threadIdx.x] = x[threadIdx.x];
      __syncthreads();
      out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x]; }"""
    x = np.arange(64, dtype="int32")
    out, = run1(dev, src, "dyn", 1, 64, [x, np.zeros(64, "int32")], outs={1}, shared=256)
    np.testing.assert_array_equal(out, np.roll(x, -1))


# ---- running one lowered program on both backends ----
def lower_full(heads, var_shapes, var_types, grad_req=None, is_train=False):
    """The ``lower.Lowered`` program the pipeline would emit (no memory planning: one buffer
    per slot, so every intermediate value can be compared)."""
    from kiln.compiler.pipeline import PassManager, lower_program, prepare_graph
    return lower_program(prepare_graph(heads, var_shapes, var_types, grad_req, PassManager(()), is_train))


class Unit:
    """One lowered program (an operator instance or a graph) and its given input values."""

    def __init__(self, name, low, given=None, dims=None):
        self.name, self.low, self.given, self.dims = name, low, dict(given or {}), dims
        self.written = {}  # slot -> (launch position, phase, kernel) of its first writer
        self.scratch = set()  # workspace slots: layouts differ between backends by design
        pos = 0
        for phase in ("forward", "backward"):
            for launch in low.phases.get(phase, []):
                k = launch.kernel
                outs = {id(b) for b in k.outputs}
                work = {id(st.workspace) for st in k.stages if isinstance(st, (Sort, CTC))}
                for b, s in zip(k.params, launch.slots):
                    if id(b) in outs:
                        self.written.setdefault(s, (pos, phase, k))
                    if id(b) in work:
                        self.scratch.add(s)
                pos += 1

    def inputs(self, rng):
        """Values of every slot no launch writes (variables, head gradients, the RNG key)."""
        vals = {}
        for i, s in enumerate(self.low.slots):
            if i in self.written:
                continue
            shape = tuple(int(d) for d in s.shape)
            if s.name in self.given:
                v = np.asarray(self.given[s.name]).astype(s.dtype).reshape(shape)
            elif s.name == KEY_SLOT:
                v = np.array([1234, 5], dtype=s.dtype)
            elif s.dtype.startswith("float"):
                v = rng.uniform(0.2, 1.8, shape).astype(s.dtype)
            elif s.dtype == "bool":
                v = rng.randint(0, 2, shape).astype(s.dtype)
            else:
                v = rng.randint(0, 3, shape).astype(s.dtype)
            vals[i] = np.ascontiguousarray(v)
        return vals


def _shape(slot, dims):
    return tuple(int(dims[int(d[1:])]) if isinstance(d, str) else int(d) for d in slot.shape)


def _poisoned(shape, dtype):
    a = np.empty(shape, dtype)
    a.reshape(-1).view(np.uint8).fill(0xFF)  # as the emulated device fills fresh memory
    return a


class Batch:
    """Units run together: one LLVM module and one emulator module for all their kernels."""

    def __init__(self, label, units, dev):
        self.label, self.units, self.dev = label, units, dev
        self.kernels, self.renamed, self.rendered, self.entries = [], [], {}, {}
        for u, unit in enumerate(units):
            ren = {}
            for k in unit.low.kernels:
                k2 = copy.copy(k)
                k2.name = "u%d_%s" % (u, re.sub(r"\W", "_", k.name))
                ren[id(k)] = k2
                self.kernels.append(k2)
            self.renamed.append(ren)
            for phase, launches in unit.low.phases.items():
                self.entries["u%d_%s" % (u, phase)] = [(ren[id(l.kernel)].name, list(l.slots)) for l in launches]
        self.render_errors = {}
        for k in self.kernels:
            try:
                self.rendered[k.name] = render_kernel(k, name=k.name)
            except NotImplementedError as exc:
                self.render_errors[k.name] = exc
        source = "\n".join(ck.source for ck in self.rendered.values())
        self.pending = dev.module_async(source, "emu_" + label) if self.rendered else None

    def run(self):
        """{unit name: list of problems} (empty when every written slot agrees)."""
        t0 = time.perf_counter()
        # LLVM: the same kernels and launches; entries take a per-unit slot table
        entries = {}
        for e, calls in self.entries.items():
            entries[e] = [(k, s) for k, s in calls]
        mod = compile_ir(emit_program("emu_ref_" + self.label, self.kernels, entries, num_threads=1), 1)
        self.llvm_seconds = time.perf_counter() - t0
        emu = self.pending.result() if self.pending is not None else None
        results = {}
        for u, unit in enumerate(self.units):
            results[unit.name] = self.run_unit(u, unit, mod, emu)
        return results

    def run_unit(self, u, unit, mod, emu):
        rng = np.random.RandomState(7)
        slots = unit.low.slots
        dims = unit.dims
        inputs = unit.inputs(rng)
        ref = [inputs[i].copy() if i in inputs else _poisoned(_shape(s, dims), s.dtype) for i, s in enumerate(slots)]
        table = (ctypes.c_void_p * max(len(slots), 1))(*[a.ctypes.data for a in ref])
        phases = [p for p in ("forward", "backward") if "u%d_%s" % (u, p) in self.entries]
        for p in phases:
            mod.entry("u%d_%s" % (u, p))(ctypes.addressof(table))
        problems = []
        ren = self.renamed[u]
        missing = sorted({ren[id(l.kernel)].name for p in phases for l in unit.low.phases[p]
                          if ren[id(l.kernel)].name not in self.rendered})
        if missing:
            return ["not rendered: %s (%s)" % (k, self.render_errors[k]) for k in missing]
        dev = self.dev
        ptrs = [dev.alloc(a.nbytes) for a in ref]
        try:
            for i, v in inputs.items():
                dev.copy_in(ptrs[i], v)
            for p in phases:
                for launch in unit.low.phases[p]:
                    ck = self.rendered[ren[id(launch.kernel)].name]
                    args = [ptrs[s] for s in launch.slots]
                    for fn, grid, block, shared in ck.launch_sizes(dims):
                        try:
                            dev.launch(emu.function(fn), grid, block, shared, args)
                        except EmulatorError as exc:
                            return ["%s kernel %s (%s): %s" % (p, launch.kernel.name, "+".join(launch.ops), exc)]
            for i, p in enumerate(ptrs):
                if dev.overrun(p):
                    problems.append("slot %s %s: written past its end" % (slots[i].name, ref[i].shape))
            order = sorted(unit.written.items(), key=lambda kv: kv[1][0])
            for s, (pos, phase, kernel) in order:
                if s in unit.scratch:
                    continue
                got = np.empty_like(ref[s])
                dev.copy_out(got, ptrs[s])
                why = compare(got, ref[s])
                if why:
                    stages = ",".join(type(st).__name__ for st in kernel.stages)
                    problems.append("slot %s %s %s written by %s kernel %s [%s]: %s" % (
                        slots[s].name, ref[s].shape, ref[s].dtype, phase, kernel.name, stages, why))
        finally:
            for p in ptrs:
                dev.free(p)
        return problems


def compare(got, want):
    """'' when ``got`` (emulated CUDA) agrees with ``want`` (LLVM), else what differs."""
    if want.dtype.kind != "f":
        bad = got != want
        if not bad.any():
            return ""
        k = np.flatnonzero(bad.ravel())
        return "%d of %d elements differ, first at %d: cuda %r llvm %r" % (
            len(k), bad.size, k[0], got.ravel()[k[0]], want.ravel()[k[0]])
    rtol, atol = TOL[want.dtype.name]
    g, w = got.astype("float64"), want.astype("float64")
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    with np.errstate(invalid="ignore"):
        close = np.isclose(g, w, rtol=rtol, atol=atol * max(1.0, float(np.nanmax(np.abs(w), initial=0.0))))
    bad = ~(close | (nan_g & nan_w))
    if not bad.any():
        return ""
    k = np.flatnonzero(bad.ravel())
    return "%d of %d elements differ, first at %d: cuda %r llvm %r (max abs diff %.3g)" % (
        len(k), bad.size, k[0], g.ravel()[k[0]], w.ravel()[k[0]],
        float(np.nanmax(np.abs(g - w)[bad])) if np.isfinite(np.abs(g - w)[bad]).any() else float("nan"))


# ---- (b) every registry operator ----
def op_unit(op, shape=None):
    """The lowered program of one operator instance (the codegen test's sample, at ``shape``
    instead of its (3, 4, 2) where given), with its gradient graph where it has one, and the
    sample's input values."""
    from tests.compiler import test_cuda_codegen as C
    rng = np.random.RandomState(0)
    saved = C.SHAPE
    C.SHAPE = shape or saved
    try:
        heads, shapes, types, given, req = C.instance(op, rng)
    finally:
        C.SHAPE = saved
    return Unit(op.name, C.with_gradient(lower_full, heads, shapes, types, req), given)


OP_NAMES = sorted(o.name for o in registry.all_ops())
# the codegen test's samples, and the same with a long last axis (2, 3, 160): reductions of 128+
# elements become block-cooperative (warp shuffles, shared memory), sorts take many threads;
# the wide sweep runs each block's threads in reverse order to expose a missing barrier
SWEEPS = {"small": (None, "forward"), "wide": ((2, 3, 160), "reverse")}


def op_family(name):
    return OP_NAMES.index(name) * FAMILIES // len(OP_NAMES)


_op_state = {}


def op_results(sweep, index):
    """{op name: problems} for family ``index`` of ``sweep``; the first call lowers every
    operator and starts every family's C++ compile in the background, so compiles overlap
    the LLVM work."""
    state = _op_state.get(sweep)
    if state is None:
        shape, order = SWEEPS[sweep]
        dev = EmulatedDevice(order=order)
        units, failed = [[] for _ in range(FAMILIES)], {}
        for name in OP_NAMES:
            try:
                units[op_family(name)].append(op_unit(registry.get(name), shape))
            except Exception as exc:  # not lowerable: test_cuda_codegen reports these
                failed[name] = exc
        state = _op_state[sweep] = {"failed": failed, "results": {}, "dev": dev,
                                    "batches": [Batch("%s%d" % (sweep, i), u, dev) for i, u in enumerate(units)]}
    res = state["results"]
    if index not in res:
        res[index] = state["batches"][index].run()
    return state, res[index]


# mismatches between the emulated CUDA kernels and the LLVM backend: (sweep, op) -> the bug
KNOWN = {}


def _op_params():
    out = []
    for sweep in SWEEPS:
        for name in OP_NAMES:
            why = KNOWN.get((sweep, name))
            marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
            out.append(pytest.param(sweep, name, marks=marks, id="%s-%s" % (sweep, name)))
    return out


@pytest.mark.parametrize("sweep,opname", _op_params())
def test_operator_matches_llvm(sweep, opname):
    state, results = op_results(sweep, op_family(opname))
    if opname in state["failed"]:
        pytest.skip("not lowerable here: %s" % state["failed"][opname])
    problems = results[opname]
    assert not problems, "%s: CUDA (emulated) != LLVM:\n  %s" % (opname, "\n  ".join(problems))



# ---- (c) whole graphs, hand-written stages, shape-generic kernels ----
def _mlp_train(sym):
    from tests.compiler.test_cuda_codegen import mlp
    return sym.SoftmaxOutput(mlp(sym), sym.Variable("label"))


def _cnn_train(sym):
    x = sym.Variable("x")
    c = sym.Convolution(x, sym.Variable("cw"), sym.Variable("cb"), kernel=(3, 3), num_filter=8, pad=(1, 1))
    b = sym.BatchNorm(c, sym.Variable("g"), sym.Variable("be"), sym.Variable("mm"), sym.Variable("mv"), fix_gamma=False)
    p = sym.Pooling(sym.Activation(b, act_type="relu"), kernel=(2, 2), stride=(2, 2), pool_type="max")
    q = sym.Pooling(p, kernel=(2, 2), stride=(2, 2), pool_type="avg")
    return sym.FullyConnected(sym.flatten(q), sym.Variable("fw"), sym.Variable("fb"), num_hidden=10)


def _gemm_transposed(sym):
    x, w = sym.Variable("x"), sym.Variable("w")
    h = sym.relu(sym.broadcast_add(sym.dot(x, w, transpose_b=True), sym.Variable("b")))
    return sym.batch_dot(sym.reshape(h, (2, 65, 150)), sym.Variable("v"), transpose_a=True)


def _sorting(sym):
    x = sym.Variable("x")
    return sym.Group([sym.sort(x, axis=1), sym.argsort(x, axis=-1, is_ascend=False),
                      sym.topk(x, axis=1, k=7, ret_typ="both"), sym.topk(x, k=3, ret_typ="mask")])


def _ctc(sym):
    return sym.CTCLoss(sym.Variable("data"), sym.Variable("label"), sym.Variable("dl"), sym.Variable("ll"),
                       use_data_lengths=True, use_label_lengths=True)


def _softmax_family(sym):
    x = sym.Variable("x")
    return sym.Group([sym.log_softmax(x, axis=-1), sym.softmax(x, axis=0), sym.LayerNorm(x, sym.Variable("lg"),
                      sym.Variable("lb")), sym.argmax(x, axis=1), sym.norm(x, axis=1), sym.max(x, axis=0)])


def _graphs():
    from tests.compiler.test_cuda_codegen import GRAPHS
    rng = np.random.RandomState(3)
    lab = rng.randint(1, 6, (4, 5)).astype("float32")
    lab[1, 3:] = 0
    g = {name: (build, shapes, [n for n in shapes if n not in ("mm", "mv")], False, {})
         for name, (build, shapes) in GRAPHS.items()}
    mshapes = dict(GRAPHS["mlp_softmax"][1], label=(8,))
    g["mlp_train_step"] = (_mlp_train, mshapes, [n for n in mshapes if n != "label"], True,
                           {"label": rng.randint(0, 10, 8).astype("float32")})
    cshapes = dict(GRAPHS["cnn"][1], fw=(10, 32))
    g["cnn_batchnorm_train"] = (_cnn_train, cshapes, [n for n in cshapes if n not in ("mm", "mv")], True, {})
    g["gemm_transposed"] = (_gemm_transposed, {"x": (130, 70), "w": (150, 70), "b": (1, 150), "v": (2, 65, 33)},
                            ["x", "w", "b", "v"], False, {})
    g["sort_topk"] = (_sorting, {"x": (4, 300)}, [], False,
                      {"x": np.round(rng.uniform(-3, 3, (4, 300)), 1).astype("float32")})  # ties: stability
    g["ctc_loss"] = (_ctc, {"data": (9, 4, 6), "label": (4, 5), "dl": (4,), "ll": (4,)}, ["data"], False,
                     {"label": lab, "dl": np.array([9, 8, 2, 9], "float32"), "ll": np.array([5, 3, 4, 0], "float32")})
    g["softmax_layernorm_wide"] = (_softmax_family, {"x": (6, 500), "lg": (500,), "lb": (500,)}, ["x", "lg", "lb"],
                                   False, {"x": rng.uniform(-4, 4, (6, 500)).astype("float32")})
    return g


GRAPH_CASES = _graphs()
KNOWN_GRAPHS = {}


def graph_unit(name):
    import kiln as mx
    build, shapes, wrt, train, given = GRAPH_CASES[name]
    heads = list(build(mx.sym)._outputs)
    types = {n: "float32" for n in shapes}
    req = {n: "write" for n in wrt} or None
    return Unit(name, lower_full(heads, shapes, types, req, is_train=train), given)


@pytest.fixture(scope="module")
def graph_batch():
    dev = EmulatedDevice()
    batch = Batch("graphs", [graph_unit(n) for n in sorted(GRAPH_CASES)], dev)
    yield batch, batch.run()
    dev.close()


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GRAPHS[n])]
                                               if n in KNOWN_GRAPHS else []) for n in sorted(GRAPH_CASES)])
def test_graph_matches_llvm(graph_batch, name):
    batch, results = graph_batch
    assert not results[name], "%s: CUDA (emulated) != LLVM:\n  %s" % (name, "\n  ".join(results[name]))


def test_graphs_exercise_every_stage_kind(graph_batch):
    """The graph cases cover what the renderer has special code for (else they prove little)."""
    batch, _ = graph_batch
    source = "\n".join(ck.source for ck in batch.rendered.values())
    for needle in ("__shfl_down_sync", "atomicAdd", "As[", "kiln_lse3", "keys[i] = y"):
        assert needle in source, needle


class _Low:
    """A one-kernel stand-in for ``lower.Lowered`` (shape-generic kernels have no program)."""

    def __init__(self, kernel, shapes):
        from types import SimpleNamespace
        self.kernels = [kernel]
        self.slots = [SimpleNamespace(name=b.name, shape=s, dtype=b.dtype) for b, s in zip(kernel.params, shapes)]
        self.phases = {"forward": [SimpleNamespace(kernel=kernel, slots=list(range(len(shapes))), ops=[kernel.name])]}


def _generic_units():
    from kiln.compiler import generic as G
    from tests.compiler.test_cuda_codegen import GENERIC, _generic_kernel
    units = []
    bigger = {"max": [(5, 1000)], "norm": [(2, 700)], "argmax": [(9, 130)], "sum": [(2, 300, 3)]}
    for opname, shapes, attrs in GENERIC:
        kernel, plan = _generic_kernel(opname, shapes, attrs)
        op = registry.get(opname)
        for k, sh in enumerate([shapes, bigger.get(opname, [tuple(2 * d for d in s) for s in shapes])]):
            sh = [tuple(s) for s in sh]
            if opname == "_backward_take":
                sh = [(sh[0][0], sh[2][1]), (sh[0][0],), sh[2]]
            p = G.plan(opname, op.format_attrs(attrs, "op"), sh, ["float32"] * len(sh)) if k else plan
            if p is None or p.key != plan.key:
                continue
            dims = [int(x) for x in p.dims]
            conc = [tuple(dims[int(d[1:])] if isinstance(d, str) else d for d in c) for c in p.in_class]
            outs = [tuple(dims[int(d[1:])] if isinstance(d, str) else d for d in c) for c in p.out_class]
            shapes_all = conc + [(len(dims),)] + outs
            given = {"dims": np.array(dims, "int64")}
            if opname in ("take", "_backward_take"):  # indices in range of the taken axis
                given[kernel.params[1].name] = np.arange(conc[1][0]) % 3
            units.append(Unit("%s_%d" % (opname, k), _Low(kernel, shapes_all), given, dims=dims))
    return units


def test_shape_generic_kernels_match_llvm():
    """The same kernel at two sizes of its shape class: launch sizes and loops follow the dims."""
    dev = EmulatedDevice()
    units = _generic_units()
    assert len(units) >= 12
    results = Batch("generic", units, dev).run()
    bad = {n: p for n, p in results.items() if p}
    assert not bad, "\n".join("%s: %s" % (n, "; ".join(p)) for n, p in bad.items())
    dev.close()


# ---- every scalar function, cast and reducer per dtype ----
VALUES = {  # finite, in range of every cast target (out-of-range float->int casts are undefined on both)
    "float": ([0.0, 1.5, 2.5, 3.0, 100.25], [1.0, -0.5, 2.5, 0.0, 3.0]),
    "signed": ([-7, 0, 5, 100, -128], [3, 0, 1, 7, 2]),
    "uint8": ([7, 0, 5, 200, 255], [3, 0, 1, 7, 2]),
    "bool": ([1, 0, 1, 1, 0], [0, 0, 1, 1, 1]),
}
KNOWN_DTYPES = {}


def _dtype_unit(dtype):
    from tests.compiler.test_cuda_codegen import INT_FUNCS, _function_kernel
    every = E.UNARY_FUNCS + E.BINARY_FUNCS + E.COMPARISONS
    funcs = every if E.is_float(dtype) else E.COMPARISONS + INT_FUNCS
    # logical and/or/xor/not on non-predicates: test_cuda_codegen's kernel has them for NVRTC only,
    # the LLVM emitter takes them on predicates (as the lowerings use them)
    funcs = tuple(f for f in funcs if f not in ("and", "or", "xor", "not"))
    kernel = _function_kernel([dtype], lambda t: funcs)
    kind = "float" if E.is_float(dtype) else dtype if dtype in ("uint8", "bool") else "signed"
    x, y = VALUES[kind]
    rng = np.random.RandomState(5)
    given = {"x_" + dtype: np.array(x).astype(dtype), "y_" + dtype: np.array(y).astype(dtype)}
    for b in kernel.inputs:
        if b.name.startswith("rs_"):
            v = rng.uniform(-3, 3, b.shape) if E.is_float(dtype) else rng.randint(0, 2 if dtype == "bool" else 100, b.shape)
            given[b.name] = v.astype(dtype)
    return Unit("alltypes_" + dtype, _Low(kernel, [tuple(b.shape) for b in kernel.params]), given)


DTYPE_LIST = ("float16", "float32", "float64", "int8", "uint8", "bool", "int32", "int64")


@pytest.mark.parametrize("dtype", [pytest.param(t, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_DTYPES[t])]
                                                if t in KNOWN_DTYPES else []) for t in DTYPE_LIST])
def test_every_function_cast_and_reducer_matches_llvm(dtype):
    dev = EmulatedDevice()
    unit = _dtype_unit(dtype)
    problems = Batch("alltypes_" + dtype, [unit], dev).run()[unit.name]
    dev.close()
    assert not problems, "%s:\n  %s" % (dtype, "\n  ".join(problems))
