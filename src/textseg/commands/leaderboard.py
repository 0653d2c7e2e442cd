"""``textseg leaderboard``: rebuild the leaderboard folder from results records and published numbers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_RESULTS = "results"
DEFAULT_OUT = "leaderboard"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="rebuild leaderboard CSVs, README and chart from records and published numbers",
        description=(
            "Rebuild summary.csv, per_class_<benchmark>.csv, README.md and chart.png in --out from the "
            "results records under --results and the published numbers in --reported. Records that are not "
            "leaderboard results (--limit or incomplete splits, synthetic data, random weights), of other "
            "benchmark/protocol versions, repeated or unreadable are listed apart. "
            "Exit code 1 when a record could not be read (everything else is still built)."
        ),
    )
    parser.add_argument(
        "--results",
        action="append",
        metavar="PATH",
        help=f"a folder of records (searched recursively) or a record file; repeatable (default: "
        f"./{DEFAULT_RESULTS} if it exists)",
    )
    parser.add_argument(
        "--reported",
        metavar="CSV",
        help="published numbers (default: the reported.csv shipped with textseg)",
    )
    parser.add_argument(
        "--include-unranked",
        action="store_true",
        help="also rank records that are not leaderboard results (part of a split, synthetic data, random "
        "weights); their rows say why in the label column",
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from textseg.leaderboard import build_leaderboard

    results = args.results
    if results is None:
        results = [DEFAULT_RESULTS] if Path(DEFAULT_RESULTS).is_dir() else []
        if not results:
            print(
                f"textseg: note: no --results given and ./{DEFAULT_RESULTS} does not exist: published numbers only",
                file=sys.stderr,
            )
    from textseg.leaderboard.reported import PACKAGED_REPORTED

    reported = args.reported if args.reported is not None else PACKAGED_REPORTED
    result = build_leaderboard(results, reported, args.out, include_unranked=args.include_unranked)
    for message in result.errors:
        print(f"textseg: error: {message}", file=sys.stderr)
    for note in result.notes:
        print(f"textseg: note: {note}", file=sys.stderr)
    if result.table:
        print(result.table)
    ranked = len(result.selection.current)
    print(f"{ranked} ranked record(s); wrote {', '.join(p.as_posix() for p in result.written)}")
    return 1 if result.errors else 0
