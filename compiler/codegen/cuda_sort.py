"""``Sort`` stage -> CUDA C: one thread block per row, a bitonic network in the workspace.

Block ``u`` (the grid is at most ``st.units`` blocks) sorts rows ``u, u +
grid, ...`` in workspace slice ``u``: (key, position) pairs are copied to
the slice, sorted by a bitonic network padded to a power of two (pairs whose
partner lies beyond the row are skipped, which is what padding with +inf
keys would do), then the first ``k`` are written out. The order is the LLVM
backend's: positions break ties, so the sort is stable, NaN is the largest
key and -0.0 equals 0.0. O(n log^2 n) per row on the block's threads.
"""
from __future__ import annotations

from .. import expr as E
from ..kernel import Sort
from .cuda import VALUE_C, Emitter

THREADS = 256


def _before(dtype, ascend, x, y):
    """C text: key ``x`` sorts strictly before key ``y``."""
    if E.is_float(dtype):
        if ascend:  # x is a number and (x < y or y is NaN)
            return "(%s == %s && !(%s >= %s))" % (x, x, x, y)
        return "(%s == %s && !(%s <= %s))" % (y, y, x, y)  # y is a number and (x > y or x is NaN)
    return "(%s %s %s)" % (x, "<" if ascend else ">", y)


def render_sort(r, st, fname):
    if st.rows == 0 or st.n == 0:
        return  # an empty array: nothing to write (as the LLVM backend)
    if st.n >= 1 << 31:
        raise NotImplementedError("CUDA backend: sorting rows of %d elements" % st.n)
    code, em = r.begin(fname, THREADS)
    c = code
    dtype = st.data.dtype
    kt = VALUE_C[dtype]
    n, inner, k = st.n, st.inner, st.k
    key_bytes = Sort.region(n, Sort.KEY_BYTES)
    pow2 = 1
    while pow2 < n:
        pow2 *= 2
    data = r.ptrs[id(st.data)]
    ws = r.ptrs[id(st.workspace)]

    def load_data(off):
        ref = "%s[%s]" % (data, off)
        return "kiln_h2f(%s)" % ref if dtype == "float16" else ref

    def store(buf, off, value):
        if buf.dtype == "float16":
            value = "kiln_f2h(%s)" % value
        c("%s[%s] = %s;" % (r.ptrs[id(buf)], off, value))

    c("unsigned char* base = (unsigned char*)%s + %dLL + (long long)blockIdx.x * %dLL;"
      % (ws, Sort.HEADER, st.unit_bytes))
    c("%s* keys = (%s*)base;" % (kt, kt))
    c("int* idx = (int*)(base + %dLL);" % (2 * key_bytes))
    c.open("for (long long row = blockIdx.x; row < %dLL; row += gridDim.x)" % st.rows)
    if inner == 1:
        c("const long long src = row * %dLL, dst = row * %dLL;" % (n, k))
    else:
        c("const long long o = row / %dLL, in = row %% %dLL;" % (inner, inner))
        c("const long long src = o * %dLL + in, dst = o * %dLL + in;" % (n * inner, k * inner))
    c.open("for (long long j = threadIdx.x; j < %dLL; j += blockDim.x)" % n)
    c("keys[j] = %s;" % load_data("src + j * %dLL" % inner))
    c("idx[j] = (int)j;")
    c.close()
    c("__syncthreads();")
    c.open("for (long long kk = 2; kk <= %dLL; kk <<= 1)" % pow2)
    c.open("for (long long jj = kk >> 1; jj > 0; jj >>= 1)")
    c.open("for (long long i = threadIdx.x; i < %dLL; i += blockDim.x)" % pow2)
    c("const long long p = jj == (kk >> 1) ? (i ^ (kk - 1)) : (i ^ jj);")
    c.open("if (p > i && p < %dLL)" % n)
    c("const %s x = keys[i], y = keys[p];" % kt)
    c("const int ix = idx[i], iy = idx[p];")
    before = _before(dtype, st.is_ascend, "y", "x")
    after = _before(dtype, st.is_ascend, "x", "y")
    c.open("if (%s || (!%s && iy < ix))" % (before, after))
    c("keys[i] = y; keys[p] = x; idx[i] = iy; idx[p] = ix;")
    c.close()
    c.close()
    c.close()
    c("__syncthreads();")
    c.close()
    c.close()
    conv = Emitter(code, r.ptrs)
    if st.values is not None or st.indices is not None:
        c.open("for (long long j = threadIdx.x; j < %dLL; j += blockDim.x)" % k)
        c("const long long at = dst + j * %dLL;" % inner)
        if st.values is not None:
            store(st.values, "at", "keys[j]")
        if st.indices is not None:
            store(st.indices, "at", conv.convert("idx[j]", "int32", st.indices.dtype))
        c.close()
    if st.mask is not None:
        md = st.mask.dtype
        zero, one = (conv._Const(E.Const(v, md)) for v in (0, 1))
        c.open("for (long long j = threadIdx.x; j < %dLL; j += blockDim.x)" % n)
        store(st.mask, "src + j * %dLL" % inner, zero)
        c.close()
        c("__syncthreads();")
        c.open("for (long long j = threadIdx.x; j < %dLL; j += blockDim.x)" % k)
        store(st.mask, "src + (long long)idx[j] * %dLL" % inner, one)
        c.close()
    c("__syncthreads();")  # the slice is free again before the next row
    c.close()
    r.finish(fname, code, THREADS)
    r.add_launch(fname, THREADS, (st.units, ()), per_block=1, max_grid=st.units)
