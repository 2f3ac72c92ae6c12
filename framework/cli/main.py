"""Entry point of ``onex``. Users never see a traceback: errors of the framework print their message; anything
unexpected prints one line and how to get details (``ONEX_DEBUG=1``)."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

from framework import __version__
from framework.cli import db, generate, graph, migrate, new, run, schema, up, validate
from framework.cli import test as test_cmd
from framework.errors import OnexError, UsageError

#: Subcommands in the order ``onex --help`` lists them.
COMMANDS: list[ModuleType] = [
    validate,
    schema,
    run,
    up,
    migrate,
    db,
    generate,
    new,
    graph,
    test_cmd,
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

#: Packages contribute subcommands as entry points of this group (module with add_parser and run): the shipped
#: stamping node adds hash, stamp and verify. The framework never imports a node by name.
PLUGIN_GROUP = "onex.commands"


def plugin_commands() -> list[ModuleType]:
    """The subcommand modules packages declare; one that cannot be loaded is reported and left out."""
    modules = []
    for ep in sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name):
        try:
            modules.append(ep.load())
        except Exception as exc:
            print(
                f"onex: the '{ep.name}' command ({ep.value}) could not be loaded: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onex",
        description="Declarative, contract-driven event nodes: validate contracts, generate code, run nodes.",
    )
    parser.add_argument("--version", action="version", version=f"onex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in [*COMMANDS, *plugin_commands()]:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        print("onex: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"onex {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OnexError as exc:
        print(f"onex {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if os.environ.get("ONEX_DEBUG"):
            traceback.print_exc()
        else:
            print(
                f"onex {args.command}: internal error: {type(exc).__name__}: {exc} "
                "(set ONEX_DEBUG=1 for the traceback, and please report it)",
                file=sys.stderr,
            )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
