"""``textseg bench``: score a method on one or more benchmarks, print the results, write results records.

Runs on one process as is, and on several under ``torchrun`` or ``accelerate launch`` (each process
scores a disjoint share of the images; only the main process prints and writes).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textseg.api import SegMethod
    from textseg.benchmark import BenchmarkSpec
    from textseg.evaluation.evaluator import EvalResult
    from textseg.scoring import ScoringJob

DEFAULT_OUTPUT = "results"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from textseg.evaluation.windows import DEFAULT_MAX_WINDOWS

    parser = subparsers.add_parser(
        "bench",
        help="score a method on benchmarks (prints a table, writes a results record)",
        description=(
            "Score a method on one or more benchmarks with the shared harness. Writes one results record "
            "(JSON) per benchmark under --output; never replaces an existing record. Several processes: "
            "torchrun --nproc_per_node N -m textseg bench ... (or accelerate launch -m textseg bench ...)."
        ),
    )
    parser.add_argument(
        "--method",
        help="a registered method (`textseg list methods`); optional when --weights is a `textseg train` run",
    )
    parser.add_argument(
        "--dataset",
        dest="datasets",
        required=True,
        nargs="+",
        action="extend",
        metavar="NAME",
        help="one or more registered benchmarks or suites (`textseg list benchmarks`, `textseg list "
        "suites`); a suite such as mess scores each of its benchmarks",
    )
    parser.add_argument("--data-root", help="benchmark data root (default: $TEXTSEG_DATA, else ./data)")
    parser.add_argument(
        "--weights",
        help="a released checkpoint name, a weights file, or a `textseg train` run folder or checkpoint "
        "(which also restores the run's method, preset and settings)",
    )
    parser.add_argument("--preset", help="the method's preset (default: its default preset, usually paper)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the preset, e.g. --set bg_thresh=0.5 (repeatable)",
    )
    parser.add_argument(
        "--protocol", help="evaluation protocol (default: the one the preset was published with)"
    )
    parser.add_argument("--synonyms", help="a synonym vocabulary of the benchmark (default: the protocol's)")
    parser.add_argument("--limit", type=int, help="score only the first N images (the record says so)")
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="score a data folder that holds fewer (or other) images than the benchmark's split; the record "
        "says complete: false and the leaderboard does not rank it",
    )
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, help=f"records folder (default: {DEFAULT_OUTPUT})"
    )
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    parser.add_argument("--num-workers", type=int, default=2, help="data loading workers per process")
    parser.add_argument(
        "--max-windows",
        type=int,
        help=f"most windows per segment call (default by device: cpu {DEFAULT_MAX_WINDOWS['cpu']}, chosen by "
        "measuring scripts/bench_speed.py on 2 cores, where larger batches were no faster per window and "
        f"used more memory; cuda {DEFAULT_MAX_WINDOWS['cuda']}, not measured)",
    )
    parser.add_argument(
        "--profile",
        metavar="TRACE",
        help="write a torch profiler trace (Chrome JSON: chrome://tracing or ui.perfetto.dev) of the "
        "evaluation to TRACE; pair it with --limit, traces grow fast",
    )
    parser.add_argument(
        "--save-confusion",
        action="store_true",
        help="also write the confusion matrix (rows = label) as <record>.confusion.npy",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from textseg.config import parse_assignments
    from textseg.errors import ConfigError
    from textseg.evaluation.evaluator import default_accelerator, evaluate, profiled
    from textseg.loading import request_model
    from textseg.paths import data_root
    from textseg.scoring import plan_scoring

    if (args.max_windows is not None and args.max_windows < 1) or args.num_workers < 0:
        raise ConfigError("--max-windows must be at least 1 and --num-workers at least 0")
    request = request_model(args.method, args.weights, args.preset, parse_assignments(args.overrides))
    jobs = plan_scoring(
        request,
        args.datasets,
        data_root(args.data_root),
        protocol=args.protocol,
        synonyms=args.synonyms,
        limit=args.limit,
        allow_incomplete=args.allow_incomplete,
    )
    accelerator = default_accelerator()
    built: tuple[Any, SegMethod, dict[str, Any] | None] | None = None
    results = []
    rank = accelerator.process_index if accelerator.num_processes > 1 else None
    with profiled(args.profile, rank) as trace:
        for job in jobs:
            if built is None or built[0] != job.config.model:
                built = (job.config.model, *request.build(job.config))
            _, method, weights = built
            result = evaluate(
                method,
                job.benchmark,
                job.source,
                job.protocol,
                accelerator=accelerator,
                precision=args.precision,
                limit=args.limit,
                synonyms=args.synonyms,
                num_workers=args.num_workers,
                max_windows=args.max_windows,
            )
            if accelerator.is_main_process:
                path = _write(args, job, result, weights)
                _print_result(job.benchmark, result, path)
            results.append(result)
    if accelerator.is_main_process and trace is not None:
        print(f"profile trace: {trace}")
    if accelerator.is_main_process and len(results) > 1:
        _print_summary(results)
    return 0


def _write(
    args: argparse.Namespace, job: ScoringJob, result: EvalResult, weights: dict[str, Any] | None
) -> Path:
    import numpy as np

    from textseg.evaluation.records import write_record
    from textseg.io import atomic_open
    from textseg.scoring import make_record

    path = write_record(make_record(job, result, weights, args.limit), args.output)
    if args.save_confusion:
        with atomic_open(confusion_path(path), "wb") as handle:
            np.save(handle, result.confusion)
    return path


def confusion_path(record: Path) -> Path:
    """Where ``--save-confusion`` puts the matrix of ``record``: beside it, same stem."""
    return record.with_suffix(".confusion.npy")


def _print_result(benchmark: BenchmarkSpec, result: EvalResult, path: Path) -> None:
    import pandas as pd

    table = pd.DataFrame(
        {"IoU": result.per_class_iou, "Acc": result.per_class_acc}, index=list(benchmark.classes)
    )
    table.index.name = "class"
    print(f"\n{benchmark.name} (protocol {result.protocol.name} v{result.protocol.version}):")
    print(table.astype(float).round(2).to_string(na_rep="-"))
    metrics = "  ".join(f"{k} {v:.2f}" for k, v in result.metrics.items())
    print(
        f"{metrics}  |  {result.num_images} images in {result.seconds:.1f} s "
        f"({result.images_per_second:.2f} img/s, {result.num_processes} process(es), {result.device})"
    )
    print(f"record: {path}")


def _print_summary(results: list[EvalResult]) -> None:
    import pandas as pd

    table = pd.DataFrame([{"benchmark": r.benchmark, **r.metrics, "images": r.num_images} for r in results])
    print("\n" + table.set_index("benchmark").round(2).to_string())
