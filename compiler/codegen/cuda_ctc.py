"""``CTC`` stage -> CUDA C: one thread block per batch element.

The algorithm and its defined results are ``codegen/llvm_ctc.py``'s (read
its docstring): thread 0 reads the lengths and builds the blank-extended
label (serial, data-dependent), then the block's threads share the work of
each phase: log-softmax rows (one row per thread), the skip mask, alpha and
beta state loops (one state per thread, a barrier per time step), and the
gradient rows (one class per thread, subtracting the state posteriors of
that class in state order, as the LLVM loop does). Element ``n`` uses its
own workspace slice, so blocks never share scratch.
"""
from __future__ import annotations

from .. import expr as E
from ..kernel import CTC
from .cuda import VALUE_C, float_literal

THREADS = 128
INVALID = -(1 << 62)  # a NaN or huge label or length: outside every valid range
INT_LIMIT = float(1 << 62)

PRELUDE = r"""#ifndef KILN_CTC_PRELUDE
#define KILN_CTC_PRELUDE
/* a label or length as MXNet's integer cast reads it; NaN and |v| >= 2**62 are invalid */
__device__ __forceinline__ long long kiln_ctc_int(double v) {
  return (v > -4611686018427387904.0 && v < 4611686018427387904.0) ? (long long)v : %(invalid)dLL; }
#endif
""" % {"invalid": INVALID}

BODY = r"""
  typedef %(real)s real;
  const real NINF = %(ninf)s;
  __shared__ long long s_tn, s_ln, s_rep;
  __shared__ int s_valid;
  for (long long n = blockIdx.x; n < %(N)dLL; n += gridDim.x) {
    unsigned char* base = (unsigned char*)%(ws)s + n * %(slice)dLL;
    real* alpha = (real*)(base + %(off_alpha)dLL);
    real* beta0 = (real*)(base + %(off_beta)dLL);
    real* beta1 = beta0 + %(row)dLL;
    real* erow = (real*)(base + %(off_emission)dLL);
    real* mask = (real*)(base + %(off_mask)dLL);
    int* ext = (int*)(base + %(off_ext)dLL);
    if (threadIdx.x == 0) {
      bool valid = true;
      long long tn = %(T)dLL, ln = %(L)dLL;
%(lengths)s
      long long repeats = 0, prev = %(invalid)dLL;
      for (long long j = 0; j < ln; ++j) {
        const long long v = %(label_j)s;
        const bool ok = v >= 0 && v < %(C)dLL;
        valid = valid && ok;
        ext[2 * j] = %(blank)d;
        ext[2 * j + 1] = (int)(ok ? v : %(blank)dLL);
        repeats += v == prev ? 1 : 0;
        prev = v;
      }
      ext[2 * ln] = %(blank)d;
      s_tn = tn; s_ln = ln; s_rep = repeats; s_valid = valid ? 1 : 0;
    }
    __syncthreads();
    const long long tn = s_tn, ln = s_ln, states = 2 * s_ln + 1;
    const bool feasible = s_valid && ln + s_rep <= tn && tn > 0;
    if (!feasible) {
      const real fill = s_valid ? %(zero)s : %(nan)s;
      if (threadIdx.x == 0) %(loss)s[n] = fill;
      for (long long q = threadIdx.x; q < %(TC)dLL; q += blockDim.x)
        %(grad)s[((q / %(C)dLL) * %(N)dLL + n) * %(C)dLL + q %% %(C)dLL] = fill;
      __syncthreads();
      continue;
    }
    /* log-softmax of rows t < tn into grad, zeros beyond */
    for (long long t = threadIdx.x; t < tn; t += blockDim.x) {
      const long long rowat = (t * %(N)dLL + n) * %(C)dLL;
      real top = NINF;
      for (long long k = 0; k < %(C)dLL; ++k) { const real x = %(data)s[rowat + k]; top = x > top ? x : top; }
      real total = %(zero)s;
      for (long long k = 0; k < %(C)dLL; ++k) total = total + %(exp)s(%(data)s[rowat + k] - top);
      const real lse = top + %(log)s(total);
      for (long long k = 0; k < %(C)dLL; ++k) %(grad)s[rowat + k] = %(data)s[rowat + k] - lse;
    }
    for (long long q = tn * %(C)dLL + threadIdx.x; q < %(TC)dLL; q += blockDim.x)
      %(grad)s[((q / %(C)dLL) * %(N)dLL + n) * %(C)dLL + q %% %(C)dLL] = %(zero)s;
    /* the skip mask: state s may be entered from s - 2 when its label differs from both */
    for (long long s = threadIdx.x; s < states; s += blockDim.x) {
      const int lab = ext[s];
      const bool ok = s >= 2 && lab != %(blank)d && lab != ext[s >= 2 ? s - 2 : s];
      mask[s] = ok ? %(zero)s : NINF;
    }
    if (threadIdx.x == 0) {
      mask[states] = NINF; mask[states + 1] = NINF;
      erow[states] = %(zero)s; erow[states + 1] = %(zero)s;
    }
    for (long long t = threadIdx.x; t < tn; t += blockDim.x) {
      alpha[t * %(row)dLL] = NINF; alpha[t * %(row)dLL + 1] = NINF;
    }
    __syncthreads();
    /* alpha, the emission at t included */
    for (long long t = 0; t < tn; ++t) {
      const long long rowat = (t * %(N)dLL + n) * %(C)dLL;
      for (long long s = threadIdx.x; s < states; s += blockDim.x) erow[s] = %(grad)s[rowat + ext[s]];
      __syncthreads();
      real* cur = alpha + t * %(row)dLL;
      if (t == 0) {
        for (long long s = threadIdx.x; s < states; s += blockDim.x) cur[s + 2] = s < 2 ? erow[s] : NINF;
      } else {
        const real* prv = cur - %(row)dLL;
        for (long long s = threadIdx.x; s < states; s += blockDim.x)
          cur[s + 2] = kiln_lse3(prv[s + 2], prv[s + 1], prv[s] + mask[s]) + erow[s];
      }
      __syncthreads();
    }
    const long long last = tn - 1;
    const real* endrow = alpha + last * %(row)dLL;
    const real ll = kiln_lse3(endrow[states + 1], endrow[states], NINF);
    if (threadIdx.x == 0) %(loss)s[n] = -ll;
    /* beta, the emission at t excluded, in two rows; the gradient row by row */
    for (long long s = threadIdx.x; s < states; s += blockDim.x) beta0[s] = s >= states - 2 ? %(zero)s : NINF;
    if (threadIdx.x == 0) {
      beta0[states] = NINF; beta0[states + 1] = NINF; beta1[states] = NINF; beta1[states + 1] = NINF;
    }
    __syncthreads();
    real* bc = beta0;
    real* bn = beta1;
    for (long long k = 0; k < tn; ++k) {
      const long long t = last - k;
      const long long rowat = (t * %(N)dLL + n) * %(C)dLL;
      if (t > 0) {
        for (long long s = threadIdx.x; s < states; s += blockDim.x) erow[s] = %(grad)s[rowat + ext[s]];
        __syncthreads();
        for (long long s = threadIdx.x; s < states; s += blockDim.x)
          bn[s] = kiln_lse3(bc[s] + erow[s], bc[s + 1] + erow[s + 1], bc[s + 2] + erow[s + 2] + mask[s + 2]);
        __syncthreads();
      }
      const real* arow = alpha + t * %(row)dLL;
      for (long long s = threadIdx.x; s < states; s += blockDim.x) erow[s] = %(exp)s(arow[s + 2] + bc[s] - ll);
      __syncthreads();
      for (long long c = threadIdx.x; c < %(C)dLL; c += blockDim.x) {
        real g = %(exp)s(%(grad)s[rowat + c]);
        for (long long s = 0; s < states; ++s)
          if (ext[s] == c) g = g - erow[s];
        %(grad)s[rowat + c] = g;
      }
      __syncthreads();
      real* sw = bn; bn = bc; bc = sw;
    }
  }
"""


def _as_int(r, buf, off):
    """C text: element ``off`` of a label or length buffer as int64 (see ``kiln_ctc_int``)."""
    ref = "%s[%s]" % (r.ptrs[id(buf)], off)
    if buf.dtype == "float16":
        return "kiln_ctc_int((double)kiln_h2f(%s))" % ref
    if E.is_float(buf.dtype):
        return "kiln_ctc_int((double)%s)" % ref
    return "(long long)%s" % ref


def render_ctc(r, st, fname):
    if st.data.dtype not in ("float32", "float64"):
        raise NotImplementedError("CUDA backend: CTC on %s" % st.data.dtype)
    dtype = st.data.dtype
    real = VALUE_C[dtype]
    single = dtype == "float32"
    offsets, slice_bytes = CTC.layout(st.T, st.L)
    blank = 0 if st.blank_first else st.C - 1
    pad = 0 if st.blank_first else -1
    lengths = []
    if st.data_lengths is not None:
        lengths.append("      { const long long v = %s; const bool ok = v >= 0 && v <= %dLL; valid = valid && ok; "
                       "tn = ok ? v : 0; }" % (_as_int(r, st.data_lengths, "n"), st.T))
    if st.label_lengths is not None:
        lengths.append("      { const long long v = %s; const bool ok = v >= 0 && v <= %dLL; valid = valid && ok; "
                       "ln = ok ? v : 0; }" % (_as_int(r, st.label_lengths, "n"), st.L))
    else:  # the first padding value ends the label
        lengths.append("      for (long long j = %dLL - 1; j >= 0; --j) if (%s == %dLL) ln = j;"
                       % (st.L, _as_int(r, st.label, "n * %dLL + j" % st.L), pad))
    values = {
        "real": real, "ninf": float_literal(float("-inf"), dtype), "nan": float_literal(float("nan"), dtype),
        "zero": float_literal(0.0, dtype), "exp": "expf" if single else "exp", "log": "logf" if single else "log",
        "N": st.N, "T": st.T, "C": st.C, "L": st.L, "TC": st.T * st.C, "row": st.S + 2, "slice": slice_bytes,
        "ws": r.ptrs[id(st.workspace)], "loss": r.ptrs[id(st.loss)], "grad": r.ptrs[id(st.grad)],
        "data": r.ptrs[id(st.data)], "blank": blank, "invalid": INVALID, "lengths": "\n".join(lengths),
        "label_j": _as_int(r, st.label, "n * %dLL + j" % st.L),
    }
    values.update({"off_" + part: off for part, off in offsets.items()})
    code, em = r.begin(fname, THREADS)
    code.lines.append(BODY % values)
    lse3 = ("__device__ __forceinline__ {t} kiln_lse3(%(t)s x, %(t)s y, %(t)s z) {{\n"
            "  const %(t)s yz = y > z ? y : z;\n  %(t)s m = x > yz ? x : yz;\n"
            "  if (m == {ninf}) m = {zero};\n"
            "  return m + {log}({exp}(x - m) + {exp}(y - m) + {exp}(z - m));\n}}\n") % {"t": real}
    lse3 = lse3.format(t=real, ninf=values["ninf"], zero=values["zero"], log=values["log"], exp=values["exp"])
    guard = "KILN_CTC_LSE3_" + ("F32" if single else "F64")
    r.functions.append("%s#ifndef %s\n#define %s\n%s#endif" % (PRELUDE, guard, guard, lse3))
    r.finish(fname, code, THREADS)
    r.add_launch(fname, THREADS, (st.N, ()), per_block=1)
