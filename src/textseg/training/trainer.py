"""The one training loop: every trainable method trains through :class:`Trainer` and nothing else.

Accelerate does the devices, processes (``accelerate launch`` / ``torchrun``), mixed precision,
gradient accumulation and synchronisation, clipping (with the fp16 scaler), trackers and the
optimizer/scheduler/scaler/RNG parts of checkpoints. The method contributes ``training_step``,
``train_transform``/``collate`` (run in the data workers), optional ``param_groups`` and the
per-step hook ``on_train_step``.

Two things are done here rather than by Accelerate, on purpose:

* the data loader is not ``prepare``-d: :class:`textseg.data.stream.ImageTextStream` already
  splits shards over processes and workers (Accelerate would read every batch on one process
  and dispatch it, or wrap the stream in a shard that breaks its resumable state);
* checkpoints keep only the method's trainable state (``weights.safetensors``, through a
  save/load hook), never a frozen pretrained CLIP, plus each process's data-stream state and
  whatever the method's ``export`` hook writes (the ``clip`` method: its CLIP as ``clip/``).

When ``on_train_step`` changes which parameters require gradients (TCL unfreezes a block at step
30k), DistributedDataParallel, which only synchronises parameters that required gradients when it
was built, is rebuilt around the same module so the newly trainable ones are synchronised too.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, gather_object, send_to_device, set_seed
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from textseg import __version__
from textseg.api import SegMethod
from textseg.config import to_jsonable
from textseg.data.sources import Source, open_source
from textseg.data.spec import parse_data_spec
from textseg.data.stream import ImageTextStream, StreamLoader, mixing_weights
from textseg.errors import ConfigError, TextsegError
from textseg.io import write_json
from textseg.paths import data_root
from textseg.training import checkpoint as ckpt
from textseg.training.config import TrainConfig
from textseg.training.optim import build_optimizer, build_scheduler, lr_factor
from textseg.training.trackers import build_trackers
from textseg.weights import check_and_load, read_state_dict, save_weights

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"


class TrainingDivergedError(TextsegError):
    """The loss became NaN or infinite; training stopped before applying it."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    checkpoint: Path | None
    skipped: dict[str, int]


def needs_cpu_processes() -> bool:
    """True for a multi-process launch without CUDA: Accelerate then needs ``cpu=True`` to join the
    processes with gloo (otherwise each would silently train alone)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


class _Forward(nn.Module):
    """Makes ``training_step`` the forward pass, so DDP synchronises gradients and Accelerate's
    autocast applies to it."""

    def __init__(self, method: SegMethod) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: Any) -> dict[str, Tensor]:
        return self.method.training_step(batch)


class Trainer:
    """Train ``method`` on ``data`` into ``run_dir``; ``resume`` is a checkpoint folder to continue from.

    ``run_info`` (method name, preset, overrides) is written to ``run.json`` with the data and the
    settings; ``protocol`` names the evaluation protocol of periodic evaluation.
    """

    def __init__(
        self,
        method: SegMethod,
        config: TrainConfig,
        data: str | Sequence[str] | Sequence[Source],
        run_dir: str | Path,
        *,
        run_info: dict[str, Any] | None = None,
        protocol: str = "tcl",
        resume: str | Path | None = None,
    ) -> None:
        self.method, self.config = method, config
        self.sources = open_sources(data)
        mixing_weights(self.sources)  # a mix of sources of unknown size fails now, not in a worker
        self.run_dir = Path(run_dir)
        self.run_info = dict(run_info or {})
        self.resume = Path(resume) if resume is not None else None
        resume_step = ckpt.read_trainer_state(self.resume)["step"] if self.resume else None
        self.accelerator = Accelerator(
            cpu=needs_cpu_processes(),
            mixed_precision=config.precision,
            gradient_accumulation_steps=config.grad_accum,
            log_with=build_trackers(config.trackers, self.run_dir, resume_step),
            project_dir=str(self.run_dir),
            step_scheduler_with_optimizer=False,
            kwargs_handlers=[
                DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)
            ],
        )
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != self.accelerator.num_processes:
            raise TextsegError(
                f"{launched} processes were launched but Accelerate joined {self.accelerator.num_processes}; "
                "check the launcher (accelerate launch / torchrun) and its environment"
            )
        self._evaluations = self._plan_evaluation(protocol) if config.eval_every > 0 else []
        self.last_checkpoint: Path | None = self.resume
        self._last_loss: float | None = None

    # -- set-up --------------------------------------------------------------------------------
    def _plan_evaluation(self, protocol: str) -> list[tuple[str, Any, Any, Any]]:
        """Benchmarks, their samples and the protocol, checked now rather than at the first evaluation."""
        from textseg.evaluation.protocol import choose_protocol
        from textseg.registry import BENCHMARKS

        if not self.config.eval_benchmarks:
            raise ConfigError(
                "train.eval_every is set but train.eval_benchmarks is empty (e.g. --set train.eval_benchmarks=voc20)"
            )
        root = data_root(self.config.eval_data_root)
        plan = []
        for name in self.config.eval_benchmarks:
            benchmark = BENCHMARKS.get(name)
            plan.append((name, benchmark, benchmark.open(root), choose_protocol(benchmark, protocol)))
        return plan

    def _loader(self, saved: dict[str, Any] | None, start: int) -> StreamLoader:
        acc, cfg = self.accelerator, self.config
        workers = max(1, cfg.num_workers)
        seed, states = cfg.seed, None
        if (
            saved is not None
            and saved["slots"] == acc.num_processes * workers
            and len(saved["states"]) == workers
        ):
            states = saved["states"]
        elif self.resume is not None:
            seed = cfg.seed + start  # a different topology cannot continue the streams: reshuffle instead
            logger.warning(
                "the checkpoint's data position belongs to a different number of processes or data workers; "
                "the data streams restart with a new shuffle (resume with the same topology for an exact "
                "continuation)"
            )
        stream = ImageTextStream(
            self.sources,
            self.method.train_transform(),
            self.method.collate,
            cfg.batch_size,
            seed=seed,
            shuffle_buffer=cfg.shuffle_buffer,
            rank=acc.process_index,
            world_size=acc.num_processes,
            num_workers=cfg.num_workers,
            resume=states,
        )
        return StreamLoader(stream, cfg.num_workers, pin_memory=acc.device.type == "cuda")

    def _trainable(self) -> tuple[bool, ...]:
        return tuple(p.requires_grad for p in self.method.parameters())

    def _prepare(self, optimizer: Any, scheduler: Any) -> None:
        self._trainable_now = self._trainable()
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(
            _Forward(self.method), optimizer, scheduler
        )

    def _follow_trainable(self) -> None:
        """Rebuild DDP when the set of trainable parameters changed (see the module docstring)."""
        if self._trainable() == self._trainable_now:
            return
        self._trainable_now = self._trainable()
        if isinstance(self.model, DistributedDataParallel):
            optimizer, scheduler = self.optimizer.optimizer, self.scheduler.scheduler
            self.accelerator.free_memory()  # drops Accelerate's references to the old wrappers
            self._prepare(optimizer, scheduler)

    # -- checkpoints -------------------------------------------------------------------------
    def _save_weights_hook(
        self, models: list[nn.Module], weights: list[dict[str, Tensor]], output_dir: str
    ) -> None:
        weights.clear()  # Accelerate would store the full state dict, frozen CLIP included
        if self.accelerator.is_main_process:
            save_weights(self.method, Path(output_dir) / WEIGHTS_FILE)
            self.method.export(Path(output_dir))

    def _save(self, step: int, loader: StreamLoader) -> Path:
        acc = self.accelerator
        self._check_weights_finite(step)
        final = ckpt.checkpoint_dir(self.run_dir, step)
        tmp = ckpt.temporary_dir(final)
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        torch.save(loader.state_dict(), tmp / f"data_state_{acc.process_index}.pt")
        acc.wait_for_everyone()
        if acc.is_main_process:
            write_json(
                tmp / ckpt.TRAINER_STATE,
                {
                    "step": step,
                    "processes": acc.num_processes,
                    "num_workers": self.config.num_workers,
                    "samples": step * self._samples_per_step,
                    "loss": self._last_loss,  # finite: a non-finite loss stops training before this
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                },
            )
            ckpt.finalize(tmp, final)
            ckpt.prune(self.run_dir, self.config.keep_last)
        acc.wait_for_everyone()
        self.last_checkpoint = final
        return final

    def _restore(self, folder: Path) -> tuple[int, dict[str, Any] | None]:
        """Load a checkpoint's weights, optimizer, scheduler, scaler, RNG and data state, every file
        read through :mod:`textseg.safe_pickle` (Accelerate's ``load_state`` would ``torch.load``).

        Learning-rate settings may differ from the checkpoint's (a resume after divergence with a
        lower ``train.lr``): the schedule is recomputed from the current settings at the saved step.
        """
        acc = self.accelerator
        step = ckpt.read_trainer_state(folder)["step"]
        base_lrs = list(self.scheduler.scheduler.base_lrs)  # from the current settings
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise ckpt.CheckpointError(
                f"--resume {folder}: {WEIGHTS_FILE} is missing. {ckpt.previous_hint(folder)}"
            )
        with ckpt.damaged_file_error(folder):
            check_and_load(self.method, read_state_dict(weights)[0], str(weights))
            self.optimizer.load_state_dict(ckpt.read_pickle(folder / "optimizer.bin"))
            self.scheduler.scheduler.load_state_dict(ckpt.read_pickle(folder / "scheduler.bin"))
            if acc.scaler is not None and (folder / "scaler.pt").is_file():
                acc.scaler.load_state_dict(ckpt.read_pickle(folder / "scaler.pt"))
            rng_file = folder / f"random_states_{acc.process_index}.pkl"
            if rng_file.is_file():
                _set_rng_states(ckpt.read_pickle(rng_file), acc)
            else:
                logger.warning(
                    "%s has no RNG state for process %d; it continues with its current RNG",
                    folder,
                    acc.process_index,
                )
            data_file = folder / f"data_state_{acc.process_index}.pt"
            data = ckpt.read_pickle(data_file) if data_file.is_file() else None
        self.scheduler.scheduler.base_lrs = base_lrs
        for group, base in zip(self.optimizer.param_groups, base_lrs):
            group["initial_lr"] = base
            group["lr"] = base * lr_factor(step, self.config)
        return step, data

    def _write_run_file(self) -> None:
        if self.accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(
                self.run_dir / ckpt.RUN_FILE,
                {
                    **self.run_info,
                    "data": [source.spec.text for source in self.sources],
                    "train": to_jsonable(self.config),
                    "model": to_jsonable(self.method.config),
                    "processes": self.accelerator.num_processes,
                    "resumed_from": str(self.resume) if self.resume else None,
                    "textseg_version": __version__,
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                },
            )
        self.accelerator.wait_for_everyone()

    # -- the loop ------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run (or continue) training to ``config.steps``; returns where the last checkpoint is."""
        acc, cfg = self.accelerator, self.config
        self._samples_per_step = cfg.batch_size * acc.num_processes * cfg.grad_accum
        optimizer = build_optimizer(self.method, cfg, self._samples_per_step)
        self.method.train()
        self._prepare(optimizer, build_scheduler(optimizer, cfg))
        acc.register_save_state_pre_hook(self._save_weights_hook)
        if self.resume is not None:
            start, data_state = self._restore(self.resume)
        else:
            start, data_state = 0, None
            set_seed(cfg.seed, device_specific=True)  # seed + process index, as TCL's use_rank_shift
        self._write_run_file()  # on resume too: the settings now in force (e.g. more steps)
        loader = self._loader(data_state, start)
        acc.init_trackers("textseg", config={k: str(v) for k, v in to_jsonable(cfg).items()})
        try:
            self._loop(loader, start)
            skipped = _skipped_everywhere(loader)
            # No process may tear the process group down while another still talks over it (a
            # gloo peer aborting at exit was seen once); not on the error path, where it could hang.
            acc.wait_for_everyone()
        finally:
            acc.end_training()  # also ends the process group
        return TrainResult(self.run_dir, max(start, cfg.steps), self.last_checkpoint, dict(skipped))

    def _loop(self, loader: StreamLoader, start: int) -> None:
        acc, cfg = self.accelerator, self.config
        batches = iter(loader)
        window = _Window()
        bar = tqdm(
            total=cfg.steps, initial=start, desc="train", unit="step", disable=not acc.is_local_main_process
        )
        with bar:
            for step in range(start, cfg.steps):
                self.method.on_train_step(step)
                self._follow_trainable()
                lr = self.optimizer.param_groups[0]["lr"]
                terms = self._step(batches, step)
                self._last_loss = float(terms["loss"])
                window.add(terms)
                self.scheduler.step()
                done = step + 1
                bar.update()
                if done % cfg.log_every == 0 or done == cfg.steps:
                    self._log(window, done, lr, loader, bar)
                if cfg.eval_every > 0 and done % cfg.eval_every == 0:
                    self._evaluate(done)
                if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                    self._save(done, loader)

    def _step(self, batches: Iterator[Any], step: int) -> dict[str, Tensor]:
        """One optimisation step over ``grad_accum`` micro-batches; returns the mean of each loss term."""
        acc, cfg = self.accelerator, self.config
        terms: dict[str, Tensor] = {}
        for micro in range(cfg.grad_accum):
            batch = send_to_device(next(batches), acc.device, non_blocking=True)
            with acc.accumulate(self.model):
                out = self.model(batch)
                if "loss" not in out:
                    raise TextsegError(
                        f"{type(self.method).__name__}.training_step returned no 'loss' ({', '.join(out)})"
                    )
                self._check_finite(out["loss"], step, micro)
                acc.backward(out["loss"])
                if acc.sync_gradients and cfg.grad_clip:
                    acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad()
            for name, value in out.items():
                value = torch.as_tensor(value).detach().float()
                terms[name] = terms.get(name, 0.0) + value / cfg.grad_accum
        return terms

    def _check_finite(self, loss: Tensor, step: int, micro: int) -> None:
        total = self.accelerator.reduce(loss.detach().float().reshape(1).clone(), "sum")
        if torch.isfinite(total).all():
            return
        where = f"step {step + 1}" + (
            f" (micro-batch {micro + 1} of {self.config.grad_accum})" if self.config.grad_accum > 1 else ""
        )
        raise TrainingDivergedError(
            f"training stopped: the loss is {total.item()} at {where}; the parameters were not updated with it. "
            + self._advice()
        )

    def _check_weights_finite(self, step: int) -> None:
        """Refuse to checkpoint non-finite weights (a finite loss can still give an infinite update)."""
        finite = all(
            bool(torch.isfinite(value).all())
            for value in self.method.trainable_state_dict().values()
            if value.is_floating_point()
        )
        flag = self.accelerator.reduce(
            torch.tensor([float(not finite)], device=self.accelerator.device), "sum"
        )
        if flag.item() > 0:
            raise TrainingDivergedError(
                f"training stopped: the weights are no longer finite after step {step}, so no checkpoint was "
                f"written for it. " + self._advice()
            )

    def _advice(self) -> str:
        """Where to continue from after a divergence: the newest checkpoint written with a finite loss
        and finite weights (every checkpoint this trainer writes is; older ones are checked)."""
        good = next(
            ((step, path) for step, path in reversed(ckpt.list_checkpoints(self.run_dir)) if _is_good(path)),
            None,
        )
        if good is None:
            return (
                f"No checkpoint with finite weights was written yet (train.checkpoint_every="
                f"{self.config.checkpoint_every}); start again with a lower train.lr, train.grad_clip set, or "
                "another --precision."
            )
        step, path = good
        return (
            f"The last good checkpoint is {path} (after step {step}: finite loss and weights). Continue from it "
            f"with a lower learning rate, e.g.: textseg train --resume {path} --set train.lr=<lower>"
            " (train.grad_clip and --precision may also change on resume)."
        )

    def _log(self, window: _Window, step: int, lr: float, loader: StreamLoader, bar: Any) -> None:
        acc = self.accelerator
        names = sorted(window.sums)
        means = acc.reduce(torch.stack([window.sums[n] / window.steps for n in names]).to(acc.device), "mean")
        rate = window.steps * self._samples_per_step / max(time.perf_counter() - window.start, 1e-9)
        skipped = _skipped_everywhere(loader)
        values: dict[str, float] = {f"train/{n}": float(v) for n, v in zip(names, means.tolist())}
        values.update({"train/lr": lr, "train/samples_per_second": rate})
        values.update({f"data/skipped/{_tag(reason)}": float(n) for reason, n in skipped.items()})
        acc.log(values, step=step)
        bar.set_postfix(
            loss=f"{values['train/loss']:.4f}",
            lr=f"{lr:.3g}",
            samples_s=f"{rate:.1f}",
            skipped=sum(skipped.values()),
            refresh=False,
        )
        window.reset()

    def _evaluate(self, step: int) -> None:
        from textseg.evaluation.evaluator import evaluate  # imported only when periodic evaluation is on

        values: dict[str, float] = {}
        for name, benchmark, source, protocol in self._evaluations:
            result = evaluate(self.method, benchmark, source, protocol, accelerator=self.accelerator)
            values.update({f"eval/{name}/{key}": float(v) for key, v in result.metrics.items()})
        self.method.train()
        self.accelerator.log(values, step=step)


def _is_good(checkpoint: Path) -> bool:
    """True when a checkpoint's recorded loss is finite and its weights are finite."""
    try:
        state = ckpt.read_json(checkpoint / ckpt.TRAINER_STATE)
        loss = state.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return False
        weights, _ = read_state_dict(checkpoint / WEIGHTS_FILE)
    except (TextsegError, TypeError, ValueError):
        return False
    return all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())


def _set_rng_states(states: dict[str, Any], accelerator: Accelerator) -> None:
    """Python, NumPy, torch and CUDA generators as Accelerate's ``save_state`` stored them."""
    random.setstate(states["random_state"])
    np.random.set_state(states["numpy_random_seed"])
    torch.set_rng_state(states["torch_manual_seed"])
    if torch.cuda.is_available() and "torch_cuda_manual_seed" in states:
        torch.cuda.set_rng_state_all(states["torch_cuda_manual_seed"])
    if "step" in states:
        accelerator.step = states["step"]


def _skipped_everywhere(loader: StreamLoader) -> Counter[str]:
    """Skip counts summed over every process."""
    total: Counter[str] = Counter()
    for counts in gather_object([dict(loader.skipped())]):
        total.update(counts)
    return total


def _tag(reason: str) -> str:
    """A skip reason as a tracker-friendly name ("method: too few nouns" -> "method_too_few_nouns")."""
    return re.sub(r"\W+", "_", reason).strip("_")


def open_sources(data: str | Sequence[str] | Sequence[Source]) -> list[Source]:
    """Sources from ``--data`` values (opened: missing files and bad options fail here), or as given."""
    items = [data] if isinstance(data, str) else list(data)
    if items and all(isinstance(item, Source) for item in items):
        return items  # type: ignore[return-value]
    return [open_source(spec) for spec in parse_data_spec(items)]  # type: ignore[arg-type]


class _Window:
    """Loss terms summed over the steps since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, terms: dict[str, Tensor]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1
