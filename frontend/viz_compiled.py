"""Pictures of the compiled program: which operators each kernel fused, and where buffers live.

``plot_compiled(source)`` draws the ``program`` section of a compile report
(``kiln.compiler.report``) as a ``graphviz.Digraph``:

- every kernel launch is a cluster (``cluster_<n>``, n = its position in run
  order) labelled with the kernel name and holding one box per fused operator
  (``<node name>\\n<operator>``); backward launches are shaded red;
- an edge between operators of different launches is a buffer in memory,
  labelled with its shape and either its arena placement ``@offset +bytes``
  or ``input``/``param``/``output``/...; edges whose buffers start at the same
  arena offset have the same colour, and each edge's tooltip names the other
  buffers sharing its bytes (at other times: the planner never lets two live
  buffers overlap, except an operator writing over its own input, marked
  ``in place``); a view made by a removed reshape is labelled ``view of``;
- edges inside a cluster are values computed in registers, never stored;
- a note gives the arena size against the naive plan and the nodes the
  simplification passes removed.

``source``: a Symbol (compiled for ``shape``/``dtype`` as ``simple_bind``
would: the inference program, or with ``grad=True`` the training one with
gradients), a bound Executor (the program it last ran, backward included when
it has gradients: ``kiln.viz_compiled.plot_compiled(executor)``), or a
hybridized HybridBlock that has been called (the program its last call ran).
"""
from __future__ import annotations

import logging

import numpy as np

from .base import MXNetError
from .compiler.pipeline import compile_program

log = logging.getLogger(__name__)

# MXNet's plot_network palette (forward/backward cluster shading is kiln's)
_PALETTE = ("#8dd3c7", "#fb8072", "#ffffb3", "#bebada", "#80b1d3", "#fdb462", "#b3de69", "#fccde5")
_EDGE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")
_GEMM_LIKE = ("dot", "conv", "gemm", "im2col", "col2im", "pool", "fullyconnected")
_REDUCE_LIKE = ("sum", "max", "min", "mean", "prod", "norm", "argmax", "argmin")
# MXNet's plot_network hides variables by these suffixes; an Executor does not know its weights otherwise
_WEIGHT_SUFFIXES = ("_weight", "_bias", "_beta", "_gamma", "_moving_var", "_moving_mean", "_running_var",
                    "_running_mean")
_INPUT_ROLES = ("input", "aux", "head_grad", "grad_in", "rng_key")


def plot_compiled(source, shape=None, dtype=None, title="plot", save_format="pdf", node_attrs=None,
                  hide_weights=True, grad=False):
    """A ``graphviz.Digraph`` of ``source``'s compiled program (module docstring).

    shape: {input name: shape} (needed for a Symbol); dtype: {input name: dtype} or one dtype
    for every input in ``shape``; node_attrs: graphviz attributes for every operator box;
    hide_weights: leave out parameters (and auxiliary states), their edges and gradients;
    grad: for a Symbol, draw the program with gradients of every argument (forward and
    backward) instead of the inference program.
    """
    try:
        from graphviz import Digraph, nohtml
    except ImportError as err:
        raise ImportError("plot_compiled needs the graphviz Python package (and Graphviz's `dot` program "
                          "to render): pip install 'kiln[viz]'") from err
    report, params = _resolve(source, shape, dtype, grad)
    program = report.get("program")
    if not program:
        raise MXNetError("plot_compiled: the compile report has no program description (compiled by an "
                         "older kiln); compile again with KILN_DISABLE_PROGRAM_CACHE=1")
    return _draw(Digraph, nohtml, program, report.get("memory", {}), params, title, save_format,
                 dict(node_attrs or {}), hide_weights)


def _resolve(source, shape, dtype, grad):
    """(report dict, names of parameters) of whatever ``source`` is."""
    from .executor import Executor
    from .gluon.block import HybridBlock
    from .symbol import Symbol
    if isinstance(source, Symbol):
        return compile_symbol(source, shape, dtype, grad)
    if isinstance(source, Executor):
        params = {n for n in source.arg_names if n.endswith(_WEIGHT_SUFFIXES)} | set(source.aux_names)
        return source._program.spec.report, params
    if isinstance(source, HybridBlock):
        last = getattr(source, "_last_compiled", None)
        if last is None:
            raise MXNetError("plot_compiled: block %s has no compiled program; hybridize() it and call it "
                             "on data first" % source.name)
        params = {p.name for p in source.collect_params().values()}
        return last.executor._program.spec.report, params
    raise MXNetError("plot_compiled: cannot draw a %s; give a Symbol, an Executor or a hybridized, called "
                     "HybridBlock" % type(source).__name__)


def compile_symbol(symbol, shape, dtype, grad):
    """Compile as ``simple_bind`` would (same program, so the program cache is shared), without
    loading native code: a picture needs the report only."""
    if not shape:
        raise MXNetError("plot_compiled: a Symbol is compiled for given input shapes; pass shape={name: shape}")
    shape = {k: tuple(int(d) for d in v) for k, v in shape.items()}
    names, aux_names = symbol.list_arguments(), symbol.list_auxiliary_states()
    unknown = sorted(set(shape) - set(names) - set(aux_names))
    if unknown:
        raise MXNetError("plot_compiled: shape given for %s, which %s not an input of the symbol (inputs: %s)"
                         % (", ".join(unknown), "is" if len(unknown) == 1 else "are", ", ".join(names)))
    if dtype is not None and not isinstance(dtype, dict):
        dtype = {k: dtype for k in shape}
    dtype = {k: np.dtype(v).name for k, v in (dtype or {}).items()}
    unknown = sorted(set(dtype) - set(names) - set(aux_names))
    if unknown:
        raise MXNetError("plot_compiled: dtype given for %s, not an input of the symbol (inputs: %s)"
                         % (", ".join(unknown), ", ".join(names)))
    arg_shapes, _, aux_shapes = symbol.infer_shape(**shape)
    if arg_shapes is None:
        partial = symbol.infer_shape_partial(**shape)[0]
        missing = [n for n, s in zip(names, partial) if not s]
        raise MXNetError("plot_compiled: cannot infer the shapes of %s from %s" % (", ".join(missing), shape))
    arg_types, _, aux_types = symbol.infer_type(**dtype)
    if arg_types is None:  # as simple_bind
        arg_types, aux_types = [np.float32] * len(arg_shapes), [np.float32] * len(aux_shapes)
    shapes = dict(zip(names + aux_names, arg_shapes + aux_shapes))
    dtypes = {n: np.dtype(t).name for n, t in zip(names + aux_names, list(arg_types) + list(aux_types))}
    grad_req = {n: "write" if grad else "null" for n in names}
    spec, _ = compile_program(symbol._outputs, shapes, dtypes, grad_req, name="executor", is_train=bool(grad))
    return spec.report, (set(names) - set(shape)) | set(aux_names)


def _op_colour(op):
    low = op.lower()
    if any(k in low for k in _GEMM_LIKE):
        return _PALETTE[1]
    if any(low == k or low.startswith(k + "_") or low.startswith("_" + k) for k in _REDUCE_LIKE):
        return _PALETTE[3]
    if any(k in low for k in ("relu", "sigmoid", "tanh", "softmax", "activation", "exp", "log")):
        return _PALETTE[2]
    return _PALETTE[0]


def _shape_text(shape):
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _arena_sharing(slots):
    """slot index -> names of the other internal slots whose arena bytes overlap its own."""
    placed = [(i, s["offset"], s["offset"] + s["nbytes"]) for i, s in enumerate(slots)
              if s["role"] == "internal" and s["alias_of"] is None and s["nbytes"] > 0]
    sharing = {}
    for i, lo, hi in placed:
        sharing[i] = [slots[j]["name"] for j, lo2, hi2 in placed if j != i and lo < hi2 and lo2 < hi]
    return sharing


def _draw(Digraph, nohtml, program, memory, params, title, save_format, node_attrs, hide_weights):
    slots, launches = program["slots"], program["launches"]
    dot = Digraph(name=title, format=save_format)
    dot.attr(rankdir="BT", fontsize="10")
    box = {"shape": "box", "style": "filled,rounded", "fontsize": "10"}
    box.update(node_attrs)
    hidden = set()
    for i, s in enumerate(slots):
        name = s["name"]
        # a parameter's gradient, previous gradient (grad_req='add') or new moving statistic goes with it
        of = name.split(":", 1)[-1] if s["role"] in ("grad", "grad_in", "aux_update") else name
        if hide_weights and of in params:
            hidden.add(i)
    writer = {}  # slot -> node id of the root of the launch writing it
    for j, launch in enumerate(launches):
        for s in launch["writes"]:
            writer[s] = "k%dn%d" % (j, len(launch["nodes"]) - 1)
    offsets = sorted({s["offset"] for s in slots if s["offset"] is not None})
    sharing = _arena_sharing(slots)
    drawn = set()  # input nodes drawn so far

    def storage(s):
        return slots[s]["alias_of"] if slots[s]["alias_of"] is not None else s

    def edge_attrs(s):
        slot = slots[s]
        root = storage(s)
        text = [_shape_text(slot["shape"])]
        tip = ["%s: %s %s, %d bytes" % (slot["name"], _shape_text(slot["shape"]), slot["dtype"], slot["nbytes"])]
        attrs = {}
        if slot["alias_of"] is not None:
            text.append("view of %s" % slots[root]["name"])
            tip.append("a removed reshape: same storage as %s" % slots[root]["name"])
            attrs["style"] = "dashed"
        if slots[root]["role"] == "internal":
            off = slots[root]["offset"]
            text.append("@%d +%dB" % (off, slots[root]["nbytes"]))
            tip.append("arena bytes [%d, %d)" % (off, off + slots[root]["nbytes"]))
            attrs["color"] = attrs["fontcolor"] = _EDGE_COLOURS[offsets.index(off) % len(_EDGE_COLOURS)]
            if slots[root]["inplace_of"] is not None:
                text.append("in place of %s" % slots[slots[root]["inplace_of"]]["name"])
            if sharing.get(root):
                tip.append("shares arena bytes with (at other times): " + ", ".join(sharing[root]))
        else:
            text.append("param" if slots[root]["name"] in params else slots[root]["role"])
        attrs.update(label=nohtml("\\n".join(text)), tooltip=nohtml("; ".join(tip)), fontsize="8")
        return attrs

    def source_of(s):
        """Node id a read of slot ``s`` comes from (drawing an input node on first use), or None."""
        root = storage(s)
        if root in writer:
            return writer[root]
        if root in hidden or slots[root]["role"] not in _INPUT_ROLES:
            return None
        nid = "s%d" % root
        if nid not in drawn:
            slot = slots[root]
            role = "param" if slot["name"] in params else slot["role"]
            dot.node(nid, nohtml("%s\\n%s %s" % (slot["name"], _shape_text(slot["shape"]), slot["dtype"])),
                     shape="ellipse", style="filled", fontsize="10",
                     fillcolor=_PALETTE[5] if role == "param" else _PALETTE[4], tooltip=nohtml(role))
            drawn.add(nid)
        return nid

    for j, launch in enumerate(launches):
        backward = launch["phase"] == "backward"
        with dot.subgraph(name="cluster_%d" % j) as c:
            c.attr(label=nohtml("%s (%s)" % (launch["kernel"], launch["phase"])), style="rounded,filled",
                   fillcolor="#fdecec" if backward else "#eef3fb", color="#999999", fontsize="10")
            for k, node in enumerate(launch["nodes"]):
                c.node("k%dn%d" % (j, k), nohtml("%s\\n%s" % (node["name"], node["op"])),
                       **dict(box, fillcolor=box.get("fillcolor", _op_colour(node["op"])),
                              tooltip=nohtml("%s (%s), launch %d" % (node["name"], node["op"], j))))
    for j, launch in enumerate(launches):
        root = "k%dn%d" % (j, len(launch["nodes"]) - 1)
        covered = set()
        for k, node in enumerate(launch["nodes"]):
            nid = "k%dn%d" % (j, k)
            for m in node["fused_inputs"]:
                dot.edge("k%dn%d" % (j, m), nid, color="#555555", arrowsize="0.6")
            for s in node["reads"]:
                covered.add(s)
                src = source_of(s)
                if src is not None:
                    dot.edge(src, nid, **edge_attrs(s))
        for s in launch["reads"]:  # read by the kernel but by no graph node (the random key)
            src = None if s in covered else source_of(s)
            if src is not None:
                dot.edge(src, root, **edge_attrs(s))
        for s in launch["writes"]:
            slot = slots[s]
            if slot["role"] == "internal" or s in hidden:
                continue
            nid = "s%d" % s
            dot.node(nid, nohtml("%s\\n%s %s" % (slot["name"], _shape_text(slot["shape"]), slot["dtype"])),
                     shape="ellipse", style="filled", fillcolor=_PALETTE[6], fontsize="10", tooltip=slot["role"])
            dot.edge(root, nid, **edge_attrs(s))
    dot.node("legend", nohtml(_legend(program, memory)), shape="note", fontsize="9", style="filled",
             fillcolor="#ffffff")
    log.debug("plot_compiled: %d launches, %d slots", len(launches), len(slots))
    return dot


def _legend(program, memory):
    lines = ["%d kernel launches; boxes in a cluster are fused into one kernel" % len(program["launches"])]
    if memory:
        lines.append("arena %s bytes (naive plan %s); in place %s, reused %s, aliased %s"
                     % (memory.get("arena_bytes"), memory.get("naive_bytes"), memory.get("inplace"),
                        memory.get("reused"), memory.get("aliased", 0)))
    lines.append("edge @offset +bytes: arena placement; same colour = same offset (reused at other times)")
    for name, r in sorted(program.get("removed", {}).items()):
        lines.append("%s removed %d: %s%s" % (name, r["count"], ", ".join(r["names"][:6]),
                                               " ..." if r["count"] > 6 else ""))
    return "\\l".join(lines) + "\\l"
