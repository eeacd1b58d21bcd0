"""``mx.viz``: MXNet 1.9.1's network drawing (``plot_network``) and layer table (``print_summary``).

Both reproduce MXNet's output for the same Symbol: the same Graphviz source
(node labels, colours, ``dir=back`` edges from consumer to producer) and the
same summary text, including MXNet's parameter-counting rules. Graphviz is
optional (the ``viz`` extra) and imported only when a network is drawn.
"""
import collections
import functools
import json
import re
import sys
import warnings

from .base import MXNetError
from .compiler.graph import topo_order
from .symbol import Symbol

_INSTALL_GRAPHVIZ = "pip install graphviz (or pip install 'kiln[viz]')"
_INSTALL_DOT = ("Graphviz's 'dot' program is needed to render and is not installed or not on PATH; "
                "install it with your system's package manager (Debian/Ubuntu: apt-get install graphviz, "
                "macOS: brew install graphviz, conda: conda install -c conda-forge graphviz)")

# MXNet's colour map and the operator families that use each colour.
_COLORS = ("#8dd3c7", "#fb8072", "#ffffb3", "#bebada", "#80b1d3", "#fdb462", "#b3de69", "#fccde5")
_OP_COLOR = {
    "Convolution": _COLORS[1], "FullyConnected": _COLORS[1],
    "Activation": _COLORS[2], "LeakyReLU": _COLORS[2],
    "BatchNorm": _COLORS[3],
    "Pooling": _COLORS[4],
    "Concat": _COLORS[5], "Flatten": _COLORS[5], "Reshape": _COLORS[5],
}
_VARIABLE_COLOR = _COLORS[0]
_OTHER_COLOR = _COLORS[7]
# Variables whose names end like this are parameters or auxiliary states (MXNet's rule).
_WEIGHT_SUFFIXES = ("_weight", "_bias", "_beta", "_gamma",
                    "_moving_var", "_moving_mean", "_running_var", "_running_mean")
_NODE_ATTRS = {"shape": "box", "fixedsize": "true", "width": "1.3", "height": "0.8034", "style": "filled"}


@functools.lru_cache(maxsize=None)
def _graphviz():
    """Import graphviz on first use and build kiln's Digraph, whose rendering explains a missing ``dot``.

    MXNet users call ``.render()``/``.view()`` on the returned object themselves, so
    the Digraph must carry the check: graphviz's own ExecutableNotFound only says
    the executable is not on PATH.
    """
    try:
        import graphviz
    except ImportError as e:
        raise ImportError("Draw network requires the graphviz Python library: " + _INSTALL_GRAPHVIZ) from e

    class DotNotFound(graphviz.ExecutableNotFound):
        """graphviz's ExecutableNotFound (so existing handlers still catch it) with install advice."""

        __qualname__ = "DotNotFound"

        def __init__(self, message):
            RuntimeError.__init__(self, message)

    def explain_missing_dot(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except DotNotFound:
                raise
            except graphviz.ExecutableNotFound as e:
                raise DotNotFound("%s (%s)" % (_INSTALL_DOT, e)) from e
        return wrapper

    class Digraph(graphviz.Digraph):
        """graphviz.Digraph whose render/pipe/view raise install advice when ``dot`` is missing."""

        __qualname__ = "Digraph"

        render = explain_missing_dot(graphviz.Digraph.render)
        pipe = explain_missing_dot(graphviz.Digraph.pipe)
        view = explain_missing_dot(graphviz.Digraph.view)

    return Digraph


def _dims(text):
    """``"(5, 5)"`` -> ``"5x5"``: the digits of a tuple attribute, as MXNet prints kernels and strides."""
    return "x".join(re.findall(r"\d+", text))


def _check_symbol(symbol):
    if not isinstance(symbol, Symbol):
        raise TypeError("symbol must be a Symbol, got %s" % type(symbol).__name__)


def _infer(internals, given, what, caller):
    """Output shapes (``what='shape'``) or types of every entry of ``internals``; MXNet's errors, clearer."""
    if not isinstance(given, dict):
        raise TypeError("%s: %s must be a dict mapping input names to %ss, got %s"
                        % (caller, what, what, type(given).__name__))
    inputs = internals.list_inputs()
    unknown = sorted(set(given) - set(inputs))
    if unknown:
        raise MXNetError("%s: %s given for %s, not %s of the symbol; its inputs are %s"
                         % (caller, what, unknown, "an input" if len(unknown) == 1 else "inputs", inputs))
    names = internals.list_arguments() + internals.list_auxiliary_states()
    if what == "shape":
        _, outs, _ = internals.infer_shape(**given)
        if outs is None:
            args, _, aux = internals.infer_shape_partial(**given)
            missing = [n for n, s in zip(names, args + aux) if not s or 0 in s]
            raise ValueError("Input shape is incomplete: cannot infer the shapes of %s; give them in shape="
                             % (missing or "the outputs"))
    else:
        _, outs, _ = internals.infer_type(**given)
        if outs is None:
            args, _, aux = internals.infer_type_partial(**given)
            missing = [n for n, t in zip(names, args + aux) if t is None]
            raise ValueError("Input type is incomplete: cannot infer the types of %s; give them in dtype="
                             % (missing or "the outputs"))
    return outs


def _label(node):
    """MXNet's node label: the operator and its key attributes for the common layers, else the name."""
    op, attrs = node.op.name, node.attrs
    if op == "Convolution":
        stride = _dims(attrs["stride"]) if "stride" in attrs else "1"
        return "Convolution\n%s/%s, %s" % (_dims(attrs["kernel"]), stride, attrs["num_filter"])
    if op == "FullyConnected":
        return "FullyConnected\n%s" % attrs["num_hidden"]
    if op == "Activation":
        return "Activation\n%s" % attrs["act_type"]
    if op == "LeakyReLU":
        return "LeakyReLU\n%s" % attrs.get("act_type", "Leaky")
    if op == "Pooling":
        # MXNet fails on a Pooling without pool_type; kiln shows the operator's default.
        kernel = _dims(attrs["kernel"]) if "kernel" in attrs else "[]"
        stride = _dims(attrs["stride"]) if "stride" in attrs else "1"
        return "Pooling\n%s, %s/%s" % (attrs.get("pool_type", "max"), kernel, stride)
    return node.name


def plot_network(symbol, title="plot", save_format="pdf", shape=None, dtype=None, node_attrs={},
                 hide_weights=True, compiled=False):
    """Draw ``symbol``'s graph as a ``graphviz.Digraph`` (MXNet 1.9.1's drawing).

    One node per operator and per input variable; variables named like weights,
    biases or auxiliary states (``*_weight``, ``*_bias``, ``*_gamma``, ``*_beta``,
    ``*_moving_mean``...) are left out, with their edges when ``hide_weights``
    (MXNet draws only their edges otherwise). Edges go from each consumer to its
    producer with ``dir=back``, labelled with the per-sample shape
    (``shape={'data': (N, ...)}``) and/or ``(dtype)`` (``dtype={'data': np.float32}``)
    of the tensor. ``node_attrs`` (Graphviz attributes) override the defaults for
    every node. ``compiled=True`` draws the graph after kiln's compiler passes
    instead (``kiln.viz_compiled.plot_compiled``).

    Needs the graphviz Python library to build the graph, and Graphviz's ``dot``
    program to render it (``render``/``view``/``pipe``); both errors say how to
    install what is missing.
    """
    _check_symbol(symbol)
    if compiled:
        from .viz_compiled import plot_compiled
        return plot_compiled(symbol, shape=shape, dtype=dtype, title=title, save_format=save_format,
                             node_attrs=node_attrs, hide_weights=hide_weights)
    digraph_cls = _graphviz()
    if not isinstance(node_attrs, dict):
        raise TypeError("node_attrs must be a dict of Graphviz attributes, got %s" % type(node_attrs).__name__)
    internals = symbol.get_internals()
    entries = [e.key() for e in internals._outputs]
    shapes = dict(zip(entries, _infer(internals, shape, "shape", "plot_network"))) if shape is not None else None
    types = dict(zip(entries, _infer(internals, dtype, "dtype", "plot_network"))) if dtype is not None else None
    nodes = topo_order(symbol._outputs)

    repeated = sorted(name for name, count in collections.Counter(n.name for n in nodes).items() if count > 1)
    if repeated:
        warnings.warn("There are multiple variables with the same name in your graph, this may result in "
                      "cyclic graph. Repeated names: " + ",".join(repeated), RuntimeWarning)

    dot = digraph_cls(name=title, format=save_format)
    hidden = set()
    for node in nodes:
        attr = dict(_NODE_ATTRS, **node_attrs)
        if node.is_variable:
            if node.name.endswith(_WEIGHT_SUFFIXES):
                # Never a node of its own: hidden with its edges, or (as MXNet) only reached by edges.
                if hide_weights:
                    hidden.add(node.name)
                continue
            attr["shape"] = "oval"
            attr["fillcolor"] = _VARIABLE_COLOR
            label = node.name
        else:
            attr["fillcolor"] = _OP_COLOR.get(node.op.name, _OTHER_COLOR)
            label = _label(node)
        dot.node(name=node.name, label=label, **attr)

    for node in nodes:
        if node.is_variable:
            continue
        for entry in node.inputs:
            if entry.node.name in hidden:
                continue
            # MXNet labels a multi-output producer with its last output's shape; kiln uses the
            # consumed output's own, the same for every case MXNet can draw (SliceChannel).
            label = ""
            if shapes is not None and shapes.get(entry.key()) is not None:
                label = "x".join(str(d) for d in shapes[entry.key()][1:])
            if types is not None and types.get(entry.key()) is not None:
                label += "(%s)" % types[entry.key()].__name__
            dot.edge(tail_name=node.name, head_name=entry.node.name, dir="back", arrowtail="open", label=label)
    return dot


def print_summary(symbol, shape=None, line_length=120, positions=[.44, .64, .74, 1.]):
    """Print MXNet 1.9.1's layer table of ``symbol``: Layer (type), Output Shape, Param #, Previous Layer.

    Printing is this function's job (as in MXNet), so it writes to ``sys.stdout``
    (looked up at call time, so ``contextlib.redirect_stdout`` captures it).
    Shapes are per sample and need ``shape={'data': (N, ...)}``. ``positions``
    are the column ends, as fractions of ``line_length`` when the last is <= 1.

    Parameters are counted as MXNet does, from attributes and the first
    (channel) dimension of each previous layer: Convolution and FullyConnected
    (bias unless ``no_bias`` is ``'True'``), Embedding, and BatchNorm as
    ``2 * channels`` only when shapes are given; every other layer counts 0.
    As in MXNet, only the first variable of the graph gets a row, and only it
    and operators appear as previous layers.
    """
    _check_symbol(symbol)
    if len(positions) != 4:
        raise ValueError("positions must give the end of each of the 4 columns, got %r" % (positions,))
    shape_dict = {}
    if shape is not None:
        internals = symbol.get_internals()
        shape_dict = dict(zip(internals.list_outputs(), _infer(internals, shape, "shape", "print_summary")))
    conf = json.loads(symbol.tojson())
    nodes = conf["nodes"]
    # MXNet's quirk, kept because it decides which variables are listed: the
    # "heads" it tests are the numbers [node, index, version] of the first head.
    heads = set(conf["heads"][0])
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]

    def write(text):
        sys.stdout.write(text + "\n")

    def row(fields):
        line = ""
        for field, end in zip(fields, positions):
            line = (line + str(field))[:end]
            line += " " * (end - len(line))
        write(line)

    def sample_shape(i):
        """Per-sample output shape of node ``i`` under MXNet's output naming, or () if unknown."""
        node = nodes[i]
        key = node["name"] if node["op"] == "null" else node["name"] + "_output"
        return tuple(shape_dict[key][1:]) if key in shape_dict else ()

    def layer(i, out_shape):
        node = nodes[i]
        attrs = node.get("attrs", {})
        previous, channels = [], 0
        for src, _, _ in node["inputs"]:
            if nodes[src]["op"] != "null" or src in heads:
                previous.append(nodes[src]["name"])
                src_shape = sample_shape(src)
                # MXNet fails on a previous layer with 1-D output; kiln counts no channels for it.
                if src_shape:
                    channels += src_shape[0]
        has_bias = attrs.get("no_bias") != "True"
        op = node["op"]
        params = 0
        if op == "Convolution":
            params = channels * int(attrs["num_filter"]) // int(attrs.get("num_group", "1"))
            for k in re.findall(r"\d+", attrs["kernel"]):
                params *= int(k)
            params += int(attrs["num_filter"]) if has_bias else 0
        elif op == "FullyConnected":
            params = (channels + int(has_bias)) * int(attrs["num_hidden"])
        elif op == "BatchNorm" and sample_shape(i):
            params = sample_shape(i)[0] * 2
        elif op == "Embedding":
            params = int(attrs["input_dim"]) * int(attrs["output_dim"])
        row(["%s(%s)" % (node["name"], op), "x".join(str(d) for d in out_shape), params,
             previous[0] if previous else ""])
        for name in previous[1:]:
            row(["", "", "", name])
        return params

    write("_" * line_length)
    row(["Layer (type)", "Output Shape", "Param #", "Previous Layer"])
    write("=" * line_length)
    total = 0
    for i, node in enumerate(nodes):
        if node["op"] == "null" and i > 0:
            continue
        out_shape = sample_shape(i) if node["op"] != "null" or i in heads else ()
        total += layer(i, out_shape)
        write(("=" if i == len(nodes) - 1 else "_") * line_length)
    write("Total params: %d" % total)
    write("_" * line_length)
