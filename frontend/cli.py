"""The ``kiln`` command line: ``kiln <command> ...``; ``kiln <command> --help`` for each.

Each command is a ``(name, add_arguments, run)`` entry in ``COMMANDS``: ``add_arguments``
fills its subparser, ``run(args)`` does the work and raises ``CliError`` (or an input
error: MXNetError, OSError, ValueError) for bad input, which ``main`` turns into one line
on stderr and a non-zero exit status, never a traceback: 2 for a malformed command line,
1 for anything else. Commands to come (compile, run, inspect) add an entry.

``kiln plot model-symbol.json --shape data=1,3,224,224 [-o model.svg] [--compiled]``
draws a symbol JSON file (MXNet's or kiln's; read as JSON, never executed) with
``kiln.visualization.plot_network``, or with ``--compiled`` the program the compiler
makes of it (``kiln.viz_compiled.plot_compiled``).
"""
from __future__ import annotations

import argparse
import os
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


def _parse_shapes(items):
    shapes = {}
    for text in items or ():
        name, value = _name_value(text, "shape")
        try:
            dims = tuple(int(d) for d in value.split(","))
        except ValueError:
            dims = ()
        if not dims or any(d < 0 for d in dims):
            raise CliError("bad --shape %r: expected NAME=D1,D2,... with non-negative integers" % text, status=2)
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


def _run_plot(args):
    from . import symbol
    path, fmt = _output_format(args)
    shapes, dtypes = _parse_shapes(args.shape), _parse_dtypes(args.dtype)
    sym = symbol.load(args.symbol)
    inputs = sym.list_arguments() + sym.list_auxiliary_states()
    for what, given in (("--shape", shapes), ("--dtype", dtypes)):
        unknown = [n for n in given if n not in inputs]
        if unknown:
            raise CliError("%s names %s, not an input of %s (inputs: %s)"
                           % (what, ", ".join(unknown), args.symbol, ", ".join(inputs)))
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


COMMANDS = (
    ("plot", "draw a symbol JSON file, or the program kiln compiles from it", _add_plot, _run_plot),
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
