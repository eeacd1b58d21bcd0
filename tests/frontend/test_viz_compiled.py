"""The compiled-program picture and the report data it is drawn from: clusters are the
compiler's fused launches, edges carry the memory plan's arena placement, and the
report's ``program`` survives serialisation (old reports without it still load)."""
import json
import re
import shutil
import sys

import pytest

import kiln as mx
from kiln import autograd, gluon
from kiln.compiler.pipeline import compile_program
from kiln.compiler.report import CompileReport
from kiln.viz_compiled import plot_compiled

pytest.importorskip("graphviz")

CLUSTER = re.compile(r"^\s*subgraph cluster_(\d+) \{")
NODE = re.compile(r'^\s*(k\d+n\d+) \[label="([^"]*)"')
EDGE = re.compile(r'^\s*(\S+) -> (\S+)(?: \[(.*)\])?$')
ATTR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(dot):
    """clusters {launch: [(node name, op)]}, cluster labels, edges [(tail, head, attrs)]."""
    clusters, labels, edges, current = {}, {}, [], None
    for line in dot.source.splitlines():
        m = CLUSTER.match(line)
        if m:
            current = int(m.group(1))
            clusters[current] = []
            continue
        if current is not None and line.strip() == "}":
            current = None
            continue
        if current is not None and line.strip().startswith("color="):
            labels[current] = dict(ATTR.findall(line))["label"]
        m = NODE.match(line)
        if m and current is not None:
            name, op = m.group(2).split("\\n")
            clusters[current].append((name, op))
            continue
        m = EDGE.match(line)
        if m:
            edges.append((m.group(1), m.group(2), dict(ATTR.findall(m.group(3) or ""))))
    return clusters, labels, edges


def mlp():
    x = mx.sym.FullyConnected(mx.sym.var("data"), num_hidden=16, name="fc1")
    x = mx.sym.Activation(x, act_type="relu", name="relu1")
    x = mx.sym.FullyConnected(x, num_hidden=4, name="fc2")
    return mx.sym.SoftmaxOutput(x, name="softmax")


def cnn():
    x = mx.sym.Convolution(mx.sym.var("data"), kernel=(3, 3), num_filter=4, name="conv1")
    x = mx.sym.BatchNorm(x, name="bn1")
    x = mx.sym.Activation(x, act_type="relu", name="relu1")
    x = mx.sym.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool1")
    x = mx.sym.Flatten(x, name="flat")
    x = mx.sym.FullyConnected(x, num_hidden=10, name="fc1")
    return mx.sym.SoftmaxOutput(x, name="softmax")


NETS = {"mlp": (mlp, {"data": (8, 10)}), "cnn": (cnn, {"data": (2, 3, 8, 8)})}


def bound(net, grad):
    build, shapes = NETS[net]
    return build().simple_bind(mx.cpu(), grad_req="write" if grad else "null", **shapes)


def check_clusters(dot, report):
    """Every launch is one cluster holding exactly its fused nodes, named by its kernel, whose
    operators are the report's for that kernel."""
    clusters, labels, _ = parse(dot)
    launches = report.program["launches"]
    kernels = {k["name"]: k["ops"] for k in report.kernels}
    assert sorted(clusters) == list(range(len(launches)))
    for i, launch in enumerate(launches):
        assert clusters[i] == [(n["name"], n["op"]) for n in launch["nodes"]]
        assert labels[i] == "%s (%s)" % (launch["kernel"], launch["phase"])
        assert [op for _, op in clusters[i]] == kernels[launch["kernel"]]
    assert {l["kernel"] for l in launches} == set(kernels)
    return clusters, labels


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("grad", [False, True])
def test_clusters_are_the_fused_launches(net, grad):
    ex = bound(net, grad)
    report = ex.compile_report()
    build, shapes = NETS[net]
    clusters, labels = check_clusters(plot_compiled(build(), shape=shapes, grad=grad), report)
    assert any(len(members) > 1 for members in clusters.values()), "nothing fused: a weak test"
    phases = {re.search(r"\((\w+)\)$", l).group(1) for l in labels.values()}
    assert phases == ({"forward", "backward"} if grad else {"forward"})
    # the same picture from the Executor itself
    check_clusters(plot_compiled(ex), report)


def live_ranges(program):
    """Independent liveness from the report's launches: {storage slot: (first, last)} over run
    order; a value written in forward and read in backward lives to the end."""
    slots, launches = program["slots"], program["launches"]
    end = len(launches)

    def storage(s):
        return slots[s]["alias_of"] if slots[s]["alias_of"] is not None else s
    first, last, phase = {}, {}, {}
    for t, launch in enumerate(launches):
        for s in map(storage, launch["reads"]):
            if slots[s]["role"] == "internal":
                last[s] = end if phase[s] != launch["phase"] else max(last[s], t)
        for s in launch["writes"]:
            if slots[s]["role"] == "internal":
                first[s], last[s], phase[s] = t, t, launch["phase"]
    return {s: (first[s], last[s]) for s in first}


@pytest.mark.parametrize("net", sorted(NETS))
def test_edges_carry_the_memory_plan(net):
    ex = bound(net, grad=True)
    program = ex.compile_report().program
    slots = program["slots"]
    spec_slots = ex._program.spec.slots
    # the report's placement is the planner's: the ProgramSpec the runtime loaded
    for rs, ss in zip(slots, spec_slots):
        assert (rs["name"], tuple(rs["shape"]), rs["dtype"], rs["alias_of"]) == \
            (ss.name, ss.shape, ss.dtype, ss.alias_of)
        assert rs["nbytes"] == ss.nbytes and (rs["role"] == "internal") == (not ss.external)
        if rs["role"] == "internal" and rs["alias_of"] is None:
            assert rs["offset"] == ss.offset
    # two buffers sharing arena bytes are never live at once, except an in-place pair
    live = live_ranges(program)
    shared = 0
    for a in live:
        for b in live:
            if a < b:
                lo_a, lo_b = slots[a]["offset"], slots[b]["offset"]
                if lo_a < lo_b + slots[b]["nbytes"] and lo_b < lo_a + slots[a]["nbytes"]:
                    shared += 1
                    if live[a][0] <= live[b][1] and live[b][0] <= live[a][1]:
                        assert slots[b]["inplace_of"] == a or slots[a]["inplace_of"] == b, \
                            "%s and %s share bytes while both live" % (slots[a]["name"], slots[b]["name"])
    assert shared, "no arena reuse: a weak test"
    # each internal edge's label and tooltip give that slot's offset and size
    by_name = {s["name"]: s for s in slots}
    _, _, edges = parse(plot_compiled(ex, hide_weights=False))
    placed = 0
    for _, _, attrs in edges:
        m = re.search(r"@(\d+) \+(\d+)B", attrs.get("label", ""))
        if not m:
            continue
        slot = by_name[attrs["tooltip"].split(":", 1)[0]]
        root = slots[slot["alias_of"]] if slot["alias_of"] is not None else slot
        assert (int(m.group(1)), int(m.group(2))) == (root["offset"], root["nbytes"])
        assert "arena bytes [%d, %d)" % (root["offset"], root["offset"] + root["nbytes"]) in attrs["tooltip"]
        placed += 1
    assert placed >= len(live) - 1  # every value read by a kernel is an edge (a hidden mask may be unread)


def test_inputs_params_outputs_and_hide_weights():
    build, shapes = NETS["mlp"]
    hidden = plot_compiled(build(), shape=shapes).source
    shown = plot_compiled(build(), shape=shapes, hide_weights=False).source
    assert "fc1_weight" not in hidden and "fc1_weight" in shown
    assert "data\\n8x10 float32" in hidden and "__output0\\n8x4 float32" in hidden
    assert 'label="8x10\\ninput"' in hidden and "\\nparam" in shown and "\\noutput" in hidden
    coloured = plot_compiled(build(), shape=shapes, node_attrs={"fillcolor": "#123456"})
    boxes = sum(len(members) for members in parse(coloured)[0].values())
    assert coloured.source.count('fillcolor="#123456"') == boxes > 0


def test_dtype_and_errors():
    build, _ = NETS["mlp"]
    src = plot_compiled(build(), shape={"data": (8, 10)}, dtype={"data": "float64"}).source
    assert "data\\n8x10 float64" in src
    with pytest.raises(mx.MXNetError, match="shape"):
        plot_compiled(build())
    with pytest.raises(mx.MXNetError, match="nope"):
        plot_compiled(build(), shape={"nope": (1, 2)})
    with pytest.raises(mx.MXNetError, match="cannot draw a int"):
        plot_compiled(3)


def test_hybridized_block_source():
    net = gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(gluon.nn.Dense(8, activation="relu"), gluon.nn.Dense(2))
    net.initialize()
    with pytest.raises(mx.MXNetError, match="hybridize"):
        plot_compiled(net)
    net.hybridize()
    x = mx.nd.ones((4, 5))
    net(x)
    ex = [c for pool in net._cached.values() for c in pool][-1].executor
    dot = plot_compiled(net)
    check_clusters(dot, ex.compile_report())
    assert net[0].weight.name not in dot.source  # block parameters are weights, hidden
    assert net[0].weight.name in plot_compiled(net, hide_weights=False).source
    with autograd.record():
        y = net(x)
    y.backward()
    _, labels = check_clusters(plot_compiled(net), [c for pool in net._cached.values() for c in pool][-1]
                               .executor.compile_report())
    assert any(l.endswith("(backward)") for l in labels.values())


def test_report_program_survives_serialisation():
    report = bound("cnn", grad=True).compile_report()
    d = json.loads(report.to_json())
    back = CompileReport.from_dict(d)
    assert back.program == report.program and back.program["launches"]
    old = {k: v for k, v in d.items() if k != "program"}  # a report stored before the key existed
    rep = CompileReport.from_dict(old)
    assert rep.program == {} and rep.kernels == report.kernels
    assert "kernels" in str(rep)


def test_program_cache_keeps_the_description(monkeypatch):
    monkeypatch.delenv("KILN_DISABLE_PROGRAM_CACHE", raising=False)
    sym = mlp()
    heads = sym._outputs
    shapes = dict(zip(sym.list_arguments(), sym.infer_shape(data=(3, 10))[0]))
    dtypes = {n: "float32" for n in shapes}
    first, _ = compile_program(heads, shapes, dtypes, name="viz_cache_test")
    again, _ = compile_program(heads, shapes, dtypes, name="viz_cache_test")
    assert again.report["program_cache"]["hit"] == "memory"
    assert again.report["program"] == json.loads(json.dumps(first.report["program"]))


def test_old_report_cannot_be_drawn():
    ex = bound("mlp", grad=False)
    del ex._program.spec.report["program"]
    with pytest.raises(mx.MXNetError, match="no program description"):
        plot_compiled(ex)


def test_removed_nodes_are_named():
    x = mx.sym.var("x")
    out = mx.sym.relu(x, name="r1") + mx.sym.relu(x, name="r2")
    dot = plot_compiled(out, shape={"x": (4,)})
    spec, _ = compile_program(out._outputs, {"x": (4,)}, {"x": "float32"})
    removed = spec.report["program"]["removed"]
    assert removed["cse"]["count"] == 1 and removed["cse"]["names"][0] in ("r1", "r2")
    assert "cse removed 1" in dot.source


def test_missing_graphviz_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match=r"pip install 'kiln\[viz\]'"):
        plot_compiled(mlp(), shape={"data": (8, 10)})


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_renders_svg():
    svg = plot_compiled(cnn(), shape={"data": (2, 3, 8, 8)}, grad=True).pipe(format="svg", quiet=True)
    assert b"<svg" in svg and b"cluster_0" in svg


def test_random_key_accumulated_gradients_and_aux_states():
    x = mx.sym.Dropout(mx.sym.FullyConnected(mx.sym.var("data"), num_hidden=4, name="fc"), p=0.5, name="drop")
    ex = x.simple_bind(mx.cpu(), grad_req="add", data=(2, 3))
    ex.forward(is_train=True)
    ex.backward()
    shown = plot_compiled(ex, hide_weights=False)
    check_clusters(shown, ex.compile_report())
    edges = [(attrs["tooltip"], head) for tail, head, attrs in parse(shown)[2] if "tooltip" in attrs]
    assert any(tip.startswith("__rng_key__") for tip, _ in edges)  # read by the kernel, by no graph node
    assert any(tip.startswith("__grad_in:fc_weight") for tip, _ in edges)
    hidden = [attrs.get("tooltip", "") for _, _, attrs in parse(plot_compiled(ex))[2]]
    assert hidden and not any(tip.startswith(("__grad_in:fc_weight", "__grad:fc_weight")) for tip in hidden)
    bn = mx.sym.BatchNorm(mx.sym.var("data"), name="bn")
    assert "bn_moving_mean" not in plot_compiled(bn, shape={"data": (2, 3)}).source
    assert "bn_moving_mean\\n3 float32" in plot_compiled(bn, shape={"data": (2, 3)}, hide_weights=False).source
