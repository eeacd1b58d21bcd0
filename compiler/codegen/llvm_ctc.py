"""``CTC`` stage -> LLVM IR: the CTC loss and its gradient, one batch element per work unit.

Each CTC stage becomes an internal helper ``void @<kernel>_ctc(ptr buffers...,
i64 lo, i64 hi)`` that handles batch elements [lo, hi); the kernel calls it
over all elements through the emitter's ``parallel_range``. An element owns
its slice of the workspace and its own loss and gradient entries, so
elements need no synchronisation. Per element:

1. lengths: ``data_lengths[n]`` (else T) and ``label_lengths[n]`` (else the
   position of the first padding value, else L), each truncated toward zero
   as MXNet's integer cast does; the label, extended with blanks
   (``b l1 b l2 ... b``, S = 2 Ln + 1 states), goes to the workspace and its
   repeats (equal neighbours) are counted;
2. an invalid element (a length outside [0, T] or [0, L], or a label value
   outside [0, C), NaN included) gets loss NaN and a NaN gradient: a defined
   result instead of a read out of bounds. An infeasible one (``Ln +
   repeats > Tn``, or Tn = 0) gets loss 0 and a zero gradient: MXNet 1.9.1
   (warp-ctc) returns loss 0 there and leaves its gradient unset;
3. log-softmax of rows t < Tn into ``grad`` (rows beyond are zero);
4. alpha (log space, emission at t included) for every (t, s) into the
   workspace table; ``loss = -log(alpha[Tn-1, S-1] + alpha[Tn-1, S-2])``;
5. beta (log space, emission at t excluded) backwards over t in two rows;
   at each t, beta[t-1] is computed first (it reads row t's log-softmax),
   then row t becomes ``softmax - sum over states s labelled c of
   exp(alpha + beta - log-likelihood)``, the gradient w.r.t. the activations.

Sums of probabilities are log-sum-exp with the maximum factored out (a
maximum of -inf gives -inf, not NaN), so nothing underflows for long
sequences; float32 computes in float32 with the inline exp/log of
``llvm_math``, float64 in float64.

The state loops are kept free of branches and data-dependent selects so
that LLVM can vectorise them (2-3x faster than loops with clamped indices
and selects, measured at T=100, N=32, C=50, L=20): each time step first gathers the
emissions ``log p[t, ext[s]]`` into a row, alpha rows start with two -inf
pads (state s - 1 and s - 2 of state 0 and 1 are plain loads), beta rows and
the emission row end with pads, and "may skip a blank" is a precomputed row
of 0 / -inf added to the skip term. Only the gradient's scatter into classes
(states share classes) stays a scalar loop.
"""
from __future__ import annotations

import llvmlite.ir as ir

from .. import expr as E
from ..kernel import CTC
from . import llvm as L
from .llvm_stage import StageEmitter

I1, I8, I32, I64 = L.I1, L.I8, L.I32, L.I64
# rough scalar operations per (time step, state) of one pass and per activation, for threading
WORK_PER_STATE = 80
WORK_PER_ACTIVATION = 40
INVALID = -(1 << 62)  # integer value given to a NaN or huge label or length: outside every valid range
INT_LIMIT = float(1 << 62)


def emit_ctc(em, st):
    """Emit the helper for stage ``st`` and call it from emitter ``em`` over the batch."""
    bufs = st.inputs + st.outputs
    fn, inner = em.unit_helper(bufs, "_ctc")
    _CTCEmitter(inner, st).emit(fn.args[-2], fn.args[-1])
    inner.b.ret_void()
    work = st.N * (2 * st.T * st.S * WORK_PER_STATE + st.T * st.C * WORK_PER_ACTIVATION)
    em.parallel_range(fn, bufs, st.N, work)


class _CTCEmitter(StageEmitter):
    def __init__(self, em, st):
        super().__init__(em, st)
        if st.data.dtype not in ("float32", "float64"):
            raise NotImplementedError("LLVM backend: CTC on %s" % st.data.dtype)
        self.ty = L.VALUE_TYPES[st.data.dtype]
        self.blank = 0 if st.blank_first else st.C - 1
        self.pad = 0 if st.blank_first else -1
        self.offsets, self.slice = CTC.layout(st.T, st.L)
        self.fm = em.fm

    # ---- helpers ----
    def f(self, v):
        return ir.Constant(self.ty, float(v))

    def fmax(self, x, y):
        return self.b.select(self.b.fcmp_ordered(">", x, y), x, y)

    def fadd(self, x, y):
        return self.b.fadd(x, y, flags=self.fm)

    def fsub(self, x, y):
        return self.b.fsub(x, y, flags=self.fm)

    def exp(self, x):
        return self.em.float_fn("exp", [x], self.ty)

    def log(self, x):
        return self.em.float_fn("log", [x], self.ty)

    def lse3(self, x, y, z):
        """log(exp(x) + exp(y) + exp(z)); -inf when all three are -inf."""
        m = self.fmax(x, self.fmax(y, z))
        m = self.b.select(self.b.fcmp_ordered("==", m, self.f(float("-inf"))), self.f(0.0), m)
        total = self.fadd(self.fadd(self.exp(self.fsub(x, m)), self.exp(self.fsub(y, m))), self.exp(self.fsub(z, m)))
        return self.fadd(m, self.log(total))

    def as_int(self, buf, off):
        """Element ``off`` of a label or length buffer as int64, truncated toward zero (MXNet's
        cast); NaN and values beyond 2**62 in magnitude give ``INVALID``."""
        b = self.b
        v = b.load(self.at(self.em.ptrs[id(buf)], off, L.STORE_TYPES[buf.dtype]), typ=L.STORE_TYPES[buf.dtype])
        if E.is_float(buf.dtype):
            if buf.dtype == "float16":
                v = b.fpext(v, L.F32)
            ok = b.and_(b.fcmp_ordered(">", v, ir.Constant(v.type, -INT_LIMIT)),
                        b.fcmp_ordered("<", v, ir.Constant(v.type, INT_LIMIT)))
            i = b.fptosi(b.select(ok, v, ir.Constant(v.type, 0.0)), I64)
            return b.select(ok, i, self.c(INVALID))
        if v.type.width == 64:
            return v
        return b.zext(v, I64) if buf.dtype in E.UNSIGNED else b.sext(v, I64)

    def within(self, v, lo, hi):
        """lo <= v < hi (signed)."""
        b = self.b
        return b.and_(b.icmp_signed(">=", v, self.c(lo)), b.icmp_signed("<", v, self.c(hi)))

    # per-element addressing (set by ``element``)
    def lp(self, t, k, buf=None):
        """Address of class ``k`` in row t of ``grad`` (its log-softmax, then its gradient) or ``buf``."""
        row = self.mul(self.add(self.mul(t, self.c(self.st.N)), self.n), self.c(self.st.C))
        return self.at(self.em.ptrs[id(buf or self.st.grad)], self.add(row, k), self.ty)

    def row_at(self, row, s):
        return self.at(row, s, self.ty)

    def get(self, row, s):
        return self.b.load(self.row_at(row, s), typ=self.ty)

    def put(self, row, s, v):
        self.b.store(v, self.row_at(row, s))

    def alpha_row(self, t):
        """Row t of the alpha table; state s is at index s + 2 (indices 0 and 1 are -inf pads)."""
        return self.at(self.part["alpha"], self.mul(t, self.c(self.st.S + 2)), self.ty)

    def label_at(self, s):
        return self.b.sext(self.b.load(self.at(self.part["ext"], s, I32), typ=I32), I64)

    def fill_rows(self, start, value):
        """grad rows [start, T) of this element = value."""
        st, b = self.st, self.b
        self.em.loop(st.T, lambda t: self.em.loop(st.C, lambda k: b.store(value, self.lp(t, k))), start=start)

    # ---- the helper ----
    def emit(self, lo, hi):
        self.em.loop(hi, self.element, start=lo)

    def element(self, n):
        st, b, em = self.st, self.b, self.em
        self.n = n
        base = self.at(em.ptrs[id(st.workspace)], self.mul(n, self.c(self.slice)), I8)
        self.part = {name: self.at(base, self.c(off), I8) for name, off in self.offsets.items()}
        ext = self.part["ext"]
        valid = self.var(ir.Constant(I1, 1), I1)

        def checked(v, hi):  # v if 0 <= v <= hi, else 0 with the element marked invalid
            ok = self.within(v, 0, hi + 1)
            b.store(b.and_(b.load(valid, typ=I1), ok), valid)
            return b.select(ok, v, self.c(0))
        tn = checked(self.as_int(st.data_lengths, n), st.T) if st.data_lengths is not None else self.c(st.T)
        if st.label_lengths is not None:
            ln = checked(self.as_int(st.label_lengths, n), st.L)
        else:  # the first padding value ends the label
            first = self.var(self.c(st.L))

            def scan(j):
                hit = b.icmp_signed("==", self.as_int(st.label, self.add(self.mul(n, self.c(st.L)), j)),
                                    self.c(self.pad))
                cur = b.load(first, typ=I64)
                b.store(b.select(b.and_(hit, b.icmp_signed("<", j, cur)), j, cur), first)
            em.loop(st.L, scan)
            ln = b.load(first, typ=I64)
        repeats, prev = self.var(self.c(0)), self.var(self.c(INVALID))
        blank = ir.Constant(I32, self.blank)

        def extend(j):
            v = self.as_int(st.label, self.add(self.mul(n, self.c(st.L)), j))
            ok = self.within(v, 0, st.C)
            b.store(b.and_(b.load(valid, typ=I1), ok), valid)
            b.store(blank, self.at(ext, self.mul(j, self.c(2)), I32))
            b.store(b.trunc(b.select(ok, v, self.c(self.blank)), I32),
                    self.at(ext, self.add(self.mul(j, self.c(2)), self.c(1)), I32))
            same = b.zext(b.icmp_signed("==", v, b.load(prev, typ=I64)), I64)
            b.store(self.add(b.load(repeats, typ=I64), same), repeats)
            b.store(v, prev)
        em.loop(ln, extend)
        b.store(blank, self.at(ext, self.mul(ln, self.c(2)), I32))
        states = self.add(self.mul(ln, self.c(2)), self.c(1))
        with b.if_else(b.load(valid, typ=I1)) as (good, bad):
            with good:
                feasible = b.and_(b.icmp_signed("<=", self.add(ln, b.load(repeats, typ=I64)), tn),
                                  b.icmp_signed(">", tn, self.c(0)))
                with b.if_else(feasible) as (yes, no):
                    with yes:
                        self.recursion(tn, states)
                    with no:
                        b.store(self.f(0.0), self.at(em.ptrs[id(st.loss)], n, self.ty))
                        self.fill_rows(self.c(0), self.f(0.0))
            with bad:
                b.store(self.f(float("nan")), self.at(em.ptrs[id(st.loss)], n, self.ty))
                self.fill_rows(self.c(0), self.f(float("nan")))

    def recursion(self, tn, states):
        st, b, em = self.st, self.b, self.em
        ninf, zero = self.f(float("-inf")), self.f(0.0)
        one, two = self.c(1), self.c(2)
        mask, emit_row = self.part["mask"], self.part["emission"]

        def log_softmax(t):
            def x(k):
                return b.load(self.lp(t, k, st.data), typ=self.ty)
            top = self.var(ninf, self.ty)
            em.loop(st.C, lambda k: b.store(self.fmax(b.load(top, typ=self.ty), x(k)), top))
            m = b.load(top, typ=self.ty)
            total = self.var(zero, self.ty)
            em.loop(st.C, lambda k: b.store(self.fadd(b.load(total, typ=self.ty), self.exp(self.fsub(x(k), m))), total))
            lse = self.fadd(m, self.log(b.load(total, typ=self.ty)))
            em.loop(st.C, lambda k: b.store(self.fsub(x(k), lse), self.lp(t, k)))
        em.loop(tn, log_softmax)
        self.fill_rows(tn, zero)

        def skip(s):  # state s may be entered from s - 2 (skipping a blank): its label differs from both
            s2 = b.select(b.icmp_signed(">=", s, two), b.sub(s, two), s)
            k = self.label_at(s)
            ok = b.and_(b.icmp_signed(">=", s, two), b.and_(b.icmp_signed("!=", k, self.c(self.blank)),
                                                          b.icmp_signed("!=", k, self.label_at(s2))))
            self.put(mask, s, b.select(ok, zero, ninf))
        em.loop(states, skip)
        for pad in (states, self.add(states, one)):
            self.put(mask, pad, ninf)
            self.put(emit_row, pad, zero)

        def emissions(t):
            em.loop(states, lambda s: self.put(emit_row, s, b.load(self.lp(t, self.label_at(s)), typ=self.ty)))

        # alpha: the emission at t included; row 0 holds the leading blank and the first label
        def pads(t):
            row = self.alpha_row(t)
            self.put(row, self.c(0), ninf)
            self.put(row, one, ninf)
        em.loop(tn, pads)
        emissions(self.c(0))
        row0 = self.alpha_row(self.c(0))
        em.loop(states, lambda s: self.put(row0, self.add(s, two),
                                           b.select(b.icmp_signed("<", s, two), self.get(emit_row, s), ninf)))

        def alpha_step(t):
            emissions(t)
            prev, cur = self.alpha_row(b.sub(t, one)), self.alpha_row(t)

            def state(s):
                x = self.get(prev, self.add(s, two))
                y = self.get(prev, self.add(s, one))
                z = self.fadd(self.get(prev, s), self.get(mask, s))
                self.put(cur, self.add(s, two), self.fadd(self.lse3(x, y, z), self.get(emit_row, s)))
            em.loop(states, state)
        em.loop(tn, alpha_step, start=one)
        last = b.sub(tn, one)
        end = self.alpha_row(last)
        ll = self.lse3(self.get(end, self.add(states, one)), self.get(end, states), ninf)  # states S-1, S-2
        b.store(b.fneg(ll, flags=self.fm), self.at(em.ptrs[id(st.loss)], self.n, self.ty))

        # beta: the emission at t excluded; two rows with -inf pads after the last state
        rows = [self.at(self.part["beta"], self.c(k * (st.S + 2)), self.ty) for k in (0, 1)]
        cur, nxt = self.var(rows[0], L.PTR), self.var(rows[1], L.PTR)
        em.loop(states, lambda s: self.put(rows[0], s, b.select(
            b.icmp_signed(">=", s, b.sub(states, two)), zero, ninf)))
        for row in rows:
            for pad in (states, self.add(states, one)):
                self.put(row, pad, ninf)

        def beta_step(k):
            t = b.sub(last, k)
            bc, bn = b.load(cur, typ=L.PTR), b.load(nxt, typ=L.PTR)
            with b.if_then(b.icmp_signed(">", t, self.c(0))):
                emissions(t)

                def state(s):
                    s1, s2 = self.add(s, one), self.add(s, two)
                    x = self.fadd(self.get(bc, s), self.get(emit_row, s))
                    y = self.fadd(self.get(bc, s1), self.get(emit_row, s1))
                    z = self.fadd(self.fadd(self.get(bc, s2), self.get(emit_row, s2)), self.get(mask, s2))
                    self.put(bn, s, self.lse3(x, y, z))
                em.loop(states, state)
            # row t: softmax minus the posterior of each state, summed per class
            row = self.alpha_row(t)
            em.loop(states, lambda s: self.put(emit_row, s, self.exp(
                self.fsub(self.fadd(self.get(row, self.add(s, two)), self.get(bc, s)), ll))))
            em.loop(st.C, lambda c: b.store(self.exp(b.load(self.lp(t, c), typ=self.ty)), self.lp(t, c)))

            def posterior(s):
                at = self.lp(t, self.label_at(s))
                b.store(self.fsub(b.load(at, typ=self.ty), self.get(emit_row, s)), at)
            em.loop(states, posterior)
            b.store(bn, cur)
            b.store(bc, nxt)
        em.loop(tn, beta_step)
