"""Automatic node names (``fullyconnected0``) and name prefixes, as MXNet's NameManager."""
import threading


class NameManager:
    _local = threading.local()

    def __init__(self):
        self._counter = {}
        self._old = []

    def get(self, name, hint):
        if name:
            return name
        hint = hint.lower()
        n = self._counter.get(hint, 0)
        self._counter[hint] = n + 1
        return "%s%d" % (hint, n)

    def __enter__(self):
        self._old.append(NameManager.current())
        NameManager._local.value = self
        return self

    def __exit__(self, *exc):
        NameManager._local.value = self._old.pop()

    @staticmethod
    def current():
        cur = getattr(NameManager._local, "value", None)
        if cur is None:
            cur = NameManager._local.value = NameManager()
        return cur


class Prefix(NameManager):
    """Prepends ``prefix`` to every name, given or generated."""

    def __init__(self, prefix):
        super().__init__()
        self._prefix = prefix

    def get(self, name, hint):
        return self._prefix + super().get(name, hint)


current = NameManager.current
