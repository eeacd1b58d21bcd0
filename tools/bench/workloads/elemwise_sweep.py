"""The arithmetic chain of elemwise_arith over sizes 1K..64M (powers of 4): time per element."""
from workloads import _common as C
from workloads import elemwise_arith as A
from harness import Case

NAME = "elemwise_sweep"
DESCRIPTION = "elemwise_arith's 10-op chain over sizes 1K..64M float32 (per item = time per element)"


def cases(quick):
    sizes = [4 ** k for k in range(5, 10, 2)] if quick else [4 ** k for k in range(5, 14)]
    return [Case("n=%s" % C.size_label(n), {"n": n}, per=(n, "elem"),
                 max_repeat=3 if n >= (1 << 26) else None) for n in sizes]


kiln, mxnet, numpy, torch, jax = A.kiln, A.mxnet, A.numpy, A.torch, A.jax
