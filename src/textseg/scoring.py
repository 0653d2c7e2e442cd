"""Scoring a model on benchmarks, shared by ``textseg bench`` and :func:`textseg.evaluate`.

:func:`plan_scoring` resolves every benchmark, configuration, protocol and data folder before any
model is built, so a missing dataset or an unknown name fails in seconds, not after the first
benchmark; it refuses a data folder that does not hold the benchmark's whole split unless the
caller scores a subset on purpose (``limit``, ``allow_incomplete``). :func:`make_record` turns a
result into the results record both write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textseg.errors import ConfigError

if TYPE_CHECKING:
    from textseg.api import RunConfig
    from textseg.benchmark import BenchmarkSpec, EvalSource, SplitCheck
    from textseg.evaluation.evaluator import EvalResult
    from textseg.evaluation.protocol import Protocol
    from textseg.evaluation.records import ResultsRecord
    from textseg.loading import ModelRequest


@dataclass(frozen=True)
class ScoringJob:
    """One benchmark to score: the model's configuration for it, the protocol, the data."""

    benchmark: BenchmarkSpec
    config: RunConfig
    protocol: Protocol
    source: EvalSource
    split: SplitCheck


def plan_scoring(
    request: ModelRequest,
    benchmarks: list[str],
    root: str | Path,
    *,
    protocol: str | None = None,
    synonyms: str | None = None,
    limit: int | None = None,
    allow_incomplete: bool = False,
) -> list[ScoringJob]:
    """Resolve every benchmark (module docstring)."""
    from textseg.benchmark import IncompleteSplitError
    from textseg.evaluation.protocol import choose_protocol
    from textseg.registry import BENCHMARKS
    from textseg.suite import expand
    from textseg.text.templates import get_templates

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    resolved = []
    for name in expand(benchmarks):
        benchmark = BENCHMARKS.get(name)
        # The record lists the settings (--set, and a run's); weights are recorded apart, with their sha256.
        config = request.resolve(benchmark=name)
        chosen = choose_protocol(benchmark, config.protocol, protocol)
        settings = chosen.for_benchmark(name)
        # Fails now, not after the first benchmarks ran, if a vocabulary or template set is unknown.
        benchmark.vocabulary(
            get_templates(settings.templates),
            synonyms or benchmark.protocol_synonyms(settings.synonyms),
            settings.background_query,
        )
        resolved.append((benchmark, config, chosen))
    jobs = []
    for benchmark, config, chosen in resolved:
        source = benchmark.open(root)
        split = benchmark.check_split(root, source)
        if not split.complete and limit is None and not allow_incomplete:
            raise IncompleteSplitError(
                f"{split.describe(benchmark.name, str(root))}.\n"
                "Scoring it would give a number for another set of images than the benchmark's. Complete the "
                f"dataset ({benchmark.data_hint or 'see README, Datasets'}), or score the subset on purpose with "
                "--allow-incomplete or --limit N (the record then says complete: false and the leaderboard does "
                "not rank it)."
            )
        jobs.append(ScoringJob(benchmark, config, chosen, source, split))
    return jobs


def make_record(
    job: ScoringJob, result: EvalResult, weights: dict[str, Any] | None, limit: int | None
) -> ResultsRecord:
    """The results record of ``result`` (``job``'s benchmark scored by the model ``weights`` describe)."""
    from textseg.config import to_jsonable
    from textseg.evaluation.records import ResultsRecord, environment

    return ResultsRecord(
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
        limit=limit,
        complete=job.split.complete and (limit is None or limit >= job.split.found),
        expected_images=job.split.expected,
        synthetic=job.split.synthetic,
        images_per_second=result.images_per_second,
        seconds=result.seconds,
        precision=result.precision,
        device=result.device,
        num_processes=result.num_processes,
        **environment(),
    )
