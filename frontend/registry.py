"""A name -> class registry per base class (initialisers, metrics), with the
``register`` / ``alias`` / ``create`` rules of MXNet's ``mxnet.registry``: names are lower-cased class names,
and ``create`` accepts an instance (returned as is), a registered name with arguments, a
``{"name"...}`` dict, or the JSON that ``dumps()`` writes (``'["name", {kwargs}]'``)."""
from __future__ import annotations

import json
import warnings

from .base import MXNetError


class Registry:
    """The registry of ``base``'s subclasses; ``nickname`` is the keyword ``create`` takes the
    name from (``initializer``, ``metric``) and the word its messages use. ``error`` is the
    exception for bad input (MXNet asserts for metrics, raises MXNetError elsewhere)."""

    def __init__(self, base, nickname, error=MXNetError):
        self.base, self.nickname, self.error = base, nickname, error
        self.classes = {}

    def register(self, klass, name=None):
        """Register ``klass`` under its lower-cased class name (or ``name``); a decorator."""
        if not (isinstance(klass, type) and issubclass(klass, self.base)):
            raise self.error("Can only register subclass of %s, got %r" % (self.base.__name__, klass))
        name = (name or klass.__name__).lower()
        old = self.classes.get(name)
        if old is not None:  # MXNet warns even when the same class is registered again
            warnings.warn("New %s %s.%s registered with name %s is overriding existing %s %s.%s"
                          % (self.nickname, klass.__module__, klass.__name__, name, self.nickname,
                             old.__module__, old.__name__), UserWarning, stacklevel=3)
        self.classes[name] = klass
        return klass

    def alias(self, *aliases):
        """A class decorator registering extra names."""
        def reg(klass):
            for name in aliases:
                self.register(klass, name)
            return klass
        return reg

    def create(self, *args, **kwargs):
        """An instance from an instance, a name (+ arguments), a dict or a JSON spec."""
        if args:
            name, args = args[0], args[1:]
        else:
            name = kwargs.pop(self.nickname)
        if isinstance(name, self.base):
            if args or kwargs:
                raise self.error("%s is already an instance. Additional arguments are invalid" % self.nickname)
            return name
        if isinstance(name, dict):
            return self.create(**name)
        if not isinstance(name, str):
            raise self.error("%s must be of string type, got %r" % (self.nickname, name))
        if name.startswith(("[", "{")):
            if args or kwargs:
                raise self.error("%s %s: no extra arguments allowed with a JSON spec" % (self.nickname, name))
            spec = json.loads(name)
            if isinstance(spec, dict):
                return self.create(**spec)
            name, kwargs = spec
            return self.create(name, **kwargs)
        key = name.lower()
        if key not in self.classes:
            raise self.error("%s is not registered. Please register with %s.register first (known: %s)"
                             % (name, self.nickname, ", ".join(sorted(self.classes))))
        return self.classes[key](*args, **kwargs)
