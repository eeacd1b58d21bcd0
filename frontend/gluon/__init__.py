"""kiln.gluon: MXNet 1.x's imperative/hybrid neural-network API (``mx.gluon``)."""
from .parameter import Parameter, Constant, ParameterDict, DeferredInitializationError  # noqa: F401
from .block import Block, HybridBlock, SymbolBlock  # noqa: F401
from . import nn  # noqa: F401
from . import utils  # noqa: F401
from . import loss  # noqa: F401
from . import rnn  # noqa: F401  (recurrent layers and cells)
from . import trainer  # noqa: F401
from .trainer import Trainer  # noqa: F401
from . import data  # noqa: F401,E402  (mx.gluon.data)
