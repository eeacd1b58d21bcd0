"""Programs whose batch size is chosen at run time (``kiln compile --shape data=?,3,224,224``).

The graph passes are run as usual, twice, with the batch set to two large sentinel
values. Both runs must give the same graph (node for node, attributes included): a pass
or an expansion whose result depends on the batch size (a Reshape with the batch
written into its shape) makes them differ, and the graph is refused. Every size that
differs between the runs is a linear function ``a*N + b`` of the batch, read off the
two runs and checked against a third inference; it becomes an ``expr.Dim`` of a
``symbolic_sizes.SizeTable``. Fusion, lowering, memory planning and code generation
then run once on those symbolic shapes, so the kernels read the batch-dependent sizes
from the dims array at run time and the arena is laid out per batch size.

Large sentinels keep the passes' shape questions honest: two sizes equal at the
sentinel are equal as functions of N (unless a static size is about a million).
Semantics are those of a batch larger than one (a squeeze never drops the batch axis).
"""
from __future__ import annotations

from ..runtime.errors import MXNetError
from .graph import topo_order
from .passes.infer import infer_shapes
from .pipeline import PassManager, finish_program, prepare_graph
from .symbolic_sizes import SizeTable, slot_shape

SENTINELS = (1000003, 1000033, 999983)  # two to fit a*N + b, a third to check it


def compile_dynamic_batch(heads, var_shapes, var_types, name="program", num_threads=None, fastmath=None):
    """Compile an inference program whose batch size is read at run time.

    var_shapes: variable name -> shape, with ``None`` at each input's batch axis (all such
    axes share one batch size N). Returns (ProgramSpec, info, SizeTable): slot shapes hold
    ``"$k"`` for size ``k`` of the table, the program's ``dims_slot`` takes
    ``table.values(N)``, ``info["out_shapes"]`` are slot shapes too.
    """
    from ..runtime.threads import parallel_threads
    from .codegen.llvm import fastmath_flags
    if not any(d is None for s in var_shapes.values() for d in s):
        raise MXNetError("dynamic batch: no input has a run-time batch axis (None in its shape)")
    num_threads = parallel_threads() if num_threads is None else max(1, int(num_threads))
    preps = [_prepare(heads, var_shapes, var_types, n) for n in SENTINELS[:2]]
    nodes = _same_structure(preps[0].graph, preps[1].graph)
    check = infer_shapes(preps[0].graph, _at(var_shapes, SENTINELS[2]))
    table = SizeTable([(1, 0)])
    symbolic = {}
    for node, other in nodes:
        for i in range(node.num_outputs):
            key = (node.uid, i)
            s1, s2 = preps[0].shapes[key], preps[1].shapes[(other.uid, i)]
            symbolic[key] = _symbolic_shape(node, i, s1, s2, check.get(key), table)
            if preps[0].dtypes[key] != preps[1].dtypes[(other.uid, i)]:
                raise MXNetError("dynamic batch: the dtype of output %d of %r depends on the batch size"
                                 % (i, node.name))
    prep = preps[0]
    prep.shapes = symbolic
    spec, info = finish_program(prep, name, num_threads, fastmath_flags(fastmath), sizes=table)
    info["out_shapes"] = [slot_shape(symbolic[e.key()]) for e in prep.fwd[:len(info["outputs"])]]
    info["size_table"] = table.rows
    return spec, info, table


def _at(var_shapes, n):
    return {k: tuple(n if d is None else d for d in s) for k, s in var_shapes.items()}


def _prepare(heads, var_shapes, var_types, n):
    try:
        return prepare_graph(heads, _at(var_shapes, n), var_types, None, PassManager(), False)
    except MXNetError as err:
        raise MXNetError("dynamic batch: the graph does not accept a run-time batch size (inference with "
                         "batch %d failed: %s)" % (n, err)) from err


def _signature(node, position):
    inputs = tuple((position[e.node.uid], e.index) for e in node.inputs)
    return (node.op.name if node.op else None, node.name if node.is_variable else None,
            tuple(sorted(node.attrs.items())) if node.op else (), inputs)


def _same_structure(g1, g2):
    """Pairs of corresponding nodes of the two sentinel runs' graphs; MXNetError where they differ."""
    o1, o2 = topo_order(g1.outputs), topo_order(g2.outputs)
    p1 = {n.uid: k for k, n in enumerate(o1)}
    p2 = {n.uid: k for k, n in enumerate(o2)}
    for a, b in zip(o1, o2):
        if _signature(a, p1) != _signature(b, p2):
            raise MXNetError("dynamic batch: node %r (%s) differs between batch sizes, so the graph's structure "
                             "depends on the batch size (e.g. a Reshape with the batch written in its shape); "
                             "compile with a fixed batch" % (a.name, a.op.name if a.op else "variable"))
    heads1 = [(p1[e.node.uid], e.index) for e in g1.outputs]
    if len(o1) != len(o2) or heads1 != [(p2[e.node.uid], e.index) for e in g2.outputs]:
        raise MXNetError("dynamic batch: the graph's structure depends on the batch size; compile with a fixed batch")
    return list(zip(o1, o2))


def _symbolic_shape(node, index, s1, s2, s3, table):
    """The shape of output ``index`` of ``node`` with batch-dependent sizes as ``expr.Dim``."""
    n1, n2, n3 = SENTINELS
    what = "output %d of %s %r" % (index, node.op.name if node.op else "variable", node.name)
    if s3 is None or not len(s1) == len(s2) == len(s3):
        raise MXNetError("dynamic batch: the rank of %s depends on the batch size" % what)
    out = []
    for d1, d2, d3 in zip(s1, s2, s3):
        a, rem = divmod(d1 - d2, n1 - n2)
        b = d1 - a * n1
        if rem or a < 0 or a * n3 + b != d3 or b + a < 0:
            raise MXNetError("dynamic batch: a size of %s is not a linear function of the batch size (%d, %d, %d "
                             "at batch %d, %d, %d)" % (what, d1, d2, d3, n1, n2, n3))
        out.append(b if a == 0 else table.dim(a, b))
    return tuple(out)
