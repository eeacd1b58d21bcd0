"""autograd: record imperative operations, then differentiate the recording.

While recording, every operator call keeps a tape node: the operator, its
attributes, its input arrays (with where each came from) and every output,
hidden ones included (Dropout's mask), because gradients read them. Backward
walks the tape from the heads in reverse and asks each operator's registry
declaration for its gradient graph, which runs as ordinary compiled
imperative operations. With ``create_graph=True`` those operations are
recorded themselves, so gradients can be differentiated again.
"""
from __future__ import annotations

import threading

from .base import MXNetError
from .compiler.builder import Builder
from .compiler.graph import Entry, Graph, Node
from .compiler.passes.expand import expand_composites
from .compiler.passes.gradient import gradient

_state = threading.local()
_END = object()
GRAD_REQS = ("write", "add", "null")


# ---- recording and training flags (per thread, as in MXNet) ----
def is_recording():
    return getattr(_state, "recording", False)


def is_training():
    return getattr(_state, "training", False)


def set_recording(is_recording_):
    """Set the recording flag; returns the previous value."""
    prev = is_recording()
    _state.recording = bool(is_recording_)
    return prev


def set_training(train_mode_):
    """Set the training flag; returns the previous value."""
    prev = is_training()
    _state.training = bool(train_mode_)
    return prev


class _Scope:
    """Sets recording and/or training for a ``with`` block and restores them after."""

    def __init__(self, recording, training):
        self._recording = recording
        self._training = training
        self._prev = None

    def __enter__(self):
        rec = set_recording(self._recording) if self._recording is not None else None
        train = set_training(self._training) if self._training is not None else None
        self._prev = (rec, train)
        return self

    def __exit__(self, *exc):
        rec, train = self._prev
        if self._recording is not None:
            set_recording(rec)
        if self._training is not None:
            set_training(train)


def record(train_mode=True):
    return _Scope(True, train_mode)


def pause(train_mode=False):
    return _Scope(False, train_mode)


def train_mode():
    return _Scope(None, True)


def predict_mode():
    return _Scope(None, False)


# ---- the tape ----
class Leaf:
    """A variable: an array whose gradient lands in ``grad`` (attach_grad / mark_variables)."""

    __slots__ = ("grad", "grad_req")

    def __init__(self, grad, grad_req):
        if grad_req not in GRAD_REQS:
            raise MXNetError("grad_req %r is not one of %s" % (grad_req, GRAD_REQS))
        self.grad = grad
        self.grad_req = grad_req


class TapeNode:
    """One recorded call: registry operator (``op``) or ``autograd.Function`` (``function``)."""

    __slots__ = ("op", "attrs", "inputs", "sources", "outputs", "function", "freed")

    def __init__(self, op, attrs, inputs, outputs, function=None):
        self.op = op
        self.attrs = attrs
        self.inputs = list(inputs)
        self.sources = [x._ag for x in inputs]  # where each input came from, at record time
        self.outputs = list(outputs)
        self.function = function
        self.freed = False

    @property
    def name(self):
        return self.function.__class__.__name__ if self.function is not None else self.op.name


def record_op(op, attrs, inputs, outputs):
    """Called by every imperative operator while recording; ``outputs`` are all outputs."""
    node = TapeNode(op, attrs, inputs, outputs)
    for i, out in enumerate(outputs):
        out._ag = (node, i)


def mark_variables(variables, gradients, grad_reqs="write"):
    from .ndarray import NDArray
    if isinstance(variables, NDArray):
        variables, gradients = [variables], [gradients]
    if isinstance(grad_reqs, str):
        grad_reqs = [grad_reqs] * len(variables)
    if not (len(variables) == len(gradients) == len(grad_reqs)):
        raise MXNetError("mark_variables: %d variables, %d gradients, %d grad_reqs"
                         % (len(variables), len(gradients), len(grad_reqs)))
    for v, g, req in zip(variables, gradients, grad_reqs):
        if g.shape != v.shape:
            raise MXNetError("mark_variables: gradient buffer of shape %s for a variable of shape %s"
                             % (g.shape, v.shape))
        v._ag = Leaf(g, req)


# ---- differentiation ----
def backward(heads, head_grads=None, retain_graph=False, train_mode=True):
    """Accumulate d(heads)/d(variable) into every reachable variable's ``grad``."""
    heads, head_grads = _heads(heads, head_grads)
    leaves = _reachable_leaves(heads)
    targets = [leaf for leaf in leaves if leaf.grad_req != "null"]
    grads = _differentiate(heads, head_grads, targets, retain_graph, False, train_mode)
    from .ndarray.ndarray import invoke
    with pause():
        for leaf, g in zip(targets, grads):
            if leaf.grad_req == "add":
                invoke("elemwise_add", [leaf.grad, g], {}, out=leaf.grad)
            else:
                invoke("_copy", [g], {}, out=leaf.grad)


def grad(heads, variables, head_grads=None, retain_graph=None, create_graph=False, train_mode=True):
    """Gradients of ``heads`` w.r.t. ``variables`` as new arrays; ``.grad`` is left alone."""
    from .ndarray import NDArray
    single = isinstance(variables, NDArray)
    variables = [variables] if single else list(variables)
    heads, head_grads = _heads(heads, head_grads)
    targets = []
    for k, v in enumerate(variables):
        if not isinstance(v._ag, Leaf):
            raise MXNetError("autograd.grad: variable %d (shape %s) is not marked; call attach_grad() "
                             "on it before recording" % (k, v.shape))
        targets.append(v._ag)
    if retain_graph is None:
        retain_graph = create_graph
    return _differentiate(heads, head_grads, targets, retain_graph, create_graph, train_mode)


def _heads(heads, head_grads):
    from .ndarray import NDArray
    if isinstance(heads, NDArray):
        heads = [heads]
        head_grads = [head_grads] if head_grads is None or isinstance(head_grads, NDArray) else head_grads
    heads = list(heads)
    head_grads = [None] * len(heads) if head_grads is None else list(head_grads)
    if len(head_grads) != len(heads):
        raise MXNetError("backward: %d head gradients given for %d heads" % (len(head_grads), len(heads)))
    for k, (h, g) in enumerate(zip(heads, head_grads)):
        if not isinstance(h._ag, tuple):
            raise MXNetError("backward: head %d (shape %s) was not computed by a recorded operation; "
                             "compute it inside autograd.record()" % (k, h.shape))
        if g is not None and g.shape != h.shape:
            raise MXNetError("backward: head gradient %d has shape %s, head has shape %s" % (k, g.shape, h.shape))
    return heads, head_grads


def _tape_order(heads):
    """Tape nodes reachable from the heads, inputs before users."""
    order, seen = [], set()
    for h in heads:
        root = h._ag[0]
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(root.sources))]
        while stack:
            node, it = stack[-1]
            src = next(it, _END)
            if src is _END:
                stack.pop()
                order.append(node)
            elif isinstance(src, tuple) and id(src[0]) not in seen:
                seen.add(id(src[0]))
                stack.append((src[0], iter(src[0].sources)))
    return order


def _reachable_leaves(heads):
    leaves, seen = [], set()
    for node in _tape_order(heads):
        for src in node.sources:
            if isinstance(src, Leaf) and id(src) not in seen:
                seen.add(id(src))
                leaves.append(src)
    return leaves


def _differentiate(heads, head_grads, targets, retain_graph, create_graph, train_mode):
    from .ndarray.ndarray import invoke
    order = _tape_order(heads)
    target_ids = {id(t) for t in targets}
    needed = set()  # tape nodes from which some target is reachable
    for node in order:
        if node.freed:
            raise MXNetError("backward: the recorded graph through %s was freed by an earlier backward; "
                             "pass retain_graph=True to differentiate it twice" % node.name)
        if any((isinstance(s, Leaf) and id(s) in target_ids) or (isinstance(s, tuple) and id(s[0]) in needed)
               for s in node.sources):
            needed.add(id(node))
    pending = {}  # id(node) or id(leaf) -> {index: [arrays]}
    with _Scope(create_graph, train_mode):
        for h, g in zip(heads, head_grads):
            node, i = h._ag
            if g is None:
                with pause():
                    g = invoke("ones_like", [h], {})[0]
            pending.setdefault(id(node), {}).setdefault(i, []).append(g)
        for node in reversed(order):
            if id(node) not in needed or id(node) not in pending:
                continue
            got = pending.pop(id(node))
            ogs = [_total(got.get(i)) for i in range(len(node.outputs))]
            in_grads = _node_gradient(node, ogs, invoke)
            for src, g in zip(node.sources, in_grads):
                if g is None:
                    continue
                if isinstance(src, tuple) and id(src[0]) in needed:
                    pending.setdefault(id(src[0]), {}).setdefault(src[1], []).append(g)
                elif isinstance(src, Leaf) and id(src) in target_ids:
                    pending.setdefault(id(src), {}).setdefault(0, []).append(g)
        out = []
        for t in targets:
            g = _total(pending.get(id(t), {}).get(0))
            if g is None:
                with pause():
                    g = invoke("zeros_like", [t.grad], {})[0]
            out.append(g)
    if not retain_graph:
        for node in order:
            node.freed = True
            node.outputs = []
    return out


def _total(arrays):
    if not arrays:
        return None
    from .ndarray.ndarray import invoke
    if len(arrays) == 1:
        return arrays[0]
    if len(arrays) == 2:
        return invoke("elemwise_add", arrays, {})[0]
    return invoke("add_n", arrays, {"num_args": len(arrays)})[0]


def _node_gradient(node, ogs, invoke):
    """Input gradients of one tape node (None where no gradient flows)."""
    if node.function is not None:
        return node.function._run_backward(ogs, node)
    for i, g in enumerate(ogs):
        if g is None:
            ogs[i] = invoke("zeros_like", [node.outputs[i]], {})[0]
    in_vars = [Node(None, "in%d" % k) for k in range(len(node.inputs))]
    fwd = Node(node.op, node.op.hint, node.attrs, [Entry(v) for v in in_vars])
    og_vars = [Node(None, "og%d" % k) for k in range(len(ogs))]
    values = {(v.uid, 0): x for v, x in zip(in_vars, node.inputs)}
    values.update({(v.uid, 0): g for v, g in zip(og_vars, ogs)})
    og_entries = [Entry(v) for v in og_vars]
    if node.op.gradient is not None:
        entries = node.op.gradient(Builder(node.op.hint + "_backward"), fwd, og_entries)
        outputs = [Entry(fwd, i) for i in range(len(node.outputs))]
    elif node.op.kind == "composite":
        entries, outputs = _composite_gradient(node, fwd, og_entries, values)
    else:
        raise MXNetError("operator %s has no gradient" % node.op.name)
    for e, out in zip(outputs, node.outputs):
        values.setdefault(e.key(), out)  # saved outputs: never recomputed
    return [None if e is None else _evaluate(e, values, invoke) for e in entries]


def _composite_gradient(node, fwd, og_entries, values):
    """A composite operator without its own gradient rule (Activation, BatchNorm...) is
    differentiated through its expansion; inner values are recomputed from the inputs."""
    shapes = {"in%d" % k: x.shape for k, x in enumerate(node.inputs)}
    graph = expand_composites(Graph([Entry(fwd, i) for i in range(len(node.outputs))]), keep_differentiable=True,
                              var_shapes=shapes)
    sampled = [n.op.name for n in graph.nodes if n.op is not None and n.op.random]
    if sampled:
        raise MXNetError("operator %s is not differentiable: it samples random numbers (%s) inside"
                         % (node.op.name, ", ".join(sampled)))
    by_name = {n.name: n for n in graph.variables()}
    wrt = [by_name.get("in%d" % k) for k in range(len(node.inputs))]
    present = [v for v in wrt if v is not None]
    for v in present:
        values[(v.uid, 0)] = node.inputs[int(v.name[2:])]
    grads = iter(gradient(graph, present, og_entries))
    return [next(grads) if v is not None else None for v in wrt], graph.outputs


def _evaluate(entry, values, invoke):
    """Value of a gradient-graph entry: operator nodes run as imperative calls."""
    key = entry.key()
    if key in values:
        return values[key]
    node = entry.node
    if node.is_variable:
        raise AssertionError("gradient graph reads unknown variable %r" % node.name)
    args = [_evaluate(e, values, invoke) for e in node.inputs]
    outs = invoke(node.op.name, args, node.attrs)
    for i, o in enumerate(outs):
        values[(node.uid, i)] = o
    return values[key]


# ---- the recorded graph as a Symbol ----
def get_symbol(x):
    """The operations recorded to compute ``x``, as a Symbol (inputs become variables)."""
    from .symbol.symbol import Symbol
    if not isinstance(x._ag, tuple):
        raise MXNetError("get_symbol: the array was not computed by a recorded operation")
    made, variables = {}, {}

    def entry_of(array, src):
        if isinstance(src, tuple):
            return Entry(node_of(src[0]), src[1])
        key = id(src) if src is not None else id(array)
        if key not in variables:
            variables[key] = Node(None, "var%d" % len(variables))
        return Entry(variables[key])

    def node_of(tape):
        if id(tape) in made:
            return made[id(tape)]
        if tape.function is not None:
            raise NotImplementedError("get_symbol through autograd.Function %s" % tape.name)
        inputs = [entry_of(a, s) for a, s in zip(tape.inputs, tape.sources)]
        node = Node(tape.op, "%s%d" % (tape.op.hint, len(made)), tape.attrs, inputs)
        made[id(tape)] = node
        return node
    tape, i = x._ag
    return Symbol([Entry(node_of(tape), i)])


# ---- user-defined differentiable functions ----
class Function:
    """A differentiable operation written in Python: override ``forward`` and ``backward``.

    ``forward`` runs with recording paused; when called while recording, the
    outputs are recorded as one tape node whose gradient calls ``backward``.
    """

    def __init__(self):
        self._saved = ()

    def save_for_backward(self, *args):
        self._saved = args

    @property
    def saved_tensors(self):
        return self._saved

    def forward(self, *inputs):
        raise NotImplementedError("autograd.Function subclasses must define forward")

    def backward(self, *output_grads):
        raise NotImplementedError("autograd.Function subclasses must define backward")

    def __call__(self, *inputs):
        from .ndarray import NDArray
        recording = is_recording()
        with pause(train_mode=is_training()):
            outputs = self.forward(*inputs)
        single = isinstance(outputs, NDArray)
        outs = [outputs] if single else list(outputs)
        if recording:
            outs = [o.copy() if any(o is x for x in inputs) else o for o in outs]
            node = TapeNode(None, None, inputs, outs, function=self)
            for i, o in enumerate(outs):
                o._ag = (node, i)
        return outs[0] if single else tuple(outs)

    def _run_backward(self, ogs, node):
        from .ndarray.ndarray import invoke
        for i, g in enumerate(ogs):
            if g is None:
                ogs[i] = invoke("zeros_like", [node.outputs[i]], {})[0]
        with pause(train_mode=is_training()):
            grads = self.backward(*ogs)
        from .ndarray import NDArray
        grads = [grads] if isinstance(grads, NDArray) else list(grads)
        if len(grads) != len(node.inputs):
            raise MXNetError("%s.backward returned %d gradients for %d inputs"
                             % (type(self).__name__, len(grads), len(node.inputs)))
        for k, (g, x) in enumerate(zip(grads, node.inputs)):
            if g is not None and g.shape != x.shape:
                raise MXNetError("%s.backward: gradient %d has shape %s, input has %s"
                                 % (type(self).__name__, k, g.shape, x.shape))
        return grads
