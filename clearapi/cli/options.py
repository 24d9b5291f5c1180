"""The flags of `CurateOptions`, made from its fields: one flag per option, read back into options.

A field's `Flag` says how it is spelled; its annotation says how a value is parsed: an int or a
float is converted, a Literal lists the choices, a bool is a switch (``--x``, or ``--x/--no-x``
when its default is None: "let the provider decide"), a list repeats (``--judge-provider a
--judge-provider b``). The dest of each flag is the option's name.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any, Literal

from clearapi.clear.options import GROUPS, CurateOptions, Flag

__all__ = ["add_options", "options_from"]

_HINTS = typing.get_type_hints(CurateOptions)


def _flagged(command: str) -> list[tuple[Field[Any], Flag]]:
    """The options that are flags of `command`, in declaration order (the order of ``--help``)."""
    out = []
    for f in fields(CurateOptions):
        spec: Flag | None = f.metadata.get("flag")
        if spec is not None and command in spec.commands:
            out.append((f, spec))
    return out


def _kinds(hint: Any) -> list[Any]:
    """The types a value of `hint` may have, None left out."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return [k for k in typing.get_args(hint) if k is not type(None)]
    return [hint]


def _argparse_kwargs(f: Field[Any], spec: Flag) -> dict[str, Any]:
    kinds = _kinds(_HINTS[f.name])
    kw: dict[str, Any] = {"dest": f.name, "help": spec.help, "default": f.default}
    if spec.metavar is not None:
        kw["metavar"] = spec.metavar
    if spec.as_type is not None:
        kw.update(type=spec.as_type, default=None)  # not given: the option's own default
    elif kinds == [bool]:
        kw["action"] = argparse.BooleanOptionalAction if f.default is None else "store_true"
    elif any(typing.get_origin(k) is list for k in kinds):
        kw["action"] = "append"
    elif typing.get_origin(kinds[0]) is Literal:
        kw["choices"] = list(typing.get_args(kinds[0]))
    elif kinds[0] in (int, float):
        kw["type"] = kinds[0]
    elif kinds[0] is not str:  # pragma: no cover - caught by the tests when a field is added
        raise TypeError(f"option {f.name}: say how a {kinds[0]} is read from the command line (Flag.as_type)")
    return kw


def add_options(p: argparse.ArgumentParser, command: str) -> None:
    """Add `command`'s flags (``curate`` or ``score``) to `p`."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f, spec in _flagged(command):
        where: Any = p
        if spec.group is not None:
            if spec.group not in groups:
                groups[spec.group] = p.add_argument_group(spec.group, GROUPS.get(spec.group))
            where = groups[spec.group]
        if spec.off is not None:
            where = where.add_mutually_exclusive_group()
        elif spec.exclusive is not None:
            if spec.exclusive not in exclusive:
                exclusive[spec.exclusive] = where.add_mutually_exclusive_group()
            where = exclusive[spec.exclusive]
        where.add_argument(spec.flag(f.name), **_argparse_kwargs(f, spec))
        if spec.off is not None:
            name, help = spec.off
            where.add_argument(name, dest=_off_dest(f.name), action="store_true", help=help)


def _off_dest(name: str) -> str:
    return f"no_{name}"


def options_from(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The options `command`'s flags gave, ready for ``curate(**options)``; a flag with a second,
    "off" form and neither given is left out, so the option keeps its default."""
    options: dict[str, Any] = {}
    for f, spec in _flagged(command):
        value = getattr(args, f.name)
        if spec.off is not None and getattr(args, _off_dest(f.name)):
            value = False
        if value is None and f.default not in (None, MISSING):
            continue
        options[f.name] = value
    return options
