"""``textseg data prepare|download|synthetic``: get a benchmark's files into the standard layout.

* ``prepare`` builds the layout under ``--out`` from the official downloads in ``--raw``;
* ``download`` fetches the public archives (resumably, checksummed) into ``--raw`` (default
  ``<out>/downloads``), unpacks them and runs ``prepare``;
* ``synthetic`` writes a few random samples in the real layout (or, with ``--raw``, in the
  download format ``prepare`` reads), for tests and trying the tools without the data.

Both ``prepare`` and ``download`` end by finding the evaluation split as ``textseg bench`` will and
comparing its size with the benchmark's known one; ``--allow-subset`` accepts a deliberate subset.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from textseg.paths import DATA_ENV, data_root

if TYPE_CHECKING:
    from textseg.benchmark import BenchmarkSpec

MIRROR_ENV = "TEXTSEG_DATA_MIRROR"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="download, prepare or synthesise benchmark datasets",
        description="Get benchmark datasets into the standard (mmsegmentation) on-disk layout.",
    )
    actions = parser.add_subparsers(title="actions", metavar="<action>", required=True)
    out_help = f"data root to write the layout under (default: ${DATA_ENV} or ./data)"

    prepare = actions.add_parser("prepare", help="build the layout from the official downloads")
    prepare.add_argument("benchmark")
    prepare.add_argument("--raw", type=Path, required=True, help="folder holding the official downloads")
    prepare.add_argument("--out", type=Path, help=out_help)
    _add_common(prepare)
    prepare.set_defaults(run=run_prepare)

    download = actions.add_parser("download", help="download the public archives, then prepare")
    download.add_argument("benchmark")
    download.add_argument("--out", type=Path, help=out_help)
    download.add_argument(
        "--raw", type=Path, help="where archives go and are unpacked (default: <out>/downloads)"
    )
    download.add_argument(
        "--mirror",
        default=os.environ.get(MIRROR_ENV),
        help=f"base URL serving the same archive files (default: ${MIRROR_ENV}, else the official hosts)",
    )
    download.add_argument("--no-prepare", action="store_true", help="only download and unpack")
    _add_common(download)
    download.set_defaults(run=run_download)

    synthetic = actions.add_parser("synthetic", help="write random samples in the benchmark's layout")
    synthetic.add_argument("benchmark")
    synthetic.add_argument("--out", type=Path, required=True, help="folder to write into")
    synthetic.add_argument("-n", type=int, default=8, help="number of evaluation samples (default: 8)")
    synthetic.add_argument("--raw", action="store_true", help="write the download format prepare reads")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(run=run_synthetic)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="conversion processes (default: the CPU count, at most 8)",
    )
    parser.add_argument(
        "--allow-subset", action="store_true", help="accept fewer samples than the official split has"
    )


def _spec(name: str) -> BenchmarkSpec:
    from textseg.registry import BENCHMARKS

    return BENCHMARKS.get(name)


def check_split(spec: BenchmarkSpec, root: Path, allow_subset: bool) -> None:
    """Find the split as the harness will; its size must be the official one unless ``allow_subset``."""
    from textseg.benchmark import IncompleteSplitError

    split = spec.check_split(root, spec.open(root))
    if not split.complete and not (allow_subset and split.found < (split.expected or 0)):
        raise IncompleteSplitError(
            f"{split.describe(spec.name, str(root))}. The download is incomplete or from another release: "
            "check it and run the command again (finished files are kept). For a deliberate subset (e.g. "
            "synthetic data) pass --allow-subset; `textseg bench` then needs --allow-incomplete."
        )
    print(
        f"{spec.name}: {split.found} evaluation samples ready under {root}"
        + (f" (of {split.expected})" if split.expected else "")
    )


def run_prepare(args: argparse.Namespace) -> int:
    spec = _spec(args.benchmark)
    root = data_root(args.out)
    spec.layout.prepare(args.raw, root, workers=args.workers)
    check_split(spec, root, args.allow_subset)
    return 0


def run_download(args: argparse.Namespace) -> int:
    spec = _spec(args.benchmark)
    root = data_root(args.out)
    raw = args.raw or root / "downloads"
    spec.layout.download(raw, mirror=args.mirror)
    if args.no_prepare:
        print(f"{spec.name}: downloads unpacked in {raw}; next: textseg data prepare {spec.name} --raw {raw}")
        return 0
    spec.layout.prepare(raw, root, workers=args.workers)
    check_split(spec, root, args.allow_subset)
    return 0


def run_synthetic(args: argparse.Namespace) -> int:
    spec = _spec(args.benchmark)
    if args.raw:
        spec.layout.write_synthetic_raw(args.out, spec.num_classes, args.n, seed=args.seed)
    else:
        spec.write_synthetic(args.out, args.n, seed=args.seed)
    kind = "raw download" if args.raw else "layout"
    print(f"{spec.name}: wrote {args.n} synthetic samples ({kind}) under {args.out}")
    return 0
