"""AttrScope: attributes attached to every symbol created inside a ``with`` block."""
import threading


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
        return merged

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
