"""Text tower: tokens, the pieces CoDe needs, template averaging, synonyms and the embedding cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from textseg.clip import CLIPBackbone
from textseg.clip.text_cache import TextEmbeddingCache
from textseg.errors import ConfigError
from textseg.text.synonyms import max_over_names
from textseg.text.templates import OPENAI80, TCL9, get_templates


@pytest.fixture(scope="module")
def clip() -> CLIPBackbone:
    return CLIPBackbone.load("tiny", text_cache=False)


def test_tokenize_follows_openai_layout(clip: CLIPBackbone) -> None:
    text = clip.text
    ids = text.tokenize(["a photo of a dog.", "dog " * 200])
    tok = text.tokenizer
    assert ids.shape == (2, 77)
    short = ids[0].tolist()
    end = short.index(tok.eos_token_id)
    assert short[0] == tok.bos_token_id and all(i == 0 for i in short[end + 1 :])  # zero padding
    assert ids[1, -1] == tok.eos_token_id and ids[1, 0] == tok.bos_token_id  # truncated, end kept last
    assert text.eot_positions(ids).tolist() == [end, 76]


@torch.no_grad()
def test_the_pieces_codes_needs_recompose_the_embedding(clip: CLIPBackbone) -> None:
    text = clip.text
    ids = text.tokenize(["a photo of a cat.", "red circle"])
    eot = text.eot_positions(ids)
    expected = text.encode(ids)
    torch.testing.assert_close(text.encode_embeddings(text.token_embedding(ids), eot), expected)
    hidden = text.hidden_states(ids)
    assert hidden.shape == (2, 77, text.token_embedding.embedding_dim)
    rows = hidden[torch.arange(2), eot]
    torch.testing.assert_close(text.projection(text.transformer.final_layer_norm(rows)), expected)
    # causal: tokens after the end do not change the end-of-text embedding
    changed = ids.clone()
    changed[:, -1] = 5
    torch.testing.assert_close(text.encode_embeddings(text.token_embedding(changed), eot), expected)


@torch.no_grad()
def test_template_averaging_modes(clip: CLIPBackbone) -> None:
    text = clip.text
    names, templates = ["dog", "grass"], ["a photo of a {}.", "art of the {}.", "itap of a {}."]
    prompts = text.encode_texts([t.format(n) for n in names for t in templates]).view(2, 3, -1)
    raw = text.encode_classes(names, templates, "raw")
    unit = text.encode_classes(names, templates, "unit")
    torch.testing.assert_close(raw, F.normalize(prompts.mean(1), dim=-1))
    torch.testing.assert_close(unit, F.normalize(F.normalize(prompts, dim=-1).mean(1), dim=-1))
    assert not torch.allclose(raw, unit)
    torch.testing.assert_close(raw.norm(dim=-1), torch.ones(2))
    with pytest.raises(ConfigError, match="raw, unit"):
        text.encode_classes(names, templates, "mean")


@torch.no_grad()
def test_embedding_cache_hits_across_instances_and_misses_on_other_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = CLIPBackbone.load("tiny", text_cache=False)
    first.text.cache = TextEmbeddingCache(tmp_path)
    names, templates = ["cat", "sky"], TCL9
    expected = first.text.encode_classes(names, templates)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    second = CLIPBackbone.load("tiny", text_cache=False)
    second.text.cache = TextEmbeddingCache(tmp_path)  # empty memory: must come from disk

    def fail(texts: object) -> None:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(second.text, "encode_texts", fail)
    assert torch.equal(second.text.encode_classes(names, templates), expected)
    monkeypatch.undo()
    # other names, other mode, other weights: misses
    assert second.text.encode_classes(names, templates, "unit").shape == expected.shape
    second.text.projection.weight.mul_(2.0)
    second.text.projection.weight.data[0, 0] += 1.0
    assert not torch.allclose(second.text.encode_classes(names, templates), expected)
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_max_over_names_reduces_synonyms_to_classes() -> None:
    scores = torch.tensor([[0.1, 0.7, 0.3, 0.2], [0.5, 0.1, 0.9, 0.0]]).view(2, 4, 1, 1)
    # classes: 0 <- names 0, 2 ; 1 <- names 1 ; 2 <- name 3
    out = max_over_names(scores, [0, 1, 0, 2], 3)
    assert out.shape == (2, 3, 1, 1)
    assert torch.equal(out.flatten(1), torch.tensor([[0.3, 0.7, 0.2], [0.9, 0.1, 0.0]]))
    assert max_over_names(scores, [0, 1, 2, 3], 4) is scores


def test_template_sets() -> None:
    assert get_templates("openai80") == OPENAI80 and len(set(OPENAI80)) == 80
    assert all(t.count("{}") == 1 for t in OPENAI80)
    assert OPENAI80[0] == "a bad photo of a {}." and OPENAI80[-1] == "a tattoo of the {}."
    assert set(TCL9[:7]) <= set(OPENAI80)  # TCL's "sub-ImageNet" seven are a subset
