"""CoDe on the tiny CLIP: every loss rebuilt from the pieces, inference with the two text embeddings,
presets, the decay rule, and loading checkpoints written in the official naming."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tcl_official import official_image_encoder, tiny_clip_openai
from tcl_official import official_state as tcl_official_state

from textseg.api import Vocabulary
from textseg.clip.openai_format import hf_to_openai
from textseg.errors import WeightsError
from textseg.evaluation.pamr import PAMR, TCL_DILATIONS
from textseg.methods.code import SPEC, CoDe
from textseg.testing.contract import CONTRACT_NOUNS
from textseg.weights import load_weights, read_state_dict, resolve_weights


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _perturb(method: CoDe, seed: int = 1) -> None:
    """Move every trainable parameter (gates and the zero prompts included) off its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in method.named_parameters():
            if not name.startswith("clip."):
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


def _batch(method: CoDe) -> dict:
    rng = np.random.default_rng(0)
    captions = ["a dog and a cat on the grass", "a red circle next to a blue square", "a car near a building"]
    transform = method.train_transform()
    samples = [
        transform(
            {
                "image": Image.fromarray(rng.integers(0, 256, (110, 140, 3), dtype=np.uint8)),
                "caption": c,
                "key": "",
            }
        )
        for c in captions
    ]
    return method.collate(samples)


# -- training --------------------------------------------------------------------------------------
def test_training_step_wires_each_loss_to_the_right_pairs() -> None:
    """Every term rebuilt from the pieces, with the same Gumbel noise (the only random draw)."""
    torch.manual_seed(0)
    method = SPEC.create("tiny").train()
    _perturb(method, seed=4)
    batch = _batch(method)
    torch.manual_seed(7)
    got = method.training_step(batch)
    B, K = 3, 2
    images, ids, labels = batch["image"], batch["text"], batch["word_labels"]
    vision, tower = method.clip.vision, method.clip.text
    with torch.no_grad():
        # pair i = k * B + b: noun k of sample b
        nouns = torch.cat([method.noun_prompt(tower, batch["nouns"][:, k]) for k in range(K)])
        reference = F.normalize(torch.cat([tower.encode(batch["kg_text"][:, k]) for k in range(K)]), dim=-1)
        tokens, grid = vision.tokens_before_last(images)
        decoded = F.normalize(method.grounder(tokens, grid), dim=1).repeat(K, 1, 1, 1)
        pair_images = torch.cat([images] * K)
        logits = torch.einsum("bchw,nc->bnhw", decoded, nouns) * method.sim2mask.w + method.sim2mask.b
        soft = torch.sigmoid(logits)
        torch.manual_seed(7)
        u = torch.rand_like(logits)
        hard = (torch.sigmoid(logits + torch.log(u / (1 - u))) > 0.5).float()
        paired = torch.eye(K * B, dtype=torch.bool)
        rows = torch.arange(K * B)
        weight = soft / (soft.sum((2, 3), keepdim=True) + 1e-6)
        pooled = torch.einsum("bchw,bnhw->bnc", decoded, weight)
        keep = F.interpolate(hard[rows, rows].unsqueeze(1), (96, 96), mode="nearest")
        region_prompt = F.interpolate(method.region_prompt, (96, 96), mode="bilinear")
        region = vision.global_embedding(keep * pair_images + (1 - keep) * region_prompt)
        # the text side
        seg = method.text_segmenter
        token_emb = seg.tokens(tower.hidden_states(ids))  # [B, L, D]
        word_logits = torch.zeros(B, K + 1, 77)
        for k in range(K):
            for b in range(B):
                word_logits[b, k + 1] = seg.w * token_emb[b] @ nouns[k * B + b] + seg.b
        nll = -word_logits.log_softmax(dim=1)
        class_weight = torch.tensor([0.5, 1.0, 1.0])
        valid = labels >= 0
        picked = nll.gather(1, labels.clamp(min=0).unsqueeze(1)).squeeze(1)
        w = class_weight[labels.clamp(min=0)] * valid
        tseg = (w * picked).sum() / w.sum()
        probs = word_logits.softmax(dim=1)
        eot = tower.eot_positions(ids)
        words = tower.token_embedding(ids)
        highlighted = []
        for k in range(K):
            for b in range(B):
                m = probs[b, k + 1].clone()
                m[0] = 1
                m[eot[b] :] = 1
                m = m.unsqueeze(-1)
                highlighted.append(m * words[b] + (1 - m) * method.word_prompt)
        text_emb = tower.encode_embeddings(torch.stack(highlighted), eot.repeat(K))
        expected = {
            "kg_loss": 8.0 * (1 - (nouns * reference).sum(-1).mean()),
            "area_loss": 0.5 * (soft[paired].mean() - 0.25).abs(),
            "neg_area_loss": 0.05 * soft[~paired].mean(),
            "tv_img_loss": (decoded[..., 1:] - decoded[..., :-1]).abs().mean()
            + (decoded[..., 1:, :] - decoded[..., :-1, :]).abs().mean(),
            "tv_mask_loss": (soft[..., 1:] - soft[..., :-1]).abs().mean()
            + (soft[..., 1:, :] - soft[..., :-1, :]).abs().mean(),
            "hlf_noun_loss": 0.1 * method.feature_loss(pooled, nouns),
            "hli_noun_loss": 0.1 * method.image_loss(region, nouns),
            "tseg_loss": 1.0 * tseg,
            "hcl_loss": 0.5 * method.region_word_loss(region, text_emb),
        }
    assert set(got) == {"loss", *expected}
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, msg=name)
    torch.testing.assert_close(got["loss"], torch.stack(list(expected.values())).sum())
    assert 0 < hard[rows, rows].mean() < 1  # the masks are not trivially all on or all off
    assert (labels > 0).any() and (labels == 0).any()  # the batch has selected and other nouns


def test_param_groups_follow_the_decay_rule_over_codes_parameters() -> None:
    method = SPEC.create("tiny")
    decay, no_decay = method.param_groups(weight_decay=0.05)
    names = {id(p): n for n, p in method.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    for name in (
        "noun_prompt.ctx",
        "word_prompt",
        "region_prompt",
        "text_segmenter.w",
        "text_segmenter.b",  # 0-dim, and its name does not end in ".bias"
        "region_word_loss.logit_scale",
        "text_segmenter.layers.0.self_attn.q_proj.weight",
        "grounder.block.mlp.fc1.weight",  # frozen until ust_steps, listed all the same
    ):
        assert name in decayed, name
    for name in (
        "text_segmenter.layers.1.layer_norm1.weight",
        "text_segmenter.layers.0.self_attn.q_proj.bias",
    ):
        assert name in not_decayed, name
    assert not any(n.startswith("clip.") for n in decayed | not_decayed)
    assert [len(stage.convs) for stage in method.grounder.decoder.stages] == [1, 1]  # double: false


# -- inference -------------------------------------------------------------------------------------
@torch.no_grad()
def test_vocabulary_masks_use_the_noun_prompt_and_kp_the_unit_average_of_templates() -> None:
    torch.manual_seed(0)
    method = SPEC.create("tiny").eval()
    _perturb(method, seed=2)
    tower = method.clip.text
    templates = ("itap of a {}.", "art of the {}.")
    text = method.encode_vocabulary(Vocabulary.from_names(["cat", "traffic light"], templates))
    prompted = method.noun_prompt(tower, tower.tokenize(["cat", "traffic light"], 61))
    torch.testing.assert_close(text.embeddings, prompted)  # the raw name after the context: no template
    per_template = F.normalize(
        tower.encode_texts([t.format(n) for n in ("cat", "traffic light") for t in templates]), dim=-1
    )
    torch.testing.assert_close(text.extras["kp"], F.normalize(per_template.view(2, 2, -1).mean(1), dim=-1))

    images = _images(1, 3, 64, 80, seed=3)  # multiples of 16: no padding
    scores = method.segment(images, text)
    vision = method.clip.vision
    tokens, grid = vision.tokens_before_last(images)
    cos = torch.einsum("bchw,nc->bnhw", F.normalize(method.grounder(tokens, grid), dim=1), prompted)
    soft = torch.sigmoid(cos * method.sim2mask.w + method.sim2mask.b)
    small = F.interpolate(images, soft.shape[-2:], mode="bilinear", align_corners=True)
    refined = PAMR(2, TCL_DILATIONS)(small, soft)
    kp_cos = torch.einsum(
        "bchw,nc->bnhw", F.normalize(vision.dense(images, "self"), dim=1), text.extras["kp"]
    )
    kp = F.interpolate(torch.sigmoid((kp_cos - 0.25) * 10), refined.shape[-2:], mode="bilinear")
    expected = F.interpolate(0.3 * kp + 0.7 * refined, (64, 80), mode="bilinear")
    torch.testing.assert_close(scores, expected)


def test_presets() -> None:
    paper = SPEC.resolve("paper")
    m = paper.model
    assert (m.pamr, m.bg_thresh, m.kp_w, m.text_average, m.clip) == (
        True,
        0.4,
        0.3,
        "unit",
        "openai/clip-vit-base-patch16",
    )
    assert (m.decoder_double, m.pos_area, m.area_w, m.neg_area_w, m.tcl_w, m.tv_w) == (
        False,
        0.25,
        0.5,
        0.05,
        0.1,
        1.0,
    )
    assert (m.kg_w, m.tseg_w, m.tseg_other_weight, m.hcl_w, m.n_ctx, m.num_nouns) == (
        8.0,
        1.0,
        0.5,
        0.5,
        16,
        2,
    )
    assert (m.crop_scale, m.auto_augment, m.re_prob, m.ust_steps, m.nouns.backend) == (
        (0.9, 1.0),
        None,
        0.0,
        30000,
        "nltk",
    )
    t = paper.train
    assert (t.batch_size, t.lr, t.min_lr, t.lr_scale_batch, t.steps, t.warmup_steps) == (
        16,
        3.2e-4,
        4e-5,
        4096,
        50000,
        15000,
    )
    assert (t.warmup_start_factor, t.eps, t.weight_decay, t.betas, t.grad_clip, t.precision) == (
        1e-4,
        1e-6,
        0.05,
        (0.9, 0.999),
        5.0,
        "fp16",
    )
    tiny = SPEC.resolve("tiny").model
    assert tiny.nouns.backend == "lexicon" and set(CONTRACT_NOUNS) <= set(tiny.nouns.lexicon)


# -- the official checkpoint format ---------------------------------------------------------------
def official_state(method: CoDe, *, clip: bool = True, losses: bool = True) -> dict[str, torch.Tensor]:
    """``method``'s weights in the official naming (``ImageTextCoDecomposition.state_dict()``), built
    from the module tree: TCL's ``masker.*`` and loss keys, CoDe's own keys and, with ``clip``, the
    four CLIP copies."""
    out = tcl_official_state(method, losses=losses, clip=False)
    text = method.clip.text
    out["learnable_image_bg"] = method.region_prompt.detach().clone()
    out["text_mask_w"] = method.text_segmenter.w.detach().clone()
    out["text_mask_b"] = method.text_segmenter.b.detach().clone()
    out["bg_text"] = method.word_prompt.detach().clone().unsqueeze(1)  # [77, 1, W]
    out["pamr.aff_m.kernel"] = torch.zeros(8, 1, 3, 3)
    out["pamr.aff_std.kernel"] = torch.zeros(9, 1, 3, 3)
    out["clip_text_encoder.prompt_learner.ctx"] = method.noun_prompt.ctx.detach().clone()
    out["clip_text_encoder.prompt_learner.token_prefix"] = text.token_embedding.weight[
        [text.tokenizer.bos_token_id]
    ][None].clone()
    for i, layer in enumerate(method.text_segmenter.layers):
        block = {
            f"text_model.encoder.layers.{i}.{n}": p.detach().clone() for n, p in layer.named_parameters()
        }
        for key, value in hf_to_openai(block).items():
            out[key.replace("transformer.resblocks.", "text_decoder.transformer.resblocks.")] = value
    if losses:
        out["hcl_loss.logit_scale"] = method.region_word_loss.logit_scale.detach().clone()
    if clip:
        full = tiny_clip_openai()
        text_keys = {k: v for k, v in full.items() if not k.startswith("visual.") and k != "logit_scale"}
        out.update({f"frozen_clip.{k}": v.clone() for k, v in full.items()})
        out.update({f"clip_text_encoder.prompt_learner.clip_model.{k}": v for k, v in text_keys.items()})
        out.update(
            {
                f"clip_text_encoder.text_encoder.{k}": v
                for k, v in text_keys.items()
                if k != "token_embedding.weight"
            }
        )
        out.update(official_image_encoder(full))
    return out


def _save(tmp_path, state: dict, name: str = "checkpoint.pth"):
    """Save as the official trainer does, with a pickled ``omegaconf.dictconfig.DictConfig`` config
    (a stand-in class under that module path, gone again before loading)."""

    class DictConfig:
        def __init__(self) -> None:
            self.train = {"base_lr": 3.2e-4}

    DictConfig.__module__, DictConfig.__qualname__ = "omegaconf.dictconfig", "DictConfig"
    package, module = types.ModuleType("omegaconf"), types.ModuleType("omegaconf.dictconfig")
    module.DictConfig, package.dictconfig = DictConfig, module
    saved = {name: sys.modules.get(name) for name in ("omegaconf", "omegaconf.dictconfig")}
    sys.modules.update({"omegaconf": package, "omegaconf.dictconfig": module})
    try:
        path = tmp_path / name
        torch.save({"model": state, "config": DictConfig(), "step": 50000, "optimizer": {}}, path)
    finally:
        for key, previous in saved.items():
            if previous is None:
                del sys.modules[key]
            else:
                sys.modules[key] = previous
    return path


def test_the_official_layout_has_814_keys_at_vit_b16() -> None:
    method = SPEC.create("tiny")
    state = official_state(method)
    vision, text = len(method.clip.vision.layers), method.clip.text.transformer.config.num_hidden_layers
    # 94 + 36 per text block + 24 per vision block: 814 with 12 and 12 (the verified ViT-B/16 count)
    assert len(state) == 94 + 36 * text + 24 * vision and 94 + 36 * 12 + 24 * 12 == 814


@torch.no_grad()
def test_official_checkpoint_loads_and_scores_identically(tmp_path) -> None:
    torch.manual_seed(0)
    source = SPEC.create("tiny").eval()
    _perturb(source)
    state = official_state(source)
    state["frozen_clip.logit_scale"] = state["frozen_clip.logit_scale"] + 1.0
    loaded = SPEC.create("tiny").eval()
    path = _save(tmp_path, state)
    assert read_state_dict(path)[1] == ["omegaconf.dictconfig.DictConfig"]  # read, never unpickled
    load_weights(loaded, SPEC, str(path))
    for name, value in source.trainable_state_dict().items():
        if name != "text_segmenter.projection.weight":  # tiny CLIP only: no official counterpart
            assert torch.equal(loaded.state_dict()[name], value), name
    assert loaded.clip.logit_scale.item() == pytest.approx(source.clip.logit_scale.item() + 1.0)
    vocab = Vocabulary.from_names(["cat", "car"], ("itap of a {}.",))
    images = _images(1, 3, 80, 112, seed=5)
    torch.testing.assert_close(
        loaded.segment(images, loaded.encode_vocabulary(vocab)),
        source.segment(images, source.encode_vocabulary(vocab)),
    )
    # without the CLIP copies and the temperatures (the official loader allows both to be missing)
    minimal = SPEC.create("tiny")
    load_weights(minimal, SPEC, str(_save(tmp_path, official_state(source, clip=False, losses=False))))
    assert torch.equal(minimal.noun_prompt.ctx, source.noun_prompt.ctx)
    assert minimal.region_word_loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_wrong_checkpoints_fail_listing_the_keys(tmp_path) -> None:
    method = SPEC.create("tiny")
    state = official_state(method)
    state["text_decoder.transformer.resblocks.0.attn.extra"] = torch.zeros(3)
    state["prompt_learner.ctx"] = torch.zeros(16, 64)
    with pytest.raises(WeightsError) as error:
        load_weights(method, SPEC, str(_save(tmp_path, state)))
    assert "text_decoder.transformer.resblocks.0.attn.extra" in str(error.value)
    assert "prompt_learner.ctx" in str(error.value)
    # copies of the frozen CLIP that disagree cannot become one CLIP
    state = official_state(method)
    state["frozen_clip.visual.conv1.weight"] = state["frozen_clip.visual.conv1.weight"] + 1
    with pytest.raises(WeightsError, match=r"frozen_clip\.visual\.conv1\.weight != clip_image_encoder"):
        load_weights(method, SPEC, str(_save(tmp_path, state)))
    # part of the CLIP only
    state = {
        k: v for k, v in official_state(method).items() if not k.startswith(("frozen_clip.", "clip_image"))
    }
    with pytest.raises(WeightsError, match="only part of the frozen CLIP"):
        load_weights(method, SPEC, str(_save(tmp_path, state)))
    # TCL's two-convolution decoder does not fit (its second convolutions have no place here)
    state = official_state(method)
    state["masker.image_encoder.decoder.decoder.net.0.conv2.gate.gate"] = torch.zeros(())
    with pytest.raises(
        WeightsError,
        match=r"are not keys of code weights \(converted from the official naming\):\n  grounder\.decoder\.stages\.0\.convs\.1\.gate",
    ):
        load_weights(method, SPEC, str(_save(tmp_path, state)))


def test_official_weights_name_the_drive_link_and_where_to_put_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TEXTSEG_CACHE", str(tmp_path))
    with pytest.raises(WeightsError) as error:
        resolve_weights(SPEC, "official")
    assert "drive.google.com/file/d/1CpaaZswztgVulpTdVl_eiBRaIeoVAGJ2" in str(error.value)
    assert str(tmp_path / "weights" / "code" / "checkpoint.pth") in str(error.value)
