"""OpenAI-format CLIP files: safe reading (TorchScript too), exact conversion, lossless round trip."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from clip_reference import encode_image, encode_text, random_openai_state
from torch import nn

from textseg.clip import CLIPBackbone, backbone_state, load_clip
from textseg.clip.openai_format import hf_to_openai, openai_to_hf, read_openai_file
from textseg.errors import WeightsError
from textseg.testing.tiny_clip import ensure_tiny_clip
from textseg.weights import read_state_dict


def _module_tree(state: dict[str, torch.Tensor]) -> nn.Module:
    """An nn.Module whose parameters carry exactly the dotted names of ``state``."""

    class Holder(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Holder()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        if leaf == "attn_mask":
            module.register_buffer(leaf, value.clone())
        else:
            module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
    return root


def _save_torchscript(state: dict[str, torch.Tensor], path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(_module_tree(state), torch.zeros(1))
        torch.jit.save(scripted, str(path))
    return path


@pytest.fixture(scope="module")
def openai_state() -> dict[str, torch.Tensor]:
    # Stored in fp16 like OpenAI's released files; the loader upcasts, so the reference does too.
    return {k: v.half() for k, v in random_openai_state().items()}


@pytest.mark.parametrize("kind", ["torchscript", "state_dict"])
def test_openai_file_matches_the_original_layout(
    kind: str, openai_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "ViT-tiny.pt"
    archived = {
        **openai_state,
        "transformer.resblocks.0.attn_mask": torch.full((77, 77), float("-inf")).triu(1),
    }
    if kind == "torchscript":
        _save_torchscript(archived, path)
    else:
        torch.save(openai_state, path)
    assert read_openai_file(path).keys() >= openai_state.keys()
    model, tokenizer = load_clip(str(path), tokenizer=str(ensure_tiny_clip()))
    assert model.config.vision_config.num_attention_heads == 2 and model.config.vision_config.image_size == 64

    backbone = CLIPBackbone(model, tokenizer)
    reference = {k: v.float() for k, v in openai_state.items()}
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ids = backbone.text.tokenize(["a photo of a dog.", "a bad photo of many red circles next to the sky"])
    with torch.no_grad():
        torch.testing.assert_close(
            backbone.vision.global_embedding(images),
            encode_image(reference, images, heads=2),
            atol=1e-5,
            rtol=1e-4,
        )
        torch.testing.assert_close(
            backbone.text.encode(ids), encode_text(reference, ids, heads=2), atol=1e-5, rtol=1e-4
        )


def test_conversion_round_trip_is_lossless(openai_state: dict[str, torch.Tensor]) -> None:
    hf = openai_to_hf(openai_state)
    assert "vision_model.encoder.layers.1.self_attn.v_proj.bias" in hf and "visual_projection.weight" in hf
    back = hf_to_openai(hf)
    assert back.keys() == openai_state.keys()
    assert all(torch.equal(back[k], openai_state[k]) for k in openai_state)


def test_tiny_transformers_model_matches_the_original_layout() -> None:
    """The other direction: transformers weights renamed to OpenAI's layout compute the same embeddings."""
    model, tokenizer = load_clip("tiny")
    state = hf_to_openai(model.state_dict())
    assert torch.equal(
        openai_to_hf(state)["text_projection.weight"], model.state_dict()["text_projection.weight"]
    )
    backbone = CLIPBackbone(model, tokenizer)
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    ids = backbone.text.tokenize(["itap of a cat."])
    heads = model.config.vision_config.num_attention_heads
    with torch.no_grad():
        torch.testing.assert_close(
            backbone.vision.global_embedding(images), encode_image(state, images, heads)
        )
        torch.testing.assert_close(backbone.text.encode(ids), encode_text(state, ids, heads))


def test_backbone_state_accepts_both_layouts(openai_state: dict[str, torch.Tensor]) -> None:
    model, _ = load_clip("tiny")
    older = {**model.state_dict(), "text_model.embeddings.position_ids": torch.arange(77)[None]}
    ours = backbone_state(older)  # older transformers saved position_ids; they are not weights
    assert "vision.transformer.post_layernorm.weight" in ours and "text.projection.weight" in ours
    from_openai = backbone_state(hf_to_openai(model.state_dict()))
    assert from_openai.keys() == ours.keys()
    assert all(torch.equal(from_openai[k], ours[k]) for k in ours)


def test_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    not_clip = tmp_path / "other.pt"
    torch.save({"layer.weight": torch.zeros(2)}, not_clip)
    with pytest.raises(WeightsError, match="not an OpenAI CLIP checkpoint"):
        read_openai_file(not_clip)
    with pytest.raises(WeightsError, match="fit nowhere"):
        openai_to_hf({**random_openai_state(layers=1), "visual.extra": torch.zeros(1)})
    with pytest.raises(WeightsError, match="cannot load CLIP"):
        load_clip(str(tmp_path / "no-such-folder"))


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.target}",))


def test_torchscript_reader_never_runs_code_from_the_archive(tmp_path: Path) -> None:
    import pickle
    import zipfile

    target = tmp_path / "pwned"
    archive = tmp_path / "evil.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("evil/constants.pkl", pickle.dumps(()))
        zf.writestr("evil/data.pkl", pickle.dumps({"x": _Exploit(target)}))
    with pytest.raises(WeightsError, match="no tensors"):
        read_state_dict(archive)
    assert not target.exists()
