"""float32 transcendental functions as straight-line LLVM IR.

A call to ``expf`` in a loop body stops LLVM's loop vectoriser, so the
backend emits these functions inline instead: range reduction, a polynomial,
exponent manipulation through integer bitcasts, and ``select`` for special
values. There are no calls and no branches, so a loop over them vectorises
(AVX2/AVX-512). ``KILN_LIBM=1`` switches back to the C library, to compare.

Polynomial coefficients are minimax fits (Lawson's iteration in float64
against mpmath) of the stated function on the stated interval, rounded to
float32. ``llvm.fmuladd`` lets the backend fuse where the CPU has FMA; every
range reduction is exact with or without fusion (split constants).

Accuracy, measured against float64 numpy rounded to float32 (see
tests/compiler/test_llvm_math.py): within 2 ulp for every function. sin/cos
reduce by pi/2 in double precision (Cody-Waite, 28 + 53 bits), exact for
|x| < 2**25; they give nan for |x| >= 2**25 (about 3.4e7), where this
reduction would no longer be exact and a correct one needs Payne-Hanek (use
KILN_LIBM=1 for such inputs), and for inf and nan.
"""
from __future__ import annotations

import logging
import os

import llvmlite.ir as ir

log = logging.getLogger(__name__)

F32, F64 = ir.FloatType(), ir.DoubleType()
I32, I64 = ir.IntType(32), ir.IntType(64)

FUNCS = frozenset(("exp", "expm1", "log", "log1p", "log2", "log10", "tanh", "sin", "cos", "erf",
                   "pow"))

LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 0.693359375, -0.00021219444005469057        # LN2_HI * n exact for |n| < 2**15
LOG10_2_HI, LOG10_2_LO = 0.30078125, 0.0002487456639811952  # LOG10_2_HI * n exact for |n| < 2**16
LOG10E = 0.4342944819032518
TWO_OVER_PI = 0.6366197723675814
PIO2_HI, PIO2_LO = 1.570796325802803, 9.920935796805404e-10  # 28 + 53 bits; n * PIO2_HI exact, |n| < 2**25
SINCOS_MAX = 2.0 ** 25  # beyond, the reduction is not exact: sin/cos give nan
SQRT_HALF_BITS = 0x3F3504F3

# exp(r) = 1 + r + r**2 * P(r), |r| <= ln2/2
EXP_P = (0.4999999403953552, 0.1666652113199234, 0.04166838899254799, 0.008368710055947304,
         0.001381461275741458)
# log1p(f) = f - f**2/2 + f**3 * P(f), sqrt(1/2) - 1 <= f < sqrt(2) - 1
LOG_P = (0.3333333134651184, -0.2500081956386566, 0.20001226663589478, -0.16623356938362122,
         0.14201757311820984, -0.13160182535648346, 0.1276157796382904, -0.07634498178958893)
# tanh(x) = x + x**3 * P(x**2), |x| < 0.55
TANH_P = (-0.33333316445350647, 0.13332585990428925, -0.05385230854153633, 0.021071679890155792,
          -0.0062742396257817745)
TANH_SMALL = 0.55
# sin(r) = r + r**3 * P(r**2), cos(r) = 1 - r**2/2 + r**4 * Q(r**2), |r| <= pi/4
SIN_P = (-0.16666655242443085, 0.00833216030150652, -0.00019515282474458218)
COS_P = (0.04166664555668831, -0.0013887316454201937, 2.44331567955669e-05)
# erf(x) = x * P(x**2) for |x| < 1; erf(x) = 1 - exp(-H(x)) for 1 <= x <= 3.95 (H = -log(erfc))
ERF_P = (1.1283791065216064, -0.3761262595653534, 0.11283600330352783, -0.026854444295167923,
         0.005189536139369011, -0.0008020848035812378, 7.889141124906018e-05)
ERF_H = (0.0003415212850086391, 1.1270891427993774, 0.638144850730896, 0.10310676693916321,
         -0.021838068962097168, 0.002947659231722355, -0.00018637930043041706)
ERF_ONE = 3.95  # erf(x) rounds to 1.0f beyond this
# pow's internal double-precision log2 and exp2 (Taylor series: error far below float32's ulp)
ATANH_SERIES = tuple(1.0 / (2 * k + 1) for k in range(8))
EXP2_SERIES = (1.0, 0.6931471805599453, 0.24022650695910072, 0.05550410866482158,
               0.009618129107628477, 0.0013333558146428443, 0.0001540353039338161,
               1.5252733804059841e-05, 1.321548679014431e-06, 1.01780860092397e-07,
               7.054911620801123e-09, 4.4455382718708116e-10)


def enabled(fn):
    """True when ``fn`` on float32 is emitted inline (``KILN_LIBM=1`` forces the C library)."""
    if fn not in FUNCS:
        return False
    inline = os.environ.get("KILN_LIBM", "") in ("", "0")
    log.debug("float32 %s: %s", fn, "inline llvm_math" if inline else "libm (KILN_LIBM)")
    return inline


def emit(builder, fn, args):
    """Emit float32 ``fn(*args)`` at ``builder``'s position; returns the float value."""
    return getattr(_Math(builder), "_" + fn)(*args)


class _Math:
    def __init__(self, builder):
        self.b = builder
        self.module = builder.module

    # ---- building blocks ----
    def intr(self, name, *args):
        ty = args[0].type
        suffix = "f32" if ty == F32 else "f64"
        full = "llvm.%s.%s" % (name, suffix)
        fn = self.module.globals.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ty, [ty] * len(args)), full)
        return self.b.call(fn, args)

    def fma(self, a, b, c):
        return self.intr("fmuladd", a, b, c)

    def horner(self, x, coeffs):
        ty = x.type
        acc = ir.Constant(ty, coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, ir.Constant(ty, c))
        return acc

    def lt(self, a, b):
        return self.b.fcmp_ordered("<", a, b)

    def gt(self, a, b):
        return self.b.fcmp_ordered(">", a, b)

    def eq(self, a, b):
        return self.b.fcmp_ordered("==", a, b)

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def sel(self, cond, a, b):
        return self.b.select(cond, a, b)

    @staticmethod
    def c(v, ty=F32):
        return ir.Constant(ty, v)

    def pow2(self, n):
        """2**n as float for an i32 n in [-126, 127]."""
        b = self.b
        return b.bitcast(b.shl(b.add(n, ir.Constant(I32, 127)), ir.Constant(I32, 23)), F32)

    def clamp_nan_low(self, x, lo, hi):
        """x clamped to [lo, hi], nan -> lo: later integer conversions never see nan (poison)."""
        x = self.sel(self.b.fcmp_unordered("<", x, self.c(lo)), self.c(lo), x)
        return self.sel(self.gt(x, self.c(hi)), self.c(hi), x)

    def reduce_ln2(self, x):
        """(n, r) with x = n*ln2 + r, |r| <= ln2/2; n is float."""
        n = self.intr("rint", self.b.fmul(x, self.c(LOG2E)))
        r = self.fma(n, self.c(-LN2_HI), x)
        return n, self.fma(n, self.c(-LN2_LO), r)

    def expm1_poly(self, r):
        return self.fma(self.b.fmul(r, r), self.horner(r, EXP_P), r)

    # ---- exp family ----
    def _exp(self, x):
        b = self.b
        xc = self.clamp_nan_low(x, -104.0, 89.0)
        n, r = self.reduce_ln2(xc)
        p = b.fadd(self.expm1_poly(r), self.c(1.0))
        ni = b.fptosi(n, I32)
        n1 = b.ashr(ni, ir.Constant(I32, 1))  # two scalings so 2**n spans denormals and overflow
        res = b.fmul(b.fmul(p, self.pow2(n1)), self.pow2(b.sub(ni, n1)))
        return self.sel(self.isnan(x), x, res)

    def _expm1(self, x):
        b = self.b
        xc = self.clamp_nan_low(x, -30.0, 89.0)
        n, r = self.reduce_ln2(xc)
        q = self.expm1_poly(r)
        # expm1 = 2**n * q + 2**n - 1 = 2 * (s*q + (s - 1/2)), s = 2**(n-1): s*q and s - 1/2 exact
        s = self.pow2(b.sub(b.fptosi(n, I32), ir.Constant(I32, 1)))
        res = b.fmul(self.fma(s, q, b.fsub(s, self.c(0.5))), self.c(2.0))
        # expm1(x) rounds to x below 2**-25; this keeps denormals and -0 that s*q would lose
        tiny = b.fcmp_unordered("<", self.intr("fabs", x), self.c(2.0 ** -25))
        return self.sel(tiny, x, res)

    # ---- log family ----
    def split(self, x):
        """(e, f) with x = 2**e * (1 + f), sqrt(1/2) <= 1 + f < sqrt(2), for finite x > 0.

        e is a float; f is exact. Other inputs give finite garbage for the caller to replace.
        """
        b = self.b
        sub = self.lt(x, self.c(2.0 ** -126))
        xs = self.sel(sub, b.fmul(x, self.c(2.0 ** 24)), x)
        bits = b.bitcast(xs, I32)
        e = b.ashr(b.sub(bits, ir.Constant(I32, SQRT_HALF_BITS)), ir.Constant(I32, 23))
        m = b.bitcast(b.sub(bits, b.shl(e, ir.Constant(I32, 23))), F32)
        e = b.sub(e, self.sel(sub, ir.Constant(I32, 24), ir.Constant(I32, 0)))
        return b.sitofp(e, F32), b.fsub(m, self.c(1.0))

    def log1p_tail(self, f):
        """log1p(f) - f for the reduced f."""
        b = self.b
        f2 = b.fmul(f, f)
        y = b.fmul(b.fmul(f, f2), self.horner(f, LOG_P))
        return self.fma(f2, self.c(-0.5), y)

    def log_specials(self, x, res, zero=0.0):
        """log rules on the argument: x == zero -> -inf, x < zero -> nan, inf -> inf, nan -> nan."""
        inf = self.c(float("inf"))
        res = self.sel(self.eq(x, inf), inf, res)
        res = self.sel(self.eq(x, self.c(zero)), self.c(float("-inf")), res)
        res = self.sel(self.lt(x, self.c(zero)), self.c(float("nan")), res)
        return self.sel(self.isnan(x), x, res)

    def _log(self, x):
        return self.log_specials(x, self.log_core(x))

    def log_core(self, x, extra=None):
        """log(x) for finite x > 0, plus ``extra`` (a small correction) added before rounding."""
        b = self.b
        e, f = self.split(x)
        y = self.fma(e, self.c(LN2_LO), self.log1p_tail(f))
        if extra is not None:
            y = b.fadd(y, extra)
        return self.fma(e, self.c(LN2_HI), b.fadd(f, y))

    def _log2(self, x):
        e, f = self.split(x)
        t = self.b.fadd(f, self.log1p_tail(f))
        return self.log_specials(x, self.fma(t, self.c(LOG2E), e))

    def _log10(self, x):
        e, f = self.split(x)
        t = self.b.fadd(f, self.log1p_tail(f))
        r = self.fma(t, self.c(LOG10E), self.b.fmul(e, self.c(LOG10_2_LO)))
        return self.log_specials(x, self.fma(e, self.c(LOG10_2_HI), r))

    def _log1p(self, x):
        b = self.b
        u = b.fadd(x, self.c(1.0))
        # log1p(x) = log(u) + (x - (u - 1)) / u: the rounding error of 1 + x, put back
        corr = b.fdiv(b.fsub(x, b.fsub(u, self.c(1.0))), u)
        res = self.log_specials(x, self.log_core(u, corr), zero=-1.0)
        return self.sel(self.eq(x, self.c(0.0)), x, res)

    # ---- hyperbolic, trigonometric, erf ----
    def _tanh(self, x):
        b = self.b
        a = self.intr("fabs", x)
        a2 = b.fmul(a, a)
        small = self.fma(b.fmul(a, a2), self.horner(a2, TANH_P), a)
        ac = self.sel(self.gt(a, self.c(10.0)), self.c(10.0), a)  # tanh(10) is 1.0f; nan stays nan
        e = self._exp(b.fadd(ac, ac))
        big = b.fsub(self.c(1.0), b.fdiv(self.c(2.0), b.fadd(e, self.c(1.0))))
        return self.intr("copysign", self.sel(self.lt(a, self.c(TANH_SMALL)), small, big), x)

    def _sin(self, x):
        return self.sincos(x, 0)

    def _cos(self, x):
        return self.sincos(x, 1)

    def sincos(self, x, shift):
        """sin (shift 0) or cos (shift 1): reduce by pi/2 in double, quadrant picks the polynomial."""
        b = self.b
        ok = self.lt(self.intr("fabs", x), self.c(SINCOS_MAX))
        xd = b.fpext(self.sel(ok, x, self.c(0.0)), F64)
        n = self.intr("rint", b.fmul(xd, self.c(TWO_OVER_PI, F64)))
        rd = self.fma(n, self.c(-PIO2_HI, F64), xd)
        r = b.fptrunc(self.fma(n, self.c(-PIO2_LO, F64), rd), F32)
        quad = b.fsub(n, b.fmul(self.intr("floor", b.fmul(n, self.c(0.25, F64))), self.c(4.0, F64)))
        q = b.add(b.fptosi(quad, I32), ir.Constant(I32, shift))
        r2 = b.fmul(r, r)
        s = self.fma(b.fmul(r, r2), self.horner(r2, SIN_P), r)
        c = self.fma(b.fmul(r2, r2), self.horner(r2, COS_P), self.fma(r2, self.c(-0.5), self.c(1.0)))
        odd = b.trunc(q, ir.IntType(1))
        neg = b.trunc(b.lshr(q, ir.Constant(I32, 1)), ir.IntType(1))
        res = self.sel(odd, c, s)
        res = self.sel(neg, b.fneg(res), res)
        if shift == 0:
            res = self.sel(self.eq(x, self.c(0.0)), x, res)  # sin(-0) = -0
        return self.sel(ok, res, self.c(float("nan")))

    def _erf(self, x):
        b = self.b
        a = self.intr("fabs", x)
        small = b.fmul(x, self.horner(b.fmul(x, x), ERF_P))
        ac = self.sel(self.gt(a, self.c(ERF_ONE)), self.c(ERF_ONE), a)
        big = b.fsub(self.c(1.0), self._exp(b.fneg(self.horner(ac, ERF_H))))
        return self.sel(self.lt(a, self.c(1.0)), small, self.intr("copysign", big, x))

    # ---- pow ----
    def _pow(self, x, y):
        """C powf: |x|**y = exp2(y * log2|x|) in double precision, then C's sign and special rules."""
        b = self.b
        ax = self.intr("fabs", x)
        e, f = self.split(ax)
        fd = b.fpext(f, F64)
        s = b.fdiv(fd, b.fadd(fd, self.c(2.0, F64)))  # log1p(f) = 2 atanh(s)
        ln1pf = b.fmul(b.fmul(s, self.c(2.0, F64)), self.horner(b.fmul(s, s), ATANH_SERIES))
        lg = self.fma(ln1pf, self.c(LOG2E, F64), b.fpext(e, F64))
        lg = self.sel(self.eq(ax, self.c(0.0)), self.c(float("-inf"), F64), lg)
        lg = self.sel(self.eq(ax, self.c(float("inf"))), self.c(float("inf"), F64), lg)
        t = b.fmul(b.fpext(y, F64), lg)
        t = self.sel(b.fcmp_unordered("<", t, self.c(-160.0, F64)), self.c(-160.0, F64), t)
        t = self.sel(self.gt(t, self.c(130.0, F64)), self.c(130.0, F64), t)
        nd = self.intr("rint", t)
        p = self.horner(b.fsub(t, nd), EXP2_SERIES)
        scale = b.bitcast(b.shl(b.add(b.fptosi(nd, I64), ir.Constant(I64, 1023)), ir.Constant(I64, 52)), F64)
        res = b.fptrunc(b.fmul(p, scale), F32)
        # sign and special values
        ay = self.intr("fabs", y)
        y_int = self.eq(self.intr("rint", y), y)
        small_y = self.lt(ay, self.c(2.0 ** 24))
        y_bit = b.trunc(b.fptosi(self.sel(small_y, y, self.c(0.0)), I32), ir.IntType(1))
        y_odd = b.and_(b.and_(y_int, small_y), y_bit)
        x_neg = b.icmp_signed("<", b.bitcast(x, I32), ir.Constant(I32, 0))
        res = self.sel(b.and_(x_neg, y_odd), b.fneg(res), res)
        bad = b.and_(b.and_(self.lt(x, self.c(0.0)), self.gt(x, self.c(float("-inf")))), b.not_(y_int))
        bad = b.or_(bad, b.or_(self.isnan(x), self.isnan(y)))
        res = self.sel(bad, self.c(float("nan")), res)
        one = self.c(1.0)
        unit = b.and_(self.eq(ax, one), self.eq(ay, self.c(float("inf"))))
        unit = b.or_(unit, b.or_(self.eq(x, one), self.eq(y, self.c(0.0))))
        return self.sel(unit, one, res)
