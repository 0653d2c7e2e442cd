"""The quickstart: the whole library seen learning, in a few minutes on a laptop CPU, with nothing downloaded.

On the generated shapes world (:mod:`textseg.data.shapes`) it runs, as ordinary textseg commands
(each is printed before it runs, so any step can be rerun or changed by hand):

1. ``textseg data synthetic shapes``: the held-out ``shapes`` benchmark;
2. a random tiny CLIP shaped for the world (:data:`WORLD_CLIP`), saved as a CLIP folder;
3. ``textseg train --method clip``: that CLIP pretrained on the world's captions;
4. ``textseg bench`` of ``clip`` and ``maskclip`` with the random and with the pretrained CLIP;
5. ``textseg train`` of each trainable method (TCL, CoDe, ViL-Seg) on top of the pretrained CLIP,
   then ``textseg bench`` of its checkpoint;
6. ``textseg leaderboard`` over the records, and a compact table of what learnt what.

Every setting is a ``--set`` on a method's ``tiny`` preset (:data:`METHOD_PLANS`); why each one
differs from the preset is said there. No paper preset is touched.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textseg.errors import ConfigError
from textseg.io import write_json

if TYPE_CHECKING:
    import pandas as pd

#: The tiny CLIP the world is learnt with (arguments of :func:`textseg.testing.tiny_clip.build_tiny_clip`):
#: 64-pixel images in 8-pixel patches (an 8 x 8 grid) and captions of at most 32 tokens.
WORLD_CLIP = dict(
    image_size=64,
    patch_size=8,
    width=64,
    layers=3,
    heads=4,
    text_width=64,
    text_layers=2,
    embed_dim=32,
    context_length=32,
)
#: Written first into ``--out``: a quickstart run again with the same ``--out`` continues it.
MARKER = "quickstart.json"
#: Held-out benchmark scenes (64 x 64 each).
BENCHMARK_IMAGES = 200
#: Scenes per epoch of the training stream: more than any stage reads, so no scene is seen twice.
TRAIN_SCENES = 1_000_000
#: What every trained method changes in its ``tiny`` preset: one data worker renders the scenes
#: while the model trains (with one thread: see :meth:`Quickstart.run`); one checkpoint, at the end
#: (the tiny presets checkpoint every few steps, for the resume tests).
_WORLD_TRAINING = ("train.num_workers=1", "train.log_every=25", "train.keep_last=1")


@dataclass(frozen=True)
class MethodPlan:
    """How the quickstart trains and scores one method on top of the pretrained CLIP.

    ``model`` settings apply to training and scoring (the same model must be rebuilt to score the
    checkpoint); ``train`` settings to training only.
    """

    steps: int
    batch_size: int
    model: tuple[str, ...] = ()
    train: tuple[str, ...] = ()


#: ``clip``: CLIP's own loss on the captions, every weight trained. Measured on the shapes
#: benchmark (MaskCLIP on the pretrained CLIP, seeds 0/1/2): lr 1e-3 gave 36.9/17.4/18.9 mIoU,
#: 2e-3 gave 34.1/23.8/21.0 (steadier across seeds); 300 steps of 64 take about a minute on 2 cores.
CLIP_PLAN = MethodPlan(
    steps=300,
    batch_size=64,
    train=("train.lr=2e-3", "train.warmup_steps=30", "train.min_lr=1e-5"),
)

_TCL_MODEL = (
    "image_size=64",
    # The copied block trains from the start (TCL waits 30k steps; this run has a few hundred).
    "ust_steps=0",
    # TCL's full PAMR at inference (the tiny preset cuts it to 2 iterations for test speed).
    "pamr_iterations=10",
)
_TCL_TRAIN = (
    # RandAugment's Invert, Solarize, Posterize and Color change the very colours the captions
    # name; random erasing hides shapes the caption still mentions. Crops keep at least half the
    # scene so that most named shapes stay in view.
    "auto_augment=none",
    "re_prob=0",
    "crop_scale=0.5,1",
    "train.lr=1e-3",
    "train.min_lr=1e-4",
    "train.warmup_steps=20",
)

METHOD_PLANS: dict[str, MethodPlan] = {
    "tcl": MethodPlan(steps=120, batch_size=32, model=_TCL_MODEL, train=_TCL_TRAIN),
    "code": MethodPlan(
        steps=80,
        batch_size=32,
        # CoDe's word segments are the caption's class words: the benchmark's colours.
        model=(*_TCL_MODEL, "nouns.lexicon=benchmark:shapes"),
        train=_TCL_TRAIN,
    ),
    "vilseg": MethodPlan(
        steps=100,
        batch_size=32,
        # Both encoders start from the pretrained CLIP (ViL-Seg's paper preset also starts from CLIP).
        model=("vision_init=clip", "text_init=clip", "num_clusters=8", "global_size=64", "local_size=32"),
        train=("train.lr=1e-3", "train.warmup_steps=20"),
    ),
}


def _sets(settings: Sequence[str]) -> list[str]:
    return [part for setting in settings for part in ("--set", setting)]


@dataclass(frozen=True)
class Stage:
    """One textseg command of the quickstart. ``done`` is the file whose existence means the stage
    finished in an earlier, interrupted quickstart (None: always run); ``partial`` is a folder an
    interrupted stage leaves behind, removed before the stage runs again."""

    title: str
    argv: tuple[str, ...]
    done: Path | None = None
    partial: Path | None = None

    @property
    def finished(self) -> bool:
        """``done`` exists: a file, or a folder holding a JSON file (a record, a trainer state)."""
        done = self.done
        return done is not None and done.exists() and (done.is_file() or any(done.glob("*.json")))


@dataclass
class Quickstart:
    """The stages of one quickstart run in ``out`` (see the module docstring)."""

    out: Path
    seed: int = 0
    methods: tuple[str, ...] = tuple(METHOD_PLANS)
    stages: list[Stage] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHOD_PLANS]
        if unknown:
            raise ConfigError(
                f"quickstart --methods: {', '.join(unknown)} not known here (choose from {', '.join(METHOD_PLANS)})"
            )
        self.stages = self._plan()

    @property
    def data_root(self) -> Path:
        return self.out / "data"

    @property
    def random_clip(self) -> Path:
        return self.out / "clip-random"

    @property
    def results(self) -> Path:
        return self.out / "results"

    def checkpoint(self, method: str) -> Path:
        steps = CLIP_PLAN.steps if method == "clip" else METHOD_PLANS[method].steps
        return self.out / "runs" / method / "checkpoints" / f"step-{steps:08d}"

    def _training_data(self) -> str:
        return f"shapes:?n={TRAIN_SCENES}&seed={self.seed}&size={WORLD_CLIP['image_size']}"

    def run_dir(self, method: str) -> Path:
        return self.out / "runs" / method

    def _train(self, method: str, plan: MethodPlan, clip: Path) -> Stage:
        settings = (
            f"clip={clip}", *_WORLD_TRAINING, f"train.checkpoint_every={plan.steps}", f"train.seed={self.seed}",
            *plan.model, *plan.train,
        )  # fmt: skip
        argv = (
            "train", "--method", method, "--preset", "tiny",
            "--data", self._training_data(),
            "--steps", str(plan.steps), "--batch-size", str(plan.batch_size),
            *_sets(settings), "--output", str(self.run_dir(method)),
        )  # fmt: skip
        title = f"train {method} ({plan.steps} steps of {plan.batch_size})"
        return Stage(title, argv, done=self.checkpoint(method), partial=self.run_dir(method))

    def _bench(self, title: str, label: str, model: Sequence[str]) -> Stage:
        argv = (
            "bench", *model, "--dataset", "shapes", "--data-root", str(self.data_root),
            "--output", str(self.results / label),
        )  # fmt: skip
        return Stage(title, argv, done=self.results / label, partial=self.results / label)

    def _plan(self) -> list[Stage]:
        from textseg.registry import BENCHMARKS

        pretrained = self.checkpoint("clip")
        shapes = self.data_root / "shapes"
        stages = [
            Stage(
                f"write the shapes benchmark ({BENCHMARK_IMAGES} held-out scenes)",
                ("data", "synthetic", "shapes", "--out", str(self.data_root), "-n", str(BENCHMARK_IMAGES)),
                done=BENCHMARKS.get("shapes").layout.synthetic_marker(self.data_root),
                partial=shapes,
            ),
            self._train("clip", CLIP_PLAN, self.random_clip),
        ]
        for method in ("clip", "maskclip"):
            for label, clip in ((f"{method}-random", self.random_clip), (f"{method}-pretrained", pretrained)):
                model = ("--method", method, "--preset", "tiny", "--weights", str(clip))
                stages.append(self._bench(f"score {method} ({label})", label, model))
        for method in self.methods:
            stages.append(self._train(method, METHOD_PLANS[method], pretrained))
            # The run folder restores the method, its preset and the settings it trained with.
            stages.append(self._bench(f"score {method}", method, ("--weights", str(self.run_dir(method)))))
        stages.append(
            Stage(
                "rebuild the leaderboard",
                ("leaderboard", "--results", str(self.results), "--out", str(self.out / "leaderboard")),
            )
        )
        return stages

    def run(
        self, command: Callable[[Sequence[str]], int], echo: Callable[[str], None] = print
    ) -> pd.DataFrame:
        """Build the random CLIP, run every stage through ``command`` (the CLI's ``main``), and
        return the compact results table (:func:`results_table`).

        The models run on one thread: on a 2-core laptop the other core renders scenes in the data
        worker, and a second model thread only competes with it (measured on 2 cores: CLIP
        pretraining at 340 samples/s with one thread, 270 with two).
        """
        import torch

        marker = self.out / MARKER
        plan = {"seed": self.seed, "methods": list(self.methods)}
        if self.out.exists() and any(self.out.iterdir()):
            if not marker.is_file() or json.loads(marker.read_text(encoding="utf-8")) != plan:
                raise ConfigError(
                    f"quickstart --out {self.out} already exists and is not an interrupted quickstart with the same "
                    "--seed and --methods; choose another --out"
                )
            echo(f"[quickstart] continuing the interrupted quickstart in {self.out}: finished steps are kept")
        else:
            write_json(marker, plan)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._run(command, echo)
        finally:
            torch.set_num_threads(threads)

    def _run(self, command: Callable[[Sequence[str]], int], echo: Callable[[str], None]) -> pd.DataFrame:
        from textseg.testing.tiny_clip import build_tiny_clip

        start = time.perf_counter()
        if not (self.random_clip / "config.json").is_file():
            build_tiny_clip(self.random_clip, seed=self.seed, **WORLD_CLIP)
            echo(f"[quickstart] built a random tiny CLIP for the world in {self.random_clip}")
        for number, stage in enumerate(self.stages, 1):
            echo(
                f"\n[quickstart {number}/{len(self.stages)}] {stage.title}\n  $ {shlex.join(['textseg', *stage.argv])}"
            )
            if stage.finished:
                echo("  done in an earlier run: kept")
                continue
            if stage.partial is not None and stage.partial.exists():
                shutil.rmtree(stage.partial)  # an interrupted step: run it again from the start
            began = time.perf_counter()
            code = command(list(stage.argv))
            if code not in (0, None):
                raise ConfigError(f"quickstart stage {number} ({stage.title}) failed with exit code {code}")
            echo(f"  done in {time.perf_counter() - began:.0f} s")
        table = results_table(self.results)
        echo(f"\n[quickstart] finished in {time.perf_counter() - start:.0f} s; records in {self.results}")
        return table


#: What each record label of the quickstart is, for the compact table.
_DESCRIPTIONS = {
    "clip-random": "random CLIP (untrained)",
    "maskclip-random": "random CLIP (untrained)",
    "clip-pretrained": "CLIP pretrained on the captions",
    "maskclip-pretrained": "CLIP pretrained on the captions",
}


def results_table(results: Path) -> pd.DataFrame:
    """One row per quickstart record under ``results/<run>/``: the run's folder name, method,
    weights, mIoU, background IoU and the mean IoU of the colours, best first."""
    import pandas as pd

    from textseg.data.shapes import COLOUR_NAMES
    from textseg.evaluation.records import read_record

    rows = []
    for path in sorted(results.glob("*/*.json")):
        record = read_record(path)
        label = path.parent.name
        colours = [record.per_class_iou.get(name) for name in COLOUR_NAMES]
        present = [v for v in colours if v is not None]
        rows.append(
            {
                "run": label,
                "method": record.method,
                "weights": _DESCRIPTIONS.get(label, "trained on the captions, on the pretrained CLIP"),
                "mIoU": record.metrics["mIoU"],
                "background IoU": record.per_class_iou.get("background"),
                "colour mIoU": sum(present) / len(present) if present else None,
            }
        )
    table = pd.DataFrame(rows, columns=["run", "method", "weights", "mIoU", "background IoU", "colour mIoU"])
    return table.sort_values("mIoU", ascending=False, kind="stable").reset_index(drop=True)
