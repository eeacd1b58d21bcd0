"""``Gemm`` stage -> CUDA C: a shared-memory tiled product with 4x4 register blocking.

Each block of 256 threads computes 64x64 output tiles (grid-stride over
``batch x row tiles x column tiles``): per depth step of 16 it stages a
64x16 panel of A and a 16x64 panel of B in shared memory (zero-padded at the
edges, transposed operands read by index), then each thread accumulates a
4x4 block of outputs in registers, at rows ``ty + 16 i`` and columns ``tx +
16 j`` so that warps read shared memory without bank conflicts. The epilogue
(bias, activation: ``Gemm.epilogue``) is applied to each element as it is
stored, like the LLVM backend does.
"""
from __future__ import annotations

from .. import expr as E
from ..kernel import Gemm
from .cuda import VALUE_C, _work, float_literal

TM = TN = 64  # output tile
TK = 16  # depth step
THREADS = 256  # 16 x 16 threads, 4 x 4 outputs each
RB = 4  # register block per thread and axis


def render_gemm(r, st, fname):
    """Append the tiled kernel for ``st`` to renderer ``r`` with its launch."""
    if not E.is_float(st.out.dtype):
        raise NotImplementedError("CUDA backend: Gemm on %s" % st.out.dtype)
    code, em = r.begin(fname, THREADS)
    dtype = st.out.dtype
    ct = VALUE_C[dtype]
    n, k = int(st.n), int(st.k)
    tn = -(-n // TN)
    # m and the batch may be run-time sizes (a dynamic batch): read once, tiles counted in C
    m = em.let("long long", em.size(st.m), "m")
    batch = em.let("long long", em.size(st.batch), "nb")
    code("const long long tm = (%s + %d) / %d, tiles = %s * tm * %dLL;" % (m, TM - 1, TM, batch, tn))
    static = isinstance(st.m, int) and isinstance(st.batch, int)
    if static:
        launch = (st.batch * -(-st.m // TM) * tn, ())
    else:  # batch * m * tn / TM blocks: at most one idle block per matrix, loops cover the rest
        scale, dims, _ = _work(em, [st.batch, st.m])
        launch = (scale * tn, dims)
    shares_a = getattr(st, "shares_a", None)
    if shares_a is None:
        shares_a = st.a_batch != st.batch if isinstance(st.a_batch, int) and isinstance(st.batch, int) \
            else st.a_batch is not st.batch
    a_batch = em.size(st.a_batch)
    pa, pb, po = (r.ptrs[id(b)] for b in (st.a, st.b, st.out))

    def load(ptr, off):
        ref = "%s[%s]" % (ptr, off)
        return "kiln_h2f(%s)" % ref if dtype == "float16" else ref
    zero = float_literal(0.0, dtype)
    c = code
    c("__shared__ %s As[%d][%d];" % (ct, TK, TM + 1))
    c("__shared__ %s Bs[%d][%d];" % (ct, TK, TN + 1))
    c("const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;")
    c.open("for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x)")
    c("const long long bi = tile / (tm * %dLL), rest = tile %% (tm * %dLL);" % (tn, tn))
    c("const long long row0 = (rest / %dLL) * %d, col0 = (rest %% %dLL) * %d;" % (tn, TM, tn, TN))
    a_mat = "(bi %% %s)" % a_batch if shares_a else "bi"
    c("const long long abase = %s * %s * %dLL, bbase = bi * %dLL;" % (a_mat, m, k, k * n))
    c("%s acc[%d][%d];" % (ct, RB, RB))
    c("#pragma unroll")
    c("for (int i = 0; i < %d; ++i) { for (int j = 0; j < %d; ++j) acc[i][j] = %s; }" % (RB, RB, zero))
    c.open("for (long long k0 = 0; k0 < %dLL; k0 += %d)" % (k, TK))
    # A panel: element (row rr, depth kk); threads run along the stored matrix's fast axis
    c.open("for (int l = threadIdx.x; l < %d; l += %d)" % (TM * TK, THREADS))
    if st.transpose_a:  # stored [k, m]
        c("const int kk = l / %d, rr = l %% %d;" % (TM, TM))
        a_off = "abase + (k0 + kk) * %s + row0 + rr" % m
    else:  # stored [m, k]
        c("const int rr = l / %d, kk = l %% %d;" % (TK, TK))
        a_off = "abase + (row0 + rr) * %dLL + k0 + kk" % k
    c("As[kk][rr] = (row0 + rr < %s && k0 + kk < %dLL) ? %s : %s;" % (m, k, load(pa, a_off), zero))
    c.close()
    # B panel: element (depth kk, column cc)
    c.open("for (int l = threadIdx.x; l < %d; l += %d)" % (TN * TK, THREADS))
    if st.transpose_b:  # stored [n, k]
        c("const int cc = l / %d, kk = l %% %d;" % (TK, TK))
        b_off = "bbase + (col0 + cc) * %dLL + k0 + kk" % k
    else:  # stored [k, n]
        c("const int kk = l / %d, cc = l %% %d;" % (TN, TN))
        b_off = "bbase + (k0 + kk) * %dLL + col0 + cc" % n
    c("Bs[kk][cc] = (col0 + cc < %dLL && k0 + kk < %dLL) ? %s : %s;" % (n, k, load(pb, b_off), zero))
    c.close()
    c("__syncthreads();")
    c("#pragma unroll")
    c.open("for (int kk = 0; kk < %d; ++kk)" % TK)
    c("%s av[%d], bv[%d];" % (ct, RB, RB))
    c("#pragma unroll")
    c("for (int i = 0; i < %d; ++i) { av[i] = As[kk][ty + 16 * i]; bv[i] = Bs[kk][tx + 16 * i]; }" % RB)
    c("#pragma unroll")
    c("for (int i = 0; i < %d; ++i) { for (int j = 0; j < %d; ++j) acc[i][j] += av[i] * bv[j]; }" % (RB, RB))
    c.close()
    c("__syncthreads();")
    c.close()
    # store through the epilogue
    c("#pragma unroll")
    c.open("for (int i = 0; i < %d; ++i)" % RB)
    c("#pragma unroll")
    c.open("for (int j = 0; j < %d; ++j)" % RB)
    c("const long long row = row0 + ty + 16 * i, col = col0 + tx + 16 * j;")
    c.open("if (row < %s && col < %dLL)" % (m, n))
    em.push()
    value = "acc[i][j]"
    if st.epilogue is not None:
        em.env.update({Gemm.ACC_NAME: value, Gemm.ROW.name: "row", Gemm.COL.name: "col", Gemm.BATCH.name: "bi"})
        value = em.emit(st.epilogue)
    if dtype == "float16":
        value = "kiln_f2h(%s)" % value
    c("%s[(bi * %s + row) * %dLL + col] = %s;" % (po, m, n, value))
    em.pop()
    c.close()
    c.close()
    c.close()
    c.close()
    r.finish(fname, code, THREADS)
    r.add_launch(fname, THREADS, launch, per_block=1 if static else TM)
