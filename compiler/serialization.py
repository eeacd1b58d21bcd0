"""MXNet's symbol JSON: write it as MXNet 1.x does, read any 1.x version's file.

Writing reproduces MXNet 1.x's ``tojson`` byte for byte: nnvm's graph saver
driven through dmlc's ``JSONWriter`` (see FORMATS_AND_LESSONS.md, "MXNet
symbol JSON"). ``_Writer`` mirrors that writer's scope rules, so indentation
and line breaks follow from the same decisions MXNet makes:

* an object or array opens a scope and says whether it is multi-line;
* every item after the first is preceded by ``", "``; in a multi-line scope
  every item is then preceded by a newline and two spaces per open scope;
* a non-empty multi-line scope closes on its own line;
* graph and node objects and arrays of objects are multi-line; string maps
  are multi-line with more than one entry; arrays of numbers or of input
  entries with more than ten elements; an entry ``[nid, index, version]`` and
  the ``["int", v]`` pair of a graph attribute are always inline;
* strings escape only ``\\r \\n \\\\ \\t \\"``; no final newline.

Reading accepts every layout and every 1.x vintage: ``attr``/``param``/``attrs``
dicts, two-element entries, no ``node_row_ptr``, ``backward_source_id``, and
files without ``mxnet_version`` (0.8.0). Older files are upgraded as MXNet
1.9.1's loader (``legacy_json_util.cc``) does, by the version they carry:
before 1.9.1 plain hidden keys (``lr_mult``) become ``__lr_mult__`` and
``<input>_lr_mult`` moves onto that input variable; before 0.9.0 auxiliary
inputs were not saved and are created (with the operator's attributes);
before 0.9.4 variables read as BatchNorm's moving statistics get their
``__init__``; before 0.9.5 ``argmax``/``argmin`` with ``axis=-1`` meant the
flattened array. Every problem raises ``MXNetError`` naming the node; file
contents are only ever parsed as JSON, never evaluated.
"""
from __future__ import annotations

import json

from ..runtime.errors import MXNetError
from .graph import Entry, Node, topo_order
from .ops import registry

MXNET_VERSION = 10901  # written as MXNet 1.9.1 writes it
LEGACY_VERSION = 800  # a file without mxnet_version comes from MXNet 0.8.0
AUX_SAVED_VERSION = 900  # files from 0.9.0 on name every input, auxiliary states included
VAR_INIT_VERSION = 904  # 0.9.4 moved BatchNorm's statistics initialisers onto the variables
OPTIONAL_AXIS_VERSION = 905  # 0.9.5 made argmax/argmin's axis optional: -1 had meant "flatten"
LEGACY_HIDDEN = ("ctx_group", "lr_mult", "wd_mult", "force_mirroring", "mirror_stage")


# ---------------------------------------------------------------------------
# writing


def _escape(s):
    """dmlc's string escaping: only CR, LF, backslash, tab and double quote."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
        .replace("\r", "\\r").replace("\t", "\\t") + '"'


class _Writer:
    """dmlc::JSONWriter's layout: a stack of scopes, each multi-line or not."""

    def __init__(self):
        self.parts = []
        self.multi = []  # one flag per open scope
        self.count = []  # items written in each open scope

    def _separator(self):
        if not self.multi or self.multi[-1]:
            self.parts.append("\n" + "  " * len(self.multi))

    def _begin(self, char, multi_line):
        self.parts.append(char)
        self.multi.append(multi_line)
        self.count.append(0)

    def _end(self, char):
        multi, n = self.multi.pop(), self.count.pop()
        if multi and n:
            self._separator()
        self.parts.append(char)

    def _next_item(self):
        if self.count[-1]:
            self.parts.append(", ")
        self.count[-1] += 1
        self._separator()

    def begin_object(self, multi_line=True):
        self._begin("{", multi_line)

    def end_object(self):
        self._end("}")

    def begin_array(self, multi_line):
        self._begin("[", multi_line)

    def end_array(self):
        self._end("]")

    def key(self, name):
        """Start ``"name": `` in the current object; the caller writes the value."""
        self._next_item()
        # dmlc writes keys unescaped; escaping keeps odd keys valid JSON and
        # changes nothing for any key MXNet itself produces.
        self.parts.append(_escape(name) + ": ")

    def item(self):
        """Start the next item of the current array; the caller writes it."""
        self._next_item()

    def raw(self, text):
        self.parts.append(text)

    # composite values, with dmlc's container rules
    def string_map(self, mapping):
        self.begin_object(len(mapping) > 1)
        for k in sorted(mapping):
            self.key(k)
            self.raw(_escape(mapping[k]))
        self.end_object()

    def int_array(self, values):
        self.begin_array(len(values) > 10)
        for v in values:
            self.item()
            self.raw(str(int(v)))
        self.end_array()

    def entry(self, triple):
        self.begin_array(False)
        for v in triple:
            self.item()
            self.raw(str(int(v)))
        self.end_array()

    def entry_array(self, triples):
        self.begin_array(len(triples) > 10)
        for t in triples:
            self.item()
            self.entry(t)
        self.end_array()

    def text(self):
        return "".join(self.parts)


def _entry_versions(nodes):
    """nnvm's entry versions: ``{(consumer uid, input position): version}``.

    An entry that reads a variable carries the variable's version when the
    consumer was composed; each operator that mutates a variable (an
    auxiliary state, e.g. BatchNorm's moving_mean) bumps it first. Nodes are
    visited in the saved (post-order) order, which is the order they were
    composed in for graphs built front to back.
    """
    current, versions = {}, {}
    for n in nodes:
        if n.op is None:
            continue
        for pos, e in enumerate(n.inputs):
            if e.node.is_variable:
                versions[(n.uid, pos)] = current.get(e.node.uid, 0)
        for pos in n.op.aux_inputs(n.params):
            if pos < len(n.inputs) and n.inputs[pos].node.is_variable:
                var = n.inputs[pos].node.uid
                current[var] = current.get(var, 0) + 1
                versions[(n.uid, pos)] = current[var]
    return versions


def to_dict(outputs):
    """The graph behind ``outputs`` as MXNet's JSON object (a plain dict)."""
    nodes = topo_order(outputs)
    index = {n.uid: i for i, n in enumerate(nodes)}
    versions = _entry_versions(nodes)
    out_nodes, row_ptr = [], [0]
    for n in nodes:
        d = {"op": "null" if n.is_variable else n.op.name, "name": n.name}
        if n.attrs:
            d["attrs"] = {k: n.attrs[k] for k in sorted(n.attrs)}
        d["inputs"] = [[index[e.node.uid], e.index, versions.get((n.uid, pos), 0)]
                       for pos, e in enumerate(n.inputs)]
        if n.control_deps:
            d["control_deps"] = [index[c.uid] for c in n.control_deps]
        out_nodes.append(d)
        row_ptr.append(row_ptr[-1] + n.num_outputs)
    return {
        "nodes": out_nodes,
        "arg_nodes": [i for i, n in enumerate(nodes) if n.is_variable],
        "node_row_ptr": row_ptr,
        "heads": [[index[e.node.uid], e.index, 0] for e in outputs],
        "attrs": {"mxnet_version": ["int", MXNET_VERSION]},
    }


def _write_node(w, d):
    w.begin_object(True)
    w.key("op")
    w.raw(_escape(d["op"]))
    w.key("name")
    w.raw(_escape(d["name"]))
    if d.get("attrs"):
        w.key("attrs")
        w.string_map(d["attrs"])
    w.key("inputs")
    w.entry_array(d["inputs"])
    if d.get("control_deps"):
        w.key("control_deps")
        w.int_array(d["control_deps"])
    w.end_object()


def dumps(doc):
    """Write a symbol JSON dict (as ``to_dict`` makes it) in MXNet's layout."""
    w = _Writer()
    w.begin_object(True)
    w.key("nodes")
    w.begin_array(True)  # an array of objects is always multi-line
    for d in doc["nodes"]:
        w.item()
        _write_node(w, d)
    w.end_array()
    w.key("arg_nodes")
    w.int_array(doc["arg_nodes"])
    w.key("node_row_ptr")
    w.int_array(doc["node_row_ptr"])
    w.key("heads")
    w.entry_array(doc["heads"])
    attrs = doc.get("attrs") or {}
    if attrs:
        w.key("attrs")
        w.begin_object(len(attrs) > 1)
        for k, (kind, value) in attrs.items():
            w.key(k)
            w.begin_array(False)
            w.item()
            w.raw(_escape(kind))
            w.item()
            w.raw(str(int(value)))
            w.end_array()
        w.end_object()
    w.end_object()
    return w.text()


def to_json(outputs):
    """MXNet 1.x's ``Symbol.tojson()`` text for the graph behind ``outputs``."""
    return dumps(to_dict(outputs))


# ---------------------------------------------------------------------------
# reading


def _fail(msg):
    raise MXNetError("malformed symbol JSON: " + msg)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _node_label(i, raw):
    name = raw.get("name") if isinstance(raw, dict) else None
    return "node %d (%r)" % (i, name) if isinstance(name, str) else "node %d" % i


def _read_version(doc):
    attrs = doc.get("attrs")
    if attrs is None:
        return LEGACY_VERSION
    if not isinstance(attrs, dict):
        _fail("graph 'attrs' must be an object, got %s" % type(attrs).__name__)
    if "mxnet_version" not in attrs:
        return LEGACY_VERSION
    v = attrs["mxnet_version"]
    if not (isinstance(v, list) and len(v) == 2 and v[0] == "int" and _is_int(v[1]) and v[1] >= 0):
        _fail("graph attribute mxnet_version must be [\"int\", <version>], got %r" % (v,))
    return v[1]


def _read_attrs(raw, where):
    """Merge ``param``, ``attr`` and ``attrs`` (all three have been used) into one str map."""
    attrs = {}
    for key in ("param", "attr", "attrs"):
        part = raw.get(key)
        if part is None:
            continue
        if not isinstance(part, dict):
            _fail("%s: '%s' must be an object of strings, got %s" % (where, key, type(part).__name__))
        for k, v in part.items():
            if not isinstance(v, str):
                _fail("%s: attribute %r must be a string, got %s %r" % (where, k, type(v).__name__, v))
            attrs[k] = v
    return attrs


def _read_entry(raw, nodes, limit, where, what):
    """A ``[node_id, index(, version)]`` entry referring to one of ``nodes[:limit]``."""
    if not (isinstance(raw, list) and len(raw) in (2, 3) and all(_is_int(v) for v in raw)):
        _fail("%s: %s must be [node_id, output_index, version] of integers, got %r" % (where, what, raw))
    nid, idx = raw[0], raw[1]
    if len(raw) == 3 and raw[2] < 0:
        _fail("%s: %s %r has a negative version" % (where, what, raw))
    if not 0 <= nid < limit:
        if what.startswith("head"):
            _fail("%s: %s refers to node %d, which does not exist (the file has %d node%s)"
                  % (where, what, nid, limit, "" if limit == 1 else "s"))
        _fail("%s: %s refers to node %d, which is not an earlier node (%s)"
              % (where, what, nid, "ids 0..%d precede it" % (limit - 1) if limit else "none precedes it"))
    src = nodes[nid]
    # a graph output must be a visible output (hidden ones, like BatchNorm's
    # saved mean, have no name); an input may read any output
    count = src.num_visible_outputs if what.startswith("head") else src.num_outputs
    if not 0 <= idx < count:
        _fail("%s: %s asks for output %d of node %d (%r), which has %d %soutput%s"
              % (where, what, idx, nid, src.name, count, "visible " if what.startswith("head") else "",
                 "" if count == 1 else "s"))
    return Entry(src, idx)


def _check_operators(raw_nodes):
    """Every operator of the file is known, or one error lists all that are not."""
    unknown = {}
    for i, rn in enumerate(raw_nodes):
        where = _node_label(i, rn)
        if not isinstance(rn, dict):
            _fail("%s must be an object, got %s" % (where, type(rn).__name__))
        for key in ("op", "name"):
            if key not in rn:
                _fail("%s has no '%s'" % (where, key))
            if not isinstance(rn[key], str):
                _fail("%s: '%s' must be a string, got %r" % (where, key, rn[key]))
        if rn["op"] != "null" and not registry.exists(rn["op"]):
            unknown.setdefault(rn["op"], []).append(rn["name"])
    if unknown:
        total = sum(len(v) for v in unknown.values())
        raise MXNetError(
            "symbol JSON uses %d operator%s kiln does not support (%d node%s): %s"
            % (len(unknown), "" if len(unknown) == 1 else "s", total, "" if total == 1 else "s",
               "; ".join("%s x%d (first node %r)" % (op, len(names), names[0])
                         for op, names in sorted(unknown.items()))))


def _split_legacy(attrs):
    """Files before 1.9.1: plain hidden keys -> ``__key__``; ``<arg>_<key>`` set aside for the input."""
    kept, per_input = {}, []
    for k, v in attrs.items():
        if k in LEGACY_HIDDEN:
            kept["__%s__" % k] = v
            continue
        for hk in LEGACY_HIDDEN:
            suffix = "_" + hk
            if k.endswith(suffix) and len(k) > len(suffix):
                per_input.append((k, k[:-len(suffix)], "__%s__" % hk, v))
                break
        else:
            kept[k] = v
    return kept, per_input


def _make_op_node(op, name, attrs, inputs, where):
    try:
        return Node(op, name, attrs, inputs)
    except MXNetError:
        raise
    except Exception as err:  # an operator's own checks on odd attribute values
        raise MXNetError("%s: operator %s rejects its attributes %r: %s: %s"
                         % (where, op.name, attrs, type(err).__name__, err)) from None


def _input_names(node, where):
    try:
        return node.op.input_names(node.params)
    except MXNetError:
        raise
    except Exception as err:
        raise MXNetError("%s: operator %s cannot name its inputs from attributes %r: %s: %s"
                         % (where, node.op.name, node.attrs, type(err).__name__, err)) from None


def _read_node(i, rn, nodes, version):
    where = _node_label(i, rn)
    if rn.get("subgraphs"):
        raise MXNetError("%s: operator %s has subgraphs, which kiln does not support" % (where, rn["op"]))
    attrs = _read_attrs(rn, where)
    raw_inputs = rn.get("inputs", [])
    if not isinstance(raw_inputs, list):
        _fail("%s: 'inputs' must be a list, got %s" % (where, type(raw_inputs).__name__))
    inputs = [_read_entry(r, nodes, i, where, "input %d" % k) for k, r in enumerate(raw_inputs)]
    raw_deps = rn.get("control_deps", [])
    if not isinstance(raw_deps, list) or not all(_is_int(c) and 0 <= c < i for c in raw_deps):
        _fail("%s: control_deps must be ids of earlier nodes, got %r" % (where, raw_deps))
    per_input = []
    if version < MXNET_VERSION:
        attrs, per_input = _split_legacy(attrs)
    if version < OPTIONAL_AXIS_VERSION and rn["op"] in ("argmax", "argmin") and attrs.get("axis") == "-1":
        del attrs["axis"]

    if rn["op"] == "null":
        if inputs:
            _fail("%s: a variable ('op': \"null\") cannot have inputs" % where)
        # keys like weight_lr_mult mean nothing on a variable; MXNet keeps them as given
        attrs.update({k: v for k, _, _, v in per_input})
        node = Node(None, rn["name"], attrs)
    else:
        op = registry.get(rn["op"], rn["name"])
        node = _make_op_node(op, rn["name"], attrs, inputs, where)
        names = _input_names(node, where)
        if len(node.inputs) > len(names):
            raise MXNetError("%s: operator %s takes %d input%s %s, but the file gives %d"
                             % (where, op.name, len(names), "" if len(names) == 1 else "s",
                                names, len(node.inputs)))
        if len(node.inputs) < len(names):
            if version >= AUX_SAVED_VERSION:
                raise MXNetError("%s: operator %s takes %d inputs %s, but the file gives %d (missing %s)"
                                 % (where, op.name, len(names), names, len(node.inputs),
                                    names[len(node.inputs):]))
            # before 0.9.0 auxiliary states were not saved: create them as MXNet's loader does,
            # with a copy of the operator's attributes
            for iname in names[len(node.inputs):]:
                node.inputs.append(Entry(Node(None, "%s_%s" % (node.name, iname), dict(node.attrs)), 0))
        if version < VAR_INIT_VERSION:
            for iname, entry in zip(names, node.inputs):
                if entry.node.is_variable and "__init__" not in entry.node.attrs:
                    entry.node.attrs.update(op.var_attrs.get(iname, {}))
        for key, arg, hidden, value in per_input:
            if arg not in names:
                raise MXNetError("%s: legacy attribute %r names no input of operator %s (inputs: %s)"
                                 % (where, key, op.name, names))
            target = node.inputs[names.index(arg)].node
            if not target.is_variable:
                raise MXNetError("%s: legacy attribute %r is for input %s, which is operator %r, not a variable"
                                 % (where, key, arg, target.name))
            target.attrs[hidden] = value
    node.control_deps.extend(nodes[c] for c in raw_deps)
    return node


def from_json(text):
    """Entries of the heads of a symbol JSON document (any MXNet 1.x version)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            _fail("not UTF-8 text: %s" % err)
    if not isinstance(text, str):
        raise MXNetError("symbol JSON must be a string, got %s" % type(text).__name__)
    try:
        # strict=False: dmlc writes control characters other than \r \n \t raw
        doc = json.loads(text, strict=False)
    except (ValueError, RecursionError) as err:
        _fail(str(err))
    if not isinstance(doc, dict):
        _fail("the document must be an object, got %s" % type(doc).__name__)
    for key in ("nodes", "heads"):
        if key not in doc:
            _fail("the document has no '%s'" % key)
        if not isinstance(doc[key], list):
            _fail("'%s' must be a list, got %s" % (key, type(doc[key]).__name__))
    version = _read_version(doc)
    raw_nodes = doc["nodes"]
    _check_operators(raw_nodes)

    nodes = []
    for i, rn in enumerate(raw_nodes):
        nodes.append(_read_node(i, rn, nodes, version))

    arg_nodes = doc.get("arg_nodes")
    if arg_nodes is not None:
        if not isinstance(arg_nodes, list) or not all(_is_int(a) for a in arg_nodes):
            _fail("'arg_nodes' must be a list of node ids, got %r" % (arg_nodes,))
        for a in arg_nodes:
            if not 0 <= a < len(nodes):
                _fail("arg_nodes refers to node %d, but there are %d nodes" % (a, len(nodes)))
            if not nodes[a].is_variable:
                _fail("arg_nodes lists node %d (%r), which is an operator, not a variable"
                      % (a, nodes[a].name))
    row_ptr = doc.get("node_row_ptr")
    if row_ptr is not None and not (isinstance(row_ptr, list) and all(_is_int(r) for r in row_ptr)):
        _fail("'node_row_ptr' must be a list of integers, got %r" % (row_ptr,))

    if not doc["heads"]:
        _fail("'heads' is empty: the graph has no outputs")
    return [_read_entry(h, nodes, len(nodes), "heads", "head %d" % k) for k, h in enumerate(doc["heads"])]
