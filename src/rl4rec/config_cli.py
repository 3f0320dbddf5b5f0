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
import copy
import dataclasses
import types
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import yaml

from rl4rec.errors import ConfigError

T = TypeVar("T")
#: Metadata keys handled here rather than passed to ``argparse.add_argument``.
_OWN_KEYS = ("parse", "positional")
#: One vocabulary across commands: each field also answers to the other commands' name for the same thing
#: (``rl4rec train --dataset`` = ``--dataset_name``, ``rl4rec evaluate --model_name`` = ``--model``; the seed's
#: names stay the primary ones of train and sft). ``--help`` lists both.
ALIASES: dict[str, tuple[str, ...]] = {
    "dataset_name": ("--dataset",),
    "dataset": ("--dataset_name",),
    "model_name": ("--model",),
    "model": ("--model_name",),
    "checkpoint_dir": ("--run_dir",),
}


#: Field metadata checked by :func:`check_fields` (command line and YAML alike), never given to argparse.
_RULES = ("one_of", "at_least", "above", "at_most")


def opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    default_factory: Any = dataclasses.MISSING,
    parse: Callable[[str], Any] | None = None,
    positional: bool = False,
    one_of: tuple[Any, ...] | None = None,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    **argparse_kwargs: Any,
) -> Any:
    """A dataclass field that is also a command-line flag: its default, help, parsing and allowed values in one place.

    ``one_of`` / ``at_least`` / ``above`` / ``at_most`` are checked by :func:`check_fields` after the command
    line and any ``--config`` YAML file are merged (argparse's own ``choices`` would skip YAML values and
    exit with its usage text instead of one ``Error:`` line). ``None`` passes every rule (unset).
    """
    metadata: dict[str, Any] = {"help": help, **argparse_kwargs}
    if parse is not None:
        metadata["parse"] = parse
    if positional:
        metadata["positional"] = True
    rules = {"one_of": one_of, "at_least": at_least, "above": above, "at_most": at_most}
    metadata.update({k: v for k, v in rules.items() if v is not None})
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def check_fields(config: Any) -> None:
    """Raise :class:`ConfigError` for the first field that breaks its ``one_of``/``at_least``/``above``/``at_most``."""
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        if value is None or not any(rule in meta for rule in _RULES):
            continue
        flag = f"--{f.name}"
        if "one_of" in meta and value not in meta["one_of"]:
            raise ConfigError(f"{flag} must be one of {', '.join(map(str, meta['one_of']))}, got {value!r}.")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if any(rule in meta for rule in ("at_least", "above", "at_most")):
                raise ConfigError(f"{flag} must be a number, got {value!r}.")
            continue
        if "at_least" in meta and not value >= meta["at_least"]:
            raise ConfigError(f"{flag} must be >= {meta['at_least']}, got {value}.")
        if "above" in meta and not value > meta["above"]:
            raise ConfigError(f"{flag} must be > {meta['above']}, got {value}.")
        if "at_most" in meta and not value <= meta["at_most"]:
            raise ConfigError(f"{flag} must be <= {meta['at_most']}, got {value}.")


def _parser_class() -> type:
    from trl import TrlParser

    class ConfigParser(TrlParser):
        """``TrlParser`` that also honours the ``parse`` / ``positional`` field metadata."""

        @staticmethod
        def _parse_dataclass_field(parser: Any, field: dataclasses.Field) -> None:
            meta = {k: v for k, v in field.metadata.items() if k not in _RULES}
            if field.name in ALIASES and "aliases" not in meta:
                meta["aliases"] = list(ALIASES[field.name])
            if meta != dict(field.metadata):
                field = copy.copy(field)
                field.metadata = types.MappingProxyType(meta)
            if not any(key in meta for key in _OWN_KEYS):
                return TrlParser._parse_dataclass_field(parser, field)
            meta.pop("aliases", None)
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
    check_fields(config)
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
