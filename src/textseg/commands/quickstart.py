"""``textseg quickstart``: generate the shapes world, pretrain a tiny CLIP, train and score the methods
on it, and print the table (see :mod:`textseg.quickstart`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from textseg.quickstart import METHOD_PLANS

    parser = subparsers.add_parser(
        "quickstart",
        help="see every part learn on a generated world, in minutes on a CPU (nothing downloaded)",
        description=(
            "Generate the shapes world, pretrain a tiny CLIP on its captions, score clip and maskclip with "
            "random and pretrained weights, train the trainable methods on top, score them, and print the "
            "table. Each step is an ordinary textseg command, printed before it runs."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("quickstart"),
        help="folder for everything it writes (default: quickstart)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of every run (default: 0)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHOD_PLANS),
        metavar="METHOD",
        help=f"trainable methods to train on the pretrained CLIP (default: {' '.join(METHOD_PLANS)})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from textseg.cli import main
    from textseg.quickstart import Quickstart

    quickstart = Quickstart(args.out, seed=args.seed, methods=tuple(args.methods))
    table = quickstart.run(main)
    print("\nshapes benchmark (mIoU %, 200 held-out scenes; classes: background + 6 colours)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}", na_rep="-"))
    return 0
