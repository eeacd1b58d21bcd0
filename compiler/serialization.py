"""MXNet's symbol JSON: write it as MXNet 1.x does, read any 1.x version's file.

Layout rules (key order, which containers break lines) follow MXNet's writer
so that files diff cleanly against MXNet's own; see FORMATS_AND_LESSONS.md.
"""
from __future__ import annotations

import json

from ..runtime.errors import MXNetError
from .graph import Entry, Node, topo_order
from .ops import registry
from .ops.params import is_hidden_key

MXNET_VERSION = 10901
LEGACY_HIDDEN = ("ctx_group", "lr_mult", "wd_mult", "force_mirroring", "mirror_stage")


def _aux_ids(nodes):
    aux = set()
    for n in nodes:
        if n.op is not None:
            for i in n.op.aux_inputs(n.params):
                if i < len(n.inputs):
                    aux.add(n.inputs[i].node.uid)
    return aux


def to_dict(outputs):
    nodes = topo_order(outputs)
    index = {n.uid: i for i, n in enumerate(nodes)}
    out_nodes, row_ptr = [], [0]
    for n in nodes:
        d = {"op": "null" if n.is_variable else n.op.name, "name": n.name}
        if n.attrs:
            d["attrs"] = {k: n.attrs[k] for k in sorted(n.attrs)}
        d["inputs"] = [[index[e.node.uid], e.index, 0] for e in n.inputs]
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


def _dump(value, depth):
    """MXNet's JSON writer layout (dmlc::JSONWriter)."""
    pad = "\n" + "  " * (depth + 1)
    end = "\n" + "  " * depth
    if isinstance(value, dict):
        if not value:
            return "{}"
        multi = depth == 0 or "op" in value or len(value) > 1 or any(isinstance(v, (dict, list)) for v in value.values())
        items = ["%s: %s" % (_str(k), _dump(v, depth + 1)) for k, v in value.items()]
        if not multi:
            return "{" + items[0] + "}"
        return "{" + pad + ("," + pad).join(items) + end + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        if all(isinstance(v, dict) for v in value):
            return "[" + pad + ("," + pad).join(_dump(v, depth + 1) for v in value) + end + "]"
        if len(value) > 10 and all(isinstance(v, (int, list)) for v in value):
            return "[" + pad + ("," + pad).join(_dump(v, depth + 1) for v in value) + end + "]"
        return "[" + ", ".join(_dump(v, depth + 1) for v in value) + "]"
    if isinstance(value, str):
        return _str(value)
    return json.dumps(value)


def _str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") \
        .replace("\t", "\\t") + '"'


def to_json(outputs):
    return _dump(to_dict(outputs), 0)


def _entry(raw, nodes, where):
    if not isinstance(raw, (list, tuple)) or len(raw) not in (2, 3):
        raise MXNetError("malformed symbol JSON: bad input entry %r in %s" % (raw, where))
    nid, idx = int(raw[0]), int(raw[1])
    if not 0 <= nid < len(nodes) or nodes[nid] is None:
        raise MXNetError("malformed symbol JSON: %s refers to node %d, which is not defined before it" % (where, nid))
    return Entry(nodes[nid], idx)


def from_json(text):
    """Entries of the heads of a symbol JSON document (any MXNet 1.x version)."""
    try:
        doc = json.loads(text)
    except (ValueError, TypeError) as err:
        raise MXNetError("malformed symbol JSON: %s" % err) from None
    if not isinstance(doc, dict) or "nodes" not in doc or "heads" not in doc:
        raise MXNetError("malformed symbol JSON: needs 'nodes' and 'heads'")
    version = (doc.get("attrs") or {}).get("mxnet_version", ["int", 800])[1]
    raw_nodes = doc["nodes"]
    unknown = sorted({n.get("op") for n in raw_nodes if n.get("op") != "null" and not registry.exists(n.get("op"))})
    if unknown:
        counts = {u: sum(1 for n in raw_nodes if n.get("op") == u) for u in unknown}
        raise MXNetError("symbol JSON uses operators kiln does not support: %s"
                         % ", ".join("%s (x%d)" % (u, c) for u, c in counts.items()))
    nodes = [None] * len(raw_nodes)
    for i, rn in enumerate(raw_nodes):
        if not isinstance(rn, dict) or "op" not in rn or "name" not in rn:
            raise MXNetError("malformed symbol JSON: node %d needs 'op' and 'name'" % i)
        attrs = {}
        for key in ("param", "attr", "attrs"):
            attrs.update({str(k): str(v) for k, v in (rn.get(key) or {}).items()})
        if version < 900:
            attrs = {("__%s__" % k if k in LEGACY_HIDDEN else k): v for k, v in attrs.items()}
        where = "node %d (%r)" % (i, rn["name"])
        inputs = [_entry(r, nodes, where) for r in rn.get("inputs", [])]
        if rn["op"] == "null":
            nodes[i] = Node(None, rn["name"], attrs)
            continue
        op = registry.get(rn["op"], rn["name"])
        op_attrs = {k: v for k, v in attrs.items() if not is_hidden_key(k) or k in op.schema}
        hidden = {k: v for k, v in attrs.items() if k not in op_attrs}
        node = Node(op, rn["name"], {**hidden, **op_attrs}, inputs)
        nodes[i] = node
        for c in rn.get("control_deps", []):
            node.control_deps.append(nodes[int(c)])
    heads = [_entry(h, nodes, "heads") for h in doc["heads"]]
    return heads
