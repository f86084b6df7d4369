"""Build a command line from a function's signature and docstring.

Each parameter becomes an option ``--name-with-dashes``: its type comes from the annotation (or
the default's type, when there is no annotation or it cannot be resolved: each string annotation
is resolved on its own, so a name imported only under ``TYPE_CHECKING`` costs only its own
parameter), a parameter without default is required, ``bool`` becomes ``--flag/--no-flag``
(a ``bool | None = None`` parameter receives None unless one of them is given),
``Literal[...]`` and ``Enum`` become choices, ``list[int]`` takes several values. The help text
comes from the numpy-style ``Parameters`` section of the docstring and the summary from its first
paragraph. Parameters named like the injected globals (``CONFIG``, ``plt``, ``COLORS``, ``rngg``,
``logger``) are not options: the session passes them.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import logging
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["INJECTED_NAMES", "build_parser", "docstring_params"]

#: Globals the session puts in the script's module (and passes to parameters of these names).
INJECTED_NAMES = ("CONFIG", "plt", "COLORS", "rngg", "logger")

logger = logging.getLogger(__name__)

_HEADER = re.compile(r"^([\w, ]+?)\s*(?::.*)?$")


def docstring_params(doc: str | None) -> tuple[str, dict[str, str]]:
    """Return ``(summary, {parameter: description})`` from a numpy-style docstring."""
    text = inspect.cleandoc(doc or "")
    summary = text.split("\n\n", 1)[0].strip()
    params: dict[str, str] = {}
    lines = text.splitlines()
    try:
        start = next(
            i
            for i, line in enumerate(lines[:-1])
            if line.strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}
        )
    except StopIteration:
        return summary, params
    body = lines[start + 2 :]
    names: list[str] = []
    for i, line in enumerate(body):
        next_line = body[i + 1].strip() if i + 1 < len(body) else ""
        if line and not line[0].isspace():
            if next_line and set(next_line) == {"-"}:
                break  # the title of the next section
            match = _HEADER.match(line)
            if match is None:
                break
            names = [name.strip() for name in match[1].split(",")]
            for name in names:
                params[name] = ""
        elif names and line.strip():
            for name in names:
                params[name] = (params[name] + " " + line.strip()).strip()
    return summary, params


def _unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _annotation(func: Callable[..., Any], param: inspect.Parameter) -> Any:
    """Return ``param``'s annotation of ``func``, resolved on its own.

    A string annotation (``from __future__ import annotations``) is evaluated in the function's
    module, so one that cannot be (a name imported only under ``TYPE_CHECKING``) costs only its
    own parameter's type: that parameter gets ``inspect.Parameter.empty``, and its type then comes
    from its default.
    """
    annotation = param.annotation
    if not isinstance(annotation, str):
        return annotation
    holder = types.SimpleNamespace(__annotations__={param.name: annotation})
    module_globals = getattr(inspect.unwrap(func), "__globals__", {})
    try:
        return typing.get_type_hints(holder, globalns=module_globals)[param.name]
    except Exception as exc:  # noqa: BLE001 - evaluating an annotation may raise anything
        logger.debug(
            "%s: annotation %r of parameter %r cannot be resolved (%s: %s); its type comes "
            "from its default",
            getattr(func, "__qualname__", func),
            annotation,
            param.name,
            type(exc).__name__,
            exc,
        )
        return inspect.Parameter.empty


def _add_option(
    parser: argparse.ArgumentParser, param: inspect.Parameter, tp: Any, help_text: str
) -> None:
    flag = "--" + param.name.replace("_", "-")
    has_default = param.default is not inspect.Parameter.empty
    default = param.default if has_default else None
    kwargs: dict[str, Any] = {"dest": param.name, "help": help_text or None}
    if tp is inspect.Parameter.empty:
        tp = type(default) if has_default and default is not None else str
    tp = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        # None (``bool | None = None``) stays None unless --flag or --no-flag is given
        kwargs["default"] = (
            (default if default is None else bool(default)) if has_default else False
        )
        kwargs["help"] = f"{help_text} (default: {kwargs['default']})".strip()
        parser.add_argument(flag, **kwargs)
        return
    if origin is typing.Literal:
        choices = list(typing.get_args(tp))
        kwargs["choices"] = choices
        kwargs["type"] = type(choices[0])
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        members = tp

        def convert(text: str) -> enum.Enum:
            try:
                return members[text]
            except KeyError:
                return members(text)

        kwargs["type"] = convert
        kwargs["metavar"] = "{" + ",".join(m.name for m in tp) + "}"
    elif origin in (list, tuple, set) or tp in (list, tuple):
        inner = typing.get_args(tp)
        kwargs["nargs"] = "+" if not has_default else "*"
        kwargs["type"] = inner[0] if inner and inner[0] is not Ellipsis else str
    elif tp in (int, float, str, Path) or callable(tp):
        kwargs["type"] = tp
    if has_default:
        kwargs["default"] = default
        shown = default.name if isinstance(default, enum.Enum) else default
        kwargs["help"] = f"{help_text} (default: {shown})".strip()
    else:
        kwargs["required"] = True
    parser.add_argument(flag, **kwargs)


def build_parser(func: Callable[..., Any], *, prog: str | None = None) -> argparse.ArgumentParser:
    """Return an ``argparse`` parser whose options are ``func``'s parameters.

    Raises
    ------
    TypeError
        For ``*args`` or ``**kwargs`` parameters, which have no option form.
    """
    summary, helps = docstring_params(func.__doc__)
    parser = argparse.ArgumentParser(
        prog=prog,
        description=summary or f"Run {func.__name__}.",
        epilog=(
            "Run session: output in <script>_out/RUNNING/<ID>/, moved to FINISHED_SUCCESS/ or "
            "FINISHED_ERROR/ at the end; injected globals: " + ", ".join(INJECTED_NAMES) + "."
        ),
    )
    for param in inspect.signature(func).parameters.values():
        if param.name in INJECTED_NAMES:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(
                f"{func.__name__}: parameter {param.name!r} ({param.kind.description}) cannot be "
                "a command-line option; use named parameters"
            )
        _add_option(parser, param, _annotation(func, param), helps.get(param.name, ""))
    return parser
