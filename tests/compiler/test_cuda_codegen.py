"""The CUDA renderer (compiler/codegen/cuda*.py) and NVRTC (runtime/nvrtc.py), without a GPU:
every kernel the compiler lowers for a sample of every registry operator (forward and
gradient), for whole graphs and for shape-generic kernels renders to CUDA C that NVRTC
compiles for sm_80 and sm_90. Kernels are batched into one NVRTC program per operator
family, so the whole file compiles a few dozen programs."""
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kiln.compiler import expr as E
from kiln.compiler import generic as G
from kiln.compiler.codegen.cuda import (BLOCK, MAX_GRID, Launch, float_literal, render_kernel)
from kiln.compiler.graph import Entry, Node
from kiln.compiler.kernel import Buffer, Gemm, Kernel, Sort, compute, scatter_add
from kiln.compiler.ops import registry
from kiln.runtime import nvrtc
from kiln.runtime.errors import MXNetError

pytestmark = pytest.mark.skipif(not nvrtc.available(),
                                reason="NVRTC not importable: pip install cuda-bindings nvidia-cuda-nvrtc")

ARCHS = ("sm_80", "sm_90")
SHAPE = (3, 4, 2)
FAMILIES = 8  # NVRTC programs the per-operator kernels are split into


# ---- lowering without LLVM ----
def lower(heads, var_shapes, var_types, grad_req=None):
    """The kernels the pipeline would emit for ``heads`` (graph passes, fusion, lowering) and
    the operators they compute."""
    from kiln.compiler.pipeline import PassManager, lower_program, prepare_graph
    low = lower_program(prepare_graph(heads, var_shapes, var_types, grad_req, PassManager(()), False))
    ops = {op for launches in low.phases.values() for launch in launches for op in launch.ops}
    return low.kernels, ops


# operators the shared test tables have no instance of: (shapes of the leading inputs, dtype,
# attributes); shape and dtype inference fills the other inputs (weights, hyper-parameters)
SPECIAL = {
    "_arange": ([], {"start": 5}),
    "_eye": ([], {"N": 3, "M": 5, "k": -1}),
    "_full": ([], {"shape": (3, 1, 2), "value": -2.5}),
    "_linspace": ([], {"start": 0, "stop": 1, "num": 5}),
    "_random_randint": ([], {"low": 0, "high": 10, "shape": (3, 4)}),
    "Deconvolution": ([(2, 3, 5, 5)], {"kernel": (3, 3), "num_filter": 2, "stride": (2, 2)}),
    "GroupNorm": ([(2, 4, 3)], {"num_groups": 2}),
    "InstanceNorm": ([(2, 4, 3)], {}),
    "LayerNorm": ([(2, 4, 3)], {}),
    "_batch_norm_train": ([(2, 4, 3)], {}),
    "UpSampling": ([(1, 2, 3, 3)], {"scale": 2, "sample_type": "nearest", "num_args": 1}),
    "_upsampling_nearest": ([(1, 2, 3, 3)], {"scale": 2}),
    "_convolution_direct": ([(2, 3, 5, 5)], {"kernel": (3, 3), "num_filter": 2, "pad": (1, 1)}),
    "_rnn_backward": ([(3, 2, 3)], {"state_size": 2, "num_layers": 1, "mode": "lstm", "state_outputs": True}),
    "_backward_LeakyReLU_gamma": ([(3, 4, 2), (3, 4, 2), (4,)], {}),  # gamma per channel
}


def sample(op, rng):
    """(inputs, attrs) of a representative instance, from the operator test tables; inputs
    may be fewer than the operator takes (inference gives the rest their shapes)."""
    from tests.compiler.test_generic import case
    from tests.frontend.test_autograd_ops import EXTRA
    if op.name in SPECIAL:
        shapes, attrs = SPECIAL[op.name]
        return [rng.uniform(0.2, 1.8, s).astype("float32") for s in shapes], dict(attrs)
    if op.name.startswith("_random_") and "shape" in op.schema:
        return [], {"shape": (3, 4)}
    if "update" in op.name:  # optimisers: the weight given, states and hyper-parameters inferred
        attrs = {k: v for k, v in (("lr", 0.1), ("t", 2), ("eta", 1.0), ("wd", 0.01)) if k in op.schema}
        return [rng.uniform(0.2, 1.8, SHAPE).astype("float32")], attrs
    if op.name in EXTRA:
        return EXTRA[op.name](rng)
    return case(op, rng, SHAPE)


def instance(op, rng):
    """(heads, shapes, types, input values, grad_req) of the operator's sample instance; grad_req
    asks for the gradients of its float inputs when the operator is differentiable, else None."""
    inputs, attrs = sample(op, rng)
    attrs = op.format_attrs(attrs, "op")
    params = op.parse_attrs(attrs, "op")
    names = ["in%d" % i for i in range(max(len(op.input_names(params)), len(inputs)))]
    node = Node(op, "op", attrs, [Entry(Node(None, n)) for n in names])
    heads = [Entry(node, i) for i in range(node.num_visible_outputs)]
    shapes = {n: tuple(x.shape) for n, x in zip(names, inputs)}
    types = {n: np.asarray(x).dtype.name for n, x in zip(names, inputs)}
    req = None
    if op.gradient is not None or op.kind == "composite":
        req = {n: "write" for n in names if types.get(n, "float32").startswith("float")}
    return heads, shapes, types, dict(zip(names, inputs)), req


def with_gradient(build, heads, shapes, types, req):
    """``build(heads, shapes, types[, req])``: with the gradient graph when asked and the
    instance has one, else forward only."""
    if req is not None:
        try:
            return build(heads, shapes, types, req)
        except (MXNetError, NotImplementedError, TypeError, ValueError, KeyError):
            pass  # no gradient for this instance (integer inputs, aux states): forward only
    return build(heads, shapes, types)


def lower_op(op):
    """Kernels of one operator instance, with its gradient graph where it has one."""
    heads, shapes, types, _, req = instance(op, np.random.RandomState(0))
    return with_gradient(lower, heads, shapes, types, req)


def _ops():
    return sorted(registry.all_ops(), key=lambda o: o.name)


_lowered = {}


def lowered_all():
    """{op name: (kernels, ops lowered) or the exception}, computed once."""
    if not _lowered:
        for op in _ops():
            try:
                _lowered[op.name] = lower_op(op)
            except Exception as exc:  # reported by test_every_operator_is_covered
                _lowered[op.name] = exc
    return _lowered


def compile_batch(kernels, label, archs=ARCHS):
    """Render ``kernels`` (uniquely renamed) into one source and compile it for ``archs``;
    returns the CudaKernels. A failure names the batch and shows the numbered source."""
    rendered = [render_kernel(k, name="k%d_%s" % (i, k.name)) for i, k in enumerate(kernels)]
    source = "\n".join(ck.source for ck in rendered)
    with ThreadPoolExecutor(len(archs)) as pool:  # NVRTC releases the GIL
        modules = list(pool.map(lambda arch: nvrtc.compile_cuda(source, label, arch), archs))
    for mod in modules:
        assert mod.ptx, label
        for ck in rendered:
            for fn in ck.functions():
                assert ".entry %s(" % fn in mod.ptx, (label, fn)
    return rendered


def family(i):
    ops = _ops()
    return [o.name for k, o in enumerate(ops) if k % FAMILIES == i]


# ---- every registry operator ----
@pytest.mark.parametrize("index", range(FAMILIES))
def test_every_operator_kernel_compiles(index):
    kernels, seen = [], set()
    for name in family(index):
        got = lowered_all()[name]
        if isinstance(got, Exception):
            continue
        for k in got[0]:
            if id(k) not in seen:
                seen.add(id(k))
                kernels.append(k)
    assert kernels
    rendered = compile_batch(kernels, "ops_family_%d" % index)
    assert sum(len(ck.launches) for ck in rendered) >= len(kernels) - sum(
        1 for k in kernels if all(isinstance(s, Sort) and (s.rows == 0 or s.n == 0) for s in k.stages))


# operators no sample in the test tables instantiates alone; each is lowered inside the
# gradient graph of the operator named here (or expanded into other operators)
def test_every_operator_is_covered():
    lowered = lowered_all()
    covered = set()
    failed = {}
    for name, got in lowered.items():
        if isinstance(got, Exception):
            failed[name] = "%s: %s" % (type(got).__name__, str(got).splitlines()[0] if str(got) else "")
            continue
        covered.add(name)
        covered |= got[1]
    missing = {name: failed.get(name, "lowered to no kernel") for name in lowered
               if name not in covered}
    # composite operators expand into others: lowered, they leave no kernel of their own name
    missing = {n: why for n, why in missing.items() if registry.get(n).kind != "composite" or n in failed}
    assert not missing, "operators without a compiled CUDA kernel:\n" + "\n".join(
        "%s: %s" % kv for kv in sorted(missing.items()))


# ---- whole graphs ----
def _graph_kernels(build, shapes, grads=True):
    import kiln as mx
    out = build(mx.sym)
    heads = list(out._outputs)
    types = {n: "float32" for n in shapes}
    req = {n: "write" for n in shapes} if grads else None
    return lower(heads, shapes, types, req)[0]


def mlp(sym):
    x = sym.Variable("x")
    h = sym.Activation(sym.FullyConnected(x, sym.Variable("w1"), sym.Variable("b1"), num_hidden=64),
                       act_type="relu")
    return sym.softmax(sym.FullyConnected(h, sym.Variable("w2"), sym.Variable("b2"), num_hidden=10))


def cnn(sym):
    x = sym.Variable("x")
    c = sym.Convolution(x, sym.Variable("cw"), sym.Variable("cb"), kernel=(3, 3), num_filter=8, pad=(1, 1))
    b = sym.BatchNorm(c, sym.Variable("g"), sym.Variable("be"), sym.Variable("mm"), sym.Variable("mv"),
                      fix_gamma=False, use_global_stats=True)
    p = sym.Pooling(sym.Activation(b, act_type="relu"), kernel=(2, 2), stride=(2, 2), pool_type="max")
    return sym.FullyConnected(sym.flatten(p), sym.Variable("fw"), sym.Variable("fb"), num_hidden=10)


def lstm(sym):
    return sym.RNN(sym.Variable("x"), sym.Variable("p"), sym.Variable("h0"), sym.Variable("c0"),
                   state_size=16, num_layers=1, mode="lstm", state_outputs=True)


def gemm_epilogue(sym):
    x = sym.Variable("x")
    return sym.tanh(sym.broadcast_add(sym.dot(x, sym.Variable("w")), sym.Variable("b")))


GRAPHS = {
    "mlp_softmax": (mlp, {"x": (8, 32), "w1": (64, 32), "b1": (64,), "w2": (10, 64), "b2": (10,)}),
    "cnn": (cnn, {"x": (2, 3, 8, 8), "cw": (8, 3, 3, 3), "cb": (8,), "g": (8,), "be": (8,), "mm": (8,),
                  "mv": (8,), "fw": (10, 128), "fb": (10,)}),
    "lstm": (lstm, {"x": (5, 2, 8), "p": (4 * 16 * (8 + 16 + 2),), "h0": (1, 2, 16), "c0": (1, 2, 16)}),
    "gemm_epilogue": (gemm_epilogue, {"x": (70, 40), "w": (40, 90), "b": (1, 90)}),
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_fused_graph_kernels_compile(name):
    build, shapes = GRAPHS[name]
    kernels = _graph_kernels(build, shapes, grads=name != "cnn")
    if name == "cnn":  # BatchNorm with global statistics: aux states get no gradient
        kernels += _graph_kernels(build, shapes, grads=False)
    assert kernels
    rendered = compile_batch(kernels, "graph_" + name)
    if name == "gemm_epilogue":
        gemms = [s for k in kernels for s in k.stages if isinstance(s, Gemm)]
        assert any(s.epilogue is not None for s in gemms), "fusion gave the GEMM no epilogue"
        assert any("tanhf(" in ck.source and "As[" in ck.source for ck in rendered)


# ---- shape-generic kernels ----
GENERIC = [("broadcast_add", [(3, 4), (1, 4)], {}), ("sum", [(3, 4, 5)], {"axis": (1,)}),
           ("max", [(3, 400)], {"axis": (1,)}), ("norm", [(3, 400)], {"axis": (1,)}), ("argmax", [(6, 300)], {"axis": 1}),
           ("take", [(5, 3), (4,)], {}), ("_backward_take", [(4, 3), (4,), (5, 3)], {}),
           ("relu", [(7, 2)], {}), ("transpose", [(2, 3, 4)], {"axes": (2, 0, 1)})]


def _generic_kernel(opname, shapes, attrs):
    op = registry.get(opname)
    attrs = op.format_attrs(attrs, "op")
    p = G.plan(opname, attrs, shapes, ["float32"] * len(shapes))
    assert p is not None, "%s is not shape-generic here" % opname
    table = [E.Dim(k) for k in range(len(p.dims))]

    def sym(cls):
        return tuple(table[int(d[1:])] if isinstance(d, str) else d for d in cls)
    ins = [Buffer("in%d" % i, sym(c), t) for i, (c, t) in enumerate(zip(p.in_class, p.in_dtypes))]
    outs = [Buffer("out%d" % i, sym(c), t) for i, (c, t) in enumerate(zip(p.out_class, p.out_dtypes))]
    dims = Buffer("dims", (len(p.dims),), "int64")
    kernel = Kernel("generic_" + op.name.strip("_"), ins + [dims], outs, op.lower(p.params, ins, outs), dims=dims)
    return kernel, p


def test_shape_generic_kernels_compile():
    kernels, plans = [], []
    for opname, shapes, attrs in GENERIC:
        k, p = _generic_kernel(opname, shapes, attrs)
        kernels.append(k)
        plans.append(p)
    rendered = compile_batch(kernels, "generic")
    for ck, k, p in zip(rendered, kernels, plans):
        assert ck.dims_param == len(k.inputs) - 1
        assert "const long long kd0 = P%d[0];" % ck.dims_param in ck.source
        # launch sizes follow the runtime dims: more elements, more blocks (up to the cap)
        small = ck.launch_sizes([1] * len(p.dims))
        large = ck.launch_sizes([10 ** 5] * len(p.dims))
        assert all(g >= 1 for _, g, _, _ in small)
        assert any(gl > gs for (_, gs, _, _), (_, gl, _, _) in zip(small, large)), ck.name


# ---- pure-Python checks of the rendered source and launches ----
def test_launch_description():
    a = Buffer("a", (1000, 3), "float32")
    o = Buffer("o", (1000, 3), "float16")
    ck = render_kernel(Kernel("ew", [a], [o], [compute(o, lambda i, j: E.cast(a.load(i, j) * 2.0, "float16"))]))
    (fn, grid, block, shared), = ck.launch_sizes()
    assert (fn, grid, block, shared) == ("ew_s0", -(-3000 // BLOCK), BLOCK, 0)
    assert "kiln_f2h(" in ck.source and 'extern "C" __global__' in ck.source
    assert Launch("f", 256, 10 ** 9, 256).grid() == MAX_GRID
    assert Launch("f", 256, 0, 256).grid() == 1
    assert Launch("f", 256, 3, 1, (0, 2)).grid([5, 99, 7]) == 105


def test_reduction_strategy_follows_the_extent():
    a = Buffer("a", (4, 1000), "float32")
    o = Buffer("o", (4,), "float32")
    r = E.fresh_vars(1)
    long_ = render_kernel(Kernel("lng", [a], [o], [compute(o, lambda i: E.Reduce("max", r, [1000], a.load(i, r[0])))]))
    assert "__shfl_down_sync" in long_.source and long_.launches[0].per_block == 1
    b = Buffer("b", (4, 8), "float32")
    short = render_kernel(Kernel("sht", [b], [o], [compute(o, lambda i: E.Reduce("max", r, [8], b.load(i, r[0])))]))
    assert "__shfl_down_sync" not in short.source and short.launches[0].per_block == BLOCK


def test_scatter_add_zeroes_then_uses_atomics_or_one_thread():
    for dtype, atomic in (("float32", True), ("float64", True), ("float16", False), ("int8", False)):
        src = Buffer("src", (6,), dtype)
        ix = Buffer("ix", (6,), "int32")
        out = Buffer("out", (3,), dtype)
        st = scatter_add(out, [6], lambda s: [E.cast(ix.load(s), "int64")], lambda s: src.load(s))
        ck = render_kernel(Kernel("sc_" + dtype, [src, ix], [out], [st]))
        assert [l.function for l in ck.launches] == ["sc_%s_s0_zero" % dtype, "sc_%s_s0" % dtype]
        assert ("atomicAdd" in ck.source) == atomic
        add = ck.launches[1]
        assert (add.block, add.max_grid) == ((BLOCK, MAX_GRID) if atomic else (1, 1))
    compile_batch([Kernel("sc", [src, ix], [out], [st])], "scatter")


def test_literals_are_exact():
    assert float_literal(0.1, "float32") == float(np.float32(0.1)).hex() + "f"
    assert float_literal(0.1, "float64") == (0.1).hex()
    assert "0x7f800000" in float_literal(float("inf"), "float16")
    assert "0x7ff8" in float_literal(float("nan"), "float64")


DTYPES = ("float16", "float32", "float64", "int8", "uint8", "bool", "int32", "int64")
# integer semantics of their own (the rest of the float functions go through one double path)
INT_FUNCS = ("neg", "abs", "floor", "not", "exp", "add", "sub", "mul", "div", "fmod", "pow", "max", "min",
             "and", "or", "xor") + E.BIT_FUNCS


def _function_kernel(dtypes, funcs, casts=True, reducers=True):
    """One stage per (dtype, function), cast and reducer: every expression kind of expr.py."""
    stages, bufs_in, bufs_out = [], [], []
    for t in dtypes:
        x, y = Buffer("x_" + t, (5,), t), Buffer("y_" + t, (5,), t)
        bufs_in += [x, y]
        for fn in funcs(t):
            if fn in E.BIT_FUNCS and E.is_float(t):
                continue
            o = Buffer("o_%s_%s" % (fn, t), (5,), t)
            args = (x.load(E.Var("i0")),) if fn in E.UNARY_FUNCS else (x.load(E.Var("i0")), y.load(E.Var("i0")))
            body = E.Call(fn, args)
            if body.dtype == E.PRED:
                body = E.select(body, x.load(E.Var("i0")), y.load(E.Var("i0")))
            stages.append(compute(o, lambda i, body=body: body))
            bufs_out.append(o)
        for u in DTYPES if casts else ():
            o = Buffer("c_%s_%s" % (t, u), (5,), u)
            stages.append(compute(o, lambda i, x=x, u=u: E.cast(x.load(i), u)))
            bufs_out.append(o)
        r = E.fresh_vars(2)
        for kind in E.REDUCERS if reducers else ():
            for ext in ((5,), (5, 40)):
                o = Buffer("r_%s_%s_%d" % (kind, t, len(ext)), (1,), "int64" if kind.startswith("arg") else t)
                src = Buffer("rs_%s_%s_%d" % (kind, t, len(ext)), ext, t)
                bufs_in.append(src)
                stages.append(compute(o, lambda i, src=src, kind=kind, ext=ext, o=o: E.Reduce(
                    kind, r[:len(ext)], ext, src.load(r[:len(ext)]), o.dtype)))
                bufs_out.append(o)
    return Kernel("alltypes", bufs_in, bufs_out, stages)


def test_every_dtype_cast_reducer_and_integer_function_compiles():
    every = E.UNARY_FUNCS + E.BINARY_FUNCS + E.COMPARISONS
    kernels = [_function_kernel(["float32"], lambda t: every, casts=False, reducers=False)]
    kernels += [_function_kernel([t], lambda t: E.COMPARISONS + (INT_FUNCS if not E.is_float(t) else ("add",)))
                for t in DTYPES]  # a kernel per dtype: every stage's function takes all its pointers
    compile_batch(kernels, "functions")


@pytest.mark.slow
def test_every_function_on_every_dtype_compiles():
    every = E.UNARY_FUNCS + E.BINARY_FUNCS + E.COMPARISONS
    compile_batch([_function_kernel([t], lambda t: every) for t in DTYPES], "alltypes")


def test_gemm_sort_ctc_variants_compile():
    kernels = []
    for dtype in ("float32", "float64", "float16"):
        for ta in (False, True):
            for tb in (False, True):
                a = Buffer("a", (2, 33, 17) if not ta else (2, 17, 33), dtype)
                b = Buffer("b", (2, 17, 65) if not tb else (2, 65, 17), dtype)
                o = Buffer("o", (2, 33, 65), dtype)
                kernels.append(Kernel("g_%s_%d%d" % (dtype, ta, tb), [a, b], [o],
                                      [Gemm(o, a, b, ta, tb, batch=2)]))
    for dtype in ("float32", "float16", "int32", "int64", "uint8", "float64"):
        for ascend in (True, False):
            data = Buffer("d", (3, 50, 2), dtype)
            v, ix, mk = Buffer("v", (3, 7, 2), dtype), Buffer("ix", (3, 7, 2), "int32"), Buffer("m", (3, 50, 2), dtype)
            ws = Buffer("ws", (Sort.workspace_bytes(300, 50),), "uint8")
            kernels.append(Kernel("s_%s_%d" % (dtype, ascend), [data], [v, ix, mk, ws],
                                  [Sort(data, 1, 7, ascend, v, ix, mk, ws)]))
    rendered = compile_batch(kernels, "handwritten")
    sort = [ck for ck in rendered if "_s_" in ck.name][0]
    assert sort.launches[0].max_grid == Sort.layout(300, 50)[0]


def test_compile_error_names_kernel_and_shows_numbered_source():
    with pytest.raises(MXNetError) as err:
        nvrtc.compile_cuda('extern "C" __global__ void broken(float* p) { p[0] = undefined_name; }',
                           "broken_kernel", "sm_80")
    text = str(err.value)
    assert "broken_kernel" in text and "undefined_name" in text and "    1  extern" in text


def test_arch_clamping_and_cache(tmp_path, monkeypatch):
    supported = nvrtc.supported_archs()
    assert 80 in supported and 90 in supported
    assert nvrtc.clamp_arch("sm_90") == (90, False)
    assert nvrtc.clamp_arch(999, [75, 80, 90]) == (90, True)
    assert nvrtc.clamp_arch("compute_86", [75, 80, 90]) == (80, True)
    with pytest.raises(MXNetError):
        nvrtc.clamp_arch("sm_50", [75, 80])
    src = 'extern "C" __global__ void __launch_bounds__(32) z(float* p) { p[threadIdx.x] = 0.0f; } // %d' % os.getpid()
    mod = nvrtc.compile_cuda(src, "z", "sm_%d" % (max(supported) + 7), cubin=True)
    assert mod.virtual and mod.cubin is None and ".target sm_%d" % max(supported) in mod.ptx
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KILN_DISABLE_DISK_CACHE", raising=False)
    first = nvrtc.compile_cuda(src + "\n// disk", "z", "sm_80", cubin=True)
    assert not first.from_cache and first.cubin and list(tmp_path.glob("*.kptx"))
    assert nvrtc.compile_cuda(src + "\n// disk", "z", "sm_80", cubin=True) is first  # memory
    nvrtc.clear_memory_cache()
    again = nvrtc.compile_cuda(src + "\n// disk", "z", "sm_80", cubin=True)
    assert again.from_cache and again.ptx == first.ptx and again.cubin == first.cubin
    assert re.search(r"\.target sm_80", again.ptx)


def test_gemm_with_run_time_rows_compiles():
    """A dynamic batch gives GEMMs a run-time row count m (``expr.Dim``); n and k stay static."""
    dims = Buffer("dims", (1,), "int64")
    a, b = Buffer("a", (E.Dim(0), 40), "float32"), Buffer("b", (40, 90), "float32")
    o = Buffer("o", (E.Dim(0), 90), "float32")
    try:
        st = Gemm(o, a, b)
    except (TypeError, ValueError) as exc:
        pytest.skip("this kernel.Gemm takes static sizes only: %s" % exc)
    ck, = compile_batch([Kernel("dyn_gemm", [a, b, dims], [o], [st], dims=dims)], "dyn_gemm")
    (fn, g1, _, _), = ck.launch_sizes([1])
    (_, g2, _, _), = ck.launch_sizes([1000])
    assert g1 >= 1 and g2 >= 2 * -(-1000 // 64)  # every 64x64 tile of 1000 x 90 gets a block
