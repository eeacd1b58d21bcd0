"""Kernel IR -> CUDA C source, compiled later with NVRTC (``runtime/nvrtc.py``).

Every ``Kernel`` the LLVM backend emits renders here too: each stage becomes
one or more ``extern "C" __global__`` functions taking the kernel's buffer
pointers in ``kernel.params`` order, and a ``CudaKernel`` lists them with
how to launch them (``Launch``: plain data, so the runtime needs no compiler
import). Stages run as separate launches in order on one stream, since a
later stage may read what an earlier one wrote anywhere in a buffer.

Expression semantics follow ``codegen/llvm.py``: float16 is stored as 16-bit
bits and computed in float (conversions by the PTX ``cvt`` instruction, so
no CUDA header is needed: NVRTC wheels ship none), integer add/sub/mul wrap,
integer division and remainder give 0 for a zero divisor and never trap on
``INT_MIN / -1``, float max/min/comparisons keep LLVM's ordered/unordered
choice, and reductions keep LLVM's NaN behaviour. Float functions call CUDA's
libdevice (C semantics, the same as LLVM's ``KILN_LIBM=1``; the LLVM inline
float32 sin/cos give NaN beyond 2**25 where these give the true value).
All indices are 64-bit and every loop is grid- or block-stride, so any size
runs on any grid.
"""
from __future__ import annotations

import logging
import math
import re
import struct
from dataclasses import dataclass, field

from ...runtime.cuda_program import MAX_GRID, Launch  # the launch records the runtime reads
from .. import expr as E
from ..kernel import CTC, Compute, Gemm, ScatterAdd, Sort

log = logging.getLogger(__name__)

BLOCK = 256  # threads per block of elementwise and reduction launches
BLOCK_REDUCE_MIN = 128  # static reduction extents from which a block cooperates on one output

VALUE_C = {"float16": "float", "float32": "float", "float64": "double", "int8": "signed char",
           "uint8": "unsigned char", "bool": "unsigned char", "int32": "int", "int64": "long long",
           E.PRED: "bool"}
STORE_C = dict(VALUE_C, float16="unsigned short")
UNSIGNED_OF = {"signed char": "unsigned char", "unsigned char": "unsigned char", "int": "unsigned int",
               "long long": "unsigned long long"}
WIDTH = {"int8": 8, "uint8": 8, "bool": 8, "int32": 32, "int64": 64}

# float function -> CUDA math function for double (float adds the f suffix)
MATH = {"sqrt": "sqrt", "abs": "fabs", "exp": "exp", "expm1": "expm1", "log": "log", "log1p": "log1p",
        "log2": "log2", "log10": "log10", "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin",
        "acos": "acos", "atan": "atan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "floor": "floor",
        "ceil": "ceil", "round": "round", "rint": "rint", "trunc": "trunc", "erf": "erf",
        "tgamma": "tgamma", "lgamma": "lgamma", "pow": "pow", "hypot": "hypot", "atan2": "atan2",
        "fmod": "fmod"}

PRELUDE = r"""#ifndef KILN_CUDA_PRELUDE
#define KILN_CUDA_PRELUDE
/* float16 storage: the PTX conversions cuda_fp16.h wraps (NVRTC wheels ship no headers) */
__device__ __forceinline__ float kiln_h2f(unsigned short h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ unsigned short kiln_f2h(float f) {
  unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
/* integer division and remainder: b == 0 gives 0, INT_MIN / -1 wraps instead of trapping */
#define KILN_SDIV(T, U) \
  __device__ __forceinline__ T kiln_div(T a, T b) { \
    return b == 0 ? (T)0 : b == (T)-1 ? (T)(U)(0 - (U)a) : (T)(a / b); } \
  __device__ __forceinline__ T kiln_rem(T a, T b) { return (b == 0 || b == (T)-1) ? (T)0 : (T)(a % b); }
KILN_SDIV(signed char, unsigned char)
KILN_SDIV(int, unsigned int)
KILN_SDIV(long long, unsigned long long)
__device__ __forceinline__ unsigned char kiln_div(unsigned char a, unsigned char b) {
  return b == 0 ? (unsigned char)0 : (unsigned char)(a / b); }
__device__ __forceinline__ unsigned char kiln_rem(unsigned char a, unsigned char b) {
  return b == 0 ? (unsigned char)0 : (unsigned char)(a % b); }
#endif
"""


@dataclass
class CudaKernel:
    """The CUDA C of one kernel: ``params`` are the buffer names in pointer order (the
    ``dims`` buffer among them for shape-generic kernels, named by ``dims_param``) and
    ``launches`` run in order on one stream."""

    name: str
    source: str
    params: list
    launches: list = field(default_factory=list)
    dims_param: int | None = None

    def functions(self):
        return [l.function for l in self.launches]

    def launch_sizes(self, dims=None):
        """[(function, grid, block, shared bytes)] in launch order, for ``dims`` (the values of
        the dims buffer of a shape-generic kernel)."""
        return [(l.function, l.grid(dims), l.block, l.shared_bytes) for l in self.launches]


def c_name(name):
    return re.sub(r"\W", "_", name)


def float_literal(value, dtype):
    """An exact C literal for a float constant, as its value type rounds it (float16 is float)."""
    v = float(value)
    single = dtype in ("float16", "float32")
    if single:
        v = struct.unpack("<f", struct.pack("<f", v))[0] if math.isfinite(v) and abs(v) < 3.5e38 else v
        if math.isfinite(v) and abs(v) > 3.4028234663852886e38:
            v = math.copysign(math.inf, v)
    if math.isnan(v):
        return "__int_as_float(0x7fc00000)" if single else "__longlong_as_double(0x7ff8000000000000LL)"
    if math.isinf(v):
        sign = "-" if v < 0 else ""
        return sign + ("__int_as_float(0x7f800000)" if single else "__longlong_as_double(0x7ff0000000000000LL)")
    return v.hex() + ("f" if single else "")


def int_literal(value, dtype):
    v = int(value)
    if dtype in ("int64",):
        if v == -(1 << 63):
            return "(-9223372036854775807LL - 1LL)"
        return "%dLL" % v
    if dtype == "int32":
        if v == -(1 << 31):
            return "(-2147483647 - 1)"
        return "%d" % v
    return "((%s)%d)" % (VALUE_C[dtype], v)


def type_min_max(dtype, big):
    """The initial value of a min (``big``) or max reduction, as C text."""
    if E.is_float(dtype):
        return float_literal(math.inf if big else -math.inf, dtype)
    bits = WIDTH[dtype]
    if dtype in E.UNSIGNED:
        return int_literal((1 << bits) - 1 if big else 0, dtype)
    return int_literal((1 << (bits - 1)) - 1 if big else -(1 << (bits - 1)), dtype)


class Code:
    """Lines of C with indentation."""

    def __init__(self):
        self.lines = []
        self.depth = 1

    def __call__(self, line):
        self.lines.append("  " * self.depth + line)

    def open(self, line):
        self(line + " {")
        self.depth += 1

    def close(self, tail=""):
        self.depth -= 1
        self("}" + tail)

    def text(self):
        return "\n".join(self.lines)


class Emitter:
    """Renders expressions into C statements; like the LLVM emitter, each expression object
    is evaluated once per loop scope (fused kernels share subexpressions by object)."""

    def __init__(self, code, ptrs, dim_names=None):
        self.code = code
        self.ptrs = ptrs  # id(buffer) -> C pointer name
        self.dim_names = dim_names or {}
        self.env = {}
        self.scopes = [{}]
        self.keep = []
        self.counter = 0
        self.block_reduce = None  # set by a block-cooperative Compute: id(Reduce) -> handler

    # ---- small helpers ----
    def tmp(self, prefix="t"):
        self.counter += 1
        return "%s%d" % (prefix, self.counter)

    def let(self, ctype, value, prefix="t"):
        name = self.tmp(prefix)
        self.code("const %s %s = %s;" % (ctype, name, value))
        return name

    def push(self):
        self.scopes.append({})

    def pop(self):
        self.scopes.pop()

    def size(self, s):
        """C text of a size: an int, or a symbolic size (``expr.Dim`` expression)."""
        if isinstance(s, E.Expr):
            return self.emit(s)
        return "%dLL" % int(s)

    def offset(self, buf, index):
        """Row-major element offset of ``index`` (C texts) in ``buf``, int64."""
        terms, stride = [], 1
        for dim, iv in reversed(list(zip(buf.shape, index))):
            if isinstance(stride, int):
                terms.append(iv if stride == 1 else "%s * %dLL" % (iv, stride))
            else:
                terms.append("%s * %s" % (iv, stride))
            if isinstance(stride, int) and isinstance(dim, int):
                stride *= dim
            else:
                stride = "(%s * %s)" % (stride if isinstance(stride, str) else "%dLL" % stride, self.size(dim))
        return " + ".join(reversed(terms)) if terms else "0LL"

    def load(self, buf, index):
        ref = "%s[%s]" % (self.ptrs[id(buf)], self.offset(buf, index))
        return "kiln_h2f(%s)" % ref if buf.dtype == "float16" else ref

    def store(self, buf, index, value):
        if buf.dtype == "float16":
            value = "kiln_f2h(%s)" % value
        self.code("%s[%s] = %s;" % (self.ptrs[id(buf)], self.offset(buf, index), value))

    # ---- expressions ----
    def emit(self, e):
        for scope in reversed(self.scopes):
            hit = scope.get(id(e))
            if hit is not None:
                return hit
        value = getattr(self, "_" + type(e).__name__)(e)
        self.scopes[-1][id(e)] = value
        self.keep.append(e)  # ids stay unique while the expression is alive
        return value

    def _Const(self, e):
        if e.dtype == E.PRED:
            return "true" if e.value else "false"
        if E.is_float(e.dtype):
            return float_literal(e.value, e.dtype)
        return int_literal(e.value, e.dtype)

    def _Var(self, e):
        return self.env[e.name]

    def _Dim(self, e):
        return self.dim_names[e.index]

    def _Load(self, e):
        index = [self.emit(i) for i in e.index]
        return self.let(VALUE_C[e.dtype], self.load(e.buf, index), "v")

    def _Cast(self, e):
        return self.let(VALUE_C[e.dtype], self.convert(self.emit(e.x), e.x.dtype, e.dtype))

    def convert(self, v, src, dst):
        """``v`` (C text of dtype ``src``) as ``dst``, with LLVM's conversion semantics."""
        if src == dst or VALUE_C[src] == VALUE_C[dst] and src != "bool" and dst != "bool":
            return v
        if dst == "bool":
            return "(unsigned char)(%s)" % self.truth(v, src)
        return "(%s)(%s)" % (VALUE_C[dst], v)

    def truth(self, v, dtype):
        if dtype == E.PRED:
            return v
        return "(%s != 0)" % v  # unordered for floats: NaN is true, as LLVM's fcmp une

    def _Select(self, e):
        c = self.truth(self.emit(e.cond), e.cond.dtype)
        a, b = self.emit(e.a), self.emit(e.b)
        return self.let(VALUE_C[e.dtype], "%s ? %s : %s" % (c, a, b))

    def _Call(self, e):
        fn, dtype = e.fn, e.args[0].dtype
        args = [self.emit(a) for a in e.args]
        isf = E.is_float(dtype)
        ct = VALUE_C[dtype]
        if fn in E.COMPARISONS:
            op = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[fn]
            a, b = (self.convert(x, dtype, "int32") if dtype in ("int8", "uint8", "bool") else x for x in args)
            return self.let("bool", "%s %s %s" % (a, op, b), "p")
        if fn in ("and", "or", "xor"):
            a, b = (self.truth(x, y.dtype) for x, y in zip(args, e.args))
            return self.let("bool", "%s %s %s" % (a, {"and": "&&", "or": "||", "xor": "!="}[fn], b), "p")
        if fn == "not":
            return self.let("bool", "!%s" % self.truth(args[0], dtype), "p")
        if fn in E.BIT_FUNCS:
            if isf:
                raise NotImplementedError("CUDA backend: %s on %s" % (fn, dtype))
            u = UNSIGNED_OF[ct]
            a, b = ("(%s)%s" % (u, x) for x in args)
            op = {"bitand": "&", "bitor": "|", "bitxor": "^", "shl": "<<", "lshr": ">>"}[fn]
            return self.let(ct, "(%s)(%s)(%s %s %s)" % (ct, u, a, op, b))
        if not isf:
            return self.int_call(fn, args, dtype)
        suffix = "f" if ct == "float" else ""
        if fn == "add":
            return self.let(ct, "%s + %s" % tuple(args))
        if fn == "sub":
            return self.let(ct, "%s - %s" % tuple(args))
        if fn == "mul":
            return self.let(ct, "%s * %s" % tuple(args))
        if fn == "div":
            return self.let(ct, "%s / %s" % tuple(args))
        if fn == "neg":
            return self.let(ct, "-%s" % args[0])
        if fn == "max":
            return self.let(ct, "%s > %s ? %s : %s" % (args[0], args[1], args[0], args[1]))
        if fn == "min":
            return self.let(ct, "%s < %s ? %s : %s" % (args[0], args[1], args[0], args[1]))
        if fn in MATH:
            return self.let(ct, "%s%s(%s)" % (MATH[fn], suffix, ", ".join(args)))
        raise NotImplementedError("CUDA backend: scalar function %r" % fn)

    def int_call(self, fn, args, dtype):
        """Integer arithmetic: wrapping add/sub/mul (through unsigned), guarded div/rem."""
        ct = VALUE_C[dtype]
        u = UNSIGNED_OF[ct]
        uns = dtype in E.UNSIGNED
        if fn in ("add", "sub", "mul"):
            op = {"add": "+", "sub": "-", "mul": "*"}[fn]
            return self.let(ct, "(%s)((%s)%s %s (%s)%s)" % (ct, u, args[0], op, u, args[1]))
        if fn == "neg":
            return self.let(ct, "(%s)(0u - (%s)%s)" % (ct, u, args[0]))
        if fn in ("div", "fmod"):
            divisor = self.const_of(args[1])
            if divisor is not None and divisor > 0 and dtype in ("int32", "int64"):  # index arithmetic
                return self.let(ct, "%s %s %s" % (args[0], "/" if fn == "div" else "%", args[1]))
            name = "kiln_div" if fn == "div" else "kiln_rem"
            return self.let(ct, "%s((%s)%s, (%s)%s)" % (name, ct, args[0], ct, args[1]))
        if fn in ("max", "min"):
            op = ">" if fn == "max" else "<"
            return self.let(ct, "%s %s %s ? %s : %s" % (args[0], op, args[1], args[0], args[1]))
        if fn == "abs":
            if uns:
                return args[0]
            return self.let(ct, "%s < 0 ? (%s)(0u - (%s)%s) : %s" % (args[0], ct, u, args[0], args[0]))
        if fn in ("floor", "ceil", "trunc", "round", "rint"):
            return args[0]
        if fn in MATH:  # float-only function on integers: compute in double and convert back
            conv = ", ".join("(double)%s" % a for a in args)
            return self.let(ct, "(%s)%s(%s)" % (ct, MATH[fn], conv))
        raise NotImplementedError("CUDA backend: scalar function %r on %s" % (fn, dtype))

    @staticmethod
    def const_of(text):
        """The value of an integer literal rendered by ``int_literal``, else None."""
        m = re.fullmatch(r"\(*(?:\([a-z ]+\))?(-?\d+)(?:LL)?\)*", text)
        return int(m.group(1)) if m else None

    # ---- reductions ----
    def reduce_init(self, e):
        dtype = e.body.dtype
        if e.kind == "sum":
            return float_literal(0.0, dtype) if E.is_float(dtype) else int_literal(0, dtype)
        if e.kind == "prod":
            return float_literal(1.0, dtype) if E.is_float(dtype) else int_literal(1, dtype)
        return type_min_max(dtype, e.kind in ("min", "argmin"))

    def combine(self, kind, acc, v, dtype):
        """C text of acc (op) v for sum/prod (wrapping on integers)."""
        ct = VALUE_C[dtype]
        op = "+" if kind == "sum" else "*"
        if E.is_float(dtype):
            return "%s %s %s" % (acc, op, v)
        u = UNSIGNED_OF[ct]
        return "(%s)((%s)%s %s (%s)%s)" % (ct, u, acc, op, u, v)

    def _Reduce(self, e):
        if self.block_reduce is not None and id(e) in self.block_reduce:
            return self.block_reduce[id(e)](e)
        return self.serial_reduce(e)

    def serial_reduce(self, e):
        """One thread folds the whole extent, in LLVM's order and with its NaN rules."""
        c = self.code
        ct = VALUE_C[e.body.dtype]
        acc = self.tmp("acc")
        c("%s %s = %s;" % (ct, acc, self.reduce_init(e)))
        arg = e.kind in ("argmax", "argmin")
        pos = first = None
        if arg:
            pos, first = self.tmp("pos"), self.tmp("first")
            c("long long %s = 0;" % pos)
            c("bool %s = true;" % first)
        extents = [self.size(x) for x in e.extents]
        depth = 0
        for var, ext in zip(e.rvars, extents):
            name = self.tmp("r")
            c.open("for (long long %s = 0; %s < %s; ++%s)" % (name, name, ext, name))
            self.env[var.name] = name
            self.push()
            depth += 1
        v = self.emit(e.body)
        if e.kind in ("sum", "prod"):
            c("%s = %s;" % (acc, self.combine(e.kind, acc, v, e.body.dtype)))
        else:
            op = ">" if e.kind in ("max", "argmax") else "<"
            if arg:
                flat = "0LL"
                for var, ext in zip(e.rvars, extents):
                    flat = "(%s) * %s + %s" % (flat, ext, self.env[var.name])
                c.open("if (%s %s %s || %s)" % (v, op, acc, first))
                c("%s = %s; %s = %s; %s = false;" % (acc, v, pos, flat, first))
                c.close()
            else:
                c("if (%s %s %s) %s = %s;" % (v, op, acc, acc, v))
        for _ in range(depth):
            self.pop()
            c.close()
        if arg:
            return self.let(VALUE_C[e.dtype], self.convert(pos, "int64", e.dtype))
        return acc


def _index_names(em, axes, shape, flat):
    """Bind ``axes`` to the row-major decomposition of the flat index ``flat`` over ``shape``."""
    rest = flat
    names = [None] * len(axes)
    for k in range(len(axes) - 1, -1, -1):
        dim = shape[k]
        if isinstance(dim, int) and dim == 1:
            names[k] = "0LL"
            continue
        size = em.size(dim)
        if k == 0 or all(isinstance(d, int) and d == 1 for d in shape[:k]):
            names[k] = rest
        else:
            names[k] = em.let("long long", "%s %% %s" % (rest, size), "i")
            rest = em.let("long long", "%s / %s" % (rest, size), "q")
        em.env[axes[k].name] = names[k]
    for a, n in zip(axes, names):
        em.env[a.name] = n
    return names


def _work(em, extents):
    """(static scale, dim indices) of the product of ``extents`` for the launch description,
    and its C text. A size that is no product of dims launches the largest grid (the loops
    are grid-stride, so that only costs idle blocks)."""
    scale, dims, texts, other = 1, [], [], False
    for x in extents:
        if isinstance(x, int):
            scale *= x
            texts.append("%dLL" % x)
        else:
            texts.append("(%s)" % em.size(x))
            if isinstance(x, E.Dim):
                dims.append(x.index)
            else:
                other = True
    if other:
        scale, dims = MAX_GRID * BLOCK, []
    return scale, tuple(dims), " * ".join(texts) if texts else "1LL"


def _top_reduces(body):
    """Reductions of ``body`` that do not depend on another reduction's loop variables, in an
    order where each comes after those inside its body: what a block computes cooperatively."""
    out, seen = [], set()

    def free_rvars(x, bound, memo):
        # does x reference a variable in ``bound``?
        key = id(x)
        if key in memo:
            return memo[key]
        if isinstance(x, E.Var):
            r = x.name in bound
        else:
            found = []
            E.map_children(x, lambda ch: found.append(free_rvars(ch, bound, memo)) or ch)
            r = any(found)
        memo[key] = r
        return r

    def go(x, bound):
        if id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, E.Reduce):
            inner = bound | {v.name for v in x.rvars}
            E.map_children(x, lambda ch: go(ch, inner) or ch)
            if not bound or not free_rvars(x, bound, {}):
                out.append(x)
            return
        E.map_children(x, lambda ch: go(ch, bound) or ch)
    go(body, frozenset())
    return out


def _reduce_extent(r):
    total = 1
    for x in r.extents:
        if not isinstance(x, int):
            return None
        total *= x
    return total


class Renderer:
    """Renders one ``Kernel``: its prelude, the pointer parameters and each stage."""

    def __init__(self, kernel, name=None):
        self.kernel = kernel
        self.name = c_name(name or kernel.name)
        self.params = kernel.params
        self.ptrs = {id(b): "P%d" % i for i, b in enumerate(self.params)}  # temporaries are lower case
        self.outputs = {id(b) for b in kernel.outputs}
        self.functions = []
        self.launches = []
        self.dims = kernel.dims

    def signature(self, fname, bounds=None):
        args = []
        for i, b in enumerate(self.params):
            const = "" if id(b) in self.outputs else "const "
            args.append("%s%s* P%d" % (const, STORE_C[b.dtype], i))
        lb = "__launch_bounds__(%d) " % bounds if bounds else ""
        return 'extern "C" __global__ void %s%s(%s)' % (lb, fname, ", ".join(args))

    def begin(self, fname, bounds):
        """A new function: its code, emitter (with the dims bound) and name."""
        code = Code()
        dim_names = {}
        if self.dims is not None:
            d = self.ptrs[id(self.dims)]
            for k in range(int(self.dims.shape[0])):
                dim_names[k] = "kd%d" % k
                code("const long long kd%d = %s[%d];" % (k, d, k))
        em = Emitter(code, self.ptrs, dim_names)
        return code, em

    def finish(self, fname, code, bounds):
        self.functions.append("%s {\n%s\n}" % (self.signature(fname, bounds), code.text()))

    def add_launch(self, fname, block, work, per_block=None, max_grid=MAX_GRID):
        scale, dims = work
        self.launches.append(Launch(fname, block, scale, per_block or block, dims, max_grid))

    def render(self):
        for k, st in enumerate(self.kernel.stages):
            fname = "%s_s%d" % (self.name, k)
            if isinstance(st, Compute):
                self.compute(st, fname)
            elif isinstance(st, ScatterAdd):
                self.scatter_add(st, fname)
            elif isinstance(st, Gemm):
                from .cuda_gemm import render_gemm
                render_gemm(self, st, fname)
            elif isinstance(st, Sort):
                from .cuda_sort import render_sort
                render_sort(self, st, fname)
            elif isinstance(st, CTC):
                from .cuda_ctc import render_ctc
                render_ctc(self, st, fname)
            else:
                raise NotImplementedError("CUDA backend: stage kind %s" % type(st).__name__)
        source = PRELUDE + "\n" + "\n\n".join(self.functions) + "\n"
        dims_param = self.params.index(self.dims) if self.dims is not None else None
        return CudaKernel(self.name, source, [b.name for b in self.params], self.launches, dims_param)

    # ---- Compute ----
    def compute(self, st, fname):
        reduces = _top_reduces(st.body)
        big = [r for r in reduces if _reduce_extent(r) is None or _reduce_extent(r) >= BLOCK_REDUCE_MIN]
        if big:
            self.compute_block(st, fname, reduces)
        else:
            self.compute_elementwise(st, fname)

    def compute_elementwise(self, st, fname):
        """Grid-stride loop over the flattened output; reductions loop in each thread."""
        code, em = self.begin(fname, BLOCK)
        out = st.out
        work = _work(em, out.shape)
        total = em.let("long long", work[2], "n")
        code.open("for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < %s; "
                  "g += (long long)gridDim.x * blockDim.x)" % total)
        em.push()
        idx = _index_names(em, st.axes, out.shape, "g")
        for r in _top_reduces(st.body):  # loop-invariant reductions once per element, not per use
            em.emit(r)
        em.store(out, idx, em.emit(st.body))
        em.pop()
        code.close()
        self.finish(fname, code, BLOCK)
        self.add_launch(fname, BLOCK, work[:2])

    def compute_block(self, st, fname, reduces):
        """One block per output element (block-stride over outputs): every top-level
        reduction is folded by all threads, combined through warp shuffles and shared
        memory, and broadcast; thread 0 then evaluates the body and stores."""
        code, em = self.begin(fname, BLOCK)
        out = st.out
        work = _work(em, out.shape)
        total = em.let("long long", work[2], "n")
        code("const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;")
        code("const int nwarps = (blockDim.x + 31) >> 5;")
        code.open("for (long long g = blockIdx.x; g < %s; g += gridDim.x)" % total)
        em.push()
        idx = _index_names(em, st.axes, out.shape, "g")
        handlers = {}
        em.block_reduce = handlers
        shared = []
        for r in reduces:
            handlers[id(r)] = _BlockReduce(self, em, shared)
        for r in reduces:  # inner first: every fold runs at the loop's top level, block-uniform
            em.emit(r)
        value = em.emit(st.body)
        em.block_reduce = None
        code("if (threadIdx.x == 0) {")
        code.depth += 1
        em.store(out, idx, value)
        code.close()
        code("__syncthreads();")
        em.pop()
        code.close()
        decls = ["  __shared__ %s %s[32];" % (t, n) for t, n in shared]
        code.lines[0:0] = decls
        self.finish(fname, code, BLOCK)
        self.add_launch(fname, BLOCK, work[:2], per_block=1)

    # ---- ScatterAdd ----
    def scatter_add(self, st, fname):
        """Zero the output (one launch), then accumulate: atomics where the dtype has them
        (float32/float64/int32/int64), else one thread in LLVM's serial order."""
        out = st.out
        zname = fname + "_zero"
        code, em = self.begin(zname, BLOCK)
        work = _work(em, out.shape)
        total = em.let("long long", work[2], "n")
        zero = "0.0f" if E.is_float(out.dtype) else "0"
        code.open("for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < %s; "
                  "g += (long long)gridDim.x * blockDim.x)" % total)
        code("%s[g] = %s;" % (self.ptrs[id(out)], "kiln_f2h(0.0f)" if out.dtype == "float16" else zero))
        code.close()
        self.finish(zname, code, BLOCK)
        self.add_launch(zname, BLOCK, work[:2])

        atomic = out.dtype in ("float32", "float64", "int32", "int64")
        block = BLOCK if atomic else 1
        code, em = self.begin(fname, block)
        src = _work(em, st.extents)
        count = em.let("long long", src[2], "n")
        if atomic:
            code.open("for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < %s; "
                      "g += (long long)gridDim.x * blockDim.x)" % count)
        else:
            code("if (blockIdx.x != 0 || threadIdx.x != 0) return;")
            code.open("for (long long g = 0; g < %s; ++g)" % count)
        em.push()
        _index_names(em, st.axes, st.extents, "g")
        idx = [em.emit(t) for t in st.target]
        v = em.emit(st.value)
        ptr = self.ptrs[id(out)]
        at = "%s[%s]" % (ptr, em.offset(out, idx))
        if atomic:
            if out.dtype == "int64":
                code("atomicAdd((unsigned long long*)&%s, (unsigned long long)%s);" % (at, v))
            else:
                code("atomicAdd(&%s, %s);" % (at, v))
        elif out.dtype == "float16":
            code("%s = kiln_f2h(kiln_h2f(%s) + %s);" % (at, at, v))
        else:
            code("%s = %s;" % (at, em.combine("sum", at, v, out.dtype)))
        em.pop()
        code.close()
        self.finish(fname, code, block)
        if atomic:
            self.add_launch(fname, BLOCK, src[:2])
        else:
            self.launches.append(Launch(fname, 1, 1, 1, (), 1))


class _BlockReduce:
    """Renders one top-level ``Reduce`` as a block-cooperative fold (see ``compute_block``)."""

    def __init__(self, renderer, em, shared):
        self.r, self.em, self.shared = renderer, em, shared

    def __call__(self, e):
        em, c = self.em, self.em.code
        dtype = e.body.dtype
        ct = VALUE_C[dtype]
        arg = e.kind in ("argmax", "argmin")
        extents = [em.size(x) for x in e.extents]
        total = em.let("long long", " * ".join(extents) if extents else "1LL", "rn")
        acc = em.tmp("acc")
        c("%s %s = %s;" % (ct, acc, em.reduce_init(e)))
        pos = has = nan0 = None
        if arg:
            pos, has, nan0 = em.tmp("pos"), em.tmp("has"), em.tmp("nan0")
            c("long long %s = 0; bool %s = false, %s = false;" % (pos, has, nan0))
        c.open("for (long long r = threadIdx.x; r < %s; r += blockDim.x)" % total)
        em.push()
        # reductions inside this one's body that depend on its variables run serially per thread
        saved, em.block_reduce = em.block_reduce, None
        _index_names(em, e.rvars, e.extents, "r")
        v = em.emit(e.body)
        op = ">" if e.kind in ("max", "argmax") else "<"
        if e.kind in ("sum", "prod"):
            c("%s = %s;" % (acc, em.combine(e.kind, acc, v, dtype)))
        elif arg:
            if E.is_float(dtype):
                # LLVM takes the first element whatever it is: a NaN there is the answer
                c("if (r == 0 && %s != %s) %s = true;" % (v, v, nan0))
                c.open("if (%s %s %s || (!%s && %s == %s))" % (v, op, acc, has, v, v))
            else:
                c.open("if (%s %s %s || !%s)" % (v, op, acc, has))
            c("%s = %s; %s = r; %s = true;" % (acc, v, pos, has))
            c.close()
        else:
            c("if (%s %s %s) %s = %s;" % (v, op, acc, acc, v))
        em.block_reduce = saved
        em.pop()
        c.close()
        # warp shuffles, then one partial per warp through shared memory
        sv = em.tmp("sv")
        st = "int" if ct in ("signed char", "unsigned char", "bool") else ct
        self.shared.append((st, sv))
        sp = sh = sn = None
        if arg:
            sp, sh, sn = em.tmp("sp"), em.tmp("sh"), em.tmp("sn")
            self.shared += [("long long", sp), ("int", sh), ("int", sn)]

        def fold():
            c.open("for (int off = 16; off > 0; off >>= 1)")
            ov = em.tmp("o")
            c("const %s %s = (%s)__shfl_down_sync(0xffffffffu, (%s)%s, off);" % (ct, ov, ct, st, acc))
            if arg:
                op_, oh = em.tmp("op"), em.tmp("oh")
                c("const long long %s = __shfl_down_sync(0xffffffffu, %s, off);" % (op_, pos))
                c("const bool %s = __shfl_down_sync(0xffffffffu, (int)%s, off) != 0;" % (oh, has))
                on = em.tmp("on")
                c("const bool %s = __shfl_down_sync(0xffffffffu, (int)%s, off) != 0;" % (on, nan0))
                c("%s = %s || %s;" % (nan0, nan0, on))
                c.open("if (%s && (!%s || %s %s %s || (%s == %s && %s < %s)))"
                       % (oh, has, ov, op, acc, ov, acc, op_, pos))
                c("%s = %s; %s = %s; %s = true;" % (acc, ov, pos, op_, has))
                c.close()
            elif e.kind in ("sum", "prod"):
                c("%s = %s;" % (acc, em.combine(e.kind, acc, ov, dtype)))
            else:
                c("if (%s %s %s) %s = %s;" % (ov, op, acc, acc, ov))
            c.close()
        fold()
        c.open("if (lane == 0)")
        c("%s[warp] = (%s)%s;" % (sv, st, acc))
        if arg:
            c("%s[warp] = %s; %s[warp] = %s; %s[warp] = %s;" % (sp, pos, sh, has, sn, nan0))
        c.close()
        c("__syncthreads();")
        c.open("if (warp == 0)")
        c("%s = lane < nwarps ? (%s)%s[lane] : %s;" % (acc, ct, sv, em.reduce_init(e)))
        if arg:
            c("%s = lane < nwarps ? %s[lane] : 0; %s = lane < nwarps && %s[lane] != 0; "
              "%s = lane < nwarps && %s[lane] != 0;" % (pos, sp, has, sh, nan0, sn))
        fold()
        c.open("if (lane == 0)")
        c("%s[0] = (%s)%s;" % (sv, st, acc))
        if arg:
            c("%s[0] = (%s || !%s) ? 0 : %s;" % (sp, nan0, has, pos))
        c.close()
        c.close()
        c("__syncthreads();")
        if arg:
            out = em.let(VALUE_C[e.dtype], em.convert("%s[0]" % sp, "int64", e.dtype))
        else:
            out = em.let(ct, "(%s)%s[0]" % (ct, sv))
        c("__syncthreads();")  # every thread has read the result before the next fold writes
        return out


def render_kernel(kernel, name=None):
    """The ``CudaKernel`` for ``kernel`` (``name`` overrides the function-name prefix, e.g. to
    put kernels of several programs into one NVRTC program)."""
    ck = Renderer(kernel, name).render()
    log.debug("CUDA kernel %s: %d launches, %d bytes of source", ck.name, len(ck.launches), len(ck.source))
    return ck


def render_kernels(kernels):
    """One CUDA source (the prelude once) and the ``CudaKernel`` of each of ``kernels``."""
    rendered = [render_kernel(k) for k in kernels]
    return "\n".join(k.source for k in rendered), rendered
