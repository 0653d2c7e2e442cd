"""TCL on the tiny CLIP: the grounder at initialisation, the inference pipeline against a hand-built
one, synonyms, the decoder-only phase with one optimizer, parameter groups, the training transform,
presets, and loading checkpoints written in the official naming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tcl_official import official_state

from textseg.api import TextState, Vocabulary
from textseg.errors import WeightsError
from textseg.evaluation.pamr import PAMR, TCL_DILATIONS
from textseg.methods.tcl import SPEC, TCL
from textseg.weights import load_weights


@pytest.fixture(scope="module")
def tcl() -> TCL:
    torch.manual_seed(0)
    return SPEC.create("tiny").eval()


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _perturb(method: TCL, seed: int = 1) -> None:
    """Move every trainable parameter (gates included) away from its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in method.named_parameters():
            if not name.startswith("clip."):
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


# -- the grounder ----------------------------------------------------------------------------------
@torch.no_grad()
def test_grounder_at_init_is_the_frozen_dense_clip_upsampled_by_nearest(tcl: TCL) -> None:
    vision = tcl.clip.vision
    images = _images(2, 3, 64, 96)
    tokens, grid = vision.tokens_before_last(images)
    expected = F.interpolate(vision.dense(images, "self"), scale_factor=4, mode="nearest")
    assert tcl.grounder(tokens, grid).shape == (2, vision.embed_dim, 16, 24)
    torch.testing.assert_close(tcl.grounder(tokens, grid), expected)
    # copies, not shared tensors
    own = tcl.grounder.block.self_attn.q_proj.weight
    assert own.data_ptr() != vision.last_layer.self_attn.q_proj.weight.data_ptr()
    assert tcl.grounder.projection.weight.data_ptr() != vision.projection.weight.data_ptr()


# -- inference -------------------------------------------------------------------------------------
@torch.no_grad()
def test_segment_is_pad_masks_pamr_then_kp_then_upsample_and_crop(tcl: TCL) -> None:
    vocab = Vocabulary.from_names(["cat", "grass"], ("a photo of a {}.", "art of the {}."))
    text = tcl.encode_vocabulary(vocab)
    images = _images(1, 3, 97, 131, seed=2)
    scores = tcl.segment(images, text)
    # by hand: pad 97x131 -> 112x144 (top 7, bottom 8, left 6, right 7)
    vision = tcl.clip.vision
    padded = F.pad(images, (6, 7, 7, 8))
    tokens, grid = vision.tokens_before_last(padded)
    unit_text = F.normalize(text.embeddings, dim=-1)
    cos = torch.einsum("bchw,nc->bnhw", F.normalize(tcl.grounder(tokens, grid), dim=1), unit_text)
    soft = torch.sigmoid(10 * cos - 2.5)  # Sim2Mask at its initial w, b
    small = F.interpolate(padded, soft.shape[-2:], mode="bilinear", align_corners=True)
    refined = PAMR(2, TCL_DILATIONS)(small, soft)  # the tiny preset: 2 iterations
    kp_cos = torch.einsum("bchw,nc->bnhw", F.normalize(vision.dense(padded, "self"), dim=1), unit_text)
    kp = F.interpolate(torch.sigmoid((kp_cos - 0.25) * 10), refined.shape[-2:], mode="bilinear")
    mixed = 0.3 * kp + 0.7 * refined
    expected = F.interpolate(mixed, (112, 144), mode="bilinear")[..., 7:104, 6:137]
    assert scores.shape == (1, 2, 97, 131)
    torch.testing.assert_close(scores, expected)
    assert scores.min() >= 0 and scores.max() <= 1
    # the order matters: mixing before PAMR gives other masks
    assert not torch.allclose(PAMR(2, TCL_DILATIONS)(small, 0.3 * kp + 0.7 * soft), mixed)


@torch.no_grad()
def test_synonyms_take_the_max_over_names(tcl: TCL) -> None:
    images = _images(1, 3, 64, 64, seed=3)
    together = tcl.segment(images, tcl.encode_vocabulary(Vocabulary.from_names(["dog", "car, automobile"])))
    apart = tcl.segment(images, tcl.encode_vocabulary(Vocabulary.from_names(["dog", "car", "automobile"])))
    torch.testing.assert_close(together, torch.stack([apart[:, 0], apart[:, 1:].amax(1)], dim=1))


@torch.no_grad()
@pytest.mark.parametrize("size", [(112, 76), (96, 96)])
def test_a_batch_of_crops_gives_each_crop_its_masks_alone(tcl: TCL, size: tuple[int, int]) -> None:
    """Bit for bit: the harness batches crops, the official loop scores them one at a time (before
    per_window, the kp sigmoid on einsum's batch layout differed by 1 ulp here)."""
    text = tcl.encode_vocabulary(Vocabulary.from_names([f"thing{i}" for i in range(9)], ("a {}.",)))
    crops = _images(3, 3, *size, seed=1)
    alone = torch.cat([tcl.segment(crops[i : i + 1], text) for i in range(3)])
    assert torch.equal(tcl.segment(crops, text), alone)


def test_presets_and_released_checkpoint() -> None:
    paper = SPEC.resolve("paper")
    assert (paper.model.pamr, paper.model.bg_thresh, paper.model.kp_w) == (True, 0.4, 0.3)
    assert paper.model.clip == "openai/clip-vit-base-patch16" and paper.model.ust_steps == 30000
    no_pamr = SPEC.resolve("paper-no-pamr").model
    assert (no_pamr.pamr, no_pamr.bg_thresh, no_pamr.kp_w) == (False, 0.5, 0.3)
    train = paper.train
    assert (train.batch_size, train.lr, train.min_lr, train.lr_scale_batch) == (64, 3e-4, 4e-5, 4096)
    assert (train.warmup_steps, train.warmup_start_factor, train.steps) == (15000, 1e-4, 50000)
    assert (train.eps, train.weight_decay, train.betas, train.grad_clip, train.precision) == (
        1e-6,
        0.05,
        (0.9, 0.999),
        5.0,
        "fp16",
    )
    assert SPEC.checkpoints["official"].source.endswith("kakaobrain/tcl/releases/download/v1.0.0/tcl.pth")


# -- training --------------------------------------------------------------------------------------
def _batch(method: TCL, n: int = 4) -> dict:
    rng = np.random.default_rng(0)
    captions = ["a red circle", "a dog on the grass", "a blue square", "a car near a tree"]
    transform = method.train_transform()
    samples = [
        transform(
            {
                "image": Image.fromarray(rng.integers(0, 256, (120, 150, 3), dtype=np.uint8)),
                "caption": c,
                "key": "",
            }
        )
        for c in captions[:n]
    ]
    return method.collate(samples)


def test_param_groups_follow_tcls_decay_rule() -> None:
    method = SPEC.create("tiny")
    method.on_train_step(0)
    decay, no_decay = method.param_groups(weight_decay=0.05)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    names = {id(p): n for n, p in method.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    # 0-dim parameters are decayed (their shape is not 1-D and their names do not end in ".bias")
    for name in ("sim2mask.w", "sim2mask.b", "image_loss.logit_scale", "feature_loss.logit_scale"):
        assert name in decayed
    assert "grounder.decoder.stages.0.convs.1.gate.gate" in decayed
    assert "grounder.decoder.stages.0.convs.0.conv.weight" in decayed
    assert "grounder.projection.weight" in decayed
    assert "grounder.block.self_attn.q_proj.weight" in decayed  # frozen now, listed all the same
    for name in ("grounder.post_layernorm.weight", "grounder.decoder.stages.1.convs.0.conv.bias"):
        assert name in not_decayed
    assert "grounder.block.layer_norm1.weight" in not_decayed
    assert not any(n.startswith("clip.") for n in decayed | not_decayed)


def test_decoder_only_phase_then_the_block_trains_with_the_same_optimizer() -> None:
    torch.manual_seed(0)
    method = SPEC.create("tiny").train()  # ust_steps = 2
    batch = _batch(method)
    optimizer = torch.optim.AdamW(method.param_groups(0.05), lr=1e-2, eps=1e-6)
    block = dict(method.grounder.block.named_parameters())
    frozen_clip = {n: p.clone() for n, p in method.clip.named_parameters()}
    for step in range(4):
        method.on_train_step(step)
        before = {n: p.detach().clone() for n, p in block.items()}
        gate = method.grounder.decoder.stages[0].convs[0].gate.gate.detach().clone()
        optimizer.zero_grad(set_to_none=True)
        losses = method.training_step(batch)
        assert set(losses) == {
            "loss",
            "area_loss",
            "neg_area_loss",
            "tv_img_loss",
            "tv_mask_loss",
            "tclf_loss",
            "tcli_loss",
        }
        terms = [v for k, v in losses.items() if k != "loss"]
        torch.testing.assert_close(losses["loss"].detach(), torch.stack(terms).sum())
        losses["loss"].backward()
        optimizer.step()
        trains = step >= 2
        assert all(p.requires_grad == trains for p in block.values())
        # diagonal attention never reads queries and keys (TCL: zero gradient rows of in_proj)
        used = [p for n, p in block.items() if not n.startswith(("self_attn.q_proj", "self_attn.k_proj"))]
        assert all((p.grad is not None) == trains for p in used)
        assert any(not torch.equal(before[n], p) for n, p in block.items()) == trains
        assert not torch.equal(gate, method.grounder.decoder.stages[0].convs[0].gate.gate)
    assert all(torch.equal(frozen_clip[n], p) for n, p in method.clip.named_parameters())


def test_training_step_wires_each_loss_to_the_right_masks() -> None:
    """Every term rebuilt from the pieces, with the same Gumbel noise (the only random draw)."""
    method = SPEC.create("tiny", {"area_w": 0.8})
    _perturb(method, seed=4)
    batch = _batch(method)
    torch.manual_seed(7)
    got = method.training_step(batch)
    images, ids = batch["image"], batch["text"]
    vision = method.clip.vision
    with torch.no_grad():
        tokens, grid = vision.tokens_before_last(images)
        text = method.clip.text.encode(ids)
        embedding = method.grounder(tokens, grid)
        cos = torch.einsum("bchw,nc->bnhw", F.normalize(embedding, dim=1), F.normalize(text, dim=-1))
        logits = cos * method.sim2mask.w + method.sim2mask.b
        soft = torch.sigmoid(logits)
        torch.manual_seed(7)
        u = torch.rand_like(logits)
        hard = (torch.sigmoid(logits + torch.log(u / (1 - u))) > 0.5).float()
        rows = torch.arange(4)
        paired = torch.eye(4, dtype=torch.bool)
        weight = soft / (soft.sum((2, 3), keepdim=True) + 1e-6)
        pooled = torch.einsum("bchw,bnhw->bnc", embedding, weight)
        masked = F.interpolate(hard[rows, rows].unsqueeze(1), (96, 96), mode="nearest") * images
        expected = {
            "area_loss": 0.8 * (soft[rows, rows].mean() - 0.4).abs(),
            "neg_area_loss": 0.8 * soft[~paired].mean(),
            "tv_img_loss": (embedding[..., 1:] - embedding[..., :-1]).abs().mean()
            + (embedding[..., 1:, :] - embedding[..., :-1, :]).abs().mean(),
            "tv_mask_loss": (soft[..., 1:] - soft[..., :-1]).abs().mean()
            + (soft[..., 1:, :] - soft[..., :-1, :]).abs().mean(),
            "tclf_loss": 0.1 * method.feature_loss(pooled, text),
            "tcli_loss": 0.1 * method.image_loss(vision.global_embedding(masked), text),
        }
    assert set(got) == {"loss", *expected}
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, msg=name)
    assert 0 < hard[rows, rows].mean() < 1  # the masks are not trivially all on or all off
    # a term with weight 0 is left out
    without_tv = SPEC.create("tiny", {"tv_w": 0}).training_step(batch)
    assert "tv_img_loss" not in without_tv and "tv_mask_loss" not in without_tv


def test_training_needs_two_texts() -> None:
    method = SPEC.create("tiny")
    with pytest.raises(Exception, match="global batch >= 2"):
        method.training_step(_batch(method, n=1))


def test_train_transform_uses_imagenet_statistics_and_clip_tokens() -> None:
    method = SPEC.create(
        "tiny", {"auto_augment": None, "color_jitter": 0, "re_prob": 0.0, "crop_scale": "1,1"}
    )
    transform = method.train_transform()
    image = Image.new("RGB", (130, 100), (10, 128, 250))
    out = transform({"image": image, "caption": "a red circle", "key": "0"})
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = [(v / 255 - m) / s for v, m, s in zip((10, 128, 250), mean, std)]
    assert out["image"].shape == (3, 96, 96)
    torch.testing.assert_close(out["image"].mean((1, 2)), torch.tensor(expected))
    assert torch.equal(out["text"], method.clip.text.tokenize(["a red circle"])[0])
    assert out["text"].shape == (77,) and out["text"].dtype == torch.long


# -- the official checkpoint format ---------------------------------------------------------------
class _PickledConfig:
    """Stands in for the OmegaConf config the official trainer pickles beside the weights."""

    def __init__(self) -> None:
        self.lr = 3e-4


def _save(tmp_path, state: dict, name: str = "tcl.pth"):
    path = tmp_path / name
    torch.save({"model": state, "config": _PickledConfig(), "step": 50000}, path)
    return path


@torch.no_grad()
def test_official_checkpoint_loads_and_scores_identically(tmp_path) -> None:
    torch.manual_seed(0)
    source = SPEC.create("tiny").eval()
    _perturb(source)
    path = _save(tmp_path, official_state(source, losses=False))
    loaded = SPEC.create("tiny").eval()
    info = load_weights(loaded, SPEC, str(path))
    assert info.sha256 is not None and len(info.sha256) == 64
    for name, value in source.trainable_state_dict().items():
        if "logit_scale" in name:  # absent from a minimal release: kept at the initial value
            assert loaded.state_dict()[name].item() == pytest.approx(math.log(1 / 0.07))
        else:
            assert torch.equal(loaded.state_dict()[name], value), name
    vocab = Vocabulary.from_names(["cat", "car"], ("itap of a {}.",))
    images = _images(1, 3, 80, 112, seed=5)
    torch.testing.assert_close(
        loaded.segment(images, loaded.encode_vocabulary(vocab)),
        source.segment(images, source.encode_vocabulary(vocab)),
    )


def test_full_official_checkpoint_with_clip_and_temperatures(tmp_path) -> None:
    source = SPEC.create("tiny")
    _perturb(source, seed=2)
    state = official_state(source, clip=True)
    state["clip_image_encoder.clip_visual.class_embedding"] = (
        state["clip_image_encoder.clip_visual.class_embedding"] + 1.0
    )
    loaded = SPEC.create("tiny")
    load_weights(loaded, SPEC, str(_save(tmp_path, state)))
    assert torch.equal(loaded.image_loss.logit_scale, source.image_loss.logit_scale)
    assert torch.equal(
        loaded.clip.vision.transformer.embeddings.class_embedding,
        source.clip.vision.transformer.embeddings.class_embedding + 1.0,
    )


def test_wrong_checkpoints_fail_listing_the_keys(tmp_path) -> None:
    method = SPEC.create("tiny")
    state = official_state(method)
    state["masker.image_encoder.extra.weight"] = torch.zeros(3)
    # a ViT-B/16 block index on a 3-block tiny CLIP fits nowhere
    for key in [k for k in state if ".resblocks.2." in k]:
        state[key.replace(".resblocks.2.", ".resblocks.11.")] = state.pop(key)
    with pytest.raises(WeightsError) as error:
        load_weights(method, SPEC, str(_save(tmp_path, state)))
    message = str(error.value)
    assert "masker.image_encoder.extra.weight" in message
    assert "masker.image_encoder.backbone.transformer.resblocks.11.ln_1.weight" in message
    assert "resblocks.2.*" in message
    # a single-convolution decoder (CoDe's layout) misses every second convolution
    state = {k: v for k, v in official_state(method).items() if ".conv2." not in k}
    with pytest.raises(WeightsError, match=r"grounder\.decoder\.stages\.0\.convs\.1\.gate\.gate"):
        load_weights(method, SPEC, str(_save(tmp_path, state, "code.pth")))


def test_train_transform_redraws_when_posterize_asks_pillow_for_zero_bits() -> None:
    transform = SPEC.create("tiny").train_transform()
    calls = []

    def flaky(image: Image.Image) -> torch.Tensor:
        calls.append(image)
        if len(calls) == 1:  # what Pillow 13 raises for ImageOps.posterize(image, 0)
            raise ValueError("bits must be between or equal to 1 and 8")
        return torch.zeros(3, 4, 4)

    transform.image = flaky
    out = transform({"image": Image.new("RGB", (8, 8)), "caption": "a cat", "key": "0"})
    assert len(calls) == 2 and out["image"].shape == (3, 4, 4)

    def broken(image: Image.Image) -> torch.Tensor:
        raise ValueError("something else")

    transform.image = broken
    with pytest.raises(ValueError, match="something else"):
        transform({"image": Image.new("RGB", (8, 8)), "caption": "a cat", "key": "0"})


# -- generalisations CoDe uses ---------------------------------------------------------------------
def test_negative_area_weight_defaults_to_area_w_and_can_be_set_apart() -> None:
    torch.manual_seed(0)
    embedding, text = torch.randn(3, 32, 5, 6), torch.randn(3, 32)
    for overrides, neg_weight in (({}, 0.4), ({"neg_area_w": 0.05}, 0.05)):
        method = SPEC.create("tiny", {"tcl_w": 0, **overrides})
        masks = method.pair_masks(embedding, text)
        losses = method.grounding_losses(embedding, text, masks, None)
        soft = torch.sigmoid(
            10 * torch.einsum("bchw,nc->bnhw", F.normalize(embedding, dim=1), F.normalize(text, dim=-1)) - 2.5
        )
        paired = torch.eye(3, dtype=torch.bool)
        torch.testing.assert_close(losses["area_loss"], 0.4 * (soft[paired].mean() - 0.4).abs())
        torch.testing.assert_close(losses["neg_area_loss"], neg_weight * soft[~paired].mean())
        assert "tcli_loss" not in losses


@torch.no_grad()
def test_highlighted_image_fills_the_masked_out_part_with_a_background(tcl: TCL) -> None:
    images = _images(2, 3, 32, 48, seed=4)
    hard = (_images(2, 1, 8, 12, seed=5) > 0).float()
    background = _images(1, 3, 16, 16, seed=6)
    up = hard.repeat_interleave(4, 2).repeat_interleave(4, 3)
    filled = up * images + (1 - up) * F.interpolate(background, (32, 48), mode="bilinear")
    global_embedding = tcl.clip.vision.global_embedding
    torch.testing.assert_close(tcl.highlighted_embedding(images, hard, background), global_embedding(filled))
    torch.testing.assert_close(tcl.highlighted_embedding(images, hard), global_embedding(up * images))


@torch.no_grad()
def test_kp_branch_reads_separate_embeddings_when_the_text_state_has_them(tcl: TCL) -> None:
    vocab = Vocabulary.from_names(["cat", "grass"])
    text = tcl.encode_vocabulary(vocab)
    other = F.normalize(_images(2, text.embeddings.shape[1], seed=8), dim=-1)
    images = _images(1, 3, 64, 64, seed=9)
    same = tcl.segment(images, TextState(vocab, text.embeddings, {"kp": text.embeddings}))
    torch.testing.assert_close(same, tcl.segment(images, text))
    assert not torch.allclose(tcl.segment(images, TextState(vocab, text.embeddings, {"kp": other})), same)
