"""pydantic validation errors told in the user's words: one line, no pydantic wording.

:func:`describe_validation_error` turns a :class:`pydantic.ValidationError` into text such as
``unknown key 'sigma_smoth'; did you mean 'sigma_smooth'?`` or ``levels = 0: must be >= 1``:
each bad key is named by its path in the file (``dask_cluster.workers``, ``sigma[0][1]``), with
the value found and what is allowed. pydantic's own phrases ("Input should be", "Value error,",
the errors.pydantic.dev link, ``[type=...]``) never reach the message.
"""

from __future__ import annotations

import difflib
import enum
import types
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from labsession.errors import ConfigError

__all__ = ["InvalidConfigError", "KeyedConfigError", "describe_validation_error", "suggest_key"]

#: Longest value shown in a message before it is cut with "...".
_MAX_SHOWN = 80
#: Error types whose message is pydantic's wording of a bound: (symbol, context key).
_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
    "multiple_of": ("a multiple of", "multiple_of"),
}


class KeyedConfigError(ConfigError):
    """A validator's error whose text already names its key (``"input_file '/x' is a ..."``).

    Raised inside a field validator, it is shown as is, not as ``key = value: message``.
    """


class InvalidConfigError(ConfigError):
    """A config model rejected its values: ``"OFOptions: levels = 0: must be >= 1"``.

    Attributes
    ----------
    model
        The model class.
    validation_error
        pydantic's error, to describe again under a key path (:meth:`describe`).
    """

    def __init__(self, model: type[BaseModel], validation_error: ValidationError) -> None:
        self.model = model
        self.validation_error = validation_error
        super().__init__(f"{model.__name__}: {self.describe()}")

    def describe(self, prefix: str = "") -> str:
        """The bad keys in one line, their paths under ``prefix`` (no model name)."""
        return describe_validation_error(self.validation_error, self.model, prefix=prefix)


def suggest_key(key: str, known: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the known key closest to ``key``, or ``""`` if none is."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _keys_of(model: type[BaseModel]) -> list[str]:
    """Field names and aliases of ``model``, the keys a file may use."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        keys.append(name)
        if field.alias and field.alias != name:
            keys.append(field.alias)
    return keys


def _field(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _members(annotation: Any) -> tuple[Any, ...]:
    """The members of a union annotation (``X | None`` gives ``(X, None)``), else ``(it,)``."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _item_annotation(annotation: Any, index: int) -> Any:
    """The annotation of item ``index`` of a list or tuple annotation (``None`` if unknown)."""
    members = [m for m in _members(annotation) if m is not type(None)]
    annotation = members[0] if len(members) == 1 else annotation
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and args:
        return args[0]
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[index] if index < len(args) else None
    return None


def _resolve(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> tuple[str, Any, Any]:
    """Key path (``a.b[0]``), annotation and owning model of the value an error is about.

    Union branch tags (``'list[int]'``, ``'str'``) end the walk: the error is then about the
    union field as a whole.
    """
    if model is None:  # no fields to follow: the location as pydantic gives it
        path = "".join(f"[{i}]" if isinstance(i, int) else f".{i}" for i in loc)
        return path.lstrip("."), None, None
    path, annotation, owner = "", model, model
    for item in loc:
        inner = _model_in(annotation)
        if isinstance(item, str) and inner is not None:
            field = _field(inner, item)
            owner = inner
            path = f"{path}.{item}" if path else item
            annotation = None if field is None else field.annotation
        elif isinstance(item, int) and _item_annotation(annotation, item) is not None:
            path += f"[{item}]"
            annotation = _item_annotation(annotation, item)
        elif isinstance(item, str) and get_origin(annotation) is dict:
            path += f".{item}"
            args = get_args(annotation)
            annotation = args[1] if len(args) == 2 else None
        else:
            break
    return path, annotation, owner


def _kind(annotation: Any, *, plural: bool = False) -> str:
    """What ``annotation`` accepts, in words (``"a whole number"``, ``"a list of numbers"``)."""
    members = [m for m in _members(annotation) if m is not type(None)]
    if len(members) > 1:
        return _join_or([_kind(m, plural=plural) for m in members])
    annotation = members[0] if members else annotation
    origin, args = get_origin(annotation), get_args(annotation)
    simple = {
        bool: ("true or false", "true or false values"),
        int: ("a whole number", "whole numbers"),
        float: ("a number", "numbers"),
        str: ("a string", "strings"),
    }
    if annotation in simple:
        return simple[annotation][plural]
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "paths" if plural else "a path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + _join_or([repr(m.value) for m in annotation])
    if origin is Literal:
        return "one of " + _join_or([repr(a) for a in args])
    if origin is list and args:
        return ("lists" if plural else "a list") + f" of {_kind(args[0], plural=True)}"
    if origin is tuple and args and args[-1] is not Ellipsis:
        item_kinds = {_kind(a, plural=True) for a in args}
        if len(item_kinds) == 1:
            return ("lists" if plural else "a list") + f" of {len(args)} {item_kinds.pop()}"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "tables of keys and values" if plural else "a table of keys and values"
    if getattr(annotation, "__name__", "") == "ndarray":
        return "arrays" if plural else "an array"
    if annotation is Any:
        return "values" if plural else "a value"
    name = getattr(annotation, "__name__", str(annotation))
    return f"{name} values" if plural else f"a {name}"


def _join_or(parts: list[str]) -> str:
    parts = list(dict.fromkeys(parts))
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"


def _shown(value: Any) -> str:
    """A value as a message shows it: its repr, arrays by shape, long ones cut."""
    if type(value).__name__ == "ndarray":
        return f"<array of shape {value.shape}>"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _plain(message: str) -> str:
    """pydantic's wording of an error made plain (the fallback of unforeseen error types)."""
    for prefix, replacement in (
        ("Value error, ", ""),
        ("Assertion failed, ", ""),
        ("Input should be ", "must be "),
        ("Input is not ", "is not "),
    ):
        if message.startswith(prefix):
            message = replacement + message[len(prefix) :]
    return message.split(" [type=")[0].replace("Input", "value").replace("input", "value")


def _reason(error: dict[str, Any], annotation: Any) -> str:
    """What is allowed, for one pydantic error (no pydantic wording)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        return f"must be {symbol} {ctx.get(key)}"
    if kind in ("enum", "literal_error") and "expected" in ctx:
        return f"must be one of {ctx['expected']}"
    if kind == "too_long" and "max_length" in ctx:
        return f"must have at most {ctx['max_length']} items"
    if kind == "too_short" and "min_length" in ctx:
        return f"must have at least {ctx['min_length']} items"
    if annotation is not None:
        return f"must be {_kind(annotation)}"
    return _plain(str(error.get("msg", "is not valid")))


def _describe_group(path: str, errors: list[dict[str, Any]], annotation: Any, owner: Any) -> str:
    first = min(errors, key=lambda e: len(e["loc"]))
    kinds = {e["type"] for e in errors}
    if "extra_forbidden" in kinds:
        key = path.rsplit(".", 1)[-1]
        hint = suggest_key(key, _keys_of(owner)) if owner is not None else ""
        return f"unknown key {path!r}{hint}"
    raised = [(e.get("ctx") or {}).get("error") for e in errors]
    for exc in raised:
        if isinstance(exc, InvalidConfigError):  # a config model's own error, seen by pydantic
            return exc.describe(prefix=path)
    for exc in raised:
        if isinstance(exc, KeyedConfigError):
            return str(exc)
    if kinds == {"missing"} and not isinstance(first["loc"][-1], int):
        what = f" ({_kind(annotation)})" if annotation is not None else ""
        return f"missing key {path!r}{what}"
    if len(errors) == 1 and first["type"] != "missing":
        reason = _reason(first, annotation)
    else:  # a union's branches, or a list/tuple with items missing: say what the key accepts
        told = [e for e in errors if e["type"] in ("value_error", "assertion_error")]
        reason = _reason(told[0], annotation) if told else _reason({"type": "?"}, annotation)
    if not path:  # the model as a whole (a model validator)
        return reason
    return f"{path} = {_shown(first['input'])}: {reason}"


def describe_validation_error(
    exc: ValidationError, model: type[BaseModel] | None = None, *, prefix: str = ""
) -> str:
    """One line naming each bad key of a pydantic error, with its value and what is allowed.

    Parameters
    ----------
    exc
        The error of ``model.model_validate(...)`` (or of building or assigning to a model).
    model
        The model validated: its fields give the key paths, the accepted kinds and the
        suggestions for unknown keys (``"; did you mean 'alpha'?"``).
    prefix
        Key path the model sits under in a larger config (``"flow_options"``).

    Returns
    -------
    str
        ``"unknown key 'alpah'; did you mean 'alpha'?; levels = 0: must be >= 1"``: one part per
        bad key, in the order pydantic found them, joined by ``"; "``.
    """
    groups: dict[str, tuple[list[dict[str, Any]], Any, Any]] = {}
    for error in exc.errors():
        path, annotation, owner = _resolve(model, tuple(error["loc"]))
        if error["type"] == "missing" and error["loc"] and isinstance(error["loc"][-1], int):
            path = path.rsplit("[", 1)[0]  # a tuple item missing: the tuple is too short
            annotation = _resolve(model, tuple(error["loc"][:-1]))[1]
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        groups.setdefault(path, ([], annotation, owner))[0].append(error)
    parts = [_describe_group(p, errs, ann, own) for p, (errs, ann, own) in groups.items()]
    return "; ".join(parts)
