"""``Sort`` stage -> LLVM IR: a stable sort of (key, position) pairs per row.

Each Sort becomes an internal helper ``void @<kernel>_sort(ptr data, ptr
out..., ptr workspace, i64 lo, i64 hi)`` running work units [lo, hi). A unit
owns one scratch slice of the workspace (two key arrays and two position
arrays of one row) and claims rows from the workspace's counter (an atomic
add) until none is left, so rows spread evenly over the threads whatever
their count. The kernel zeroes the counter and calls the helper over all
units through the emitter's ``parallel_range``.

Two algorithms, chosen by the static row length, give the same order:

* long rows: LSD radix sort, one stable counting pass per digit (bytes;
  11 bits for rows of ``WIDE_DIGIT_MIN`` or more 32/64-bit keys: 3 passes
  instead of 4 for float32), on integer bits that order like the comparison
  below (floats: sign-flipped bits, -0.0 folded onto 0.0 and every NaN onto
  one value above +inf; signed integers: sign bit flipped; descending: the
  complement). The first read builds every pass's histogram; a pass whose
  digit all keys share is skipped. O(n) per row; the counters (at most 48
  KiB) are fixed-size stack memory. Values are read back from ``data``
  through the sorted positions.
* short rows (under ``RADIX_MIN_PER_PASS`` elements per byte of key),
  where the counters would dominate: blocks of ``INSERTION`` elements sorted
  by insertion, then bottom-up merges ping-ponging between the two arrays
  in a loop over passes. The merge takes the right run's element only when
  it is strictly before the left one (stable) and is branch-free.

The first ``k`` entries are then written out (values, positions, or a 0/1
mask). Scratch lives in the workspace, an ordinary planned buffer (a hidden
output of the operator): no allocation at run time, no stack growth with the
row length, and the arena reuses the bytes once the launch is over.
"""
from __future__ import annotations

import math

import llvmlite.ir as ir

from .. import expr as E
from ..kernel import Sort
from . import llvm as L
from .llvm_stage import StageEmitter

I32, I64 = L.I32, L.I64
INSERTION = 16  # elements per block sorted by insertion before the merge passes
# Rows of at least this many elements per byte of key are radix sorted; shorter rows are
# merge sorted, where 256 counters per pass would dominate (float32 crossover measured ~48).
RADIX_MIN_PER_PASS = 12
KEY_BITS = {"float16": 16, "float32": 32, "float64": 64, "int8": 8, "uint8": 8, "bool": 8,
            "int32": 32, "int64": 64}
WIDE_DIGIT, WIDE_DIGIT_MIN = 11, 1 << 14
FLOAT_INF_BITS = {16: 0x7C00, 32: 0x7F800000, 64: 0x7FF0000000000000}
# rough scalar operations per element and merge pass, for the threading decision
WORK_PER_ELEMENT_PASS = 6


def emit_sort(em, st):
    """Emit the helper for stage ``st`` and call it from emitter ``em`` over all work units."""
    if st.rows == 0 or st.n == 0:
        return  # an empty array: nothing to write
    bufs = [st.data] + st.outputs
    fn, inner = em.unit_helper(bufs, "_sort")
    _SortEmitter(inner, st).emit(fn.args[-2], fn.args[-1])
    inner.b.ret_void()
    em.b.store(em.i64(0), em.ptrs[id(st.workspace)])  # the row counter
    passes = max(1, math.ceil(math.log2(max(st.n, 2))))
    em.parallel_range(fn, bufs, st.units, st.rows * st.n * passes * WORK_PER_ELEMENT_PASS)


class _SortEmitter(StageEmitter):
    def __init__(self, em, st):
        super().__init__(em, st)
        self.dtype = st.data.dtype
        self.kt = L.VALUE_TYPES[self.dtype]  # keys are kept as computed (float16 as float)
        if st.n >= 1 << 31:
            raise NotImplementedError("LLVM backend: sorting rows of %d elements" % st.n)
        self.it = I32
        bits = KEY_BITS[self.dtype]
        self.radix_bits = bits if st.n >= RADIX_MIN_PER_PASS * (bits // 8) else 0
        # digits of 11 bits (3 passes for 32-bit keys instead of 4) once rows dwarf 2048 counters
        self.digit_bits = WIDE_DIGIT if bits >= 32 and st.n >= WIDE_DIGIT_MIN else 8
        self.passes = -(-bits // self.digit_bits)
        self.buckets = 1 << self.digit_bits
        if self.radix_bits:  # per pass, the digit counts (then offsets): fixed-size stack memory
            self.hist = em.alloca_builder.alloca(I32, size=self.buckets * self.passes)

    # ---- helpers ----
    def smin(self, x, y):
        return self.b.select(self.b.icmp_signed("<", x, y), x, y)

    def load_buf(self, buf, off):
        v = self.b.load(self.at(self.em.ptrs[id(buf)], off, L.STORE_TYPES[buf.dtype]), typ=L.STORE_TYPES[buf.dtype])
        return self.b.fpext(v, L.F32) if buf.dtype == "float16" else v

    def store_buf(self, buf, off, value):
        if buf.dtype == "float16":
            value = self.b.fptrunc(value, L.F16)
        self.b.store(value, self.at(self.em.ptrs[id(buf)], off, L.STORE_TYPES[buf.dtype]))

    # scratch arrays: 0 or 1 (this unit's pair), or a pointer value
    def key(self, arr, j):
        return self.b.load(self.at(self.keys[arr] if isinstance(arr, int) else arr, j, self.kt), typ=self.kt)

    def set_key(self, arr, j, v):
        self.b.store(v, self.at(self.keys[arr] if isinstance(arr, int) else arr, j, self.kt))

    def index(self, arr, j):
        return self.b.load(self.at(self.idx[arr] if isinstance(arr, int) else arr, j, self.it), typ=self.it)

    def set_index(self, arr, j, v):
        self.b.store(v, self.at(self.idx[arr] if isinstance(arr, int) else arr, j, self.it))

    def get(self, slot):
        return self.b.load(slot, typ=I64)

    def while_(self, cond, body):
        """``while cond(): body()``; values computed in ``cond`` may be used in ``body``."""
        fn = self.em.fn
        cond_bb, body_bb, end_bb = (fn.append_basic_block(n) for n in ("while", "while_body", "while_end"))
        self.b.branch(cond_bb)
        self.b.position_at_end(cond_bb)
        c, state = cond()
        self.b.cbranch(c, body_bb, end_bb)
        self.b.position_at_end(body_bb)
        body(state)
        self.b.branch(cond_bb)
        self.b.position_at_end(end_bb)

    def before(self, x, y):
        """Whether key ``x`` sorts strictly before key ``y`` (NaN is the largest key)."""
        b = self.b
        if E.is_float(self.dtype):
            if self.st.is_ascend:  # x is a number and (x < y or y is NaN)
                return b.and_(b.fcmp_ordered("ord", x, x), b.fcmp_unordered("<", x, y))
            return b.and_(b.fcmp_ordered("ord", y, y), b.fcmp_unordered(">", x, y))
        cmp = b.icmp_unsigned if self.dtype in E.UNSIGNED else b.icmp_signed
        return cmp("<" if self.st.is_ascend else ">", x, y)

    # ---- the helper ----
    def emit(self, lo, hi):
        st, b = self.st, self.b
        ws = self.em.ptrs[id(st.workspace)]
        key_bytes = Sort.region(st.n, Sort.KEY_BYTES)
        idx_bytes = Sort.region(st.n, Sort.INDEX_BYTES)

        def unit(u):
            base = self.at(ws, self.add(self.c(Sort.HEADER), self.mul(u, self.c(st.unit_bytes))), L.I8)
            self.keys = [base, self.at(base, self.c(key_bytes), L.I8)]
            self.idx = [self.at(base, self.c(2 * key_bytes), L.I8),
                        self.at(base, self.c(2 * key_bytes + idx_bytes), L.I8)]

            def claim():
                r = b.atomic_rmw("add", ws, self.c(1), "monotonic")
                return b.icmp_signed("<", r, self.c(st.rows)), r
            self.while_(claim, self.row)
        self.em.loop(hi, unit, start=lo)

    def row(self, r):
        st, b = self.st, self.b
        n, inner = st.n, st.inner
        if inner == 1:
            src = self.mul(r, self.c(n))
            dst = self.mul(r, self.c(st.k))
        else:
            o, i = b.sdiv(r, self.c(inner)), b.srem(r, self.c(inner))
            src = self.add(self.mul(o, self.c(n * inner)), i)
            dst = self.add(self.mul(o, self.c(st.k * inner)), i)

        def element(j):
            return self.add(src, self.mul(j, self.c(inner))) if inner != 1 else self.add(src, j)

        def fill(j):
            self.set_key(0, j, self.load_buf(st.data, element(j)))
            self.set_index(0, j, b.trunc(j, self.it))
        if self.radix_bits:
            final_idx = self.radix_sort(element)

            def index_of(j):
                return b.load(self.at(final_idx, j, self.it), typ=self.it)

            def value_of(j):  # the sorted keys are transformed bits: read the value back
                return self.load_buf(st.data, element(b.sext(index_of(j), I64)))
        else:
            self.em.loop(n, fill)
            self.insertion_blocks()
            final_keys, final_idx = self.merge_passes()

            def index_of(j):
                return self.index(final_idx, j)

            def value_of(j):
                return self.key(final_keys, j)

        def out(j):
            at = self.add(dst, self.mul(j, self.c(inner))) if inner != 1 else self.add(dst, j)
            if st.values is not None:
                self.store_buf(st.values, at, value_of(j))
            if st.indices is not None:
                pos = self.em.convert(index_of(j), "int32", st.indices.dtype)
                self.store_buf(st.indices, at, pos)
        if st.values is not None or st.indices is not None:
            self.em.loop(st.k, out)
        if st.mask is not None:
            mt = L.VALUE_TYPES[st.mask.dtype]
            zero, one = (ir.Constant(mt, v if E.is_float(st.mask.dtype) else int(v)) for v in (0.0, 1.0))
            self.em.loop(n, lambda j: self.store_buf(st.mask, element(j), zero))
            self.em.loop(st.k, lambda j: self.store_buf(st.mask, element(b.sext(index_of(j), I64)), one))

    # ---- long rows: LSD radix sort of order-preserving key bits ----
    def radix_key(self, raw):
        """Unsigned integer bits that order as the kernel's comparison does: -0.0 and 0.0
        equal, every NaN one value above +inf, descending as the complement."""
        b, w = self.b, self.radix_bits
        t = ir.IntType(w)
        sign = 1 << (w - 1)
        if E.is_float(self.dtype):
            inf = FLOAT_INF_BITS[w]
            mag = b.and_(raw, ir.Constant(t, sign - 1))
            raw = b.select(b.icmp_unsigned("==", mag, ir.Constant(t, 0)), ir.Constant(t, 0), raw)
            raw = b.select(b.icmp_unsigned(">", mag, ir.Constant(t, inf)), ir.Constant(t, inf + 1), raw)
            key = b.xor(raw, b.or_(b.ashr(raw, ir.Constant(t, w - 1)), ir.Constant(t, sign)))
        elif self.dtype in E.UNSIGNED:
            key = raw
        else:
            key = b.xor(raw, ir.Constant(t, sign))
        return key if self.st.is_ascend else b.not_(key)

    def digit(self, key, p):
        b, w = self.b, self.digit_bits
        d = b.lshr(key, ir.Constant(key.type, w * p)) if p else key
        if key.type.width > w:
            d = b.and_(d, ir.Constant(key.type, self.buckets - 1))
        return b.zext(d, I64) if key.type.width < 64 else d

    def count(self, p, d):
        return self.at(self.hist, self.add(self.c(self.buckets * p), d), I32)

    def radix_sort(self, element):
        """Sort the row by key bits, one stable counting pass per byte (least significant
        first), skipping bytes every key shares; returns the pointer to the sorted positions."""
        st, b, em = self.st, self.b, self.em
        n, w = st.n, self.radix_bits
        kt, passes = ir.IntType(w), self.passes
        em.loop(self.buckets * passes, lambda d: b.store(ir.Constant(I32, 0), self.at(self.hist, d, I32)))

        def fill(j):
            raw = b.load(self.at(em.ptrs[id(st.data)], element(j), kt), typ=kt)
            key = self.radix_key(raw)
            b.store(key, self.at(self.keys[0], j, kt))
            self.set_index(0, j, b.trunc(j, self.it))
            for p in range(passes):
                slot = self.count(p, self.digit(key, p))
                b.store(b.add(b.load(slot, typ=I32), ir.Constant(I32, 1)), slot)
        em.loop(n, fill)
        cur_k, cur_i, oth_k, oth_i = (em.alloca(L.PTR) for _ in range(4))
        for slot, ptr in zip((cur_k, cur_i, oth_k, oth_i), (self.keys[0], self.idx[0], self.keys[1], self.idx[1])):
            b.store(ptr, slot)
        for p in range(passes):
            sk, si = b.load(cur_k, typ=L.PTR), b.load(cur_i, typ=L.PTR)
            first = self.digit(b.load(sk, typ=kt), p)
            shared = b.icmp_signed("==", b.load(self.count(p, first), typ=I32), ir.Constant(I32, n))
            with b.if_then(b.not_(shared)):
                dk, di = b.load(oth_k, typ=L.PTR), b.load(oth_i, typ=L.PTR)
                total = em.alloca(I32)
                b.store(ir.Constant(I32, 0), total)

                def prefix(d):
                    slot = self.count(p, d)
                    c, run = b.load(slot, typ=I32), b.load(total, typ=I32)
                    b.store(run, slot)
                    b.store(b.add(run, c), total)
                em.loop(self.buckets, prefix)

                def scatter(j):
                    key = b.load(self.at(sk, j, kt), typ=kt)
                    slot = self.count(p, self.digit(key, p))
                    pos = b.load(slot, typ=I32)
                    b.store(b.add(pos, ir.Constant(I32, 1)), slot)
                    at = b.zext(pos, I64)
                    b.store(key, self.at(dk, at, kt))
                    b.store(b.load(self.at(si, j, self.it), typ=self.it), self.at(di, at, self.it))
                em.loop(n, scatter)
                for slot, ptr in ((cur_k, dk), (cur_i, di), (oth_k, sk), (oth_i, si)):  # swap
                    b.store(ptr, slot)
        return b.load(cur_i, typ=L.PTR)

    # ---- short rows: insertion-sorted blocks, then bottom-up merges ----
    def insertion_blocks(self):
        """Sort each block of ``INSERTION`` elements of array 0 in place (stable insertion sort)."""
        b, n = self.b, self.st.n

        def block(bi):
            b0 = self.mul(bi, self.c(INSERTION))
            end = self.smin(self.add(b0, self.c(INSERTION)), self.c(n))

            def insert(j):
                x, xi = self.key(0, j), self.index(0, j)
                p = self.var(j)

                def cond():
                    pv = self.get(p)
                    inside = b.icmp_signed(">", pv, b0)
                    prev = b.select(inside, b.sub(pv, self.c(1)), b0)  # a safe position when outside
                    y = self.key(0, prev)
                    return b.and_(inside, self.before(x, y)), (pv, prev, y)

                def shift(state):
                    pv, prev, y = state
                    self.set_key(0, pv, y)
                    self.set_index(0, pv, self.index(0, prev))
                    b.store(prev, p)
                self.while_(cond, shift)
                pv = self.get(p)
                self.set_key(0, pv, x)
                self.set_index(0, pv, xi)
            self.em.loop(end, insert, start=self.add(b0, self.c(1)))
        self.em.loop(-(-n // INSERTION), block)

    def merge_passes(self):
        """Merge runs of doubling width, ping-ponging between the unit's two arrays (one loop
        over the passes, so the code does not grow with the row); returns (keys, positions)
        pointers of the array holding the result."""
        st, b, em = self.st, self.b, self.em
        n = st.n
        slots = [em.alloca(L.PTR) for _ in range(4)]  # current keys, positions; other keys, positions
        for slot, ptr in zip(slots, (self.keys[0], self.idx[0], self.keys[1], self.idx[1])):
            b.store(ptr, slot)
        width = self.var(self.c(INSERTION))

        def more():
            w = self.get(width)
            return b.icmp_signed("<", w, self.c(n)), w

        def one_pass(w):
            sk, si, dk, di = (b.load(slot, typ=L.PTR) for slot in slots)
            w2 = self.add(w, w)

            def pair(pi):
                lo = self.mul(pi, w2)
                mid = self.smin(self.add(lo, w), self.c(n))
                hi = self.smin(self.add(lo, w2), self.c(n))
                self.merge((sk, si), (dk, di), lo, mid, hi)
            em.loop(b.sdiv(self.add(self.c(n - 1), w2), w2), pair)
            for slot, ptr in zip(slots, (dk, di, sk, si)):  # swap
                b.store(ptr, slot)
            b.store(w2, width)
        self.while_(more, one_pass)
        return b.load(slots[0], typ=L.PTR), b.load(slots[1], typ=L.PTR)

    def merge(self, src, dst, lo, mid, hi):
        """Merge sorted runs [lo, mid) and [mid, hi) of ``src`` into [lo, hi) of ``dst``
        ((keys, positions) pointer pairs)."""
        b = self.b
        (sk, si), (dk, di) = src, dst
        i, j, t = self.var(lo), self.var(mid), self.var(lo)

        def cond():
            iv, jv = self.get(i), self.get(j)
            return b.and_(b.icmp_signed("<", iv, mid), b.icmp_signed("<", jv, hi)), (iv, jv)

        def step(state):
            iv, jv = state
            tv = self.get(t)
            kl, kr = self.key(sk, iv), self.key(sk, jv)
            take = self.before(kr, kl)  # the right element only when strictly before: stable
            self.set_key(dk, tv, b.select(take, kr, kl))
            self.set_index(di, tv, b.select(take, self.index(si, jv), self.index(si, iv)))
            right = b.zext(take, I64)
            b.store(self.add(iv, b.sub(self.c(1), right)), i)
            b.store(self.add(jv, right), j)
            b.store(self.add(tv, self.c(1)), t)
        self.while_(cond, step)
        for pos, end in ((i, mid), (j, hi)):  # one run is exhausted; copy the rest of the other
            start, t0 = self.get(pos), self.get(t)

            def copy(x, start=start, t0=t0):
                at = self.add(t0, b.sub(x, start))
                self.set_key(dk, at, self.key(sk, x))
                self.set_index(di, at, self.index(si, x))
            self.em.loop(end, copy, start=start)
            b.store(self.add(t0, b.sub(end, start)), t)
