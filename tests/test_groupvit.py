"""GroupViT: the distinctive steps against numbers computed by hand, the losses against their formula,
the converters, the protocol's vocabulary and the training sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from eval_helpers import ChannelScores, ThresholdConfig, raw_protocol
from groupvit_official import official_state

from textseg.api import TextState, Vocabulary
from textseg.contrastive import clip_loss
from textseg.errors import WeightsError
from textseg.evaluation.evaluator import evaluate
from textseg.methods.groupvit.grouping import (
    background,
    gather_groups,
    group_class_probs,
    gumbel_assignment,
    hard_assignment,
    pixel_groups,
)
from textseg.methods.groupvit.losses import multi_label_loss
from textseg.registry import BENCHMARKS, METHODS, PROTOCOLS
from textseg.testing.contract import _training_samples


def _softmax2(a: float, b: float) -> tuple[float, float]:
    return math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b))


# Two groups (dim -2) x three image tokens.
LOGITS = [[[2.0, 0.0, 1.0], [0.0, 1.0, 1.5]]]
WEIGHTS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])


def test_hard_assignment_is_the_argmax_one_hot_forward_and_the_softmax_gradient_backward() -> None:
    logits = torch.tensor(LOGITS, requires_grad=True)
    assigned = hard_assignment(logits)
    torch.testing.assert_close(assigned.detach(), torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]]))
    (assigned * WEIGHTS).sum().backward()
    # d/dl_g of sum_h w_h p_h = p_g (w_g - sum_h w_h p_h), column by column
    p0, p1 = _softmax2(2.0, 0.0)
    q0, q1 = _softmax2(1.0, 1.5)
    expected = [[p0 * p1, 0.0, -2 * q0 * q1], [-p0 * p1, 0.0, 2 * q0 * q1]]
    torch.testing.assert_close(logits.grad, torch.tensor([expected]))
    soft = torch.tensor(LOGITS, requires_grad=True)
    (soft.softmax(-2) * WEIGHTS).sum().backward()
    torch.testing.assert_close(logits.grad, soft.grad)


def test_gumbel_assignment_adds_the_noise_and_divides_by_tau() -> None:
    logits = torch.tensor(LOGITS, requires_grad=True)
    noise = torch.tensor([[[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]])  # moves token 1 to group 0
    assigned = gumbel_assignment(logits, tau=0.5, noise=noise)
    torch.testing.assert_close(assigned.detach(), torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]))
    (assigned * WEIGHTS).sum().backward()
    p0, p1 = _softmax2(2.0 / 0.5, 0.0)
    assert logits.grad[0, 0, 0].item() == pytest.approx(p0 * p1 / 0.5, rel=1e-5)
    # drawn noise: a different one-hot than the argmax for some tokens, always one-hot
    torch.manual_seed(0)
    drawn = gumbel_assignment(torch.zeros(1, 4, 500)).detach()
    torch.testing.assert_close(drawn.sum(1), torch.ones(1, 500))
    assert len(torch.unique(drawn.argmax(1))) == 4


# Stage 1: 4 tokens on a 2x2 grid over 2 groups; stage 2: those 2 groups over 3 final groups.
STAGE1 = torch.tensor([[[0.9, 0.6, 0.2, 0.5], [0.1, 0.4, 0.8, 0.5]]])
STAGE2 = torch.tensor([[[0.7, 0.1], [0.2, 0.3], [0.1, 0.6]]])


def test_pixels_take_the_argmax_of_the_chained_soft_maps_upsampled() -> None:
    # token 0: 0.9 [.7 .2 .1] + 0.1 [.1 .3 .6] = [.64 .21 .15];  token 1: [.46 .24 .30]
    # token 2: [.22 .28 .50];                                    token 3: [.40 .25 .35]
    groups = pixel_groups([STAGE1, STAGE2], (2, 2), (2, 2))
    assert groups.tolist() == [[[0, 0], [2, 0]]]
    # 4x4, bilinear (align_corners=False): row 2 is 1/4 token row 0 + 3/4 token row 1, so pixel
    # (2, 0) = .25 [.64 .21 .15] + .75 [.22 .28 .50] = [.325 .2625 .4125] -> group 2; (1, 0) -> 0.
    large = pixel_groups([STAGE1, STAGE2], (2, 2), (4, 4))
    assert large[0, 2, 0].item() == 2 and large[0, 1, 0].item() == 0 and large[0, 3, 3].item() == 0
    assert pixel_groups([STAGE1], (2, 2), (2, 2)).tolist() == [[[0, 0], [1, 0]]]


def test_group_scores_are_two_softmaxes_the_second_gated_by_the_windows_top_k() -> None:
    text = torch.eye(3)
    groups = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]]])
    window = torch.tensor([[0.6, 0.0, 0.8]])  # classes 2 and 0 score highest: class 1 is gated out
    probs = group_class_probs(groups, window, text, scale=1.0, top_k=2)
    e = math.e
    prior0 = [e / (e + 2), 1 / (e + 2), 1 / (e + 2)]
    gated0 = _softmax2(1.0, 0.0)
    z = 1 + math.exp(0.6) + math.exp(0.8)
    prior1 = [1 / z, math.exp(0.6) / z, math.exp(0.8) / z]
    gated1 = _softmax2(0.0, 0.8)
    expected = [
        [prior0[0] * gated0[0], 0.0, prior0[2] * gated0[1]],
        [prior1[0] * gated1[0], 0.0, prior1[2] * gated1[1]],
    ]
    torch.testing.assert_close(probs, torch.tensor([expected]))
    # every pixel carries its group's row
    assignment = torch.tensor([[[1, 0], [0, 1]]])
    pixels = gather_groups(probs, assignment)
    torch.testing.assert_close(pixels[0, :, 0, 0], probs[0, 1])
    torch.testing.assert_close(pixels[0, :, 0, 1], probs[0, 0])


def test_background_is_below_the_smaller_of_the_threshold_and_the_best_group_score() -> None:
    scores = torch.tensor([[[[0.30, 0.50]], [[0.20, 0.10]]]])  # [1, 2 classes, 1, 2 pixels]
    probs = torch.tensor([[[0.4, 0.1], [0.2, 0.3]]])  # best group score 0.4
    assert background(scores, probs, 0.95).flatten().tolist() == [1.0, 0.0]  # threshold min(.95, .4)
    assert background(scores, probs, 0.25).flatten().tolist() == [0.0, 0.0]


def test_multi_label_loss_follows_the_soft_target_formula() -> None:
    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    prompts = torch.nn.functional.normalize(torch.randn(2, 3, 4), dim=-1)
    scale = 5.0
    flat = prompts.reshape(6, 4)
    per_image = (scale * image @ flat.t()).log_softmax(-1)
    loss_image = -sum(per_image[b, b * 3 + j] / 3 for b in range(2) for j in range(3)) / 2
    per_prompt = (scale * flat @ image.t()).log_softmax(-1)
    loss_prompt = -sum(per_prompt[b * 3 + j, b] for b in range(2) for j in range(3)) / 6
    expected = 0.5 * (loss_image + loss_prompt)
    assert multi_label_loss(image, prompts, scale).item() == pytest.approx(expected.item(), rel=1e-6)
    # one prompt per image: CLIP's loss
    one = prompts[:, :1]
    torch.testing.assert_close(multi_label_loss(image, one, scale), clip_loss(image, one[:, 0], scale))


@pytest.fixture(scope="module")
def spec():
    return METHODS.get("groupvit")


def _randomised(method: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for name, b in method.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
    return method.eval()


def test_official_checkpoint_converts_onto_the_method(spec) -> None:
    source = _randomised(spec.create("tiny"), 1)
    target = spec.create("tiny")
    official = official_state(source)
    assert "img_encoder.layers.0.blocks.0.attn.qkv.weight" in official
    converted = spec.convert_checkpoint(official, target)
    expected = source.state_dict()
    assert converted.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(converted[key], value, msg=key)
    with pytest.raises(WeightsError, match=r"img_encoder\.layers\.0\.blocks\.0\.attn\.extra"):
        spec.convert_checkpoint(
            {**official, "img_encoder.layers.0.blocks.0.attn.extra": torch.zeros(1)}, target
        )
    # a model trained without prompts (the RedCaps release) has no multi-label temperature
    del official["multi_label_logit_scale"]
    converted = spec.convert_checkpoint(official, target)
    torch.testing.assert_close(converted["prompt_logit_scale"], target.prompt_logit_scale.detach())


def test_transformers_weights_load_by_name(spec) -> None:
    source = _randomised(spec.create("tiny"), 2)
    target = spec.create("tiny").eval()
    hub = dict(source.model.state_dict())
    hub["text_model.embeddings.position_ids"] = torch.arange(32)[None]  # saved by old transformers
    converted = spec.convert_checkpoint(hub, target)
    target.load_state_dict(converted)
    vocab = Vocabulary.from_names(["cat", "dog"])
    images = torch.randn(1, 3, 64, 80)
    torch.testing.assert_close(
        target.segment(images, target.encode_vocabulary(vocab)),
        source.segment(images, source.encode_vocabulary(vocab)),
    )
    with pytest.raises(WeightsError, match="transformers-format"):
        spec.convert_checkpoint({**hub, "classifier.weight": torch.zeros(1)}, target)


def test_groupvit_protocol_prompts_with_its_names_and_background_comes_from_the_method(spec) -> None:
    protocol = PROTOCOLS.get("groupvit")
    assert protocol.templates == "simple" and (protocol.crop, protocol.stride, protocol.short_side) == (
        448,
        224,
        448,
    )
    voc = BENCHMARKS.get("voc21")
    vocab = voc.vocabulary(
        ("a photo of a {}.",), protocol.for_benchmark("voc21").synonyms, background_query=True
    )
    assert vocab.classes[0] == ("background",) and vocab.background_query
    assert [vocab.classes[i][0] for i in (11, 16, 20)] == ["table", "plant", "monitor"]
    assert PROTOCOLS.get("groupvit").for_benchmark("context60").synonyms == "groupvit"
    assert PROTOCOLS.get("groupvit").for_benchmark("voc20").synonyms is None
    method = spec.create("tiny").eval()
    assert method.scores_background
    text = method.encode_vocabulary(vocab)
    assert text.embeddings.shape[0] == 20  # background is not a text query
    scores = method.segment(torch.randn(2, 3, 64, 64), text)
    assert scores.shape == (2, 21, 64, 64)
    assert set(scores[:, 0].unique().tolist()) <= {0.0, 1.0}
    assert (scores[:, 1:] <= 1).all()


def test_presets_carry_the_released_and_the_papers_thresholds(spec) -> None:
    def bg(preset: str, benchmark: str) -> float:
        return spec.resolve(preset, benchmark=benchmark).model.bg_thresh

    assert [bg("paper", b) for b in ("voc21", "context60", "coco_object")] == [0.95, 0.35, 0.95]
    assert [bg("paper-thresholds", b) for b in ("voc21", "context60")] == [0.9, 0.5]
    assert spec.resolve("tcl-protocol").protocol == "tcl" and spec.resolve("paper").protocol == "groupvit"
    assert spec.resolve("redcaps").model.multi_label == 0 and spec.resolve("paper").model.multi_label == 3


def test_training_sample_holds_the_caption_then_word_prompts(spec) -> None:
    method = spec.create("tiny")
    transform = method.train_transform()
    sample = _training_samples(2, seed=0)[1]  # "a dog and a cat on the grass"
    prompts = transform.prompts(sample["caption"])
    assert len(prompts) == 2 and len({p for p in prompts}) == 2
    assert all(any(w in p for w in ("dog", "cat", "grass")) and p != sample["caption"] for p in prompts)
    assert transform.prompts("nothing known here") == ["nothing known here"] * 2
    out = transform(sample)
    assert out["image"].shape == (3, 64, 64) and out["text"].shape == (3, 32)


class _OwnBackground(ChannelScores):
    """Decides background itself: class 0 where the red channel is above 1/2; class 1 elsewhere."""

    scores_background = True

    def __init__(self) -> None:
        super().__init__(ThresholdConfig(bg_thresh=0.99))  # never applied: the method decides
        self.vocabularies: list[Vocabulary] = []

    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        self.vocabularies.append(vocab)
        return TextState(vocab)

    def segment(self, images: torch.Tensor, text: TextState) -> torch.Tensor:
        scores = torch.zeros(images.shape[0], text.vocabulary.num_classes, *images.shape[2:])
        scores[:, 0] = (images[:, 0] > 0.5).float()
        scores[:, 1] = 0.5
        return scores + self.anchor


def test_the_harness_takes_the_background_a_method_scores_itself(tmp_path) -> None:
    voc = BENCHMARKS.get("voc21")
    voc.write_synthetic(tmp_path, 1, seed=3)
    source = voc.open(tmp_path)
    sample = source[0]
    method = _OwnBackground()
    protocol = raw_protocol(min(sample.label.shape), crop=None)  # no resize: scores are per pixel
    result = evaluate(method, voc, source, protocol, num_workers=0, progress=False)
    (vocab,) = method.vocabularies
    assert vocab.background_query and vocab.num_classes == 21 and vocab.classes[0] == ("background",)
    red = sample.image[..., 0][sample.label != 255] / 255
    predicted = np.zeros(21, dtype=np.int64)
    predicted[:2] = (red > 0.5).sum(), (red <= 0.5).sum()
    assert predicted[0] > 0 and predicted[1] > 0
    np.testing.assert_array_equal(result.confusion.sum(0), predicted)
