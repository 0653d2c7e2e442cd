"""The ``textseg`` command. Each subcommand lives in ``textseg.commands.<module>`` and exposes
``add_parser(subparsers)``; heavy imports happen inside its ``run`` so ``textseg --version`` and
``textseg list`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from textseg import __version__
from textseg.errors import TextsegError

#: Subcommand modules, in the order ``textseg --help`` lists them.
COMMAND_MODULES = ("quickstart", "listing", "bench", "train", "predict", "data", "leaderboard")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textseg",
        description="Text-supervised semantic segmentation: train, benchmark and compare methods.",
    )
    parser.add_argument("--version", action="version", version=f"textseg {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="<command>")
    for name in COMMAND_MODULES:
        importlib.import_module(f"textseg.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a user error, with its message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except TextsegError as exc:
        print(f"textseg: error: {exc}", file=sys.stderr)
        return 2
