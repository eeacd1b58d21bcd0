"""Typed operator attributes: parse MXNet's string attributes and print them back.

MXNet keeps every attribute as ``str(value)`` of the Python argument; a schema
field parses that string (and the legacy spellings older files use) into a
typed value, and formats a typed value the way MXNet would write it.
"""
from __future__ import annotations

import ast

import numpy as np

from ...runtime.errors import MXNetError, MXNetTypeError

_MISSING = object()


def _literal(text):
    text = text.strip()
    if text in ("None", ""):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


class Field:
    """One attribute: a kind, a default (``REQUIRED`` if none), choices for enums."""

    kind = "str"

    def __init__(self, default=_MISSING, choices=None, doc=""):
        self.default = default
        self.choices = choices
        self.doc = doc

    @property
    def required(self):
        return self.default is _MISSING

    def convert(self, value):
        """Python value or MXNet string -> typed value; raises on ill-typed input."""
        raise NotImplementedError  # every Field subclass defines it

    def format(self, value):
        return str(value)


class Int(Field):
    kind = "int"

    def convert(self, value):
        if isinstance(value, str):
            value = _literal(value)
        if isinstance(value, (bool, np.bool_)):
            return int(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return int(value)
        raise TypeError("expected an int, got %r" % (value,))


class OptInt(Int):
    kind = "int or None"

    def convert(self, value):
        if value is None or (isinstance(value, str) and value.strip() in ("None", "")):
            return None
        return super().convert(value)


class Float(Field):
    kind = "float"

    def convert(self, value):
        if isinstance(value, str):
            text = value.strip()
            try:
                return float(text)
            except ValueError:
                raise TypeError("expected a float, got %r" % value) from None
        if isinstance(value, (bool, int, float, np.integer, np.floating)):
            return float(value)
        raise TypeError("expected a float, got %r" % (value,))


class OptFloat(Float):
    kind = "float or None"

    def convert(self, value):
        if value is None or (isinstance(value, str) and value.strip() in ("None", "")):
            return None
        return super().convert(value)


class Bool(Field):
    kind = "bool"

    def convert(self, value):
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("true", "1"):
                return True
            if text in ("false", "0"):
                return False
            raise TypeError("expected a bool, got %r" % value)
        if isinstance(value, (bool, np.bool_, int, np.integer)) and int(value) in (0, 1):
            return bool(value)
        raise TypeError("expected a bool, got %r" % (value,))


class Str(Field):
    kind = "str"

    def convert(self, value):
        if not isinstance(value, str):
            raise TypeError("expected a string, got %r" % (value,))
        if self.choices is not None and value not in self.choices:
            raise ValueError("expected one of %s, got %r" % (list(self.choices), value))
        return value


class Tuple(Field):
    """A tuple of ints (MXNet's Shape); ``optional`` allows None entries (slice bounds)."""

    kind = "tuple of int"

    def __init__(self, default=_MISSING, optional=False, scalar_ok=True, elem=int, **kw):
        super().__init__(default, **kw)
        self.optional = optional
        self.scalar_ok = scalar_ok
        self.elem = elem

    def _elem(self, v):
        if v is None or (isinstance(v, str) and v == "None"):
            if self.optional:
                return None
            raise TypeError("None is not allowed here")
        if self.elem is float:
            return Float().convert(v)
        return Int().convert(v)

    def convert(self, value):
        if isinstance(value, str):
            value = _literal(value.replace("[", "(").replace("]", ")") if value.strip().startswith("[") else value)
            if isinstance(value, str):
                raise TypeError("expected a tuple, got %r" % value)
        if value is None:
            if self.default is None:
                return None
            raise TypeError("expected a tuple, got None")
        if isinstance(value, (list, tuple, np.ndarray)):
            return tuple(self._elem(v) for v in value)
        if self.scalar_ok:
            return (self._elem(value),)
        raise TypeError("expected a tuple, got %r" % (value,))

    def format(self, value):
        if value is None:
            return "None"
        return str(tuple(value))


class DType(Field):
    kind = "dtype"

    def convert(self, value):
        if value is None or (isinstance(value, str) and value == "None"):
            if self.default is None:
                return None
            raise TypeError("expected a dtype, got None")
        try:
            name = np.dtype(value).name
        except TypeError:
            raise TypeError("expected a dtype, got %r" % (value,)) from None
        if name not in DTYPES:
            raise ValueError("unsupported dtype %r" % name)
        return name


class Any(Field):
    """Free-form value kept as given (scalar of a scalar operator, for instance)."""

    kind = "value"

    def convert(self, value):
        return value


# dtype names kiln computes in, and MXNet's integer type flags for them.
DTYPES = {"float32": 0, "float64": 1, "float16": 2, "uint8": 3, "int32": 4, "int8": 5, "int64": 6,
          "bool": 7}
DTYPE_BY_FLAG = {v: k for k, v in DTYPES.items()}

# Attribute keys every node may carry without being part of an operator's schema.
HIDDEN_KEYS = ("ctx_group", "lr_mult", "wd_mult", "force_mirroring", "mirror_stage")


def is_hidden_key(key):
    return (key.startswith("__") and key.endswith("__")) or key in HIDDEN_KEYS


def parse_attrs(opname, schema, attrs, node_name):
    """Typed params from a ``str -> value`` attribute map, checking names and types."""
    params = {}
    for key, value in attrs.items():
        if is_hidden_key(key):
            continue
        field = schema.get(key)
        if field is None:
            raise MXNetError(
                "operator %s (node %r): unknown attribute %r; valid attributes are %s"
                % (opname, node_name, key, sorted(schema) or "none"))
        try:
            params[key] = field.convert(value)
        except (TypeError, ValueError) as err:
            raise MXNetTypeError(
                "operator %s (node %r): attribute %s=%r is invalid: %s (expected %s)"
                % (opname, node_name, key, value, err, field.kind)) from None
    for key, field in schema.items():
        if key not in params:
            if field.required:
                raise MXNetError("operator %s (node %r): required attribute %r is missing"
                                 % (opname, node_name, key))
            params[key] = field.default
    return params
