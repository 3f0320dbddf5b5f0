"""One way to turn a command's settings dataclass into its command line (and ``--config file.yaml``).

Every ``rl4rec`` command keeps its settings in a dataclass whose fields carry their help text
(:func:`opt`); :func:`parse_config` builds the command line from it with TRL's ``TrlParser``
(transformers' ``HfArgumentParser`` plus YAML config files), the parser ``rl4rec train`` has always
used for ``TrainConfig``. So a flag is declared once, next to its default and its meaning, and every
command accepts ``--config settings.yaml``.

Field metadata adds what ``HfArgumentParser`` cannot express from a type alone: ``parse`` (a
converter for values such as ``5,10,20`` or ``all``), ``positional`` arguments and ``nargs``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import yaml

from rl4rec.errors import ConfigError

T = TypeVar("T")
#: Metadata keys handled here rather than passed to ``argparse.add_argument``.
_OWN_KEYS = ("parse", "positional")


def opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    default_factory: Any = dataclasses.MISSING,
    parse: Callable[[str], Any] | None = None,
    positional: bool = False,
    **argparse_kwargs: Any,
) -> Any:
    """A dataclass field that is also a command-line flag: its default, help and parsing in one place."""
    metadata: dict[str, Any] = {"help": help, **argparse_kwargs}
    if parse is not None:
        metadata["parse"] = parse
    if positional:
        metadata["positional"] = True
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def _parser_class() -> type:
    from trl import TrlParser

    class ConfigParser(TrlParser):
        """``TrlParser`` that also honours the ``parse`` / ``positional`` field metadata."""

        @staticmethod
        def _parse_dataclass_field(parser: Any, field: dataclasses.Field) -> None:
            meta = dict(field.metadata)
            if not any(key in meta for key in _OWN_KEYS):
                return TrlParser._parse_dataclass_field(parser, field)
            parse, positional = meta.pop("parse", None), meta.pop("positional", False)
            if parse is not None:
                meta["type"] = parse
            default = field.default
            if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            if positional:
                parser.add_argument(field.name, **meta)
                return None
            if default is not dataclasses.MISSING:
                meta["default"] = default
            else:
                meta["required"] = True
            names = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
            parser.add_argument(*names, **meta)
            return None

    return ConfigParser


def config_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    return _parser_class()(cls, prog=prog, description=description)


def parse_config(
    cls: type[T],
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    defaults: dict[str, Any] | None = None,
) -> T:
    """``cls`` from ``argv`` (flags, and ``--config FILE.yaml`` for defaults); calls ``validate()`` if it has one."""
    parser = config_parser(cls, prog, description)
    if defaults:
        parser.set_defaults(**defaults)
    try:
        (config,) = parser.parse_args_and_config(list(argv) if argv is not None else None)
    except ValueError as exc:  # TrlParser's config-file errors; ours are already ConfigErrors
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{prog}: {exc}. See --help for the list of flags.") from None
    except OSError as exc:
        raise ConfigError(
            f"{prog}: cannot read the --config file: {exc}. Pass an existing YAML file."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{prog}: the --config file is not valid YAML: {exc}") from None
    validate = getattr(config, "validate", None)
    return validate() if callable(validate) else config


def comma_ints(text: str) -> tuple[int, ...]:
    """``5,10,20`` -> ``(5, 10, 20)``."""
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 5,10,20, got {text!r}"
        ) from None


def comma_floats(text: str) -> tuple[float, ...]:
    """``0,0.5,1`` -> ``(0.0, 0.5, 1.0)``."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
