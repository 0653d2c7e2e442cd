"""No file textseg reads runs code: crafted pickles in every format torch writes, damaged files, and
the tensors that must still come back exactly (compared with ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import os
import pickle
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from textseg import safe_pickle
from textseg.cli import main
from textseg.errors import WeightsError
from textseg.weights import read_state_dict


class Mkdir:
    """Unpickling this object calls ``os.mkdir(path)``: the marker tells whether any code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.path,))


class EvalMagic:
    """Unpickled with plain pickle this runs ``os.mkdir`` *and* returns torch's legacy magic number,
    so torch's legacy reader would go on and load the rest of the file as if nothing happened."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (eval, (f"__import__('os').mkdir({self.path!r}) or {safe_pickle.LEGACY_MAGIC}",))


STATE = OrderedDict(
    weight=torch.arange(6, dtype=torch.float32).reshape(2, 3),
    half=torch.tensor([1.5, -2.0], dtype=torch.float16),
    brain=torch.tensor([0.25, 3.0], dtype=torch.bfloat16),
    mask=torch.tensor([True, False, True]),
    index=torch.tensor([7, -1], dtype=torch.int64),
    wide=torch.tensor([65000, 3], dtype=torch.uint16),  # no legacy storage class: rebuilt with v3
)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _legacy_with_evil_header(path: Path, marker: Path) -> None:
    """A legacy-format checkpoint whose first pickle (the magic number) is replaced by EvalMagic."""
    torch.save(STATE, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    header = pickle.dumps(safe_pickle.LEGACY_MAGIC, protocol=2)
    assert data.startswith(header)
    path.write_bytes(pickle.dumps(EvalMagic(marker), protocol=2) + data[len(header) :])


@pytest.mark.parametrize("legacy", [False, True])
def test_tensors_come_back_exactly_in_both_formats(tmp_path: Path, legacy: bool) -> None:
    path = tmp_path / "w.pth"
    shared = torch.arange(12.0).reshape(3, 4)
    state = {**STATE, "t": shared.t(), "row": shared[1], "param": torch.nn.Parameter(torch.ones(2))}
    if legacy:
        del state["wide"]  # torch itself cannot read a uint16 tensor back from the legacy format
    torch.save({"state_dict": state, "step": 3}, path, _use_new_zipfile_serialization=not legacy)
    tensors, ignored = read_state_dict(path)
    expected = torch.load(path, weights_only=True)["state_dict"]
    assert ignored == [] and _same(tensors, {k: v.detach() for k, v in expected.items()})
    assert tensors["t"].stride() == (1, 4)  # views keep their layout


def test_a_pickled_object_in_a_checkpoint_is_never_built_and_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    for legacy in (False, True):
        path = tmp_path / f"ckpt-{legacy}.pth"
        torch.save({"model": STATE, "evil": Mkdir(marker)}, path, _use_new_zipfile_serialization=not legacy)
        tensors, ignored = read_state_dict(path)
        assert _same(tensors, STATE) and ignored == ["posix.mkdir"]
        assert "posix.mkdir" in capsys.readouterr().err
    assert not marker.exists()


def test_a_plain_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker, path = tmp_path / "ran", tmp_path / "x.pth"
    path.write_bytes(pickle.dumps(Mkdir(marker)))
    with pytest.raises(
        WeightsError, match=r"x\.pth is not a PyTorch file .*posix\.mkdir.*nothing in it was run"
    ):
        read_state_dict(path)
    assert not marker.exists()


def test_a_legacy_file_with_an_evil_header_is_refused_without_running_it(tmp_path: Path) -> None:
    marker, path = tmp_path / "ran", tmp_path / "legacy.pth"
    _legacy_with_evil_header(path, marker)
    with pytest.raises(WeightsError, match="not a PyTorch file"):
        read_state_dict(path)
    assert not marker.exists()


def test_rng_and_optimizer_states_round_trip(tmp_path: Path) -> None:
    """What the trainer's checkpoints hold: NumPy / Python RNG states, optimizer and scheduler state."""
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], betas=(0.9, 0.95))
    param.grad = torch.ones(3)
    optimizer.step()
    value = {
        "random_state": random.getstate(),
        "numpy_random_seed": np.random.get_state(),
        "torch_manual_seed": torch.get_rng_state(),
        "optimizer": optimizer.state_dict(),
        "scalar": np.float64(2.5),
        "tags": {"a", "b"},
    }
    torch.save(value, tmp_path / "state.pkl")
    loaded = safe_pickle.load(tmp_path / "state.pkl")
    assert loaded.ignored == ()
    got = loaded.value
    assert got["random_state"] == value["random_state"] and got["tags"] == {"a", "b"}
    assert got["numpy_random_seed"][0] == "MT19937"
    assert np.array_equal(got["numpy_random_seed"][1], value["numpy_random_seed"][1])
    assert torch.equal(got["torch_manual_seed"], value["torch_manual_seed"])
    assert got["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert torch.equal(got["optimizer"]["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert got["scalar"] == 2.5


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".safetensors"])
@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated"])
def test_damaged_files_end_in_one_line_naming_the_file(tmp_path: Path, suffix: str, damage: str) -> None:
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({"w": torch.ones(64)}, str(path))
    else:
        torch.save({"w": torch.ones(64)}, path, _use_new_zipfile_serialization=suffix == ".pth")
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "garbage": os.urandom(300), "truncated": data[: len(data) // 2]}[damage])
    with pytest.raises(WeightsError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_bench_with_crafted_weights_runs_no_code(
    bench_inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The three attacks measured in issue 14, through `textseg bench --weights`."""
    marker = tmp_path / "ran"
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps(Mkdir(marker)))
    legacy = tmp_path / "legacy.pth"
    _legacy_with_evil_header(legacy, marker)
    folder = tmp_path / "folder"
    folder.mkdir()
    from safetensors.torch import load_file

    good = load_file(str(bench_inputs["weights"]))
    torch.save({"model": good, "evil": Mkdir(marker)}, folder / "pytorch_model.bin")
    common = ["bench", "--method", "dummy", "--dataset", "toy", "--data-root", str(bench_inputs["root"])]
    common += ["--output", str(tmp_path / "records"), "--num-workers", "0"]
    for weights in (plain, legacy):
        assert main([*common, "--weights", str(weights)]) == 2
        err = capsys.readouterr().err
        assert f"--weights {weights}" in err and "not a PyTorch file" in err and "Traceback" not in err
    assert main([*common, "--weights", str(folder)]) == 0  # a clean load: the tensors, nothing else
    assert "posix.mkdir" in capsys.readouterr().err
    assert not marker.exists()
