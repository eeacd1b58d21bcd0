"""``Gemm`` stage -> LLVM IR: packed, cache-blocked loops around a vector micro-kernel.

The loop order is GotoBLAS/BLIS's: column blocks of ``nc`` (the work units,
see below), depth blocks of ``kc`` (pack a kc x nc panel of B), row blocks
of ``mc`` (pack an mc x kc panel of A), then MR x NR register tiles computed
by a micro-kernel of ``llvm.fma`` on vectors whose width follows the host's
features. Packing reads transposed operands by index arithmetic and
zero-pads edge panels, so the micro-kernel never sees a ragged tile; edge
tiles of C are written through a small staging tile.

Each Gemm becomes an internal helper ``void @<kernel>_gemm(ptr a, ptr b,
ptr out, ptr extra..., i64 lo, i64 hi)`` computing work units [lo, hi):
unit ``u`` is column block ``u % nblocks`` of batch ``u // nblocks``. Units
write disjoint parts of ``out`` and pack into the helper's own stack
buffers (bounded by the blocking parameters), so ranges of units may run on
different threads. The kernel calls it once over all units.
"""
from __future__ import annotations

import functools

import llvmlite.binding as llvm
import llvmlite.ir as ir

from .. import expr as E
from ..kernel import Gemm
from . import llvm as L

I32, I64 = L.I32, L.I64
TYPES = {"float32": L.F32, "float64": L.F64}
# Bytes of a packed A block (kept in L2) and of a packed B block (in L2/L3).
A_BLOCK_BYTES = 192 << 10
B_BLOCK_BYTES = 1 << 20
KC_BYTES = 1024  # depth of a block in bytes: 256 float32 or 128 float64 (measured best on Zen 5)


class Target:
    """Vector width, register count and FMA support of the host CPU."""

    def __init__(self, vector_bits, registers, fma):
        self.vector_bits = vector_bits
        self.registers = registers
        self.fma = fma


@functools.lru_cache(maxsize=None)
def host_target():
    """Read once: AVX-512 -> 512-bit vectors and 32 registers, AVX -> 256 bits, else 128."""
    triple = llvm.get_process_triple()
    if triple.startswith(("aarch64", "arm64")):
        return Target(128, 32, True)
    if not triple.startswith(("x86_64", "i686", "i386")):
        return Target(128, 16, False)
    feats = llvm.get_host_cpu_features()
    fma = bool(feats.get("fma"))
    if feats.get("avx512f"):
        return Target(512, 32, fma)
    if feats.get("avx"):
        return Target(256, 16, fma)
    return Target(128, 16, False)


class Blocking:
    """Micro-tile (MR x NR, NR = NV vectors) and cache blocks (mc, kc, nc) for one problem."""

    def __init__(self, target, dtype, m, n, k, units_wanted=1):
        esize = 4 if dtype == "float32" else 8
        self.width = target.vector_bits // (8 * esize)
        self.nv = 2
        # accumulators MR * NV plus NV loads of B and one broadcast of A must fit in registers
        self.mr = min(12, (target.registers - self.nv - 1) // self.nv)
        self.nr = self.nv * self.width
        self.kc = min(k, KC_BYTES // esize)
        mc = max(1, A_BLOCK_BYTES // (self.kc * esize) // self.mr) * self.mr
        nc = max(1, B_BLOCK_BYTES // (self.kc * esize) // self.nr) * self.nr
        self.mc = min(mc, _ceil(m, self.mr) * self.mr) if E.is_static(m) else mc
        self.nc = min(nc, _ceil(n, self.nr) * self.nr)
        if _ceil(n, self.nc) < units_wanted:  # narrower column blocks so every thread gets work
            self.nc = max(self.nr, _ceil(_ceil(n, units_wanted), self.nr) * self.nr)
        self.nblocks = _ceil(n, self.nc)


def _ceil(a, b):
    return -(-a // b)


# below this many multiply-adds per matrix, plain loops (compile in milliseconds) replace blocking;
# with this few rows, packing B (a full copy of it per call) costs more than the product itself
SMALL_GEMM = 64 * 64 * 64
SMALL_ROWS = 4


def emit_gemm(em, st):
    """Emit the helper for stage ``st`` and call it from emitter ``em`` over all units.

    A product whose row count or batch is a run-time size (a dynamic batch) gets both the
    small-product and the blocked helper, chosen at run time by the same thresholds."""
    if st.out.dtype not in TYPES:
        raise NotImplementedError("LLVM backend: Gemm on %s" % st.out.dtype)
    bufs = [st.a, st.b, st.out] + st.extra_inputs
    if st.symbolic:
        bufs.append(em.dims_buf)
    work = 2 * st.batch * st.m * st.n * st.k
    if not E.is_static(st.m):
        b = em.b
        m = em.size(st.m)
        small = b.or_(b.icmp_signed("<=", b.mul(m, em.i64(st.n * st.k)), em.i64(SMALL_GEMM)),
                      b.icmp_signed("<=", m, em.i64(SMALL_ROWS)))
        with b.if_else(small) as (then, other):
            with then:
                em.scopes.append({})
                _emit_small_path(em, st, bufs, work)
                em.scopes.pop()
            with other:
                em.scopes.append({})
                _emit_blocked_path(em, st, bufs, work)
                em.scopes.pop()
    elif st.m * st.n * st.k <= SMALL_GEMM or st.m <= SMALL_ROWS:
        _emit_small_path(em, st, bufs, work)
    else:
        _emit_blocked_path(em, st, bufs, work)


def _helper(em, st, bufs, suffix):
    fn, inner = em.unit_helper(bufs, suffix)
    if st.symbolic:
        inner.bind_dims(em.dims_buf)
    return fn, inner


def _emit_small_path(em, st, bufs, work):
    fn, inner = _helper(em, st, bufs, "_gemm")
    if st.transpose_b and not st.transpose_a:
        _emit_small_dots(inner, st, host_target())
    else:
        _emit_small(inner, st)
    em.parallel_range(fn, bufs, st.batch * st.m, work)


def _emit_blocked_path(em, st, bufs, work):
    fn, inner = _helper(em, st, bufs, "_gemm")
    threads = em.num_threads if not E.is_static(work) or em.worth_threads(work) else 1
    # a run-time batch is at least one product: ask for column blocks enough for every thread
    batch = st.batch if E.is_static(st.batch) else 1
    blk = Blocking(host_target(), st.out.dtype, st.m, st.n, st.k, units_wanted=-(-threads // batch))
    _GemmEmitter(inner, st, blk, host_target()).emit()
    em.parallel_range(fn, bufs, st.batch * blk.nblocks, work)


def _a_index(b, st, batch, const):
    """Which A matrix batch ``batch`` reads: ``batch % a_batch`` (one weight matrix per
    convolution group shared by every image); the batch itself for plain batched products."""
    return b.srem(batch, const(st.a_batch)) if st.shares_a else batch


def _store_element(em, st, value, batch, row, col, ptr):
    """Store one finished element of the small paths, through the epilogue when there is one."""
    if st.epilogue is not None:
        em.env.update({Gemm.ACC_NAME: value, Gemm.ROW.name: row, Gemm.COL.name: col, Gemm.BATCH.name: batch})
        value = em.emit(st.epilogue)
    em.b.store(value, ptr)


def _emit_small_dots(em, st, target):
    """Small products with B stored transposed ([n, k], as FullyConnected's weight): each output
    is a dot product of two contiguous rows, summed in vector lanes then across them."""
    b = em.b
    ty = TYPES[st.out.dtype]
    esize = 4 if st.out.dtype == "float32" else 8
    width = max(1, target.vector_bits // (8 * esize))
    vty = ir.VectorType(ty, width)
    a_buf, b_buf, out = em.fn.args[0], em.fn.args[1], em.fn.args[2]
    lo, hi = em.fn.args[-2], em.fn.args[-1]
    vfma = em.declare("llvm.fmuladd.v%df%d" % (width, 8 * esize), vty, [vty] * 3)
    fma = em.declare("llvm.fmuladd.f%d" % (8 * esize), ty, [ty] * 3)
    vacc = em.alloca_builder.alloca(vty)
    acc = em.alloca_builder.alloca(ty)
    full = st.k // width * width

    def at(ptr, index):
        return b.gep(ptr, [index], inbounds=True, source_etype=ty)

    def unit(u):
        batch, i = b.sdiv(u, em.size(st.m)), b.srem(u, em.size(st.m))
        a_row = b.add(b.mul(_a_index(b, st, batch, em.i64), em.size(st.m * st.k)), b.mul(i, em.i64(st.k)))
        b_base = b.mul(batch, em.i64(st.k * st.n))
        c_base = b.mul(batch, em.size(st.m * st.n))

        def col(j):
            b_row = b.add(b_base, b.mul(j, em.i64(st.k)))
            b.store(ir.Constant(vty, [0.0] * width), vacc)

            def chunk(c):
                kk = b.mul(c, em.i64(width))
                av = b.load(at(a_buf, b.add(a_row, kk)), typ=vty)
                bv = b.load(at(b_buf, b.add(b_row, kk)), typ=vty)
                av.align = bv.align = esize
                b.store(b.call(vfma, [av, bv, b.load(vacc, typ=vty)]), vacc)
            em.loop(full // width, chunk)
            lanes = b.load(vacc, typ=vty)
            total = b.extract_element(lanes, em.i64(0))
            for lane in range(1, width):
                total = b.fadd(total, b.extract_element(lanes, em.i64(lane)))
            b.store(total, acc)

            def tail(kk):
                av = b.load(at(a_buf, b.add(a_row, kk)), typ=ty)
                bv = b.load(at(b_buf, b.add(b_row, kk)), typ=ty)
                b.store(b.call(fma, [av, bv, b.load(acc, typ=ty)]), acc)
            em.loop(st.k, tail, start=full)
            dst = at(out, b.add(c_base, b.add(b.mul(i, em.i64(st.n)), j)))
            _store_element(em, st, b.load(acc, typ=ty), batch, i, j, dst)
        em.loop(st.n, col)
    em.loop(hi, unit, start=lo)
    b.ret_void()


def _emit_small(em, st):
    """Rows of small products as plain loops: ``row[j] += a[i, kk] * b[kk, j]`` with ``j``
    innermost, which LLVM vectorises without reassociation. Units are (batch, row) pairs.
    Blocking and packing would cost more compile time than they save at these sizes."""
    b = em.b
    ty = TYPES[st.out.dtype]
    a_buf, b_buf, out = em.fn.args[0], em.fn.args[1], em.fn.args[2]
    lo, hi = em.fn.args[-2], em.fn.args[-1]
    row = em.alloca_builder.alloca(ty, size=em.i64(st.n))
    fma = em.declare("llvm.fmuladd.f32" if ty == ir.FloatType() else "llvm.fmuladd.f64", ty, [ty] * 3)

    def at(ptr, index):
        return b.gep(ptr, [index], inbounds=True, source_etype=ty)

    def unit(u):
        batch, i = b.sdiv(u, em.size(st.m)), b.srem(u, em.size(st.m))
        a_base = b.mul(_a_index(b, st, batch, em.i64), em.size(st.m * st.k))
        b_base = b.mul(batch, em.i64(st.k * st.n))
        c_base = b.mul(batch, em.size(st.m * st.n))
        em.loop(st.n, lambda j: b.store(ir.Constant(ty, 0.0), at(row, j)))

        def depth(kk):
            a_off = b.add(b.mul(kk, em.size(st.m)), i) if st.transpose_a else b.add(b.mul(i, em.i64(st.k)), kk)
            av = b.load(at(a_buf, b.add(a_base, a_off)), typ=ty)

            def col(j):
                b_off = b.add(b.mul(j, em.i64(st.k)), kk) if st.transpose_b else b.add(b.mul(kk, em.i64(st.n)), j)
                bv = b.load(at(b_buf, b.add(b_base, b_off)), typ=ty)
                p = at(row, j)
                b.store(b.call(fma, [av, bv, b.load(p, typ=ty)]), p)
            em.loop(st.n, col)
        em.loop(st.k, depth)

        em.loop(st.n, lambda j: _store_element(em, st, b.load(at(row, j), typ=ty), batch, i, j,
                                               at(out, b.add(c_base, b.add(b.mul(i, em.i64(st.n)), j)))))
    em.loop(hi, unit, start=lo)
    b.ret_void()


class _GemmEmitter:
    def __init__(self, em, st, blk, target):
        self.em, self.st, self.blk = em, st, blk
        self.b = em.b
        self.ty = TYPES[st.out.dtype]
        self.esize = 4 if st.out.dtype == "float32" else 8
        self.vty = ir.VectorType(self.ty, blk.width)
        self.valign = min(64, blk.width * self.esize)
        # llvm.fmuladd fuses only where the CPU has FMA; llvm.fma would become a libm call per lane
        name = "%s.v%df%d" % ("llvm.fma" if target.fma else "llvm.fmuladd", blk.width, 8 * self.esize)
        self.fma = em.declare(name, self.vty, [self.vty] * 3)
        self.a, self.bp, self.c = (em.ptrs[id(x)] for x in (st.a, st.b, st.out))
        self.lo, self.hi = em.fn.args[-2:]

    # ---- small IR helpers ----
    def c64(self, v):
        return ir.Constant(I64, int(v))

    def add(self, x, y):
        return self.b.add(x, y if isinstance(y, ir.Value) else self.c64(y), flags=("nsw",))

    def mul(self, x, y):
        return self.b.mul(x, y if isinstance(y, ir.Value) else self.c64(y), flags=("nsw",))

    def smin(self, x, y):
        y = y if isinstance(y, ir.Value) else self.c64(y)
        return self.b.select(self.b.icmp_signed("<", x, y), x, y)

    def gep(self, ptr, off, ty=None):
        return self.b.gep(ptr, [off], inbounds=True, source_etype=ty or self.ty)

    def vstore(self, value, ptr, align):
        """Store a vector through an element pointer (llvmlite types gep results by element)."""
        st = self.b.store(value, self.b.bitcast(ptr, ir.PointerType(value.type)))
        st.align = align

    def for_(self, start, end, step, body):
        """``for i in range(start, end, step): body(i)`` with a phi counter."""
        b, fn = self.b, self.em.fn
        start = start if isinstance(start, ir.Value) else self.c64(start)
        end = end if isinstance(end, ir.Value) else self.c64(end)
        pre = b.block
        head, body_bb, done = (fn.append_basic_block(n) for n in ("g_loop", "g_body", "g_end"))
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(start, pre)
        b.cbranch(b.icmp_signed("<", i, end), body_bb, done)
        b.position_at_end(body_bb)
        body(i)
        i.add_incoming(self.add(i, step), b.block)
        b.branch(head)
        b.position_at_end(done)

    def if_(self, cond, then, other=None):
        b, fn = self.b, self.em.fn
        t_bb, e_bb, done = (fn.append_basic_block(n) for n in ("g_then", "g_else", "g_join"))
        b.cbranch(cond, t_bb, e_bb)
        b.position_at_end(t_bb)
        then()
        b.branch(done)
        b.position_at_end(e_bb)
        if other is not None:
            other()
        b.branch(done)
        b.position_at_end(done)

    def buffer(self, count):
        """A stack buffer of ``count`` elements, 64-byte aligned."""
        p = self.em.alloca_builder.alloca(self.ty, size=self.c64(count))
        p.align = 64
        return self.em.alloca_builder.bitcast(p, L.PTR)  # an untyped pointer, like the buffers

    # ---- driver ----
    def emit(self):
        blk, st, em = self.blk, self.st, self.em
        # sizes (run-time ones read from the dims array) computed once, before any loop
        self.m, self.mk, self.mn = em.size(st.m), em.size(st.m * st.k), em.size(st.m * st.n)
        self.apack = self.buffer(blk.mc * blk.kc)
        self.bpack = self.buffer(blk.nc * blk.kc)
        self.tile = self.buffer(blk.mr * blk.nr)
        self.for_(self.lo, self.hi, 1, self.unit)
        self.b.ret_void()

    def unit(self, u):
        b, st, blk = self.b, self.st, self.blk
        nb = self.c64(blk.nblocks)
        self.bi = b.sdiv(u, nb)
        j0 = self.mul(b.srem(u, nb), blk.nc)
        ncur = self.smin(self.b.sub(self.c64(st.n), j0), blk.nc)
        self.a_base = self.mul(_a_index(b, st, self.bi, self.c64), self.mk)
        self.b_base = self.mul(self.bi, st.k * st.n)
        self.c_base = self.mul(self.bi, self.mn)

        def depth(p0):
            kcur = self.smin(b.sub(self.c64(st.k), p0), blk.kc)
            first = b.icmp_signed("==", p0, self.c64(0))
            last = b.icmp_signed(">=", self.add(p0, blk.kc), self.c64(st.k))
            self.pack_b(j0, ncur, p0, kcur)

            def rows(i0):
                mcur = self.smin(b.sub(self.m, i0), blk.mc)
                self.pack_a(i0, mcur, p0, kcur)

                def col_panel(jr):
                    def row_panel(ir_):
                        self.micro(i0, ir_, mcur, j0, jr, ncur, kcur, first, last)
                    self.for_(0, mcur, blk.mr, row_panel)
                self.for_(0, ncur, blk.nr, col_panel)
            self.for_(0, self.m, blk.mc, rows)
        self.for_(0, st.k, blk.kc, depth)

    # ---- packing ----
    def load_a(self, i, kk):
        """Element (i, kk) of A's matrix view in this batch."""
        off = self.add(self.mul(kk, self.m), i) if self.st.transpose_a else self.add(self.mul(i, self.st.k), kk)
        return self.b.load(self.gep(self.a, self.add(self.a_base, off)), typ=self.ty)

    def load_b(self, kk, j):
        off = self.add(self.mul(j, self.st.k), kk) if self.st.transpose_b else self.add(self.mul(kk, self.st.n), j)
        return self.b.load(self.gep(self.bp, self.add(self.b_base, off)), typ=self.ty)

    def pack_a(self, i0, mcur, p0, kcur):
        """apack[panel][k][r] = A[i0 + panel*MR + r, p0 + k]; rows past mcur are zero."""
        mr, b = self.blk.mr, self.b
        zero = ir.Constant(self.ty, 0.0)

        def panel(ip):
            base = self.mul(ip, kcur)  # panel start = ip * kc (ip steps by MR)
            valid = self.smin(b.sub(mcur, ip), mr)

            def dst(k, r):
                return self.gep(self.apack, self.add(base, self.add(self.mul(k, mr), r)))

            def copy(k, r):
                b.store(self.load_a(self.add(self.add(i0, ip), r), self.add(p0, k)), dst(k, r))
            if self.st.transpose_a:
                self.for_(0, kcur, 1, lambda k: self.for_(0, valid, 1, lambda r: copy(k, r)))
            else:
                self.for_(0, valid, 1, lambda r: self.for_(0, kcur, 1, lambda k: copy(k, r)))
            self.for_(valid, mr, 1, lambda r: self.for_(0, kcur, 1, lambda k: b.store(zero, dst(k, r))))
        self.for_(0, mcur, mr, panel)

    def pack_b(self, j0, ncur, p0, kcur):
        """bpack[panel][k][c] = B[p0 + k, j0 + panel*NR + c]; columns past ncur are zero."""
        nr, b = self.blk.nr, self.b
        zero = ir.Constant(self.ty, 0.0)

        def panel(jp):
            base = self.mul(jp, kcur)
            valid = self.smin(b.sub(ncur, jp), nr)

            def dst(k, c):
                return self.gep(self.bpack, self.add(base, self.add(self.mul(k, nr), c)))

            def copy(k, c):
                b.store(self.load_b(self.add(p0, k), self.add(self.add(j0, jp), c)), dst(k, c))
            if self.st.transpose_b:
                self.for_(0, valid, 1, lambda c: self.for_(0, kcur, 1, lambda k: copy(k, c)))
            else:
                self.for_(0, kcur, 1, lambda k: self.for_(0, valid, 1, lambda c: copy(k, c)))
            self.for_(0, kcur, 1, lambda k: self.for_(valid, nr, 1, lambda c: b.store(zero, dst(k, c))))
        self.for_(0, ncur, nr, panel)

    # ---- micro-kernel ----
    def splat(self, x):
        b, w = self.b, self.blk.width
        v = b.insert_element(ir.Constant(self.vty, ir.Undefined), x, ir.Constant(I32, 0))
        return b.shuffle_vector(v, ir.Constant(self.vty, ir.Undefined), ir.Constant(ir.VectorType(I32, w), [0] * w))

    def micro(self, i0, ir_, mcur, j0, jr, ncur, kcur, first, last):
        """C[i0+ir_ : +MR, j0+jr : +NR] (+)= apack panel . bpack panel over kcur."""
        b, blk, fn = self.b, self.blk, self.em.fn
        mr, nv, w, nr = blk.mr, blk.nv, blk.width, blk.nr
        pa = self.gep(self.apack, self.mul(ir_, kcur))
        pb = self.gep(self.bpack, self.mul(jr, kcur))
        pre = b.block
        head, body_bb, done = (fn.append_basic_block(n) for n in ("mk_loop", "mk_body", "mk_end"))
        b.branch(head)
        b.position_at_end(head)
        k = b.phi(I64)
        k.add_incoming(self.c64(0), pre)
        zero = ir.Constant(self.vty, [0.0] * w)
        accs = []
        for _ in range(mr * nv):
            p = b.phi(self.vty)
            p.add_incoming(zero, pre)
            accs.append(p)
        b.cbranch(b.icmp_signed("<", k, kcur), body_bb, done)
        b.position_at_end(body_bb)
        bvec = []
        for v in range(nv):
            ld = b.load(self.gep(pb, self.add(self.mul(k, nr), v * w)), typ=self.vty)
            ld.align = self.valign
            bvec.append(ld)
        new = []
        for r in range(mr):
            av = self.splat(b.load(self.gep(pa, self.add(self.mul(k, mr), r)), typ=self.ty))
            for v in range(nv):
                new.append(b.call(self.fma, [av, bvec[v], accs[r * nv + v]]))
        latch = b.block
        k.add_incoming(self.add(k, 1), latch)
        for p, n in zip(accs, new):
            p.add_incoming(n, latch)
        b.branch(head)
        b.position_at_end(done)

        row0 = self.add(i0, ir_)
        col0 = self.add(j0, jr)
        full = b.and_(b.icmp_signed(">=", b.sub(mcur, ir_), self.c64(mr)),
                      b.icmp_signed(">=", b.sub(ncur, jr), self.c64(nr)))
        if self.st.epilogue is not None:
            full = b.and_(full, b.not_(last))
        self.if_(full, lambda: self.store_full(accs, row0, col0, first),
                 lambda: self.store_edge(accs, row0, col0, self.smin(b.sub(mcur, ir_), mr),
                                         self.smin(b.sub(ncur, jr), nr), first, last))

    def c_ptr(self, row, col):
        return self.gep(self.c, self.add(self.c_base, self.add(self.mul(row, self.st.n), col)))

    def store_full(self, accs, row0, col0, first):
        b, blk = self.b, self.blk
        for r in range(blk.mr):
            for v in range(blk.nv):
                p = self.c_ptr(self.add(row0, r), self.add(col0, v * blk.width))
                acc = accs[r * blk.nv + v]
                old = b.load(p, typ=self.vty)
                old.align = self.esize
                self.vstore(b.select(first, acc, b.fadd(old, acc)), p, self.esize)

    def store_edge(self, accs, row0, col0, rows, cols, first, last):
        """Stage the tile, then write its valid part element by element (epilogue included)."""
        b, blk = self.b, self.blk
        for r in range(blk.mr):
            for v in range(blk.nv):
                self.vstore(accs[r * blk.nv + v], self.gep(self.tile, self.c64(r * blk.nr + v * blk.width)),
                            self.valign)
        ep = self.st.epilogue
        em = self.em

        def elem(r, c):
            val = b.load(self.gep(self.tile, self.add(self.mul(r, blk.nr), c)), typ=self.ty)
            row, col = self.add(row0, r), self.add(col0, c)
            p = self.c_ptr(row, col)
            val = b.select(first, val, b.fadd(b.load(p, typ=self.ty), val))
            if ep is not None:
                pre = b.block
                then_bb, join = em.fn.append_basic_block("ep"), em.fn.append_basic_block("ep_join")
                b.cbranch(last, then_bb, join)
                b.position_at_end(then_bb)
                em.env.update({Gemm.ACC_NAME: val, Gemm.ROW.name: row, Gemm.COL.name: col, Gemm.BATCH.name: self.bi})
                em.scopes.append({})  # the emitter caches values per scope; these depend on the tile
                out = em.emit(ep)
                em.scopes.pop()
                then_end = b.block
                b.branch(join)
                b.position_at_end(join)
                phi = b.phi(self.ty)
                phi.add_incoming(val, pre)
                phi.add_incoming(out, then_end)
                val = phi
            b.store(val, p)
        self.for_(0, rows, 1, lambda r: self.for_(0, cols, 1, lambda c: elem(r, c)))
