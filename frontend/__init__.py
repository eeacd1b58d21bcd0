"""kiln: an MXNet-1.x-compatible deep-learning framework built on a graph compiler.

``import kiln as mx`` gives MXNet's names: ``mx.sym``, ``mx.nd``, ``mx.cpu()``...
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

from . import base  # noqa: E402
from .base import MXNetError  # noqa: E402,F401
from . import context  # noqa: E402
from .context import Context, cpu, cpu_pinned, current_context, gpu, num_gpus  # noqa: E402,F401
from . import name, attribute  # noqa: E402,F401
from .attribute import AttrScope  # noqa: E402,F401
from . import ndarray  # noqa: E402
from . import ndarray as nd  # noqa: E402,F401
from . import symbol  # noqa: E402
from . import symbol as sym  # noqa: E402,F401
from . import autograd, engine, executor  # noqa: E402,F401
from . import random  # noqa: E402,F401  (mx.random)
from . import test_utils  # noqa: E402,F401
from . import gluon  # noqa: E402,F401  (mx.gluon)
from . import initializer  # noqa: E402,F401
from . import initializer as init  # noqa: E402,F401  (mx.init)
from . import lr_scheduler  # noqa: E402,F401
from . import optimizer  # noqa: E402,F401
from . import image, recordio  # noqa: E402,F401  (mx.image, mx.recordio)
from . import visualization, visualization as viz  # noqa: E402,F401  (mx.viz, mx.visualization)
from . import kvstore, kvstore as kv  # noqa: E402,F401  (mx.kv, mx.kvstore)
from . import callback, metric, model  # noqa: E402,F401  (mx.callback, mx.metric, mx.model)
from . import io  # noqa: E402,F401  (mx.io)
from . import module, module as mod, monitor  # noqa: E402,F401  (mx.mod, mx.module, mx.monitor)
