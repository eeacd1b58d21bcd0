"""The compile report: what each pass did, which kernels exist, how memory was planned.

Plain data (it travels inside ProgramSpec as a dict), with a readable table
for people and JSON for tools. Items are reachable as attributes
(``rep.kernels``) and, for older callers, as keys (``rep["kernels"]``).

``program`` describes the compiled program so that a picture can be drawn from
it (``kiln.viz_compiled``) without the compiler's objects; empty for reports
stored before it existed. Keys:

- ``launches``: kernel calls in run order (forward, then backward), each
  ``{"phase", "kernel", "nodes", "reads": [slot], "writes": [slot]}``; slots
  are indices into ``slots``. ``nodes`` are the fused graph nodes, root last
  (it writes the launch's slots), each ``{"name", "op", "reads": [slot],
  "fused_inputs": [position in nodes]}``: what each operator reads from memory
  and from the other operators computed inside the same kernel (an input
  read only for its shape is listed when the kernel loads that buffer for
  another operator). Reshape-like launches the memory planner turned into
  aliases are not launched and do not appear.
- ``slots``: ``{"name", "shape", "dtype", "nbytes", "role", "offset",
  "alias_of", "inplace_of"}``. role: ``input`` (a graph variable), ``aux`` (a
  variable an operator mutates: BatchNorm's moving statistics), ``head_grad``,
  ``grad_in`` (previous gradient of grad_req='add'), ``rng_key``, ``output``,
  ``grad``, ``aux_update`` (external, bound to caller arrays) or ``internal``
  (in the arena at byte ``offset``). ``alias_of``: the slot whose storage an
  internal slot views (a removed reshape); ``inplace_of``: the input slot
  whose bytes the writing kernel overwrote in place. Internal slots whose byte
  ranges overlap are never live at the same time, except in-place pairs.
- ``removed``: per simplification pass, names of the operator nodes it removed
  (at most ``REMOVED_NAMES`` each) and ``count``.

``flops`` estimates the arithmetic of one run (``kernel_flops``), so that
``kiln inspect`` can say what a model costs without running it: per phase
(``forward``, ``backward``) and over both, ``gemm`` (2*m*n*k per matrix
product: dense layers, convolutions through their im2col GEMM), ``other``
(every other stage: element count times the code generator's scalar-operation
estimate, which counts loads and index arithmetic too) and ``total``. Each
``kernels`` item has its per-call ``flops`` and its ``launches`` count.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from .codegen.llvm import work_per_element
from .codegen.llvm_ctc import WORK_PER_ACTIVATION, WORK_PER_STATE
from .codegen.llvm_sort import WORK_PER_ELEMENT_PASS
from . import expr as E
from .expr import Call, Cast, Reduce, map_children
from .kernel import CTC, Compute, Gemm, ScatterAdd, Sort


@dataclass
class CompileReport:
    passes: list = field(default_factory=list)
    kernels: list = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    jit: dict = field(default_factory=dict)
    program_cache: dict = field(default_factory=dict)  # "hit": None, "memory" or "disk"
    program: dict = field(default_factory=dict)  # launches, slots, removed (module docstring)
    flops: dict = field(default_factory=dict)  # per phase and overall: gemm, other, total

    @property
    def total_seconds(self):
        return sum(p["seconds"] for p in self.passes) + self.jit.get("seconds", 0.0)

    def __getitem__(self, key):
        return getattr(self, key)

    def to_dict(self):
        return asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: d[k] for k in ("passes", "kernels", "memory", "jit", "program_cache", "program",
                                           "flops")
                     if k in d})

    def __str__(self):
        lines = ["passes:", "  %-34s %8s %8s %9s" % ("name", "before", "after", "ms")]
        for p in self.passes:
            lines.append("  %-34s %8d %8d %9.2f" % (p["name"], p["nodes_before"], p["nodes_after"], p["seconds"] * 1e3))
        if self.jit:
            lines.append("  %-34s %8s %8s %9.2f%s" % ("llvm_jit", "", "", self.jit.get("seconds", 0.0) * 1e3,
                                                    "  (disk cache hit)" if self.jit.get("cache_hit") else ""))
        if self.program_cache.get("hit"):
            lines.append("  (program from the %s cache: no pass ran)" % self.program_cache["hit"])
        lines.append("kernels (%d):" % len(self.kernels))
        if self.kernels and "flops" in self.kernels[0]:
            lines.append("  %-40s %-6s %8s %5s  %s" % ("name", "", "flops", "calls", "operators"))
        for k in self.kernels:
            flops = k.get("flops")
            cost = " %8s %5d" % (_si(flops["gemm"] + flops["other"]), k["launches"]) if flops else ""
            lines.append("  %-40s %-6s%s  %s" % (k["name"], k["backend"], cost, " ".join(k["ops"])))
        if self.memory:
            m = self.memory
            lines.append("memory: arena %s bytes, naive %s bytes, in-place %s, reused %s, aliased %s"
                         % (m.get("arena_bytes"), m.get("naive_bytes"), m.get("inplace"), m.get("reused"),
                            m.get("aliased", 0)))
        for phase in ("forward", "backward"):
            f = self.flops.get(phase)
            if f and f["total"]:
                lines.append("%s flops: %s (gemm %s, other %s)" % (phase, _si(f["total"]), _si(f["gemm"]),
                                                                  _si(f["other"])))
        if self.flops:
            lines.append("total flops: %s" % _si(self.flops["total"]))
        lines.append("total compile seconds: %.3f" % self.total_seconds)
        return "\n".join(lines)


def _si(n):
    """``n`` with an SI suffix (1.23G): FLOP counts span many orders of magnitude."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return "%.3g%s" % (n / div, suffix)
    return str(n)


def kernel_flops(kernel, dims=None):
    """Estimated operations of one call of ``kernel``: ``{"gemm": 2*m*n*k*batch summed over
    its products, "other": the rest}``. A GEMM's epilogue (fused bias, activation) counts as
    other, per output element. dims: the run-time sizes to count a kernel with ``expr.Dim``
    sizes at (a dynamic batch's report counts batch 1)."""
    def n(x):
        return E.int_value(x, dims) if not E.is_static(x) else int(x)
    gemm = other = 0
    for st in kernel.stages:
        if isinstance(st, Gemm):
            gemm += 2 * n(st.m) * st.n * st.k * n(st.batch)
            if st.epilogue is not None:
                other += n(st.m) * st.n * n(st.batch) * n(work_per_element(st.epilogue))
        elif isinstance(st, Compute):  # a product lowered as a reduction (float16) is still a GEMM
            products = n(st.out.size) * n(_summed_products(st.body))
            gemm += products
            other += max(0, n(st.out.size) * n(work_per_element(st.body)) - products)
        elif isinstance(st, ScatterAdd):  # zero-fill, then one add per source position
            other += n(st.out.size) + math.prod(n(x) for x in st.extents) * (n(work_per_element(st.value)) + 1)
        elif isinstance(st, Sort):
            other += st.rows * st.n * max(1, math.ceil(math.log2(max(st.n, 2)))) * WORK_PER_ELEMENT_PASS
        elif isinstance(st, CTC):
            other += st.N * (2 * st.T * st.S * WORK_PER_STATE + st.T * st.C * WORK_PER_ACTIVATION)
    return {"gemm": gemm, "other": other}


def _summed_products(e):
    """2 x the iterations of the sums of products in ``e``: matrix products (and convolutions)
    that have no ``Gemm`` stage, such as float16 ones, are reductions of ``a * b``."""
    seen, total = set(), [0]

    def go(x):
        if id(x) not in seen:
            seen.add(id(x))
            if isinstance(x, Reduce) and x.kind == "sum":
                body = x.body.x if isinstance(x.body, Cast) else x.body
                if isinstance(body, Call) and body.fn == "mul":
                    total[0] += 2 * math.prod(x.extents)
            map_children(x, go)
        return x
    go(e)
    return total[0]


def flops_totals(launches):
    """``report.flops`` from ``launches`` [(phase, kernel_flops of the launched kernel)]."""
    out = {}
    for phase, f in launches:
        for key in (phase, None):
            t = out.setdefault(key, {"gemm": 0, "other": 0, "total": 0})
            t["gemm"] += f["gemm"]
            t["other"] += f["other"]
            t["total"] += f["gemm"] + f["other"]
    total = out.pop(None, {"gemm": 0, "other": 0, "total": 0})
    return dict(out, **total)


REMOVED_NAMES = 32


def removed_nodes(before, after):
    """Names of operator nodes of graph ``before`` missing from ``after`` (a pass keeps the names
    of the nodes it copies), for ``program["removed"]``."""
    left = {}
    for n in after.nodes:
        left[n.name] = left.get(n.name, 0) + 1
    gone = []
    for n in before.nodes:
        if n.op is None:
            continue
        if left.get(n.name, 0):
            left[n.name] -= 1
        else:
            gone.append(n.name)
    return {"names": gone[:REMOVED_NAMES], "count": len(gone)}


def describe_program(launches, low, roles, inplace=(), removed=None):
    """``program`` for the report: ``launches`` [(phase, Launch)] in run order, ``low`` the
    ``lower.Lowered`` after memory planning, ``roles`` slot index -> role of each external
    slot, ``inplace`` the planner's (position, input slot, output slot) triples. Sizes and
    offsets of run-time-sized slots are those with N = 1."""
    inplace_of = {dst: src for _, src, dst in inplace}
    out_slots = []
    slot_of = low.slot_of
    for i, s in enumerate(low.slots):
        internal = not s.external
        start, nbytes = low.extent(i)
        out_slots.append({"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "nbytes": nbytes,
                          "role": roles.get(i, "input") if s.external else "internal",
                          "offset": start if internal and s.alias_of is None else None,
                          "alias_of": s.alias_of, "inplace_of": inplace_of.get(i)})
    out_launches = []
    for phase, launch in launches:
        n_in = len(launch.kernel.inputs)
        reads = list(launch.slots[:n_in])
        position = {n.uid: k for k, n in enumerate(launch.nodes)}
        nodes = []
        for n in launch.nodes:
            fused = sorted({position[e.node.uid] for e in n.inputs if e.node.uid in position})
            mem = [slot_of[e.key()] for e in n.inputs if e.node.uid not in position and e.key() in slot_of]
            nodes.append({"name": n.name, "op": n.op.name, "fused_inputs": fused,
                          "reads": sorted({s for s in mem if s in reads})})  # shape-only inputs are not read
        out_launches.append({"phase": phase, "kernel": launch.kernel.name, "nodes": nodes,
                             "reads": reads, "writes": list(launch.slots[n_in:])})
    return {"launches": out_launches, "slots": out_slots, "removed": dict(removed or {})}
