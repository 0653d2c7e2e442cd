"""Weights: safe reading (no pickled code runs), key checking with clear lists, atomic saving."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch

from textseg.api import MethodSpec, SegMethod
from textseg.errors import WeightsError
from textseg.weights import check_and_load, read_state_dict, resolve_weights, save_weights


class NotATensor:
    """Stands for a pickled config object (CoDe's checkpoints hold an OmegaConf DictConfig)."""

    def __init__(self) -> None:
        self.lr = 1e-3


def _method(plugin_env: Path) -> tuple[MethodSpec, SegMethod]:
    from textseg.registry import METHODS

    return METHODS.get("dummy"), METHODS.get("dummy").create("tiny")


def test_reads_checkpoints_holding_pickled_objects_without_running_them(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    state = collections.OrderedDict(w=torch.ones(2))
    torch.save({"model": state, "config": NotATensor(), "step": 5}, path)
    tensors, ignored = read_state_dict(path)
    assert list(tensors) == ["w"] and torch.equal(tensors["w"], torch.ones(2))
    assert ignored == [f"{__name__}.NotATensor"]


def test_check_and_load_lists_keys_that_do_not_fit(plugin_env: Path) -> None:
    _, method = _method(plugin_env)
    state = dict(method.state_dict())
    state["extra.weight"] = torch.zeros(1)
    del state["conv.bias"]
    state["words.weight"] = torch.zeros(3, 3)
    with pytest.raises(WeightsError) as info:
        check_and_load(method, state, "test.pth")
    message = str(info.value)
    assert (
        "extra.weight" in message and "conv.bias" in message and "words.weight: checkpoint (3, 3)" in message
    )


def test_save_then_resolve_folder_then_load(plugin_env: Path, tmp_path: Path) -> None:
    spec, method = _method(plugin_env)
    save_weights(method, tmp_path / "ckpt" / "weights.safetensors")
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["weights.safetensors"]  # no temp file left
    path = resolve_weights(spec, str(tmp_path / "ckpt"))
    other = spec.create("tiny")
    tensors, _ = read_state_dict(path)
    check_and_load(other, tensors, str(path))
    assert torch.equal(other.conv.weight, method.conv.weight)


def test_missing_weights_name_the_source(plugin_env: Path, tmp_path: Path) -> None:
    spec, _ = _method(plugin_env)
    with pytest.raises(
        WeightsError, match="no such file or folder, and not a released checkpoint of 'dummy'"
    ):
        resolve_weights(spec, str(tmp_path / "nope.pth"))


def test_a_checkpoint_fetched_by_hand_is_read_from_the_cache_or_explained(
    plugin_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from textseg.api import Checkpoint

    spec, _ = _method(plugin_env)
    drive = "https://drive.google.com/file/d/ID/view"
    spec = dataclasses.replace(spec, checkpoints={"official": Checkpoint(drive, manual_filename="model.pth")})
    monkeypatch.setenv("TEXTSEG_CACHE", str(tmp_path))
    expected = tmp_path / "weights" / "dummy" / "model.pth"
    with pytest.raises(WeightsError) as info:
        resolve_weights(spec, "official")  # nothing is downloaded: the message says what to do
    assert drive in str(info.value) and str(expected) in str(info.value)
    expected.parent.mkdir(parents=True)
    torch.save({"w": torch.ones(1)}, expected)
    assert resolve_weights(spec, "official") == expected
