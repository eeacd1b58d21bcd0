"""The ``kiln`` command line: ``kiln <command> ...``; ``kiln <command> --help`` for each.

Each command is a ``(name, add_arguments, run)`` entry in ``COMMANDS``: ``add_arguments``
fills its subparser, ``run(args)`` does the work and raises ``CliError`` (or an input
error: MXNetError, OSError, ValueError) for bad input, which ``main`` turns into one line
on stderr and a non-zero exit status, never a traceback: 2 for a malformed command line,
1 for anything else.

``kiln plot model-symbol.json --shape data=1,3,224,224 [-o model.svg] [--compiled]``
draws a symbol JSON file (MXNet's or kiln's; read as JSON, never executed) with
``kiln.visualization.plot_network``, or with ``--compiled`` the program the compiler
makes of it (``kiln.viz_compiled.plot_compiled``).

``kiln inspect model-symbol.json --shape data=1,3,224,224 [--dtype ...] [--grad] [--json]``
compiles it as ``plot --compiled`` does (no native code is loaded) and prints the compile
report: passes, fused kernels, the memory plan and estimated FLOPs.

``kiln compile model-symbol.json --params model-0000.params --shape data=1,3,224,224 -o build/model``
compiles the inference program ahead of time into ``build/model/lib<name>.so`` with a C
header and a weights file (``kiln.aot``, ``kiln.compiler.aot``); ``kiln run build/model
--input data=x.npy --output out.npy`` runs such a library (``kiln.runtime.load_compiled``)
and writes its output (several outputs: ``--output out.npz``, arrays output0, output1...).
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np

from .base import MXNetError

FORMATS = ("svg", "png", "pdf")


class CliError(Exception):
    """Bad input, reported as one line; ``status`` is the exit status."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (usage stays behind --help)."""

    def error(self, message):
        raise CliError("%s (see %s --help)" % (message, self.prog), status=2)


def _name_value(text, what):
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise CliError("bad --%s %r: expected NAME=VALUE" % (what, text), status=2)
    return name, value


def _parse_shapes(items, batch=False):
    """{name: dims}; with ``batch``, a ``?`` dim (the run-time batch size) is None."""
    shapes = {}
    for text in items or ():
        name, value = _name_value(text, "shape")
        try:
            dims = tuple(None if batch and d.strip() == "?" else int(d) for d in value.split(","))
        except ValueError:
            dims = ()
        if not dims or any(d is not None and d < 0 for d in dims):
            raise CliError("bad --shape %r: expected NAME=D1,D2,... with non-negative integers%s"
                           % (text, " or ? for the batch size" if batch else ""), status=2)
        shapes[name] = dims
    return shapes


def _parse_dtypes(items):
    dtypes = {}
    for text in items or ():
        name, value = _name_value(text, "dtype")
        try:
            dtypes[name] = np.dtype(value).name
        except TypeError:
            raise CliError("bad --dtype %r: %r is not a dtype" % (text, value), status=2) from None
    return dtypes


def _output_format(args):
    """(output path, format) from -o's extension and --format."""
    ext = os.path.splitext(args.output)[1][1:].lower() if args.output else ""
    if args.format and ext and ext != args.format:
        raise CliError("-o %s does not end in .%s, the --format given" % (args.output, args.format), status=2)
    fmt = args.format or ext or "svg"
    if fmt not in FORMATS:
        raise CliError("cannot write %r: the format must be one of %s (from -o's extension or --format)"
                       % (args.output, ", ".join(FORMATS)), status=2)
    path = args.output
    if not path:
        stem = os.path.basename(args.symbol)
        stem = stem[:-5] if stem.endswith(".json") else stem
        path = (stem[:-7] if stem.endswith("-symbol") else stem) + "." + fmt
    return path, fmt


def _add_plot(p):
    p.add_argument("symbol", help="symbol JSON file (MXNet's or kiln's), e.g. model-symbol.json")
    p.add_argument("--shape", action="append", metavar="NAME=D1,D2,...",
                   help="shape of an input, e.g. data=1,3,224,224 (repeat for each input)")
    p.add_argument("--dtype", action="append", metavar="NAME=DTYPE",
                   help="dtype of an input, e.g. data=float16 (default float32)")
    p.add_argument("-o", "--output", help="picture to write (default: the symbol file's name, "
                                          "without -symbol.json, with the format's extension)")
    p.add_argument("--format", choices=FORMATS, help="picture format (default: -o's extension, else svg)")
    p.add_argument("--show-weights", action="store_true", help="draw weights, biases and auxiliary states")
    p.add_argument("--compiled", action="store_true",
                   help="draw the compiled program: fused kernels as clusters, buffers with arena offsets")
    p.add_argument("--title", default="plot", help="graph title (default: plot)")


def _load_symbol(path, shapes, dtypes):
    """The Symbol in JSON file ``path``, checking that --shape/--dtype name its inputs."""
    from . import symbol
    sym = symbol.load(path)
    inputs = sym.list_arguments() + sym.list_auxiliary_states()
    for what, given in (("--shape", shapes), ("--dtype", dtypes)):
        unknown = [n for n in given if n not in inputs]
        if unknown:
            raise CliError("%s names %s, not an input of %s (inputs: %s)"
                           % (what, ", ".join(unknown), path, ", ".join(inputs)))
    return sym


def _run_plot(args):
    path, fmt = _output_format(args)
    shapes, dtypes = _parse_shapes(args.shape), _parse_dtypes(args.dtype)
    sym = _load_symbol(args.symbol, shapes, dtypes)
    try:
        import graphviz
    except ImportError:
        raise CliError("drawing needs the graphviz Python package: pip install 'kiln[viz]'") from None
    kwargs = dict(shape=shapes or None, dtype=dtypes or None, title=args.title, save_format=fmt,
                  hide_weights=not args.show_weights)
    if args.compiled:
        from .viz_compiled import plot_compiled
        dot = plot_compiled(sym, **kwargs)
    else:
        try:
            from .visualization import plot_network
        except ImportError as err:
            raise CliError("kiln.visualization is not available (%s); use --compiled" % err) from None
        dot = plot_network(sym, **kwargs)
    try:
        data = dot.pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise CliError("Graphviz's `dot` program is not installed or not on PATH (e.g. apt-get install "
                       "graphviz)") from None
    except graphviz.CalledProcessError as err:
        raise CliError("`dot` failed: %s" % (err.stderr or b"").decode(errors="replace").strip()) from None
    with open(path, "wb") as f:
        f.write(data)


def _add_inspect(p):
    p.add_argument("symbol", help="symbol JSON file (MXNet's or kiln's), e.g. model-symbol.json")
    p.add_argument("--shape", action="append", required=True, metavar="NAME=D1,D2,...",
                   help="shape of an input, e.g. data=1,3,224,224 (repeat for each input)")
    p.add_argument("--dtype", action="append", metavar="NAME=DTYPE",
                   help="dtype of an input, e.g. data=float16 (default float32)")
    p.add_argument("--grad", action="store_true",
                   help="the training program, with gradients of every argument (default: inference)")
    p.add_argument("--json", action="store_true", help="print the compile report as JSON")


def _run_inspect(args):
    """Print the compile report; compiling without loading native code keeps this fast and safe.
    The program cache is bypassed: a program from it has no record of the passes."""
    from .compiler.report import CompileReport
    from .viz_compiled import compile_symbol
    shapes, dtypes = _parse_shapes(args.shape, batch=True), _parse_dtypes(args.dtype)
    sym = _load_symbol(args.symbol, shapes, dtypes)
    dynamic = any(d is None for v in shapes.values() for d in v)
    if dynamic and args.grad:
        raise CliError("--grad: a run-time batch size (?) is for inference programs", status=2)
    saved = os.environ.get("KILN_DISABLE_PROGRAM_CACHE")
    os.environ["KILN_DISABLE_PROGRAM_CACHE"] = "1"
    try:
        if dynamic:
            report = CompileReport.from_dict(_dynamic_report(sym, shapes, dtypes))
        else:
            report = CompileReport.from_dict(compile_symbol(sym, shapes, dtypes or None, args.grad)[0])
    finally:
        if saved is None:
            del os.environ["KILN_DISABLE_PROGRAM_CACHE"]
        else:
            os.environ["KILN_DISABLE_PROGRAM_CACHE"] = saved
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
        return
    sys.stdout.write("%s: %s program for %s%s\n%s\n" % (
        args.symbol, "training" if args.grad else "inference",
        ", ".join("%s=%s" % (n, ",".join("?" if d is None else str(d) for d in s)) for n, s in shapes.items()),
        " (sizes and bytes at batch 1, arena %s bytes + %s per batch element)"
        % (report.memory.get("arena_bytes"), report.memory.get("arena_scale")) if dynamic else "", report))


def _dynamic_report(sym, shapes, dtypes):
    """The report of the program ``kiln compile`` builds for a run-time batch size (``?``)."""
    from .compiler.dynamic_batch import compile_dynamic_batch
    names = sym.list_arguments() + sym.list_auxiliary_states()
    at_one = {n: tuple(1 if d is None else d for d in s) for n, s in shapes.items()}
    arg_shapes, _, aux_shapes = sym.infer_shape(**at_one)
    if arg_shapes is None:
        raise CliError("cannot infer every shape of %s from %s" % (sym.name, at_one))
    var_shapes = dict(zip(names, arg_shapes + aux_shapes), **shapes)
    arg_types, _, aux_types = sym.infer_type(**{n: dtypes.get(n, "float32") for n in shapes})
    types = dict(zip(names, [np.dtype(t).name for t in arg_types + aux_types])) if arg_types is not None \
        else {n: "float32" for n in names}
    return compile_dynamic_batch(sym._outputs, var_shapes, types)[0].report


def _add_compile(p):
    p.add_argument("symbol", help="symbol JSON file (MXNet's or kiln's), e.g. model-symbol.json")
    p.add_argument("--params", required=True, help="weights: MXNet .params file, e.g. model-0000.params")
    p.add_argument("--shape", action="append", required=True, metavar="NAME=D1,D2,...",
                   help="shape of an input, e.g. data=1,3,224,224 (repeat for each input); ? for a batch size "
                        "chosen at run time, e.g. data=?,3,224,224")
    p.add_argument("--dtype", action="append", metavar="NAME=DTYPE",
                   help="dtype of an input, e.g. data=float16 (default float32)")
    p.add_argument("-o", "--output", required=True, help="directory to write the build into, e.g. build/model")
    p.add_argument("--name", help="model name: lib<name>.so, <name>.h, <name>.weights (default: the symbol "
                                  "file's name without -symbol.json)")
    p.add_argument("--target", choices=("cpu", "cuda"), default="cpu", help="cpu (default); cuda needs kiln's "
                                                                           "CUDA backend")
    p.add_argument("--cpu", help="target CPU, e.g. x86-64 for a portable build (default: this machine's)")
    p.add_argument("--features", help="target features, e.g. +avx2,+fma or \"\" (default: this machine's)")
    p.add_argument("--opt-level", type=int, default=3, choices=range(4), help="LLVM optimisation level (default 3)")
    p.add_argument("--emit", choices=("so", "obj", "ll"), default="so",
                   help="so: library + header + weights (default); obj: the object file; ll: the LLVM IR")
    p.add_argument("--embed-params", action="store_true", help="put the weights inside the library")
    p.add_argument("--threads", type=int, help="most threads a kernel may use (default: KILN_NUM_THREADS, "
                                               "else this machine's CPUs)")


def _run_compile(args):
    from .aot import compile_model
    if args.target == "cuda":
        raise CliError("--target cuda: ahead-of-time CUDA libraries (PTX plus a driver-API host library) are not "
                       "built yet; kiln's CUDA backend runs programs in-process (kiln.runtime.cuda_program); use "
                       "--target cpu", status=2)
    shapes, dtypes = _parse_shapes(args.shape, batch=True), _parse_dtypes(args.dtype)
    name = args.name
    if name is None:
        stem = os.path.basename(args.symbol)
        stem = stem[:-5] if stem.endswith(".json") else stem
        name = stem[:-7] if stem.endswith("-symbol") else stem
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise CliError("model name %r must be a C identifier (letters, digits, _); give --name" % name, status=2)
    for path in (args.symbol, args.params):
        if not os.path.isfile(path):
            raise CliError("no such file: %s" % path)
    paths = compile_model(args.symbol, args.params, shapes, args.output, name, dtypes=dtypes, cpu=args.cpu,
                          features=args.features, opt_level=args.opt_level, emit=args.emit,
                          embed=args.embed_params, threads=args.threads)
    sys.stdout.write("".join("wrote %s\n" % p for p in paths))


def _add_run(p):
    p.add_argument("model", help="build directory of kiln compile (or its lib<name>.so)")
    p.add_argument("--input", action="append", required=True, metavar="NAME=FILE.npy",
                   help="an input as a .npy file (repeat for each input)")
    p.add_argument("-o", "--output", required=True,
                   help="output .npy file; a model with several outputs needs .npz (arrays output0, output1...)")
    p.add_argument("--weights", help="weights file (default: <name>.weights beside the library, else embedded)")


def _run_run(args):
    from .runtime.compiled import load_compiled
    inputs = {}
    for text in args.input:
        name, path = _name_value(text, "input")
        if not path.endswith(".npy"):
            raise CliError("--input %s: expected a .npy file" % text, status=2)
        inputs[name] = np.load(path, allow_pickle=False)
    if not args.output.endswith((".npy", ".npz")):
        raise CliError("-o %s: the output must be a .npy or .npz file" % args.output, status=2)
    model = load_compiled(args.model, args.weights)
    try:
        outputs = model.run(**inputs)
    finally:
        model.close()
    if args.output.endswith(".npz"):
        np.savez(args.output, **{"output%d" % i: o for i, o in enumerate(outputs)})
    elif len(outputs) != 1:
        raise CliError("the model has %d outputs; write them with -o FILE.npz" % len(outputs))
    else:
        np.save(args.output, outputs[0])


COMMANDS = (
    ("plot", "draw a symbol JSON file, or the program kiln compiles from it", _add_plot, _run_plot),
    ("inspect", "compile a symbol JSON file and print the compile report: passes, kernels, memory, FLOPs",
     _add_inspect, _run_inspect),
    ("compile", "compile a symbol JSON file and its weights into a shared library with a C interface",
     _add_compile, _run_compile),
    ("run", "run a library built by kiln compile on .npy inputs", _add_run, _run_run),
)


def build_parser():
    parser = _Parser(prog="kiln", description="kiln: an MXNet-1.x-compatible framework built on a graph compiler")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)
    sub.required = True
    for name, helptext, add, run in COMMANDS:
        p = sub.add_parser(name, help=helptext, description=helptext)
        add(p)
        p.set_defaults(run=run)
    return parser


def main(argv=None):
    """Entry point of the ``kiln`` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except CliError as err:
        return _fail(err, err.status)
    except (MXNetError, OSError, ValueError) as err:
        return _fail(err, 1)
    return 0


def _fail(err, status):
    message = " ".join(str(err).split()) or type(err).__name__  # one line, whatever the error holds
    sys.stderr.write("kiln: error: %s\n" % message)
    return status


if __name__ == "__main__":
    sys.exit(main())
