"""Every shipped method end to end through ``textseg bench`` on a synthetic VOC layout.

The training-free CLIP methods take ``--weights <CLIP folder>`` with their published preset (the
folder replaces the hub CLIP, so this runs offline); TCL takes a checkpoint in the official
repository's naming on top of the tiny CLIP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tcl_official import official_state
from test_code_model import _save as save_like_code
from test_code_model import official_state as code_official_state

from textseg.cli import main
from textseg.evaluation.records import read_record
from textseg.io import file_digest
from textseg.registry import BENCHMARKS, METHODS
from textseg.testing.tiny_clip import ensure_tiny_clip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voc")
    spec = BENCHMARKS.get("voc21")
    spec.write_synthetic(root, 2, seed=3)
    return root


def _bench(method: str, root: Path, out: Path, *extra: str, dataset: str = "voc21") -> Path:
    args = ["bench", "--method", method, "--dataset", dataset, "--data-root", str(root)]
    assert main([*args, "--output", str(out), "--num-workers", "0", *extra]) == 0
    (path,) = out.glob("*.json")
    return path


@pytest.mark.parametrize("method", ["maskclip", "sclip", "clearclip", "naclip"])
def test_training_free_methods_bench_with_clip_weights(method: str, voc_root: Path, tmp_path: Path) -> None:
    clip = ensure_tiny_clip()
    record = read_record(_bench(method, voc_root, tmp_path, "--weights", str(clip)))
    assert (record.method, record.preset, record.benchmark, record.num_images) == (
        method,
        "paper",
        "voc21",
        2,
    )
    assert record.config["clip"] == str(clip)
    assert record.protocol == METHODS.get(method).presets["paper"].protocol
    assert record.weights is not None
    assert record.weights["sha256"] == file_digest(clip / "model.safetensors")
    assert 0 <= record.metrics["mIoU"] <= 100 and len(record.per_class_iou) == 21


def test_proxyclip_benches_with_clip_weights_and_a_proxy_file(voc_root: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from textseg.backbones import load_vfm

    proxy = tmp_path / "dino8.safetensors"  # a proxy checkpoint file, as --set vfm=NAME@PATH takes it
    save_file({k: v.contiguous() for k, v in load_vfm("tiny-dino8").model.state_dict().items()}, str(proxy))
    clip = ensure_tiny_clip()
    out = tmp_path / "out"
    record = read_record(
        _bench("proxyclip", voc_root, out, "--weights", str(clip), "--set", f"vfm=tiny-dino8@{proxy}")
    )
    assert (record.method, record.preset, record.protocol, record.num_images) == (
        "proxyclip",
        "paper",
        "proxyclip",
        2,
    )
    assert record.config["vfm"] == f"tiny-dino8@{proxy}" and record.config["bg_thresh"] == 0.2
    assert 0 <= record.metrics["mIoU"] <= 100 and len(record.per_class_iou) == 21


def test_tcl_benches_an_official_format_checkpoint(voc_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = METHODS.get("tcl").create("tiny")
    for p in trained.parameters():  # not the initial values, so loading them matters
        p.data.add_(0.01 * torch.randn_like(p))
    checkpoint = tmp_path / "tcl.pth"
    torch.save({"model": official_state(trained)}, checkpoint)
    path = _bench("tcl", voc_root, tmp_path / "out", "--weights", str(checkpoint), "--set", "clip=tiny")
    record = read_record(path)
    assert record.weights == {
        "source": str(checkpoint),
        "path": str(checkpoint),
        "sha256": file_digest(checkpoint),
    }
    assert record.config["pamr"] is True and record.config["bg_thresh"] == 0.4  # the paper preset
    assert 0 <= record.metrics["mIoU"] <= 100


def test_code_benches_an_official_format_checkpoint_on_ade20k(tmp_path: Path) -> None:
    ade = BENCHMARKS.get("ade20k")
    ade.write_synthetic(tmp_path / "data", 2, seed=4)
    torch.manual_seed(0)
    trained = METHODS.get("code").create("tiny")
    for p in trained.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    checkpoint = save_like_code(tmp_path, code_official_state(trained))  # with a pickled config object
    out = tmp_path / "out"
    path = _bench(
        "code", tmp_path / "data", out, "--weights", str(checkpoint), "--set", "clip=tiny", dataset="ade20k"
    )
    record = read_record(path)
    assert (record.benchmark, record.preset, record.num_images) == ("ade20k", "paper", 2)
    assert record.weights is not None and record.weights["sha256"] == file_digest(checkpoint)
    assert len(record.per_class_iou) == 150


def test_vilseg_benches_its_tiny_preset(voc_root: Path, tmp_path: Path) -> None:
    record = read_record(_bench("vilseg", voc_root, tmp_path, "--preset", "tiny"))
    assert record.method == "vilseg" and record.weights == {"kind": "random-init"} and record.num_images == 2


def test_groupvit_benches_an_official_format_checkpoint_under_its_protocol(
    voc_root: Path, tmp_path: Path
) -> None:
    from groupvit_official import official_state

    torch.manual_seed(0)
    trained = METHODS.get("groupvit").create("tiny")
    for p in trained.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    checkpoint = tmp_path / "group_vit.pth"
    torch.save({"model": official_state(trained), "epoch": 30}, checkpoint)
    args = ("--preset", "tiny", "--protocol", "groupvit", "--weights", str(checkpoint))
    record = read_record(_bench("groupvit", voc_root, tmp_path / "out", *args))
    assert (record.protocol, record.num_images, len(record.per_class_iou)) == ("groupvit", 2, 21)
    assert record.weights is not None and record.weights["sha256"] == file_digest(checkpoint)


@pytest.mark.parametrize("method", ["scclip", "resclip"])
def test_training_free_methods_with_layer_indices_bench_their_tiny_preset(
    method: str, voc_root: Path, tmp_path: Path
) -> None:
    """SC-CLIP's and ResCLIP's paper presets name layers of a 12-block CLIP; ``tiny`` fits the 3-block one.
    One image: ResCLIP's first pass runs PAMR on every name over the whole VOC image, which is slow on CPU."""
    record = read_record(_bench(method, voc_root, tmp_path, "--preset", "tiny", "--limit", "1"))
    assert (record.method, record.preset, record.num_images) == (method, "tiny", 1)
    assert record.protocol == METHODS.get(method).presets["paper"].protocol
    assert record.config["bg_thresh"] == METHODS.get(method).presets["paper"].benchmarks["voc21"]["bg_thresh"]
    assert 0 <= record.metrics["mIoU"] <= 100 and len(record.per_class_iou) == 21


def test_clipdinoiser_benches_official_heads_under_its_protocol(voc_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    heads = METHODS.get("clipdinoiser").create("tiny")
    names = {"correlation_head": "obj_proj", "background_head": "bkg_decoder"}
    official = {
        f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v + 0.01
        for k, v in heads.trainable_state_dict().items()
    }
    checkpoint = tmp_path / "last.pt"
    torch.save({"epoch": 99, "model_state_dict": official}, checkpoint)  # the official train.py format
    record = read_record(
        _bench("clipdinoiser", voc_root, tmp_path / "out", "--preset", "tiny", "--weights", str(checkpoint))
    )
    assert (record.protocol, record.num_images, len(record.per_class_iou)) == ("clipdinoiser", 2, 21)
    assert record.config["found"] is True and record.weights is not None
    assert 0 <= record.metrics["mIoU"] <= 100


def test_talk2dino_benches_an_official_projection_file(voc_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = METHODS.get("talk2dino").create("tiny")
    official = {  # the released file's layout: a plain ProjectionLayer state dict, older hidden-layer name
        key.removeprefix("proj.").replace("hidden_layers.0", "linear_layer2"): value
        + 0.01 * torch.randn_like(value)
        for key, value in trained.trainable_state_dict().items()
    }
    checkpoint = tmp_path / "vitb_mlp_infonce.pth"
    torch.save(official, checkpoint)
    record = read_record(
        _bench("talk2dino", voc_root, tmp_path / "out", "--preset", "tiny", "--weights", str(checkpoint))
    )
    assert (record.protocol, record.num_images, len(record.per_class_iou)) == ("talk2dino", 2, 21)
    assert record.config["bg_clean"] is True and record.config["bg_thresh"] == 0.55  # VOC's released settings
    assert record.weights is not None and record.weights["sha256"] == file_digest(checkpoint)
