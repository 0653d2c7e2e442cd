"""CoDe's pieces against hand-computed values: BPE pseudo-labels (repeated and multi-token nouns with
the tiny tokenizer), the knowledge-guided and word-mask losses, word highlighting, the text
segmenter, the noun prompt and the training transform."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from textseg.api import SkipSample
from textseg.clip import CLIPBackbone
from textseg.methods.code import SPEC
from textseg.methods.code.labels import occurrences, word_labels
from textseg.methods.code.losses import knowledge_guided_loss, word_segmentation_loss
from textseg.methods.code.prompts import NounPrompt, highlight_words
from textseg.methods.code.text_segmenter import TextSegmenter
from textseg.text.templates import OPENAI80


@pytest.fixture(scope="module")
def clip() -> CLIPBackbone:
    return CLIPBackbone.load("tiny", text_cache=False)


# -- pseudo-labels ---------------------------------------------------------------------------------
def test_occurrences_cover_every_match_including_overlapping_ones() -> None:
    assert occurrences([0, 1, 2, 1, 2, 1], [1, 2]) == [1, 2, 3, 4]
    assert occurrences([1, 1, 1], [1, 1]) == [0, 1, 2]
    assert occurrences([1, 2], [1, 2, 3]) == [] and occurrences([1, 2], []) == []


def test_word_labels_on_repeated_and_multi_token_nouns(clip: CLIPBackbone) -> None:
    tokenizer = clip.text.tokenizer
    caption = "a dog and a cat near the grass and a dog"
    ids = clip.text.tokenize([caption])[0]
    tokens = tokenizer.convert_ids_to_tokens(ids[:15].tolist())
    # the tiny vocabulary splits "dog" and "cat" into two tokens each; "grass" is one
    assert tokens == [
        "<|startoftext|>", "a</w>", "do", "g</w>", "and</w>", "a</w>", "ca", "t</w>",
        "near</w>", "the</w>", "grass</w>", "and</w>", "a</w>", "do", "g</w>",
    ]  # fmt: skip

    def bpe(word: str) -> list[int]:
        return tokenizer(word, add_special_tokens=False)["input_ids"]

    labels = word_labels(ids, [bpe("dog"), bpe("grass")], [bpe(n) for n in ("cat", "dog", "grass")])
    expected = [-1] * 77
    for position in (2, 3, 13, 14):  # both "dog"s: the first selected noun
        expected[position] = 1
    expected[10] = 2  # "grass": the second selected noun
    expected[6] = expected[7] = 0  # "cat": another noun of the caption
    assert labels.tolist() == expected and labels.dtype == torch.long
    # a later selected noun overwrites an earlier one where they share tokens
    overlap = word_labels(ids, [bpe("dog"), [bpe("dog")[1]]], [])
    assert overlap[[2, 3, 13, 14]].tolist() == [1, 2, 1, 2]


def test_word_labels_stop_at_the_truncated_context(clip: CLIPBackbone) -> None:
    tokenizer = clip.text.tokenizer
    caption = "a red circle " * 30 + "and a cat"  # the cat is cut off at 77 tokens
    ids = clip.text.tokenize([caption])[0]
    cat = tokenizer("cat", add_special_tokens=False)["input_ids"]
    circle = tokenizer("circle", add_special_tokens=False)["input_ids"]
    labels = word_labels(ids, [cat, circle], [cat, circle])
    assert (labels == 1).sum() == 0
    assert (labels == 2).sum() == 2 * len(occurrences(ids.tolist(), circle)) // 2 > 0
    assert labels[0] == -1 and labels[76] == -1  # start and (forced) end token


# -- losses ----------------------------------------------------------------------------------------
def test_knowledge_guided_loss_is_one_minus_the_mean_cosine() -> None:
    nouns = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    reference = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    torch.testing.assert_close(knowledge_guided_loss(nouns, reference), torch.tensor(1 - (0.6 + 1.0) / 2))


def test_word_segmentation_loss_is_the_class_weighted_mean_over_labelled_tokens() -> None:
    logits = torch.tensor([[[0.0, 0.0, 0.0, 5.0], [1.0, 2.0, 0.0, 5.0], [-1.0, 0.5, 3.0, 5.0]]])  # [1, 3, 4]
    labels = torch.tensor([[0, 2, 1, -1]])

    def nll(column: int, label: int) -> float:
        values = logits[0, :, column].tolist()
        return -(values[label] - math.log(sum(math.exp(v) for v in values)))

    # token 0: "another noun" (weight 0.5); token 1: noun 2; token 2: noun 1; token 3 ignored
    expected = (0.5 * nll(0, 0) + nll(1, 2) + nll(2, 1)) / (0.5 + 1 + 1)
    torch.testing.assert_close(word_segmentation_loss(logits, labels, 0.5), torch.tensor(expected))
    unlabelled = logits.clone().requires_grad_(True)
    loss = word_segmentation_loss(unlabelled, torch.full((1, 4), -1))
    loss.backward()  # officially NaN; here 0 and still differentiable
    assert loss.item() == 0 and torch.equal(unlabelled.grad, torch.zeros_like(logits))


# -- word highlighting -----------------------------------------------------------------------------
def test_highlight_words_keeps_start_end_and_padding_tokens() -> None:
    tokens = torch.arange(12.0).view(1, 6, 2)
    prompt = torch.full((6, 2), -1.0)
    masks = torch.tensor([[0.1, 0.25, 0.5, 0.9, 0.3, 0.0]], requires_grad=True)
    out = highlight_words(tokens, masks, torch.tensor([3]), prompt)
    m = torch.tensor([1.0, 0.25, 0.5, 1.0, 1.0, 1.0]).view(1, 6, 1)  # start, end (3) and after: 1
    torch.testing.assert_close(out, m * tokens + (1 - m) * prompt)
    out.sum().backward()
    assert masks.grad[0, [0, 3, 4, 5]].tolist() == [0, 0, 0, 0] and (masks.grad[0, 1:3] != 0).all()


# -- the text segmenter ----------------------------------------------------------------------------
def test_text_segmenter_attention_starts_like_multihead_attention() -> None:
    torch.manual_seed(0)
    segmenter = TextSegmenter(width=64, embed_dim=64, layers=2, heads=8)
    assert segmenter.projection is None  # widths equal, as for ViT-B/16
    bound = math.sqrt(6 / (64 + 3 * 64))  # Xavier-uniform over the packed [3W, W] matrix
    for layer in segmenter.layers:
        attn = layer.self_attn
        packed = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        assert packed.abs().max() <= bound and packed.abs().max() > 0.95 * bound
        for bias in (attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias, attn.out_proj.bias):
            assert torch.equal(bias, torch.zeros_like(bias))
    assert segmenter.w.item() == 10.0 and segmenter.b.item() == 0.0


def test_text_segmenter_has_no_mask_no_positions_and_scores_each_captions_own_nouns() -> None:
    torch.manual_seed(1)
    segmenter = TextSegmenter(width=16, embed_dim=8, layers=2, heads=8, init_w=3.0, init_b=-1.0)
    hidden = torch.randn(2, 5, 16)
    tokens = segmenter.tokens(hidden)
    torch.testing.assert_close(tokens.norm(dim=-1), torch.ones(2, 5))
    # no position embedding: permuting positions permutes the outputs
    order = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(segmenter.tokens(hidden[:, order]), tokens[:, order])
    # no causal or padding mask: the last position changes the first one's output
    changed = hidden.clone()
    changed[:, -1] = torch.randn(2, 16)  # (a constant shift would vanish in the LayerNorm)
    assert not torch.allclose(segmenter.tokens(changed)[:, 0], tokens[:, 0])
    nouns = F.normalize(torch.randn(4, 8), dim=-1)  # order k * B + b: noun k of caption b
    logits = segmenter(hidden, nouns)
    assert logits.shape == (2, 3, 5)
    assert torch.equal(logits[:, 0], torch.zeros(2, 5))
    for k in range(2):
        for b in range(2):
            torch.testing.assert_close(logits[b, k + 1], 3.0 * tokens[b] @ nouns[k * 2 + b] - 1.0)


# -- the noun prompt -------------------------------------------------------------------------------
def test_noun_prompt_starts_from_the_token_embeddings_of_a_photo_of_x(clip: CLIPBackbone) -> None:
    prompt = NounPrompt(clip.text, n_ctx=16, init="A photo of")
    words = ["a</w>", "photo</w>", "of</w>"] + ["x</w>"] * 13
    ids = torch.tensor(clip.text.tokenizer.convert_tokens_to_ids(words))
    assert torch.equal(prompt.ctx, clip.text.token_embedding.weight[ids])
    assert prompt.ctx.requires_grad and prompt.noun_length(clip.text) == 61


@torch.no_grad()
def test_noun_prompt_at_init_is_the_text_embedding_of_the_spelled_out_sentence(clip: CLIPBackbone) -> None:
    prompt = NounPrompt(clip.text, n_ctx=16)
    names = ["cat", "traffic light", "hippopotamus"]  # one, two and many tokens
    out = prompt(clip.text, clip.text.tokenize(names, prompt.noun_length(clip.text)))
    sentences = [f"a photo of{' x' * 13} {name}" for name in names]
    expected = clip.text.encode_texts(sentences)
    torch.testing.assert_close(out, expected / expected.norm(dim=-1, keepdim=True))
    with torch.no_grad():
        prompt.ctx.add_(0.1)
    assert not torch.allclose(prompt(clip.text, clip.text.tokenize(names, 61)), out)


# -- the training transform ------------------------------------------------------------------------
def _sample(caption: str) -> dict:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8))
    return {"image": image, "caption": caption, "key": "0"}


def _decode(tower, ids: torch.Tensor) -> list[str]:
    """Token ids (start, text, end, zero padding) back to text."""
    return [tower.tokenizer.decode(row[1 : tower.eot_positions(row[None])[0]]).strip() for row in ids]


def test_transform_draws_two_nouns_and_labels_them_in_order() -> None:
    method = SPEC.create("tiny", {"nouns.lexicon": "dog,cat,grass,tree"})
    transform = pickle.loads(pickle.dumps(method.train_transform()))
    tower = method.clip.text
    random.seed(3)
    out = transform(_sample("a dog and a cat on the grass"))
    assert out["image"].shape == (3, 96, 96)
    assert (
        out["nouns"].shape == (2, 61)
        and out["kg_text"].shape == (2, 77)
        and out["word_labels"].shape == (77,)
    )
    chosen = _decode(tower, out["nouns"])
    assert len(set(chosen)) == 2 and set(chosen) <= {"dog", "cat", "grass"}
    assert torch.equal(out["nouns"], tower.tokenize(chosen, 61))
    assert torch.equal(out["text"], tower.tokenize(["a dog and a cat on the grass"])[0])
    for row, noun in zip(out["kg_text"], chosen):  # the noun in one of the 80 ImageNet templates
        assert any(torch.equal(row, ids) for ids in tower.tokenize([t.format(noun) for t in OPENAI80]))
    caption = out["text"].tolist()
    for k, noun in enumerate(chosen):
        positions = occurrences(caption, tower.tokenizer(noun, add_special_tokens=False)["input_ids"])
        assert (out["word_labels"][positions] == k + 1).all()
    other = ({"dog", "cat", "grass"} - set(chosen)).pop()
    positions = occurrences(caption, tower.tokenizer(other, add_special_tokens=False)["input_ids"])
    assert (out["word_labels"][positions] == 0).all()
    assert (out["word_labels"] >= 0).sum() == sum(
        len(tower.tokenizer(n, add_special_tokens=False)["input_ids"]) for n in ("dog", "cat", "grass")
    )


def test_transform_skips_captions_with_fewer_than_two_distinct_nouns() -> None:
    transform = SPEC.create("tiny", {"nouns.lexicon": "dog,cat"}).train_transform()
    for caption in ("a dog", "a dog and another dog", "nothing at all"):
        with pytest.raises(SkipSample) as skipped:
            transform(_sample(caption))
        assert skipped.value.reason == "fewer than 2 nouns"
