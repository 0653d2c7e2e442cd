"""``textseg bench``: score a method on one or more benchmarks, print the results, write results records.

Runs on one process as is, and on several under ``torchrun`` or ``accelerate launch`` (each process
scores a disjoint share of the images; only the main process prints and writes).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textseg.api import MethodSpec, RunConfig, SegMethod
    from textseg.benchmark import BenchmarkSpec, EvalSource
    from textseg.evaluation.evaluator import EvalResult
    from textseg.evaluation.protocol import Protocol

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
    parser.add_argument("--method", required=True, help="a registered method (`textseg list methods`)")
    parser.add_argument(
        "--dataset",
        dest="datasets",
        required=True,
        nargs="+",
        action="extend",
        metavar="NAME",
        help="one or more registered benchmarks (`textseg list benchmarks`)",
    )
    parser.add_argument("--data-root", help="benchmark data root (default: $TEXTSEG_DATA, else ./data)")
    parser.add_argument("--weights", help="a released checkpoint name, a weights file or a checkpoint folder")
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


@dataclasses.dataclass
class _Job:
    benchmark: BenchmarkSpec
    config: RunConfig
    protocol: Protocol
    source: EvalSource


def _plan(args: argparse.Namespace, spec: MethodSpec) -> list[_Job]:
    """Resolve every benchmark, config, protocol and data folder before any model is built."""
    from textseg.config import parse_assignments
    from textseg.errors import ConfigError
    from textseg.paths import data_root
    from textseg.registry import BENCHMARKS, PROTOCOLS
    from textseg.text.templates import get_templates
    from textseg.weights import weights_overrides

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    if (args.max_windows is not None and args.max_windows < 1) or args.num_workers < 0:
        raise ConfigError("--max-windows must be at least 1 and --num-workers at least 0")
    given = parse_assignments(args.overrides)
    overrides = {**given, **weights_overrides(spec, args.weights)}
    root = data_root(args.data_root)
    resolved = []
    for name in dict.fromkeys(args.datasets):
        benchmark = BENCHMARKS.get(name)
        # The record lists the user's --set overrides; weights are recorded apart, with their sha256.
        config = dataclasses.replace(spec.resolve(args.preset, overrides, benchmark=name), overrides=given)
        protocol = PROTOCOLS.get(args.protocol or config.protocol)
        settings = protocol.for_benchmark(name)
        # Fails now, not after the first benchmarks ran, if a vocabulary or template set is unknown.
        benchmark.vocabulary(
            get_templates(settings.templates), args.synonyms or settings.synonyms, settings.background_query
        )
        resolved.append((benchmark, config, protocol))
    return [
        _Job(benchmark, config, protocol, benchmark.open(root)) for benchmark, config, protocol in resolved
    ]


def run(args: argparse.Namespace) -> int:
    from textseg.evaluation.evaluator import default_accelerator, evaluate, profiled
    from textseg.registry import METHODS
    from textseg.weights import apply_weights

    spec = METHODS.get(args.method)
    jobs = _plan(args, spec)
    accelerator = default_accelerator()
    built: tuple[Any, SegMethod, dict[str, str | None] | None] | None = None
    results = []
    rank = accelerator.process_index if accelerator.num_processes > 1 else None
    with profiled(args.profile, rank) as trace:
        for job in jobs:
            if built is None or built[0] != job.config.model:
                method = spec.build(job.config.model)
                info = apply_weights(method, spec, args.weights)
                built = (job.config.model, method, dataclasses.asdict(info) if info else None)
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


def _write(args: argparse.Namespace, job: _Job, result: EvalResult, weights: dict[str, Any] | None) -> Path:
    import numpy as np

    from textseg.config import to_jsonable
    from textseg.evaluation.records import ResultsRecord, environment, write_record
    from textseg.io import atomic_open

    record = ResultsRecord(
        method=job.config.method,
        preset=job.config.preset,
        overrides=dict(job.config.overrides),
        config=to_jsonable(job.config.model),
        weights=weights,
        benchmark=job.benchmark.name,
        benchmark_version=job.benchmark.version,
        protocol=result.protocol.name,
        protocol_version=result.protocol.version,
        protocol_settings=to_jsonable(result.protocol),
        synonyms=result.synonyms,
        metrics=result.metrics,
        per_class_iou=result.per_class_iou,
        num_images=result.num_images,
        limit=args.limit,
        images_per_second=result.images_per_second,
        seconds=result.seconds,
        precision=result.precision,
        device=result.device,
        num_processes=result.num_processes,
        **environment(),
    )
    path = write_record(record, args.output)
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
