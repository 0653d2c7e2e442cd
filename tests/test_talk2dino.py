"""Talk2DINO: the attention-weighted head embeddings, head selection and loss, and the background
cleaning against numbers worked out from the official formulas; the converter; the presets."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from textseg.api import Vocabulary
from textseg.errors import ConfigError, WeightsError
from textseg.methods.talk2dino.alignment import alignment_loss, clean_background, head_embeddings
from textseg.registry import METHODS, PROTOCOLS

# Two images of two patches (C = 2) and two heads. Softmaxes over patches of the CLS logits:
# image 0: head 0 (ln 3, 0) -> (3/4, 1/4), head 1 (0, ln 3) -> (1/4, 3/4);
# image 1: head 0 (0, 0) -> (1/2, 1/2), head 1 (ln 3, 0) -> (3/4, 1/4).
TOKENS = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, -1.0]]])
LOGITS = torch.tensor([[[math.log(3), 0.0], [0.0, math.log(3)]], [[0.0, 0.0], [math.log(3), 0.0]]])


def test_head_embeddings_average_the_patches_with_each_heads_attention() -> None:
    # mean over the 2 patches of softmax weight x token
    expected = [[[3 / 8, 1 / 8], [1 / 8, 3 / 8]], [[1 / 2, 0.0], [1 / 2, 1 / 4]]]
    torch.testing.assert_close(head_embeddings(TOKENS, LOGITS), torch.tensor(expected))


def test_each_caption_aligns_with_its_best_head_in_a_symmetric_infonce_over_batch_squared() -> None:
    heads = head_embeddings(TOKENS.double(), LOGITS.double())  # the loss is small: float64 to compare
    text = torch.tensor([[1.0, 2.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss, index = alignment_loss(text, heads, logit_scale=1 / 0.07)
    # caption 0 (1, 2)/√5 vs image 0's heads (3, 1)/√10 and (1, 3)/√10: 5/√50 < 7/√50 -> head 1;
    # caption 1 (1, 0) vs image 1's heads (1, 0) and (2, 1)/√5: 1 > 2/√5 -> head 0.
    assert index.tolist() == [1, 0]
    # S_ij = t_i · v_j with v_0 = (1, 3)/√10, v_1 = (1, 0)
    s = [[7 / math.sqrt(50), 1 / math.sqrt(5)], [1 / math.sqrt(10), 1.0]]
    scale = 1 / 0.07

    def ce(row: list[float], target: int) -> float:
        return -scale * row[target] + math.log(sum(math.exp(scale * v) for v in row))

    rows = (ce(s[0], 0) + ce(s[1], 1)) / 2
    columns = (ce([s[0][0], s[1][0]], 0) + ce([s[0][1], s[1][1]], 1)) / 2
    assert loss.item() == pytest.approx((rows + columns) / 2 / 2**2, rel=1e-9)
    loss.backward()
    assert text.grad is not None and text.grad.abs().sum() > 0


def test_background_cleaning_follows_similarity_assignment_weighted() -> None:
    # One image, 1 x 2 patches, C = 2, two heads, two names.
    features = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # patch 0 = (2, 0), patch 1 = (0, 1)
    logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # raw CLS logits, head x patch
    text = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=-1)
    scores = torch.tensor([[[[0.6, 0.5]], [[0.55, 0.7]]]])
    # head embeddings: mean_p logit x feature, normalised: head 0 (1, 0), head 1 (0, 1)
    heads = [(1.0, 0.0), (0.0, 1.0)]
    maps = []
    for t in text.tolist():
        sims = [t[0] * h[0] + t[1] * h[1] for h in heads]
        w = [math.exp(v) / sum(math.exp(u) for u in sims) for v in sims]
        mixed = [w[0] * logits[0, 0, p].item() + w[1] * logits[0, 1, p].item() for p in range(2)]
        maps.append([math.exp(v) / sum(math.exp(u) for u in mixed) for v in mixed])
    low, high = min(min(m) for m in maps), max(max(m) for m in maps)
    lowest, highest = 0.5, 0.7
    flat = [[0.6, 0.5], [0.55, 0.7]]
    expected = [
        [(flat[n][p] + 0.2 * ((maps[n][p] - low) / max(high, high - low) * (highest - lowest) + lowest)) / 1.2
         for p in range(2)]
        for n in range(2)
    ]  # fmt: skip
    cleaned = clean_background(scores, features, logits, text, weight=0.2)
    torch.testing.assert_close(cleaned[0, :, 0], torch.tensor(expected))
    # images of a batch are cleaned independently (the official code takes one at a time)
    pair = clean_background(
        torch.cat([scores, scores.flip(1) * 0.5]),
        features.repeat(2, 1, 1, 1),
        logits.repeat(2, 1, 1),
        text,
        weight=0.2,
    )
    torch.testing.assert_close(pair[:1], cleaned)
    torch.testing.assert_close(pair[1:], clean_background(scores.flip(1) * 0.5, features, logits, text, 0.2))


@pytest.fixture(scope="module")
def spec():
    return METHODS.get("talk2dino")


def test_official_projection_converts_including_the_legacy_name(spec) -> None:
    method = spec.create("tiny")
    torch.manual_seed(0)
    official = {
        "linear_layer.weight": torch.randn(32, 32),
        "linear_layer.bias": torch.randn(32),
        "linear_layer2.weight": torch.randn(32, 32),
        "linear_layer2.bias": torch.randn(32),
    }
    converted = spec.convert_checkpoint(official, method)
    assert converted.keys() == method.trainable_state_dict().keys()
    torch.testing.assert_close(converted["proj.hidden_layers.0.weight"], official["linear_layer2.weight"])
    current = {k.replace("linear_layer2", "hidden_layers.0"): v for k, v in official.items()}
    assert spec.convert_checkpoint(current, method).keys() == converted.keys()
    with pytest.raises(WeightsError, match=r"visual_linear\.weight"):
        spec.convert_checkpoint({**official, "visual_linear.weight": torch.zeros(1)}, method)


def test_class_embeddings_average_clip_embeddings_before_the_projection(spec) -> None:
    method = spec.create("tiny").eval()
    with torch.no_grad():
        for p in method.proj.parameters():
            p.normal_()
    templates = ("a photo of a {}.", "art of the {}.")
    vocab = Vocabulary.from_names(["cat", "car, automobile"], templates)
    text = method.encode_vocabulary(vocab)
    assert text.embeddings.shape == (3, 32)  # one row per name
    clip = method.clip.text.encode_texts(["art of the car.", "a photo of a car."]).mean(0)
    torch.testing.assert_close(text.embeddings[1], F.normalize(method.proj(clip), dim=-1))
    # not the projection's average: the projection is not linear
    projected = F.normalize(
        method.proj(method.clip.text.encode_texts(["a photo of a car.", "art of the car."])), dim=-1
    )
    assert not torch.allclose(text.embeddings[1], F.normalize(projected.mean(0), dim=-1), atol=1e-3)


def test_presets_carry_the_released_evaluation_settings(spec) -> None:
    def resolved(preset: str, benchmark: str):
        return spec.resolve(preset, benchmark=benchmark).model

    paper = {b: resolved("paper", b) for b in ("voc21", "context60", "coco_object", "ade20k")}
    assert [paper[b].bg_clean for b in paper] == [True, False, True, False]
    assert {paper[b].bg_thresh for b in ("voc21", "context60", "coco_object")} == {0.55}
    assert all(m.pamr and m.vfm == "dinov2_vitb14_reg" for m in paper.values())
    assert (
        resolved("vitl", "voc21").bg_thresh == 0.54 and resolved("vitl", "voc21").vfm == "dinov2_vitl14_reg"
    )
    assert not resolved("paper-no-pamr", "voc21").pamr
    protocol = PROTOCOLS.get(spec.resolve("paper").protocol)
    assert (
        protocol.name == "talk2dino" and len(protocol.templates and PROTOCOLS.get("talk2dino").templates) > 0
    )
    train = spec.resolve("paper").train
    assert (train.lr, train.min_lr, train.weight_decay, train.batch_size) == (1e-4, 1e-4, 0.0, 128)


def test_training_sample_is_the_centre_crop_and_the_tokenised_caption(spec) -> None:
    from textseg.testing.contract import _training_samples

    method = spec.create("tiny")
    sample = _training_samples(1, seed=0)[0]
    out = method.train_transform()(sample)
    assert out["image"].shape == (3, 56, 56) and out["text"].shape == (77,)
    assert out["text"].tolist() == method.clip.text.tokenize([sample["caption"]])[0].tolist()


def test_segment_composes_the_official_steps(spec) -> None:
    from textseg.evaluation.pamr import PAMR
    from textseg.methods.talk2dino.model import pixels

    method = spec.create("tiny", {"pamr": False}).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in method.proj.parameters():
            p.normal_()
    text = method.encode_vocabulary(Vocabulary.from_names(["cat", "dog", "sky"]))
    images = torch.randn(2, 3, 56, 56)
    features = method.vfm(images, qkv=True)
    # CLS -> patch logits at the official fixed 0.125, whatever the head size (16 here)
    q, k = features.q[:, :, 0], features.k[:, :, features.num_prefix :]
    logits = torch.einsum("bhd,bhnd->bhn", q, k) * 0.125
    torch.testing.assert_close(method.attention_logits(features), logits)
    cosines = torch.einsum("bchw,nc->bnhw", F.normalize(features.patches, dim=1), text.embeddings)
    upsample = partial(F.interpolate, size=(56, 56), mode="bilinear", align_corners=True)
    torch.testing.assert_close(method.segment(images, text), upsample(cosines.sigmoid()))
    cleaned = clean_background(cosines.sigmoid(), features.patches, logits, text.embeddings, 0.2)
    method.reconfigure(bg_clean=True, pamr=True)
    expected = PAMR(2, (1, 2))(pixels(images), upsample(cleaned))
    torch.testing.assert_close(method.segment(images, text), expected)


def test_a_protocol_with_other_statistics_is_refused() -> None:
    """PAMR reads the windows back in RGB through ImageNet's statistics: a protocol normalising with
    CLIP's would give it wrong pixels without a word, so the pair is refused."""
    from textseg.evaluation.protocol import check_input_normalisation

    method = METHODS.get("talk2dino").create("tiny")
    check_input_normalisation(method, PROTOCOLS.get("talk2dino"))
    check_input_normalisation(method, PROTOCOLS.get("shapes"))  # ImageNet statistics too
    with pytest.raises(ConfigError, match="protocol 'sclip' gives mean"):
        check_input_normalisation(method, PROTOCOLS.get("sclip"))
