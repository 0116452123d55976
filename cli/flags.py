"""Command-line flags generated from a settings model, so flags, env vars and docs never drift apart.

Only flags actually given are passed on, so a flag beats `TTSC_*` env vars, which beat `tts_infer.yaml`.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

M = TypeVar("M", bound=BaseModel)


def _base_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    if origin is typing.Literal:
        return typing.Literal
    return annotation


def add_settings_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    env_prefix: str,
    short: dict[str, str] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    short = short or {}
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        ann = field.annotation
        base = _base_type(ann)
        if base is dict or typing.get_origin(base) is dict:
            continue
        default = field.default if field.default is not PydanticUndefined else None
        shown = "unset" if default is None else (str(default) if not isinstance(default, SecretStr) else "***")
        help_text = f"{field.description or ''} [env {env_prefix}{name.upper()}; default {shown}]"
        names = [f"--{name.replace('_', '-')}"]
        if name in short:
            names.insert(0, short[name])
            if "_" in name:
                names.append(f"--{name}")  # api_v2 spells its own flags with underscores
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if base is list or typing.get_origin(base) is list:
            kwargs["action"] = "append"
            kwargs["metavar"] = "URL" if "url" in name or name == "worker" else "NAME"
            help_text = help_text.replace(f"env {env_prefix}", f"env (comma-separated) {env_prefix}")
            kwargs["help"] = help_text
        elif base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base is typing.Literal:
            kwargs["choices"] = [a for a in typing.get_args(_literal_of(ann))]
        elif base in (int, float):
            kwargs["type"] = base
            kwargs["metavar"] = "N"
        elif base is Path:
            kwargs["type"] = Path
            kwargs["metavar"] = "PATH"
        else:
            kwargs["metavar"] = "TEXT"
        parser.add_argument(*names, **kwargs)


def _literal_of(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Literal:
        return annotation
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            return arg
    return annotation


def given(ns: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if k in model.model_fields}


def settings_from(ns: argparse.Namespace, model: type[M], command: str) -> M | None:
    """The settings object from the given flags (plus env and files), or None after printing each bad field."""
    from pydantic import ValidationError

    try:
        return model(**given(ns, model))
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            print(f"tts-cluster {command}: {field}: {err['msg']}", file=sys.stderr)
        return None
