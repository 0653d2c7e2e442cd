"""The training loop: the learning-rate schedule and parameter groups (hand-computed), exact resume,
a NaN loss that stops cleanly, small checkpoints, and `textseg train` from the command line, on one
and on two processes."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_distribution
from safetensors.torch import load_file
from torch import nn

from textseg.cli import main
from textseg.testing.image_text import write_shards
from textseg.training.checkpoint import list_checkpoints
from textseg.training.config import TrainConfig
from textseg.training.optim import build_optimizer, build_scheduler, default_param_groups, lr_factor


# --------------------------------------------------------------------------------------------
# schedule and parameter groups
# --------------------------------------------------------------------------------------------
def test_lr_schedule_values_hand_computed() -> None:
    config = TrainConfig(steps=10, warmup_steps=4, lr=1e-3, min_lr=1e-4, warmup_start_factor=0.1)
    # warmup: 0.1 + 0.9 * s / 4; then 0.1 + 0.9 * (1 + cos(pi * (s - 4) / 6)) / 2
    expected = {0: 0.1, 2: 0.55, 4: 1.0, 7: 0.55, 10: 0.1, 12: 0.1}
    for step, factor in expected.items():
        assert lr_factor(step, config) == pytest.approx(factor, abs=1e-12), step
    assert lr_factor(5, config) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 6)))


def test_schedule_equals_the_official_linear_then_cosine_construction() -> None:
    """TCL: SequentialLR([LinearLR(1e-4, 1, W), CosineAnnealingLR(T - W, eta_min=min_lr)], [W])."""
    config = TrainConfig(steps=30, warmup_steps=8, lr=3e-4, min_lr=4e-5)
    ours = build_scheduler(torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=config.lr), config)
    reference_optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=config.lr)
    reference = torch.optim.lr_scheduler.SequentialLR(
        reference_optimizer,
        [
            torch.optim.lr_scheduler.LinearLR(reference_optimizer, 1e-4, 1.0, total_iters=8),
            torch.optim.lr_scheduler.CosineAnnealingLR(reference_optimizer, T_max=22, eta_min=4e-5),
        ],
        milestones=[8],
    )
    for _ in range(30):
        assert ours.get_last_lr()[0] == pytest.approx(reference.get_last_lr()[0], rel=1e-6)
        ours.optimizer.step()
        reference_optimizer.step()
        ours.step()
        reference.step()


class _Groups(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)  # weight decayed, bias not
        self.norm = nn.LayerNorm(2)  # 1-D weight and bias: not decayed
        self.scale = nn.Parameter(torch.tensor(1.0))  # 0-dim: decayed, as in TCL's code
        self.frozen = nn.Parameter(torch.ones(2, 2), requires_grad=False)  # kept (may be unfrozen later)


def test_param_groups_and_lr_scaled_by_global_batch(plugin_env: Path) -> None:
    module = _Groups()
    decay, no_decay = default_param_groups(module, 0.05)
    names = {id(p): n for n, p in module.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["frozen", "linear.weight", "scale"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == ["linear.bias", "norm.bias", "norm.weight"]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)

    from textseg_dummy_plugin import DUMMY

    tcl_like = TrainConfig(lr=3e-4, min_lr=4e-5, lr_scale_batch=4096, eps=1e-6)
    optimizer = build_optimizer(DUMMY.create("tiny"), tcl_like, global_batch=1024)  # 16 GPUs x 64
    assert optimizer.param_groups[0]["lr"] == pytest.approx(7.5e-5)  # TCL's effective peak lr
    assert optimizer.defaults["eps"] == 1e-6


def test_optional_trackers_name_their_extra_when_missing(tmp_path: Path) -> None:
    import importlib.util

    from textseg.errors import ConfigError
    from textseg.training.trackers import CSVTracker, build_trackers

    (csv,) = build_trackers(["csv"], tmp_path, resume_step=None)
    assert isinstance(csv, CSVTracker)
    with pytest.raises(ConfigError, match="unknown tracker 'mlflowx'"):
        build_trackers(["mlflowx"], tmp_path, None)
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ConfigError, match=r"pip install 'textseg\[tensorboard\]'"):
            build_trackers(["csv", "tensorboard"], tmp_path, None)


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
@pytest.fixture
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("shards")
    write_shards(folder, 3, 8, image_size=24)
    return f"{folder}/{{00000..00002}}.tar"


def _probe(overrides: dict[str, Any]) -> tuple[Any, Any]:
    from textseg_probe_plugin import PROBE

    settings = {
        "image_size": 16,
        "train.steps": 6,
        "train.batch_size": 3,
        "train.grad_accum": 2,
        "train.num_workers": 2,
        "train.shuffle_buffer": 5,
        "train.checkpoint_every": 3,
        "train.warmup_steps": 2,
        "train.lr": 0.01,
        "train.grad_clip": 0.5,
        "train.log_every": 1,
        **{(f"train.{k}" if k in TrainConfig.__dataclass_fields__ else k): v for k, v in overrides.items()},
    }
    resolved = PROBE.resolve("tiny", settings)
    torch.manual_seed(0)
    return PROBE.build(resolved.model), resolved.train


def _trainer(run_dir: Path, shards: str, resume: Path | None = None, **overrides: Any) -> Any:
    from textseg.training.trainer import Trainer

    method, config = _probe(overrides)
    return Trainer(method, config, shards, run_dir, run_info={"method": "probe"}, resume=resume)


def test_resume_is_bitwise_exact(plugin_env: Path, tmp_path: Path, shards: str) -> None:
    """6 steps in one go == 3 steps, a killed job, then resuming for 3 more (workers, buffer, RNG, accumulation)."""
    from textseg_probe_plugin import Interrupted

    straight = _trainer(tmp_path / "straight", shards).train()
    with pytest.raises(Interrupted):
        _trainer(tmp_path / "killed", shards, stop_at_step=3).train()
    assert [step for step, _ in list_checkpoints(tmp_path / "killed")] == [3]
    resumed = _trainer(
        tmp_path / "resumed", shards, resume=tmp_path / "killed/checkpoints/step-00000003"
    ).train()
    assert straight.checkpoint is not None and resumed.checkpoint is not None
    assert straight.checkpoint.name == resumed.checkpoint.name == "step-00000006"
    a, b = (
        load_file(straight.checkpoint / "weights.safetensors"),
        load_file(resumed.checkpoint / "weights.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    optimizers = [torch.load(r.checkpoint / "optimizer.bin", weights_only=True) for r in (straight, resumed)]
    for key, state in optimizers[0]["state"].items():
        assert torch.equal(state["exp_avg_sq"], optimizers[1]["state"][key]["exp_avg_sq"])
    data = [torch.load(r.checkpoint / "data_state_0.pt", weights_only=True) for r in (straight, resumed)]
    for x, y in zip(data[0]["states"], data[1]["states"]):
        assert torch.equal(x["cursors"], y["cursors"]) and torch.equal(x["buffer"], y["buffer"])
    first = load_file(tmp_path / "killed/checkpoints/step-00000003/weights.safetensors")
    assert not torch.equal(first["conv.weight"], a["conv.weight"])  # the last three steps did train


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    plugin_env: Path, tmp_path: Path, shards: str
) -> None:
    from textseg.training.trainer import TrainingDivergedError

    trainer = _trainer(tmp_path, shards, nan_from_step=4, checkpoint_every=2, num_workers=0, grad_accum=1)
    with pytest.raises(TrainingDivergedError) as info:
        trainer.train()
    message = str(info.value)
    assert "loss is nan at step 5" in message and "step-00000004 (after step 4" in message
    assert f"textseg train --resume {tmp_path / 'checkpoints/step-00000004'} --set train.lr=" in message
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 4]
    weights = load_file(tmp_path / "checkpoints/step-00000004/weights.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert all(torch.equal(weights[k], v) for k, v in trainer.method.trainable_state_dict().items())
    state = json.loads((tmp_path / "checkpoints/step-00000004/trainer_state.json").read_text())
    assert math.isfinite(state["loss"])


def test_the_last_good_checkpoint_skips_one_with_non_finite_weights(
    plugin_env: Path, tmp_path: Path, shards: str
) -> None:
    """A checkpoint whose weights are not finite (written by an older textseg, or damaged) is never
    the one the divergence message sends the user back to."""
    from safetensors.torch import save_file

    from textseg.training.trainer import TrainingDivergedError

    trainer = _trainer(tmp_path, shards, nan_from_step=4, checkpoint_every=2, num_workers=0, grad_accum=1)
    with pytest.raises(TrainingDivergedError):
        trainer.train()
    newest = tmp_path / "checkpoints/step-00000004/weights.safetensors"
    save_file({k: v * float("inf") for k, v in load_file(newest).items()}, str(newest))
    message = trainer._advice()
    assert "step-00000002 (after step 2" in message and "step-00000004" not in message


def test_checkpoints_leave_out_the_frozen_pretrained_part(
    plugin_env: Path, tmp_path: Path, shards: str
) -> None:
    result = _trainer(
        tmp_path, shards, frozen_size=256, steps=2, checkpoint_every=1, keep_last=1, num_workers=0
    ).train()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2]  # keep_last=1 pruned step 1
    assert not any(k.startswith("frozen.") for k in load_file(result.checkpoint / "weights.safetensors"))
    size = sum(f.stat().st_size for f in result.checkpoint.iterdir())
    assert size < 256 * 256 * 4 / 2, size  # the frozen matrix alone is 256 KiB


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_command_writes_checkpoints_that_bench_weights_accepts(
    plugin_env: Path, tmp_path: Path, shards: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from textseg.registry import METHODS
    from textseg.weights import load_weights

    out = tmp_path / "run"
    args = [
        "train",
        "--method",
        "dummy",
        "--preset",
        "tiny",
        "--data",
        shards,
        "--steps",
        "20",
        "--output",
        str(out),
    ]
    assert main([*args, "--batch-size", "4", "--set", "train.checkpoint_every=10"]) == 0
    assert [step for step, _ in list_checkpoints(out)] == [10, 20]
    assert "last checkpoint" in capsys.readouterr().out
    spec = METHODS.get("dummy")
    info = load_weights(spec.create("tiny"), spec, str(out / "checkpoints/step-00000020"))
    assert info.path.endswith("weights.safetensors")
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "step,name,value" and any(line.startswith("20,train/loss,") for line in metrics)

    assert main(args) == 2  # never overwrite a run
    assert "already exists" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--steps", "22", "--set", "train.weight_decay=1"]) == 2
    assert "differs from the run being resumed" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--steps", "22", "--set", "train.lr=0.001"]) == 0
    assert [step for step, _ in list_checkpoints(out)][-1] == 22
    run = json.loads((out / "run.json").read_text())
    assert run["train"]["steps"] == 22 and run["train"]["lr"] == 0.001  # a later --resume keeps both
    assert run["changes"] == [{"step": 20, "settings": {"train.steps": "22", "train.lr": "0.001"}}]
    logged = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    lrs = {int(step): float(value) for step, name, value in logged if name == "train/lr"}
    schedule = TrainConfig(**{k: run["train"][k] for k in ("steps", "lr", "min_lr", "warmup_steps")})
    assert lrs[22] == pytest.approx(0.001 * lr_factor(21, schedule))  # the new schedule from the resumed step


def test_resuming_a_damaged_checkpoint_names_the_file_and_the_previous_one(
    plugin_env: Path, tmp_path: Path, shards: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_safe_pickle import Mkdir

    trained = tmp_path / "trained"
    args = ["train", "--method", "dummy", "--preset", "tiny", "--data", shards, "--steps", "4"]
    args += ["--batch-size", "2", "--output", str(trained), "--set", "train.checkpoint_every=2"]
    assert main([*args, "--set", "train.num_workers=0"]) == 0
    marker = tmp_path / "ran"
    for damaged in ("weights.safetensors", "optimizer.bin", "random_states_0.pkl", "trainer_state.json"):
        out = tmp_path / damaged
        shutil.copytree(trained, out)
        newest = out / "checkpoints/step-00000004"
        if damaged == "random_states_0.pkl":  # an object that would run code if unpickled
            torch.save({"random_state": Mkdir(marker)}, newest / damaged)
        else:
            data = (newest / damaged).read_bytes()
            (newest / damaged).write_bytes(data[: len(data) // 2])
        capsys.readouterr()
        assert main(["train", "--resume", str(out), "--steps", "6"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(newest / damaged) in err, err
        assert f"--resume {out / 'checkpoints/step-00000002'}" in err, err
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_agree_on_parameters_even_after_unfreezing(
    plugin_env: Path, tmp_path: Path, shards: str
) -> None:
    site = write_distribution(
        tmp_path / "site",
        "textseg-probe-plugin",
        {"textseg.methods": {"probe": "textseg_probe_plugin:PROBE"}},
    )
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    env = {**__import__("os").environ}
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "textseg", "train", "--method", "probe", "--preset", "tiny", "--data", shards,
        "--steps", "4", "--batch-size", "3", "--output", str(tmp_path / "run"),
        "--set", "image_size=16", "--set", "train.num_workers=1", "--set", "train.lr=0.05",
        "--set", "unfreeze_at_step=2", "--set", f"dump_dir={dumps}",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = [[torch.load(dumps / f"rank{r}-step{s}.pt", weights_only=True) for s in range(4)] for r in (0, 1)]
    for step in range(4):
        assert all(torch.equal(state[0][step][k], state[1][step][k]) for k in state[0][step]), step
    assert torch.equal(state[0][0]["words.weight"], state[0][2]["words.weight"])  # frozen for two steps
    assert not torch.equal(state[0][2]["words.weight"], state[0][3]["words.weight"])  # then trained, in sync
    final = load_file(tmp_path / "run/checkpoints/step-00000004/weights.safetensors")
    assert not torch.equal(final["conv.weight"], state[0][3]["conv.weight"])
    assert (tmp_path / "run/checkpoints/step-00000004/data_state_1.pt").is_file()
