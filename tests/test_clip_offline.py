"""Offline: a hub id fails at once with the fix; an OpenAI-format file brings its own tokenizer; a
tokenizer that does not fit the text tower is refused."""

from __future__ import annotations

import json
import re
import time
import urllib.error
from pathlib import Path

import pytest
import torch

from textseg.clip import bpe, load_clip
from textseg.clip.bpe import check_tokenizer
from textseg.errors import WeightsError
from textseg.hub import hub_reachable
from textseg.testing.tiny_clip import ensure_tiny_clip

open_clip = pytest.importorskip("open_clip")

PROMPTS = [
    "a photo of a cat.",
    "itap of a potted plant.",
    "a bad photo of the tvmonitor, dining-table!",
    "café",
]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network and an empty Hugging Face cache (returned)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    hub_reachable.cache_clear()
    yield cache
    hub_reachable.cache_clear()


def _message_is_clean(text: str) -> None:
    assert not re.search(r"[.!?:]\s*[.!?]", text), f"doubled punctuation in: {text}"


def test_a_hub_id_offline_fails_at_once_with_the_settings_to_change(offline: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        load_clip("openai/clip-vit-base-patch16")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    for needed in ("openai/clip-vit-base-patch16", "--set clip=FOLDER_OR_FILE", "--weights", "--preset tiny"):
        assert needed in message
    _message_is_clean(message)


def test_an_unreachable_hub_counts_as_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    hub_reachable.cache_clear()
    try:
        with pytest.raises(WeightsError, match="cannot be reached") as info:
            load_clip("openai/clip-vit-large-patch14")
        _message_is_clean(str(info.value))
    finally:
        hub_reachable.cache_clear()


@pytest.fixture(scope="module")
def openai_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP in OpenAI's file format with CLIP's full 49,408-token vocabulary (no tokenizer)."""
    from textseg.clip.openclip import open_clip_module

    open_clip_module()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model("textseg-tiny-vit-quickgelu", pretrained=None, pretrained_text=False)
    path = tmp_path_factory.mktemp("openai") / "ViT-tiny.pt"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path


def test_an_openai_file_loads_offline_with_openais_tokenizer(offline: Path, openai_file: Path) -> None:
    model, tokenizer = load_clip(str(openai_file))
    assert len(tokenizer) == model.text_model.embeddings.token_embedding.num_embeddings == 49408
    from textseg.clip.text import tokenize

    assert torch.equal(tokenize(tokenizer, PROMPTS), open_clip.tokenize(PROMPTS))
    assert not any(offline.iterdir()), "nothing may be fetched into the Hugging Face cache"


def test_the_merges_file_can_be_given_by_path(offline: Path, openai_file: Path, monkeypatch) -> None:
    shipped = bpe.find_bpe_file()
    monkeypatch.setattr(bpe, "BPE_PACKAGES", ())  # as if open_clip were not installed
    with pytest.raises(WeightsError, match="--set tokenizer=") as info:
        load_clip(str(openai_file))
    _message_is_clean(str(info.value))
    _, tokenizer = load_clip(str(openai_file), tokenizer=str(shipped))
    from textseg.clip.text import tokenize

    assert torch.equal(tokenize(tokenizer, PROMPTS), open_clip.tokenize(PROMPTS))


def test_a_tokenizer_that_does_not_fit_the_text_tower_is_refused(openai_file: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="do not belong together") as info:
        load_clip(str(openai_file), tokenizer=str(ensure_tiny_clip()))  # ~800 tokens vs 49,408 rows
    assert "--set tokenizer=" in str(info.value)
    _message_is_clean(str(info.value))


def test_a_two_token_tokenizer_is_refused_even_if_the_sizes_agree(tmp_path: Path) -> None:
    """What transformers returned offline without an error: every word maps to the unknown id."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="cannot tokenise"):
        check_tokenizer(tokenizer, len(tokenizer), "a cache")


def test_bench_offline_with_the_hub_default_ends_in_one_clean_message(
    offline: Path, tmp_path: Path, capsys
) -> None:
    from textseg.cli import main
    from textseg.registry import BENCHMARKS

    spec = BENCHMARKS.get("voc21")
    spec.write_synthetic(tmp_path / "data", 1, seed=0)
    start = time.perf_counter()
    code = main(["bench", "--method", "sclip", "--dataset", "voc21", "--data-root", str(tmp_path / "data")])
    assert code != 0 and time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--set clip=FOLDER_OR_FILE" in err and "--preset tiny" in err
    _message_is_clean(err.strip().splitlines()[-1])


def test_offline_a_cached_hub_id_loads_from_the_cache(offline: Path) -> None:
    """The same hub id, once in the cache, loads offline without asking the network."""
    import shutil

    snapshot = offline / "models--textseg--tiny-clip" / "snapshots" / ("0" * 40)
    shutil.copytree(ensure_tiny_clip(), snapshot)
    (offline / "models--textseg--tiny-clip" / "refs").mkdir()
    (offline / "models--textseg--tiny-clip" / "refs" / "main").write_text("0" * 40)
    model, tokenizer = load_clip("textseg/tiny-clip")
    reference, _ = load_clip(str(ensure_tiny_clip()))
    assert torch.equal(model.visual_projection.weight, reference.visual_projection.weight)
    assert len(tokenizer) == model.text_model.embeddings.token_embedding.num_embeddings
