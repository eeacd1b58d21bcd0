"""kiln.runtime: load compiled programs, own device memory, run kernels."""
from .errors import MXNetError, MXNetTypeError  # noqa: F401
from .program import LoadedProgram, ProgramSpec, SlotSpec, load_program  # noqa: F401
from .compiled import CompiledModel, load_compiled  # noqa: F401
