"""Kernel IR -> LLVM IR text (llvmlite.ir), one module per program.

Each kernel becomes ``void @<name>(ptr, ptr, ...)`` over its buffers; each
program entry becomes ``void @<entry>(ptr table)`` which loads buffer
pointers from a table and calls the kernels in order, so a whole forward or
backward pass is one native call. Large stages run their outermost loop on
worker threads through libgomp's ``GOMP_parallel`` from inside that call
(``KILN_NUM_THREADS``; a ScatterAdd's accumulation stays serial). float16 is stored as ``half`` and computed
in float; integer division and remainder are guarded so that a zero divisor
gives 0 instead of a hardware trap.

Floating-point arithmetic carries the fast-math flags of ``KILN_FASTMATH``
(default ``nsz,arcp,contract,afn``; ``none`` for strict IEEE; ``reassoc``
lets LLVM vectorise reductions, which changes their rounding). Kernel
parameters get ``noalias`` and ``align 64`` only where every launch of the
kernel makes them true (see ``param_facts``).
"""
from __future__ import annotations

import math
import os

import llvmlite.ir as ir

from ...runtime.errors import MXNetError
from ...runtime.program import ALIGN
from ...runtime.threads import parallel_threads
from .. import expr as E
from ..kernel import CTC, Compute, Gemm, ScatterAdd, Sort
from . import llvm_math

I1, I8, I16, I32, I64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))
F16, F32, F64 = ir.HalfType(), ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
VOID = ir.VoidType()

STORE_TYPES = {"float16": F16, "float32": F32, "float64": F64, "int8": I8, "uint8": I8, "bool": I8,
               "int32": I32, "int64": I64}
VALUE_TYPES = dict(STORE_TYPES, float16=F32, pred=I1)

# libm names per float type; these are resolved in the process at JIT time.
LIBM = {"exp": "exp", "expm1": "expm1", "log": "log", "log1p": "log1p", "log2": "log2",
        "log10": "log10", "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos",
        "atan": "atan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "erf": "erf",
        "tgamma": "tgamma", "lgamma": "lgamma", "pow": "pow", "hypot": "hypot", "atan2": "atan2",
        "round": "round"}
INTRINSICS = {"sqrt": "llvm.sqrt", "abs": "llvm.fabs", "floor": "llvm.floor", "ceil": "llvm.ceil",
              "trunc": "llvm.trunc", "rint": "llvm.rint"}
# A stage is split over worker threads when its estimated scalar operations
# reach this; below it, waking the threads costs more than the work saves.
PARALLEL_MIN_WORK = 1 << 17
LIBM_COST = 20  # rough scalar operations per C library call, for that estimate
CHUNKS_PER_THREAD = 4  # pieces a parallel loop is cut into, per thread, claimed dynamically
# Fast-math flags that may be asked for, in LLVM's order. nnan/ninf are left out: they
# would let LLVM drop the NaN and infinity handling that results depend on.
FASTMATH_FLAGS = ("reassoc", "nsz", "arcp", "contract", "afn")
DEFAULT_FASTMATH = "nsz,arcp,contract,afn"


def fastmath_flags(value=None):
    """Flags for ``value`` (default ``$KILN_FASTMATH``): a comma list, ``none`` or ``fast``."""
    if value is None:
        value = os.environ.get("KILN_FASTMATH", DEFAULT_FASTMATH)
    if isinstance(value, str):
        value = [v.strip() for v in value.replace(" ", ",").split(",") if v.strip()]
    asked = set(value) - {"none"}
    if "fast" in asked:
        asked = (asked - {"fast"}) | set(FASTMATH_FLAGS)
    unknown = asked - set(FASTMATH_FLAGS)
    if unknown:
        raise MXNetError("KILN_FASTMATH: unknown flags %s (allowed: %s, fast, none)"
                         % (sorted(unknown), ", ".join(FASTMATH_FLAGS)))
    return tuple(f for f in FASTMATH_FLAGS if f in asked)


def _is_unsigned(dtype):
    return dtype in E.UNSIGNED


class _FunctionEmitter:
    def __init__(self, module, fn, buffers, num_threads=1, fastmath=(), aligned=()):
        self.module = module
        self.num_threads = num_threads
        # ``contract`` is applied by the emitter itself (``fused_multiply_add``), never left to
        # LLVM: LLVM contracts only within a basic block, so serial and threaded code would differ
        self.fastmath = tuple(fastmath)
        self.contract = "contract" in fastmath
        self.fm = tuple(f for f in fastmath if f != "contract")
        self.aligned = frozenset(id(buf) for buf in aligned)  # buffers whose pointers are ALIGN-aligned
        self.fn = fn
        entry = fn.append_basic_block("entry")
        self.alloca_builder = ir.IRBuilder(entry)
        body = fn.append_basic_block("body")
        self.alloca_builder.branch(body)
        self.alloca_builder.position_at_start(entry)
        self.b = ir.IRBuilder(body)
        self.ptrs = {id(buf): arg for buf, arg in zip(buffers, fn.args)}
        self.env = {}
        self.scopes = [{}]
        self.keep = []
        self.dims_buf = None  # shape-generic kernels: the buffer expr.Dim sizes are read from
        self.dim_values = []

    def bind_dims(self, buf):
        """Load every runtime size of a shape-generic kernel here (the function's start), once."""
        self.dims_buf = buf
        ptr = self.ptrs[id(buf)]
        self.dim_values = [self.b.load(self.b.gep(ptr, [self.i64(k)], inbounds=True, source_etype=I64), typ=I64)
                           for k in range(buf.shape[0])]

    def size(self, v):
        """An i64 value for a size: an int, an LLVM value, or a symbolic (expr) size."""
        if isinstance(v, ir.Value):
            return v
        if isinstance(v, E.Expr):
            return self.emit(v)
        return self.i64(v)

    # ---- helpers ----
    def alloca(self, ty):
        return self.alloca_builder.alloca(ty)

    def i64(self, v):
        return ir.Constant(I64, int(v))

    def declare(self, name, ret, args):
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        return fn

    def loop(self, extent, body, start=0):
        """``for i in range(start, extent)``; bounds are ints or i64 values."""
        b = self.b
        ctr = self.alloca(I64)
        b.store(self.size(start), ctr)
        end = self.size(extent)  # before the loop: a symbolic extent is computed once
        cond_bb = self.fn.append_basic_block("loop")
        body_bb = self.fn.append_basic_block("loop_body")
        end_bb = self.fn.append_basic_block("loop_end")
        b.branch(cond_bb)
        b.position_at_end(cond_bb)
        i = b.load(ctr, typ=I64)
        b.cbranch(b.icmp_signed("<", i, end), body_bb, end_bb)
        b.position_at_end(body_bb)
        self.scopes.append({})
        body(i)
        self.scopes.pop()
        b.store(b.add(i, self.i64(1), flags=("nsw",)), ctr)
        b.branch(cond_bb)
        b.position_at_end(end_bb)

    def nest(self, variables, extents, body):
        if not variables:
            body()
            return

        def inner(i):
            self.env[variables[0].name] = i
            self.nest(variables[1:], extents[1:], body)
        self.loop(extents[0], inner)

    def address(self, buf, index_values):
        b = self.b
        off = self.i64(0)
        stride = 1  # an int while the sizes are static, an i64 value after a symbolic one
        for dim, iv in reversed(list(zip(buf.shape, index_values))):
            if isinstance(stride, int):
                term = iv if stride == 1 else b.mul(iv, self.i64(stride), flags=("nsw",))
            else:
                term = b.mul(iv, stride, flags=("nsw",))
            off = term if (isinstance(off, ir.Constant) and off.constant == 0) else b.add(off, term, flags=("nsw",))
            if isinstance(stride, int) and isinstance(dim, int):
                stride *= dim
            else:
                stride = b.mul(self.size(stride), self.size(dim), flags=("nsw",))
        return b.gep(self.ptrs[id(buf)], [off], inbounds=True, source_etype=STORE_TYPES[buf.dtype])

    def load(self, buf, index_values):
        v = self.b.load(self.address(buf, index_values), typ=STORE_TYPES[buf.dtype])
        return self.b.fpext(v, F32) if buf.dtype == "float16" else v

    def store(self, buf, index_values, value):
        if buf.dtype == "float16":
            value = self.b.fptrunc(value, F16)
        self.b.store(value, self.address(buf, index_values))

    # ---- expressions ----
    def emit(self, e):
        """Emit ``e`` once per loop scope: fused kernels share subexpressions by object."""
        for scope in reversed(self.scopes):
            hit = scope.get(id(e))
            if hit is not None:
                return hit
        value = getattr(self, "_" + type(e).__name__)(e)
        self.scopes[-1][id(e)] = value
        self.keep.append(e)  # ids stay unique while the expression is alive
        return value

    def _Const(self, e):
        ty = VALUE_TYPES[e.dtype]
        if e.dtype == E.PRED:
            return ir.Constant(I1, int(bool(e.value)))
        if E.is_float(e.dtype):
            return ir.Constant(ty, float(e.value))
        return ir.Constant(ty, int(e.value))

    def _Var(self, e):
        return self.env[e.name]

    def _Dim(self, e):
        return self.dim_values[e.index]

    def _Load(self, e):
        return self.load(e.buf, [self.emit(i) for i in e.index])

    def _Cast(self, e):
        return self.convert(self.emit(e.x), e.x.dtype, e.dtype)

    def convert(self, v, src, dst):
        b = self.b
        if src == dst or VALUE_TYPES[src] == VALUE_TYPES[dst] and src != "bool" and dst != "bool":
            return v
        dty = VALUE_TYPES[dst]
        if dst == "bool":
            truth = self.truth(v, src)
            return b.zext(truth, I8)
        if src == E.PRED:
            return b.uitofp(v, dty) if E.is_float(dst) else b.zext(v, dty)
        if E.is_float(src) and E.is_float(dst):
            return b.fpext(v, dty) if dty == F64 else b.fptrunc(v, dty)
        if E.is_float(src):
            return b.fptoui(v, dty) if _is_unsigned(dst) else b.fptosi(v, dty)
        if E.is_float(dst):
            return b.uitofp(v, dty) if _is_unsigned(src) else b.sitofp(v, dty)
        sw, dw = VALUE_TYPES[src].width, dty.width
        if dw < sw:
            return b.trunc(v, dty)
        if dw > sw:
            return b.zext(v, dty) if _is_unsigned(src) else b.sext(v, dty)
        return v

    def truth(self, v, dtype):
        if dtype == E.PRED:
            return v
        if E.is_float(dtype):
            return self.b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))
        return self.b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))

    def _Select(self, e):
        return self.b.select(self.truth(self.emit(e.cond), e.cond.dtype), self.emit(e.a), self.emit(e.b))

    def libm(self, name, args, ty):
        suffix = "f" if ty == F32 else ""
        fn = self.declare(LIBM[name] + suffix, ty, [ty] * len(args))
        # no fast-math flags: with them LLVM rewrites library calls into others (pow ->
        # exp2/log2...) that the JIT may not resolve
        return self.b.call(fn, args)

    def intrinsic(self, name, args, ty):
        fn = self.module.declare_intrinsic(name, [ty])
        return self.b.call(fn, args, fastmath=self.fm)

    def fused_multiply_add(self, e):
        """``a*b + c``, ``a*b - c`` or ``c - a*b`` as ``llvm.fmuladd`` (an FMA where the CPU has one), or None."""
        for k, other in ((0, 1), (1, 0)):
            m = e.args[k]
            if isinstance(m, E.Call) and m.fn == "mul" and m.args[0].dtype == e.args[0].dtype:
                x, y, c = self.emit(m.args[0]), self.emit(m.args[1]), self.emit(e.args[other])
                if e.fn == "sub":
                    if k == 0:
                        c = self.b.fneg(c, flags=self.fm)
                    else:
                        x = self.b.fneg(x, flags=self.fm)
                name = "llvm.fmuladd.f32" if x.type == F32 else "llvm.fmuladd.f64"
                return self.b.call(self.declare(name, x.type, [x.type] * 3), [x, y, c], fastmath=self.fm)
        return None

    def _Call(self, e):
        b = self.b
        fn, dtype = e.fn, e.args[0].dtype
        isf = E.is_float(dtype)
        if isf and self.contract and fn in ("add", "sub"):
            fused = self.fused_multiply_add(e)
            if fused is not None:
                return fused
        args = [self.emit(a) for a in e.args]
        uns = _is_unsigned(dtype)
        if fn in E.COMPARISONS:
            op = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[fn]
            if isf:
                return b.fcmp_unordered(op, *args) if fn == "ne" else b.fcmp_ordered(op, *args)
            return (b.icmp_unsigned if uns else b.icmp_signed)(op, *args)
        if fn in ("and", "or", "xor"):
            return getattr(b, fn + "_")(*args) if fn != "xor" else b.xor(*args)
        if fn in E.BIT_FUNCS:  # integer bit operations (the random generator)
            if isf:
                raise NotImplementedError("LLVM backend: %s on %s" % (fn, dtype))
            return {"bitand": b.and_, "bitor": b.or_, "bitxor": b.xor, "shl": b.shl, "lshr": b.lshr}[fn](*args)
        if fn == "not":
            return b.not_(self.truth(args[0], dtype))
        fm = self.fm
        if fn == "add":
            return b.fadd(*args, flags=fm) if isf else b.add(*args)
        if fn == "sub":
            return b.fsub(*args, flags=fm) if isf else b.sub(*args)
        if fn == "mul":
            return b.fmul(*args, flags=fm) if isf else b.mul(*args)
        if fn == "neg":
            return b.fneg(args[0], flags=fm) if isf else b.sub(ir.Constant(args[0].type, 0), args[0])
        if fn in ("div", "fmod"):
            if isf:
                return b.fdiv(*args, flags=fm) if fn == "div" else b.frem(*args, flags=fm)
            return self.int_divide(fn, args, uns)
        if fn in ("max", "min"):
            x, y = args
            op = ">" if fn == "max" else "<"
            c = b.fcmp_ordered(op, x, y) if isf else (b.icmp_unsigned if uns else b.icmp_signed)(op, x, y)
            return b.select(c, x, y)
        if fn == "abs" and not isf:
            if uns:
                return args[0]
            neg = b.sub(ir.Constant(args[0].type, 0), args[0])
            return b.select(b.icmp_signed("<", args[0], ir.Constant(args[0].type, 0)), neg, args[0])
        if fn in ("floor", "ceil", "trunc", "round", "rint") and not isf:
            return args[0]
        if not isf:  # float-only function on integers: compute in float64 and convert back
            conv = [self.convert(a, dtype, "float64") for a in args]
            return self.convert(self.float_fn(fn, conv, F64), "float64", dtype)
        return self.float_fn(fn, args, VALUE_TYPES[dtype])

    def float_fn(self, fn, args, ty):
        if fn in INTRINSICS:
            return self.intrinsic(INTRINSICS[fn], args, ty)
        if ty == F32 and llvm_math.enabled(fn):  # inline, so loops over it vectorise
            return llvm_math.emit(self.b, fn, args)
        if fn in LIBM:
            return self.libm(fn, args, ty)
        raise NotImplementedError("LLVM backend: scalar function %r" % fn)

    def int_divide(self, fn, args, uns):
        """a / b and a % b on integers with b == 0 giving 0 and INT_MIN / -1 not trapping."""
        b = self.b
        x, y = args
        zero, one = ir.Constant(y.type, 0), ir.Constant(y.type, 1)
        is_zero = b.icmp_unsigned("==", y, zero)
        safe = b.select(is_zero, one, y)
        if uns:
            q = b.udiv(x, safe) if fn == "div" else b.urem(x, safe)
        else:
            minus1 = ir.Constant(y.type, -1)
            is_m1 = b.icmp_signed("==", safe, minus1)
            safe = b.select(is_m1, one, safe)
            q = b.sdiv(x, safe) if fn == "div" else b.srem(x, safe)
            special = b.sub(zero, x) if fn == "div" else zero
            q = b.select(is_m1, special, q)
        return b.select(is_zero, zero, q)

    def _Reduce(self, e):
        b = self.b
        ty = VALUE_TYPES[e.body.dtype]
        isf = E.is_float(e.body.dtype)
        uns = _is_unsigned(e.body.dtype)
        acc = self.alloca(ty)
        arg = e.kind in ("argmax", "argmin")
        if e.kind == "sum":
            init = ir.Constant(ty, 0.0 if isf else 0)
        elif e.kind == "prod":
            init = ir.Constant(ty, 1.0 if isf else 1)
        else:
            big = e.kind in ("min", "argmin")
            if isf:
                init = ir.Constant(ty, float("inf") if big else float("-inf"))
            else:
                bits = ty.width
                if uns:
                    init = ir.Constant(ty, (1 << bits) - 1 if big else 0)
                else:
                    init = ir.Constant(ty, (1 << (bits - 1)) - 1 if big else -(1 << (bits - 1)))
        b.store(init, acc)
        pos = None
        if arg:
            pos = self.alloca(I64)
            b.store(self.i64(0), pos)
            first = self.alloca(I1)
            b.store(ir.Constant(I1, 1), first)

        def body():
            v = self.emit(e.body)
            cur = b.load(acc, typ=ty)
            if e.kind == "sum":
                b.store(b.fadd(cur, v, flags=self.fm) if isf else b.add(cur, v), acc)
            elif e.kind == "prod":
                b.store(b.fmul(cur, v, flags=self.fm) if isf else b.mul(cur, v), acc)
            else:
                op = ">" if e.kind in ("max", "argmax") else "<"
                better = b.fcmp_ordered(op, v, cur) if isf else (b.icmp_unsigned if uns else b.icmp_signed)(op, v, cur)
                if arg:
                    better = b.or_(better, b.load(first, typ=I1))
                    b.store(ir.Constant(I1, 0), first)
                    flat = self.i64(0)
                    for var, ext in zip(e.rvars, e.extents):
                        flat = b.add(b.mul(flat, self.size(ext)), self.env[var.name])
                    b.store(b.select(better, flat, b.load(pos, typ=I64)), pos)
                b.store(b.select(better, v, cur), acc)
        self.nest(list(e.rvars), list(e.extents), body)
        if arg:
            return self.convert(b.load(pos, typ=I64), "int64", e.dtype)
        return b.load(acc, typ=ty)

    # ---- stages ----
    def stage(self, st):
        if isinstance(st, Compute):
            out = st.out
            self.parallel_nest(list(st.axes), list(out.shape), work_per_element(st.body),
                               lambda em: em.store(out, [em.env[a.name] for a in st.axes], em.emit(st.body)))
        elif isinstance(st, ScatterAdd):
            out = st.out
            zero_axes = [E.Var("z%d" % k) for k in range(out.ndim)]
            zero = ir.Constant(VALUE_TYPES[out.dtype], 0.0 if E.is_float(out.dtype) else 0)
            self.parallel_nest(zero_axes, list(out.shape), 1,
                               lambda em: em.store(out, [em.env[a.name] for a in zero_axes], zero))

            def add():  # serial: two source positions may hit the same element
                idx = [self.emit(t) for t in st.target]
                cur = self.load(out, idx)
                v = self.emit(st.value)
                self.store(out, idx, self.b.fadd(cur, v, flags=self.fm) if E.is_float(out.dtype) else self.b.add(cur, v))
            self.nest(list(st.axes), list(st.extents), add)
        elif isinstance(st, Gemm):
            from .llvm_gemm import emit_gemm  # imports this module
            emit_gemm(self, st)
        elif isinstance(st, Sort):
            from .llvm_sort import emit_sort  # imports this module
            emit_sort(self, st)
        elif isinstance(st, CTC):
            from .llvm_ctc import emit_ctc  # imports this module
            emit_ctc(self, st)
        else:
            raise TypeError("unknown stage %r" % st)

    def parallel_nest(self, axes, extents, cost, element):
        """A loop nest whose iterations write disjoint elements, split over worker threads.

        ``element(emitter)`` emits one iteration; ``cost`` is its estimated
        scalar operations. The first axis longer than 1 is cut into pieces
        that worker threads claim; small nests stay serial because waking the
        threads would cost more than the work.
        """
        split = next((k for k, n in enumerate(extents) if not isinstance(n, int) or n > 1), None)
        static = all(isinstance(n, int) for n in extents) and isinstance(cost, int)
        if split is None or (static and not self.worth_threads(math.prod(extents) * max(cost, 1))) \
                or (not static and (self.num_threads <= 1 or 0 in [n for n in extents if isinstance(n, int)])):
            self.nest(axes, extents, lambda: element(self))
            return

        def chunk(em, begin, end):
            for a in axes[:split]:
                em.env[a.name] = em.i64(0)

            def outer(i):
                em.env[axes[split].name] = i
                em.nest(axes[split + 1:], extents[split + 1:], lambda: element(em))
            em.loop(end, outer, start=begin)
        if static:
            self.split_over_threads(extents[split], chunk)
            return
        # symbolic sizes: decide at run time, with the same threshold, whether threads pay off
        b = self.b
        work = self.size(cost)
        work = b.select(b.icmp_signed("<", work, self.i64(1)), self.i64(1), work)
        for n in extents:
            work = b.mul(work, self.size(n))
        with b.if_else(b.icmp_signed(">=", work, self.i64(PARALLEL_MIN_WORK))) as (threaded, serial):
            with threaded:
                self.scopes.append({})
                self.split_over_threads(self.size(extents[split]), chunk)
                self.scopes.pop()
            with serial:
                self.scopes.append({})
                self.nest(axes, extents, lambda: element(self))
                self.scopes.pop()

    def unit_helper(self, buffers, suffix):
        """A new internal function ``void(buffer pointers..., i64 lo, i64 hi)`` for a stage
        written by hand (GEMM, sort, CTC) and the emitter for its body; ``parallel_range``
        then calls it over the stage's work units."""
        name = self.module.get_unique_name(self.fn.name + suffix)
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR] * len(buffers) + [I64, I64]), name)
        fn.linkage = "internal"
        return fn, _FunctionEmitter(self.module, fn, buffers, fastmath=self.fastmath)

    def parallel_range(self, fn, buffers, extent, work):
        """Call ``fn(buffer pointers..., i64 lo, i64 hi)`` over [0, extent), split over threads.

        For helpers (such as a blocked GEMM) whose units in [lo, hi) write
        disjoint outputs; ``work`` is the estimated scalar operations in all.
        """
        def chunk(em, begin, end):
            em.b.call(fn, [em.ptrs[id(buf)] for buf in buffers] + [begin, end])
        if isinstance(extent, int) and isinstance(work, int):
            if extent > 1 and self.worth_threads(work):
                self.split_over_threads(extent, chunk)
            else:
                chunk(self, self.i64(0), self.i64(extent))
            return
        # run-time sizes: the same decision, taken at run time
        b = self.b
        n = self.size(extent)
        if self.num_threads <= 1:
            chunk(self, self.i64(0), n)
            return
        wide = b.and_(b.icmp_signed(">", n, self.i64(1)),
                      b.icmp_signed(">=", self.size(work), self.i64(PARALLEL_MIN_WORK)))
        with b.if_else(wide) as (threaded, serial):
            with threaded:
                self.scopes.append({})
                self.split_over_threads_dynamic(n, chunk)
                self.scopes.pop()
            with serial:
                chunk(self, self.i64(0), n)

    def worth_threads(self, work):
        return self.num_threads > 1 and work >= PARALLEL_MIN_WORK

    def split_over_threads(self, extent, chunk):
        """Run ``chunk(emitter, begin, end)`` over pieces of [0, extent) on a ``GOMP_parallel`` team.

        The chunks are emitted into an outlined function that receives this
        kernel's buffer pointers and a shared counter in an array. Threads
        claim pieces from the counter (an atomic add) rather than a fixed
        share each, so a thread that the OS schedules late on a busy machine
        finds the work done instead of holding everyone at the join.
        """
        keys = list(self.ptrs)
        if not isinstance(extent, int):
            self.split_over_threads_dynamic(self.size(extent), chunk)
            return
        pieces = min(extent, self.num_threads * CHUNKS_PER_THREAD)
        fn = self._outlined_worker(keys, lambda sub, shared: (sub.i64(extent), sub.i64(pieces)), chunk)
        counter = self.alloca(I64)
        self.b.store(self.i64(0), counter)
        self._launch_team(fn, keys, counter, ir.Constant(I32, min(self.num_threads, pieces)))

    def split_over_threads_dynamic(self, extent, chunk):
        """``split_over_threads`` for an extent known only at run time (an i64 value).

        The outlined function reads the extent and the piece count from the
        counter array (``[counter, extent, pieces]``) instead of constants.
        """
        keys = list(self.ptrs)

        def bounds(sub, shared):
            b = sub.b
            return tuple(b.load(b.gep(shared, [sub.i64(j)], inbounds=True, source_etype=I64), typ=I64)
                         for j in (1, 2))
        fn = self._outlined_worker(keys, bounds, chunk)
        mb = self.b
        most = self.i64(self.num_threads * CHUNKS_PER_THREAD)
        count = mb.select(mb.icmp_signed("<", extent, most), extent, most)
        count = mb.select(mb.icmp_signed("<", count, self.i64(1)), self.i64(1), count)
        shared_mem = self.alloca_builder.alloca(I64, size=3)
        for j, value in enumerate((self.i64(0), extent, count)):
            mb.store(value, mb.gep(shared_mem, [self.i64(j)], inbounds=True, source_etype=I64))
        nthreads = self.i64(self.num_threads)
        self._launch_team(fn, keys, shared_mem,
                          mb.trunc(mb.select(mb.icmp_signed("<", count, nthreads), count, nthreads), I32))

    def _outlined_worker(self, keys, bounds, chunk):
        """The function every libgomp thread runs: claim pieces of [0, n) from the shared
        counter until none is left. ``bounds(sub, shared)`` gives (n, pieces) inside it."""
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR]), self.module.get_unique_name(self.fn.name + ".par"))
        fn.linkage = "internal"
        sub = _FunctionEmitter(self.module, fn, [], self.num_threads, self.fastmath)
        b = sub.b
        slots = [b.load(b.gep(fn.args[0], [sub.i64(j)], inbounds=True, source_etype=PTR), typ=PTR)
                 for j in range(len(keys) + 1)]
        for key, ptr in zip(keys, slots):
            if key in self.aligned:
                mark_aligned(self.module, ptr)
        sub.ptrs = dict(zip(keys, slots))
        if self.dims_buf is not None:
            sub.bind_dims(self.dims_buf)
        shared = slots[-1]
        n, pieces = bounds(sub, shared)
        claim_bb, work_bb, done_bb = (fn.append_basic_block(name) for name in ("claim", "piece", "done"))
        b.branch(claim_bb)
        b.position_at_end(claim_bb)
        piece = b.atomic_rmw("add", shared, sub.i64(1), "monotonic")
        b.cbranch(b.icmp_signed("<", piece, pieces), work_bb, done_bb)
        b.position_at_end(work_bb)
        begin = b.sdiv(b.mul(n, piece, flags=("nsw",)), pieces)
        end = b.sdiv(b.mul(n, b.add(piece, sub.i64(1), flags=("nsw",)), flags=("nsw",)), pieces)
        sub.scopes.append({})  # values of one piece do not dominate the next claim
        chunk(sub, begin, end)
        sub.scopes.pop()
        b.branch(claim_bb)
        b.position_at_end(done_bb)
        b.ret_void()
        return fn

    def _launch_team(self, fn, keys, shared, threads):
        """``GOMP_parallel(fn, [buffer pointers..., shared], threads)`` from this function."""
        data = self.alloca_builder.alloca(PTR, size=len(keys) + 1)
        for j, value in enumerate([self.ptrs[k] for k in keys] + [shared]):
            self.b.store(value, self.b.gep(data, [self.i64(j)], inbounds=True, source_etype=PTR))
        gomp = self.declare("GOMP_parallel", VOID, [PTR, PTR, I32, I32])
        self.b.call(gomp, [fn, data, threads, ir.Constant(I32, 0)])


def work_per_element(e):
    """Rough count of scalar operations to evaluate ``e`` once (shared subtrees once)."""
    seen = set()

    def go(x):
        if id(x) in seen or isinstance(x, (E.Const, E.Var)):
            return 0
        seen.add(id(x))
        if isinstance(x, E.Reduce):
            return math.prod(x.extents) * (go(x.body) + 1)
        if isinstance(x, E.Load):
            return 1 + sum(go(i) for i in x.index)
        if isinstance(x, E.Call):
            return (LIBM_COST if x.fn in LIBM else 1) + sum(go(a) for a in x.args)
        if isinstance(x, E.Select):
            return 1 + go(x.cond) + go(x.a) + go(x.b)
        if isinstance(x, E.Cast):
            return 1 + go(x.x)
        return 1
    return go(e)


def mark_aligned(module, load):
    """State that the pointer ``load`` reads is ALIGN-aligned (``!align`` survives inlining)."""
    load.set_metadata("align", module.add_metadata([ir.Constant(I64, ALIGN)]))


def _aligned_region(region):
    return region[0] == "arena" and region[1] % ALIGN == 0


def param_facts(kernels, entries, regions):
    """Per kernel name, (noalias parameter indices, aligned parameter indices).

    ``regions[slot]`` is ``("arena", begin, end)`` for arena memory or
    ``("external", root slot)`` for caller arrays (any two external slots may be
    one array). A parameter is ``noalias`` when, in every launch, it is disjoint
    from every other parameter that it or the other writes; ``align`` when it is
    arena memory at an ALIGN-multiple offset in every launch (the runtime aligns the arena).
    """
    n_inputs = {k.name: len(k.inputs) for k in kernels}
    sizes = {k.name: len(k.params) for k in kernels}
    noalias = {k: set(range(n)) for k, n in sizes.items()}
    aligned = {k: set(range(n)) for k, n in sizes.items()}

    def disjoint(a, b):
        if a[0] == "arena" and b[0] == "arena":
            return a[2] <= b[1] or b[2] <= a[1]
        return a[0] != b[0]

    for calls in entries.values():
        for kname, slots in calls:
            regs = [regions[s] for s in slots]
            for i, r in enumerate(regs):
                if not _aligned_region(r):
                    aligned[kname].discard(i)
                if any(j != i and (i >= n_inputs[kname] or j >= n_inputs[kname]) and not disjoint(r, q)
                       for j, q in enumerate(regs)):
                    noalias[kname].discard(i)
    return {k: (noalias[k], aligned[k]) for k in sizes}


def emit_kernel(module, kernel, num_threads=1, fastmath=(), noalias=(), aligned=()):
    params = kernel.params
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR] * len(params)), kernel.name)
    fn.linkage = "internal"
    # Kernels stay separate functions: inlined into the entry, hundreds of kernels (an
    # unrolled RNN) make one huge function whose optimisation time grows superlinearly
    # (52 s -> 3.7 s for a 2-layer bidirectional LSTM at T=35), for no run-time gain.
    fn.attributes.add("noinline")
    for i, arg in enumerate(fn.args):
        if i in noalias:
            arg.add_attribute("noalias")
        if i in aligned:
            arg.attributes.align = ALIGN
    em = _FunctionEmitter(module, fn, params, num_threads, fastmath, [params[i] for i in aligned])
    if getattr(kernel, "dims", None) is not None:
        em.bind_dims(kernel.dims)
    for st in kernel.stages:
        em.stage(st)
    em.b.ret_void()
    return fn


def emit_program(name, kernels, entries, num_threads=None, fastmath=None, regions=None):
    """LLVM IR text for ``kernels`` and entry functions.

    entries: ``{entry name: [(kernel name, [slot index per kernel param])]}``.
    num_threads: worker threads large stages may use (default: ``KILN_NUM_THREADS``
    when libgomp is available, else 1, which gives fully serial code).
    fastmath: flags for ``fastmath_flags`` (default ``$KILN_FASTMATH``).
    regions: the memory of each slot, for ``param_facts``; without it nothing
    is claimed about aliasing or alignment.
    """
    if num_threads is None:
        num_threads = parallel_threads()
    fm = fastmath_flags(fastmath)
    facts = param_facts(kernels, entries, regions) if regions is not None else {}
    module = ir.Module(name=name)
    fns = {k.name: emit_kernel(module, k, num_threads, fm, *facts.get(k.name, ((), ()))) for k in kernels}
    for entry, calls in entries.items():
        fn = ir.Function(module, ir.FunctionType(VOID, [PTR]), entry)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        table = fn.args[0]
        for kname, slots in calls:
            ptrs = []
            for s in slots:
                ptr = b.load(b.gep(table, [ir.Constant(I64, s)], inbounds=True, source_etype=PTR), typ=PTR)
                if regions is not None and _aligned_region(regions[s]):
                    mark_aligned(module, ptr)
                ptrs.append(ptr)
            b.call(fns[kname], ptrs)
        b.ret_void()
    return str(module)
