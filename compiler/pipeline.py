"""The pass pipeline: graph + input shapes/dtypes -> a ProgramSpec the runtime loads.

``compile_program`` is what executors call: forward heads, optional gradients
(with grad_req per variable), and two entries, ``forward`` and ``backward``,
sharing one slot table so that backward reads what forward left in the arena.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from ..runtime.errors import MXNetError
from ..runtime.cuda_program import CudaProgramSpec
from ..runtime.program import ProgramSpec
from ..runtime.threads import parallel_threads
from . import program_cache
from .builder import Builder
from .codegen.llvm import emit_program, fastmath_flags
from .graph import Entry, Graph, Node, topo_order
from .passes.expand import expand_composites
from .passes.gradient import gradient
from .passes.infer import infer_shapes, infer_types
from .passes.remat import rematerialise
from .passes.training import specialise_training, training_sensitive
from .passes.simplify import PASSES as SIMPLIFY_PASSES, drop_shape_noops
from .lower import lower_graph, plan_naive
from .ops.random import KEY_DTYPE, KEY_SHAPE, KEY_SLOT
from .memory import plan_memory
from .passes.fuse import fuse
from .report import CompileReport, describe_program, flops_totals, kernel_flops, removed_nodes

log = logging.getLogger(__name__)

HEAD_GRAD = "__head_grad%d"
OUTPUT = "__output%d"
GRAD = "__grad:%s"
GRAD_IN = "__grad_in:%s"
AUX_UPDATE = "__aux_update:%s"
REMAT_MODES = {False: None, True: "checkpoint", "cheap": "cheap", "checkpoint": "checkpoint"}
# passes whose removed nodes the report names (a picture can say what CSE merged)
REMOVING_PASSES = frozenset([name for name, _ in SIMPLIFY_PASSES] + ["shape_noops"])


class PassManager:
    """Runs named passes, timing each and recording node counts before and after."""

    def __init__(self, disabled=()):
        env = os.environ.get("KILN_DISABLE_PASSES", "")
        self.disabled = set(disabled) | {p.strip() for p in env.split(",") if p.strip()}
        self.report = CompileReport()
        self.removed = {}  # pass name -> removed_nodes(), for REMOVING_PASSES

    def run(self, name, fn, graph, *args, **kwargs):
        if name in self.disabled:
            return graph
        before = len(graph.nodes)
        t0 = time.perf_counter()
        result = fn(graph, *args, **kwargs)
        after = len(result.nodes) if isinstance(result, Graph) else before
        if name in REMOVING_PASSES and after < before:
            self.removed[name] = removed_nodes(graph, result)
        self.report.passes.append({"name": name, "nodes_before": before, "nodes_after": after,
                                   "seconds": time.perf_counter() - t0})
        return result


def _phase_nodes(roots, exclude=()):
    """Operator nodes needed for ``roots`` in topological order, skipping ``exclude``."""
    order = topo_order(roots)
    return [n for n in order if n.op is not None and n.uid not in exclude]


def _materialise(entries, taken):
    """Give each program output its own node: variables and repeated entries get a copy."""
    out = []
    for e in entries:
        if e.node.is_variable or e.key() in taken:
            b = Builder("%s_copy" % e.node.name)
            e = b.op("identity", e)
        taken.add(e.key())
        out.append(e)
    return out


def compile_program(heads, var_shapes, var_types, grad_req=None, name="program", disabled_passes=(),
                    remat=False, fastmath=None, is_train=False, num_threads=None, backend="llvm"):
    """Compile ``heads`` (list of Entry) for the given variable shapes/dtypes.

    grad_req: variable name -> 'write' | 'add' | 'null'. remat: False, True (checkpointing,
    ``passes/remat.py``) or 'cheap' (recompute only cheap values) trades backward work for
    memory. fastmath: LLVM fast-math flags (default ``$KILN_FASTMATH``). is_train: compile
    training-sensitive nodes (Dropout) for training (``passes/training.py``); ignored for
    graphs without such nodes. num_threads: worker threads parallel kernels may use (default
    ``parallel_threads()``; ahead-of-time builds give their own, see ``aot.py``). backend:
    'llvm' (a ``ProgramSpec`` for the CPU) or 'cuda' (a ``cuda_program.CudaProgramSpec``:
    the same kernels as CUDA C, not cached here; NVRTC caches its compilations).
    Returns (ProgramSpec, info) where info names the slots of
    outputs, gradients and head gradients, and ``info["rng_key"]`` the hidden int64 input
    of shape (2,) holding [seed, counter] that random nodes read (None without random
    nodes), and ``info["aux_updates"]`` maps auxiliary variables that a training program
    updates (BatchNorm's moving statistics) to the forward output slot holding their new
    value: the caller copies it back after ``forward`` (a separate slot, so no kernel ever
    reads an auxiliary input that another kernel of the same run has overwritten). A graph
    compiled before with the same inputs and options comes from
    ``program_cache``.
    """
    if remat not in REMAT_MODES:
        raise MXNetError("remat=%r is not one of False, True, 'cheap', 'checkpoint'" % (remat,))
    if backend not in ("llvm", "cuda"):
        raise MXNetError("backend=%r is not 'llvm' or 'cuda'" % (backend,))
    remat_mode = REMAT_MODES[remat]
    pm = PassManager(disabled_passes)
    fastmath = fastmath_flags(fastmath)
    num_threads = parallel_threads() if num_threads is None else max(1, int(num_threads))
    is_train = bool(is_train) and training_sensitive(Graph(heads))
    # every option that changes the program must be in the key
    options = {"name": name, "disabled": sorted(pm.disabled), "remat": remat_mode, "fastmath": fastmath,
               "threads": num_threads, "libm": os.environ.get("KILN_LIBM", ""), "is_train": is_train}
    key = program_cache.program_key(heads, var_shapes, var_types, grad_req, options) if backend == "llvm" else None
    cached = program_cache.load(key)
    if cached is not None:
        return cached
    prep = prepare_graph(heads, var_shapes, var_types, grad_req, pm, is_train, remat_mode)
    spec, info = finish_program(prep, name, num_threads, fastmath, backend=backend)
    if key is not None:
        program_cache.store(key, spec, info)
    return spec, info


@dataclass
class Prepared:
    """A graph after every graph-level pass, with inferred shapes and dtypes: what
    ``finish_program`` fuses, lowers and emits. ``fwd``/``bwd``: the entries written to the
    program's external output and gradient slots."""

    pm: PassManager
    graph: Graph
    shapes: dict
    dtypes: dict
    info: dict
    fwd: list
    bwd: list


def prepare_graph(heads, var_shapes, var_types, grad_req, pm, is_train, remat_mode=None):
    """Inference, training specialisation, gradients and the simplification passes."""
    graph = Graph(heads)
    grad_req = dict(grad_req or {})
    # Inference on the user's graph first: errors name the user's nodes, and every
    # variable (weights included) gets its shape and dtype.
    shapes = _infer_into(graph, var_shapes, infer_shapes, "shape")
    dtypes = _infer_into(graph, var_types, infer_types, "dtype")
    var_shapes = _named(graph, shapes)
    var_types = _named(graph, dtypes)
    # not a disableable optimisation: without it inference programs would sample
    t0, before = time.perf_counter(), len(graph.nodes)
    graph, aux_updates = specialise_training(graph, is_train, shapes)
    graph = Graph(list(graph.outputs) + list(aux_updates.values()))
    pm.report.passes.append({"name": "training_mode", "nodes_before": before, "nodes_after": len(graph.nodes),
                             "seconds": time.perf_counter() - t0})
    info = {"outputs": [OUTPUT % i for i in range(len(heads))], "grads": {}, "head_grads": [],
            "grad_in": {}, "out_shapes": [shapes[h.key()] for h in heads],
            "out_dtypes": [dtypes[h.key()] for h in heads], "rng_key": None,
            "aux_updates": {n: AUX_UPDATE % n for n in aux_updates}}
    wrt = [v for v in graph.arguments() if grad_req.get(v.name, "null") != "null"]
    bwd = []
    if wrt:
        graph = pm.run("expand_composites_differentiable", expand_composites, graph, keep_differentiable=True,
                       var_shapes=var_shapes)
        present = {n.name: n for n in graph.variables()}
        # a variable an expansion no longer reads (BatchNorm's gamma under fix_gamma) gets zeros
        wrt = [present.get(v.name, v) for v in wrt]
        head_vars = []
        for i in range(len(heads)):
            v = Node(None, HEAD_GRAD % i)
            var_shapes[v.name], var_types[v.name] = info["out_shapes"][i], info["out_dtypes"][i]
            head_vars.append(v)
        t0 = time.perf_counter()
        before = len(graph.nodes)
        bwd = gradient(graph, wrt, [Entry(v) for v in head_vars])  # aux updates get no head gradient
        for k, (v, g) in enumerate(zip(wrt, bwd)):
            if grad_req[v.name] == "add":
                prev = Node(None, GRAD_IN % v.name)
                var_shapes[prev.name], var_types[prev.name] = var_shapes[v.name], var_types[v.name]
                bwd[k] = Builder(v.name + "_accumulate").add(Entry(prev), g)
                info["grad_in"][v.name] = prev.name
            info["grads"][v.name] = GRAD % v.name
        info["head_grads"] = [v.name for v in head_vars]
        graph = Graph(list(graph.outputs) + bwd)
        pm.report.passes.append({"name": "gradient", "nodes_before": before, "nodes_after": len(graph.nodes),
                                 "seconds": time.perf_counter() - t0})
    n_fwd = len(heads) + len(aux_updates)
    graph = pm.run("expand_composites", expand_composites, graph, var_shapes=var_shapes)
    for pass_name, pass_fn in SIMPLIFY_PASSES:
        graph = pm.run(pass_name, pass_fn, graph)
    if "shape_noops" not in pm.disabled:
        shapes = _infer_into(graph, var_shapes, infer_shapes, "shape")
        dtypes = _infer_into(graph, var_types, infer_types, "dtype")
        graph = pm.run("shape_noops", drop_shape_noops, graph, shapes, dtypes)
    taken = set()
    fwd = _materialise(graph.outputs[:n_fwd], taken)
    bwd = _materialise(graph.outputs[n_fwd:], taken)
    graph = Graph(fwd + bwd)
    shapes = _infer_into(graph, var_shapes, infer_shapes, "shape")
    dtypes = _infer_into(graph, var_types, infer_types, "dtype")
    if remat_mode and bwd and "remat" not in pm.disabled:
        graph = pm.run("remat", rematerialise, graph, n_fwd, shapes, dtypes, mode=remat_mode)
        bwd = graph.outputs[n_fwd:]
        shapes = _infer_into(graph, var_shapes, infer_shapes, "shape")
        dtypes = _infer_into(graph, var_types, infer_types, "dtype")
    return Prepared(pm, graph, shapes, dtypes, info, fwd, bwd)


def lower_program(prep, sizes=None):
    """Fusion and lowering of a prepared graph: the ``lower.Lowered`` program (kernels, slot
    table, launches per phase) that every backend emits from.

    sizes: a ``symbolic_sizes.SizeTable`` when ``prep.shapes`` hold ``expr.Dim`` sizes
    (a program whose sizes are read at run time, e.g. a dynamic batch)."""
    pm, graph, shapes, dtypes, info, fwd, bwd = (prep.pm, prep.graph, prep.shapes, prep.dtypes, prep.info,
                                                prep.fwd, prep.bwd)
    fwd_slots = info["outputs"] + list(info["aux_updates"].values())
    external = {e.key(): slot for slot, e in zip(fwd_slots, fwd)}
    for slot, e in zip(info["grads"].values(), bwd):
        external[e.key()] = slot
    fwd_nodes = _phase_nodes(fwd)
    bwd_nodes = _phase_nodes(bwd, exclude={n.uid for n in fwd_nodes}) if bwd else []
    t0 = time.perf_counter()
    phases = fuse([("forward", fwd_nodes), ("backward", bwd_nodes)], shapes, dtypes, set(external),
                  enabled="fuse" not in pm.disabled)
    n_ops = len(fwd_nodes) + len(bwd_nodes)
    pm.report.passes.append({"name": "fuse", "nodes_before": n_ops,
                             "nodes_after": sum(len(groups) for _, groups in phases),
                             "seconds": time.perf_counter() - t0})
    # random nodes read [seed, counter] from one hidden input; each gets its own stream id
    random_nodes = [n for _, groups in phases for g in groups for n in g if n.op.random]
    rng = None
    if random_nodes:
        rng = (Node(None, KEY_SLOT), {n.uid: k for k, n in enumerate(random_nodes)})
        shapes[rng[0].out(0).key()], dtypes[rng[0].out(0).key()] = KEY_SHAPE, KEY_DTYPE
        info["rng_key"] = KEY_SLOT
    t0 = time.perf_counter()
    low = lower_graph(graph, shapes, dtypes, external, phases, rng, sizes)
    pm.report.passes.append({"name": "lower", "nodes_before": n_ops, "nodes_after": len(low.kernels),
                             "seconds": time.perf_counter() - t0})
    return low


def finish_program(prep, name, num_threads, fastmath, sizes=None, backend="llvm"):
    """Lowering (``lower_program``), memory planning and code generation for ``backend``
    ('llvm': a ProgramSpec; 'cuda': a CudaProgramSpec): (spec, info)."""
    pm, graph, info = prep.pm, prep.graph, prep.info
    low = lower_program(prep, sizes)
    t0 = time.perf_counter()
    n_launches = sum(len(launches) for launches in low.phases.values())
    inplace = ()
    if "memory" in pm.disabled:
        pm.report.memory = dict(plan_naive(low), aliased=0)
    else:
        plan = plan_memory(low)
        pm.report.memory, inplace = plan.stats, plan.inplace
        pm.report.passes.append({"name": "memory", "nodes_before": n_launches,
                                 "nodes_after": sum(len(launches) for launches in low.phases.values()),
                                 "seconds": time.perf_counter() - t0})
    t0 = time.perf_counter()
    if backend == "cuda":
        code = _emit_cuda(low)
    else:
        code = emit_program(name, low.kernels, low.calls(), num_threads, fastmath, _regions(low))
    pm.report.passes.append({"name": "codegen_" + backend, "nodes_before": len(low.kernels),
                             "nodes_after": len(low.kernels), "seconds": time.perf_counter() - t0})
    kernels = {}  # name -> report item, in order of first launch
    unit_dims = sizes.values(1) if sizes is not None else None  # run-time sizes are counted at N = 1
    for launches in low.phases.values():
        for launch in launches:
            item = kernels.get(launch.kernel.name)
            if item is None:
                item = kernels[launch.kernel.name] = {"name": launch.kernel.name, "ops": launch.ops,
                                                      "backend": backend, "launches": 0,
                                                      "flops": kernel_flops(launch.kernel, unit_dims)}
                pm.report.kernels.append(item)
            item["launches"] += 1
    pm.report.flops = flops_totals([(p, kernels[l.kernel.name]["flops"]) for p, launches in low.phases.items()
                                    for l in launches])
    pm.report.program_cache = {"hit": None}
    pm.report.program = describe_program([(p, l) for p, launches in low.phases.items() for l in launches],
                                         low, _slot_roles(low, info, graph), inplace, pm.removed)
    dims_slot = sizes.buffer.name if sizes is not None else None
    arena_scale = pm.report.memory.get("arena_scale", 0)
    if backend == "cuda":
        source, entries = code
        spec = CudaProgramSpec(name, source, entries, low.slots, pm.report.memory["arena_bytes"],
                               pm.report.to_dict(), dims_slot, arena_scale)
    else:
        spec = ProgramSpec(name, code, ["forward", "backward"], low.slots, pm.report.memory["arena_bytes"],
                           pm.report.to_dict(), dims_slot=dims_slot, arena_scale=arena_scale)
    return spec, info


def _emit_cuda(low):
    """(CUDA C of every kernel, {entry: [(cuda_program.Launch, slots)]}): each kernel's
    stages are launches of their own, with the kernel's slots as pointer parameters."""
    from .codegen.cuda import render_kernels
    source, rendered = render_kernels(low.kernels)
    by_kernel = {k.name: ck for k, ck in zip(low.kernels, rendered)}
    entries = {phase: [(launch, list(call.slots)) for call in calls for launch in by_kernel[call.kernel.name].launches]
               for phase, calls in low.phases.items()}
    entries.setdefault("backward", [])
    return source, entries


def _slot_roles(low, info, graph):
    """slot index -> role of each external slot, for the report's picture of the program."""
    by_name = {info["rng_key"]: "rng_key"} if info["rng_key"] else {}
    by_name.update({v.name: "aux" for v in graph.auxiliary_states()})
    for role, names in (("head_grad", info["head_grads"]), ("grad_in", info["grad_in"].values()),
                        ("output", info["outputs"]), ("grad", info["grads"].values()),
                        ("aux_update", info["aux_updates"].values())):
        by_name.update({n: role for n in names})
    return {i: by_name.get(s.name, "input") for i, s in enumerate(low.slots) if s.external}


def _regions(low):
    """The memory behind each slot for codegen's aliasing facts: an arena byte range (the
    layout with N = 1 for run-time sizes: disjoint there means disjoint for every N), or the
    external slot whose caller array it is (an alias takes its root's)."""
    out = []
    for i, s in enumerate(low.slots):
        root = s.alias_of if s.alias_of is not None else i
        if low.slots[root].external:
            out.append(("external", root))
        else:
            start, _ = low.extent(root)
            out.append(("arena", start, start + max(low.extent(i)[1], 1)))
    return out


def _infer_into(graph, given, fn, what):
    """Run inference; every variable and entry must end up known."""
    values = fn(graph, given)
    for n in graph.nodes:
        for i in range(n.num_outputs):
            if values.get((n.uid, i)) is None:
                kind = "variable" if n.is_variable else "output %d of operator %s" % (i, n.op.name)
                raise MXNetError("cannot infer the %s of %s %r; give it when binding" % (what, kind, n.name))
    return values


def _named(graph, values):
    return {v.name: values[v.out(0).key()] for v in graph.variables()}
