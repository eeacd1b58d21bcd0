"""AttrScope: attributes attached to every symbol created inside a ``with`` block."""
import threading

from .base import MXNetError
from .compiler.ops.params import HIDDEN_KEYS


def normalize_attrs(attrs):
    """MXNet's attribute setter: ``ctx_group``, ``lr_mult``... are stored as ``__key__``,
    and per-argument spellings such as ``weight_lr_mult`` are refused."""
    out = {}
    for key, value in attrs.items():
        if key in HIDDEN_KEYS:
            key = "__%s__" % key
        elif not key.startswith("__") and any(key.endswith("_" + h) for h in HIDDEN_KEYS):
            raise MXNetError("attribute %r: set %s on the argument's own variable instead"
                             % (key, key.rsplit("_", 2)[-2] + "_" + key.rsplit("_", 1)[-1]))
        out[key] = value
    return out


class AttrScope:
    _local = threading.local()

    def __init__(self, **kwargs):
        for v in kwargs.values():
            if not isinstance(v, str):
                raise ValueError("attributes must be strings")
        self._attr = kwargs
        self._old = []

    def get(self, attr):
        merged = dict(self._attr)
        if attr:
            merged.update(attr)
        return normalize_attrs(merged)

    def __enter__(self):
        old = AttrScope.current()
        self._old.append(old)
        merged = dict(old._attr)
        merged.update(self._attr)
        self._attr = merged
        AttrScope._local.value = self
        return self

    def __exit__(self, *exc):
        AttrScope._local.value = self._old.pop()

    @staticmethod
    def current():
        cur = getattr(AttrScope._local, "value", None)
        if cur is None:
            cur = AttrScope._local.value = AttrScope()
        return cur
