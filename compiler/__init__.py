"""kiln.compiler: graph IR, operator registry, passes and code generation."""
from . import ops  # noqa: F401  (registers every operator)
from .graph import Entry, Graph, Node  # noqa: F401
from .pipeline import compile_program  # noqa: F401
