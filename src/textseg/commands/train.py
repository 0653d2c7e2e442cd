"""``textseg train``: train a method on image-text data through the one Accelerate loop.

One process: ``textseg train ...``. Several GPUs or nodes: ``accelerate launch -m textseg train ...``
(or ``torchrun --nproc_per_node N -m textseg train ...``); every process runs this command and
Accelerate connects them.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

#: Settings that may change when a run is resumed; any other difference means a different run.
#: The learning-rate schedule, clipping and precision may change so that a diverged run can continue
#: from its last good checkpoint; run.json records each change with the step it applies from.
RESUMABLE_SETTINGS = {
    "train.lr",
    "train.min_lr",
    "train.warmup_steps",
    "train.warmup_start_factor",
    "train.grad_clip",
    "train.precision",
    "train.steps",
    "train.checkpoint_every",
    "train.keep_last",
    "train.log_every",
    "train.eval_every",
    "train.eval_benchmarks",
    "train.eval_data_root",
    "train.trackers",
    "train.num_workers",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a method on image-text data",
        description=(
            "Train a method on image-caption pairs. Checkpoints go to OUTPUT/checkpoints/step-N/. "
            "`textseg bench --weights OUTPUT` (or a checkpoint folder) scores the trained model: the run "
            "restores its method, preset and settings. Multi-GPU: accelerate launch -m textseg train ..."
        ),
    )
    parser.add_argument("--method", help="a trainable method (see `textseg list methods`)")
    parser.add_argument("--preset", help="the method's preset (default: its default preset)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model setting, or a training setting as train.KEY (repeatable)",
    )
    parser.add_argument(
        "--data",
        action="append",
        metavar="SPEC",
        help="image-text data, one of: webdataset tar shards 'dir/{00000..00331}.tar'; a Hugging Face dataset "
        "'hf:<hub id or save_to_disk folder>'; a table of image paths and captions 'pairs.parquet', "
        "'pairs.csv', 'pairs.tsv'; the generated shapes world 'shapes:?n=20000&seed=0&size=64'. Options "
        "follow '?' (e.g. ?image=jpg&caption=txt); join sources with '::' or repeat --data (README, Training)",
    )
    parser.add_argument("--steps", type=int, help="optimisation steps in total (train.steps)")
    parser.add_argument(
        "--batch-size", type=int, help="samples per process per micro-batch (train.batch_size)"
    )
    parser.add_argument(
        "--precision", choices=("no", "fp16", "bf16"), help="mixed precision (train.precision)"
    )
    parser.add_argument("--output", type=Path, help="run folder (default: runs/<method>-<preset>[-N])")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="continue a run: a checkpoint folder, or a run folder (its newest checkpoint); "
        "without PATH, the newest checkpoint in --output",
    )
    parser.set_defaults(run=run)


def _given_overrides(args: argparse.Namespace) -> dict[str, str]:
    """``--set`` and the shortcut flags; a value naming an existing relative path is made absolute, so
    the run folder's settings (``--weights RUN`` restores them) work from any working directory."""
    from textseg.config import parse_assignments

    overrides = {
        key: str(Path(value).resolve())
        if value and not Path(value).is_absolute() and Path(value).exists()
        else value
        for key, value in parse_assignments(args.overrides).items()
    }
    for flag, key in (
        ("steps", "train.steps"),
        ("batch_size", "train.batch_size"),
        ("precision", "train.precision"),
    ):
        if getattr(args, flag) is not None:
            overrides[key] = str(getattr(args, flag))
    return overrides


def _resumed_run(args: argparse.Namespace, overrides: dict[str, str]) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to resume and the run's settings, with this command's changes checked."""
    from textseg.data.spec import parse_data_spec
    from textseg.errors import ConfigError
    from textseg.training.checkpoint import RUN_FILE, read_json, read_trainer_state, resolve_resume

    where = args.resume or args.output
    if not where:
        raise ConfigError("--resume without a PATH needs --output (the run folder to continue)")
    run_dir, checkpoint = resolve_resume(Path(where))
    saved = read_json(run_dir / RUN_FILE)
    conflicts = []
    for key, given in (("method", args.method), ("preset", args.preset)):
        if given is not None and given != saved.get(key):
            conflicts.append(f"--{key} {given} (the run used {saved.get(key)})")
    if args.data and [spec.text for spec in parse_data_spec(args.data)] != saved.get("data"):
        conflicts.append(f"--data {' '.join(args.data)} (the run used {' '.join(saved.get('data', []))})")
    merged = dict(saved.get("overrides", {}))
    changed = {key: value for key, value in overrides.items() if merged.get(key) != value}
    for key, value in changed.items():
        if key not in RESUMABLE_SETTINGS:
            conflicts.append(f"--set {key}={value} (the run used {merged.get(key, 'the preset value')})")
    merged.update(overrides)
    if conflicts:
        raise ConfigError(
            f"--resume {checkpoint}: this command differs from the run being resumed: {'; '.join(conflicts)}. "
            f"Only {', '.join(sorted(RESUMABLE_SETTINGS))} may change; start a new run (--output) for the rest."
        )
    changes = list(saved.get("changes", []))
    if changed:
        step = read_trainer_state(checkpoint)["step"]
        changes.append({"step": step, "settings": changed})
    return checkpoint, {**saved, "overrides": merged, "changes": changes, "run_dir": run_dir}


def _choose_run_dir(requested: Path | None, method: str, preset: str, resume_dir: Path | None) -> Path:
    """The run folder, decided on the main process and shared (so every process agrees, or all fail)."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    from textseg.errors import ConfigError
    from textseg.training.trainer import needs_cpu_processes

    state = PartialState(cpu=needs_cpu_processes())
    decision: list[Any] = [None]
    if state.is_main_process:
        if resume_dir is not None and (requested is None or requested.resolve() == resume_dir.resolve()):
            decision = [str(resume_dir)]
        elif requested is not None:
            if requested.exists() and (not requested.is_dir() or any(requested.iterdir())):
                decision = [
                    ConfigError(
                        f"--output {requested} already exists and is not empty; continue that run with --resume, "
                        "or choose a new --output"
                    )
                ]
            else:
                decision = [str(requested)]
        else:
            base = Path("runs") / f"{method}-{preset}"
            candidate, n = base, 1
            while candidate.exists():
                n += 1
                candidate = base.with_name(f"{base.name}-{n}")
            decision = [str(candidate)]
    if state.num_processes > 1:
        broadcast_object_list(decision)
    if isinstance(decision[0], Exception):
        raise decision[0]
    return Path(decision[0])


def run(args: argparse.Namespace) -> int:
    from accelerate.utils import set_seed

    from textseg.api import TrainingNotSupportedError
    from textseg.errors import ConfigError
    from textseg.registry import METHODS
    from textseg.training.trainer import Trainer, open_sources

    overrides = _given_overrides(args)
    checkpoint, resume_dir, changes = None, None, []
    method_name, preset, data = args.method, args.preset, args.data
    if args.resume is not None:
        checkpoint, saved = _resumed_run(args, overrides)
        method_name, preset, data = saved.get("method"), saved.get("preset"), saved.get("data")
        overrides, resume_dir, changes = saved["overrides"], saved["run_dir"], saved["changes"]
    if not method_name:
        raise ConfigError("--method is required (see `textseg list methods`)")
    if not data:
        raise ConfigError("--data is required, e.g. --data 'shards/{00000..00331}.tar'")
    spec = METHODS.get(method_name)
    if not spec.trainable:
        trainable = (
            ", ".join(n for n in METHODS.names() if getattr(METHODS.get(n), "trainable", False)) or "none"
        )
        raise TrainingNotSupportedError(
            f"method {method_name!r} is training-free (trainable methods: {trainable})"
        )
    resolved = spec.resolve(preset, overrides)
    sources = open_sources(data)  # before the (possibly slow) model build: data errors come first
    run_dir = _choose_run_dir(args.output, spec.name, resolved.preset, resume_dir)
    set_seed(resolved.train.seed)  # the same initial weights on every process
    method = spec.build(resolved.model)
    trainer = Trainer(
        method,
        resolved.train,
        sources,
        run_dir,
        run_info={
            "method": spec.name,
            "preset": resolved.preset,
            "overrides": dict(resolved.overrides),
            "changes": changes,
        },
        protocol=resolved.protocol,
        resume=checkpoint,
    )
    result = trainer.train()
    if trainer.accelerator.is_main_process:
        print(
            f"trained {spec.name} ({resolved.preset}) for {result.steps} steps; run folder {result.run_dir}"
        )
        if result.skipped:
            counts = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.skipped.items()))
            print(f"skipped samples: {counts}")
        if result.checkpoint is not None:
            print(f"last checkpoint: {result.checkpoint}")
            for label, words in score_commands(result.run_dir, resolved.train, data):
                print(f"{label}: {shlex.join(words)}")
    return 0


def score_commands(run_dir: Path, train: Any, data: list[str]) -> list[tuple[str, list[str]]]:
    """The commands that score a finished run as it is (the run folder restores method, preset and
    settings): on its periodic-evaluation benchmarks if it has them; on the shapes benchmark, written
    first, for a run trained on the shapes world; else on VOC (any benchmark works)."""
    bench = ["textseg", "bench", "--weights", str(run_dir), "--dataset"]
    if train.eval_benchmarks:
        root = ["--data-root", train.eval_data_root] if train.eval_data_root else []
        return [("score it", [*bench, *train.eval_benchmarks, *root])]
    if all(spec.startswith("shapes:") for spec in data):
        shapes = str(run_dir.parent / "shapes-data")
        return [
            ("shapes data", ["textseg", "data", "synthetic", "shapes", "--out", shapes, "-n", "200"]),
            ("score it", [*bench, "shapes", "--data-root", shapes]),
        ]
    return [("score it", [*bench, "voc21"])]
