"""The ``cnnkit`` command: one subcommand per verb; parse -> config -> one library call -> print.

Exit codes: 0 success, 2 bad usage or bad input (one line, no traceback), 1 a bug.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

from cnnkit.config import SECTIONS, Config, overrides
from cnnkit.errors import CnnkitError

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors raise CnnkitError so they share the one-line, exit-2 path."""

    def error(self, message: str) -> typing.NoReturn:
        raise CnnkitError(f"{self.prog}: {message}")


def _flag(section: str, f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, sections: Sequence[str] = tuple(SECTIONS)) -> None:
    """One flag per config field, generated from the dataclasses so help and types never drift."""
    for section in sections:
        group = parser.add_argument_group(f"{section} options")
        hints = typing.get_type_hints(SECTIONS[section])
        for f in dataclasses.fields(SECTIONS[section]):
            kind, dest = hints[f.name], f"{section}.{f.name}"
            kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": _help(f, kind)}
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif kind is dict:
                kwargs.update(nargs="*", metavar="KEY=VALUE")
            else:
                literal = typing.get_origin(kind) is typing.Literal
                kwargs["metavar"] = "{" + ",".join(typing.get_args(kind)) + "}" if literal else f.name.split("_")[-1].upper()
            group.add_argument(_flag(section, f), **kwargs)


def _help(f: dataclasses.Field, kind: Any) -> str:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return f"{f.metadata.get('help', '')} (default: {default})"


def add_runs_dir(parser: argparse.ArgumentParser, dest: str = "runs_dir") -> None:
    """``--runs-dir`` for a verb that reads runs, with the one help text (the config's own)."""
    f = next(f for f in dataclasses.fields(SECTIONS["run"]) if f.name == "runs_dir")
    extra: dict[str, Any] = {"default": argparse.SUPPRESS} if "." in dest else {}  # a config dest: given or absent
    parser.add_argument(_flag("run", f), dest=dest, metavar="DIR", help=f.metadata["help"], **extra)


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults < the dataset's recipe (when no model is named) < --config FILE < flags; validated once, here."""
    from cnnkit.training.recipes import with_recipe

    return Config.from_dict(with_recipe(overrides(vars(args), getattr(args, "config", None))))


def emit(args: argparse.Namespace, obj: Any, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if getattr(args, "json", False) else text)


def build_parser() -> argparse.ArgumentParser:
    from cnnkit import __version__
    from cnnkit.commands import register_all

    parser = _Parser(prog="cnnkit", description="Train, tune, explain, version and serve convolutional networks.",
                     epilog="Run 'cnnkit VERB --help' for a verb's options.")
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    register_all(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except CnnkitError as exc:
        print(f"cnnkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
