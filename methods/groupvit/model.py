"""GroupViT (Xu et al., CVPR 2022) as a :class:`textseg.api.SegMethod`.

The parameters live in a transformers ``GroupViTModel`` (so its released hub weights load by name);
the forward passes are written here from the official code (NVlabs/GroupViT ``models/group_vit.py``,
``models/multi_label_contrastive.py``, ``segmentation/evaluation/group_vit_seg.py``), because
transformers' differ from it where it matters: no stochastic depth, positional embeddings
interpolated only on request, the segmentation logits without the top-k gate and background rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import drop_path, trunc_normal_
from torch import Tensor, nn
from transformers import GroupViTConfig as HFGroupViTConfig
from transformers import GroupViTModel
from transformers.models.groupvit.modeling_groupvit import GroupViTStage, GroupViTTokenAssign

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.clip.loading import load_tokenizer
from textseg.clip.text import tokenize
from textseg.distributed import world_size
from textseg.errors import ConfigError
from textseg.methods.groupvit.config import WORD_TAGS, GroupViTConfig
from textseg.methods.groupvit.grouping import (
    background,
    gather_groups,
    group_class_probs,
    gumbel_assignment,
    hard_assignment,
    pixel_groups,
)
from textseg.methods.groupvit.losses import image_text_loss, multi_label_loss
from textseg.methods.groupvit.transform import GroupViTTrainTransform
from textseg.text.nouns import noun_extractor
from textseg.text.synonyms import max_over_names
from textseg.text.templates import get_templates
from textseg.training.optim import decay_groups

#: Prompts encoded per text-tower call in ``encode_vocabulary``.
TEXT_CHUNK = 256


def _check(config: GroupViTConfig) -> None:
    stages = len(config.depths)
    if len(config.num_group_tokens) != stages or len(config.num_output_groups) != stages - 1:
        raise ConfigError(
            f"GroupViT needs one num_group_tokens per stage ({stages}) and one num_output_groups per stage "
            f"but the last; got {config.num_group_tokens} and {config.num_output_groups}"
        )
    for i in range(1, stages - 1):
        if config.num_group_tokens[i] and config.num_output_groups[i - 1] != config.num_group_tokens[i - 1]:
            raise ConfigError(
                "a stage's group tokens are projected from the previous stage's (transformers' layout sizes "
                "that projector by num_output_groups), so num_output_groups[i] must equal num_group_tokens[i]"
            )
    if config.embed_dim % config.num_heads or config.text_width % config.text_heads:
        raise ConfigError("embed_dim and text_width must be multiples of num_heads and text_heads")
    if not 0.0 <= config.drop_path < 1.0 or config.multi_label < 0 or config.top_k < 1:
        raise ConfigError("drop_path must be in [0, 1), multi_label >= 0 and top_k >= 1")


def hf_config(config: GroupViTConfig, tokenizer: Any) -> HFGroupViTConfig:
    """transformers' configuration of the model ``config`` describes (official: LayerNorm eps 1e-5,
    GELU in the image tower, QuickGELU in the text tower, grouping MLP ratios 0.5 and 4)."""
    return HFGroupViTConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=config.text_width,
            intermediate_size=4 * config.text_width,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            max_position_embeddings=config.context_length,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=config.embed_dim,
            intermediate_size=4 * config.embed_dim,
            depths=list(config.depths),
            num_hidden_layers=sum(config.depths),
            num_group_tokens=list(config.num_group_tokens),
            # one per stage in transformers' layout; the last stage does not group, its entry is unused
            num_output_groups=[*config.num_output_groups, 0],
            num_attention_heads=config.num_heads,
            image_size=config.image_size,
            patch_size=config.patch_size,
            hidden_act="gelu",
            layer_norm_eps=1e-5,
            dropout=0.0,
            attention_dropout=0.0,
            assign_eps=1.0,
            assign_mlp_ratio=[0.5, 4],
        ),
        projection_dim=config.projection_dim,
        projection_intermediate_dim=config.projection_hidden,
        logit_scale_init_value=config.initial_logit_scale,
    )


@torch.no_grad()
def official_init(model: GroupViTModel) -> None:
    """The official initialisation (transformers' ``post_init`` differs), for training from scratch.

    Image tower: every Linear truncated-normal (std 0.02) with zero bias, LayerNorms 1 / 0, the
    patch convolution PyTorch's default, the positional table truncated-normal; group tokens
    truncated-normal in the first grouping stage, zero where a projector adds the previous ones.
    Text tower (CLIP's scheme): token embeddings N(0, 0.02), positions N(0, 0.01), q/k/v
    N(0, width^-0.5) with zero bias, attention output and MLP output N(0, width^-0.5 (2 layers)^-0.5),
    MLP input N(0, (2 width)^-0.5); MLP biases and the projection heads PyTorch's defaults.
    """
    vision, text = model.vision_model, model.text_model
    for module in vision.modules():
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    vision.embeddings.patch_embeddings.projection.reset_parameters()
    trunc_normal_(vision.embeddings.position_embeddings, std=0.02)
    for stage in vision.encoder.stages:
        if stage.group_token is not None:
            if stage.group_projector is None:
                trunc_normal_(stage.group_token, std=0.02)
            else:
                nn.init.zeros_(stage.group_token)
    width = text.config.hidden_size
    layers = text.config.num_hidden_layers
    proj_std, attn_std, fc_std = width**-0.5 * (2 * layers) ** -0.5, width**-0.5, (2 * width) ** -0.5
    nn.init.normal_(text.embeddings.token_embedding.weight, std=0.02)
    nn.init.normal_(text.embeddings.position_embedding.weight, std=0.01)
    for module in text.modules():
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for layer in text.encoder.layers:
        attention = layer.self_attn
        for projection in (attention.q_proj, attention.k_proj, attention.v_proj):
            nn.init.normal_(projection.weight, std=attn_std)
            nn.init.zeros_(projection.bias)
        nn.init.normal_(attention.out_proj.weight, std=proj_std)
        nn.init.zeros_(attention.out_proj.bias)
        layer.mlp.fc1.reset_parameters()
        layer.mlp.fc2.reset_parameters()
        nn.init.normal_(layer.mlp.fc1.weight, std=fc_std)
        nn.init.normal_(layer.mlp.fc2.weight, std=proj_std)
    for head in (model.visual_projection, model.text_projection):
        for module in head:
            if isinstance(module, nn.Linear | nn.BatchNorm1d):
                module.reset_parameters()


class GroupViT(SegMethod):
    """State dict: ``model.*`` (transformers' ``GroupViTModel`` names) and, with ``multi_label`` > 0,
    ``prompt_logit_scale`` (the multi-label loss's temperature, officially ``multi_label_logit_scale``).

    On benchmarks with a background class GroupViT decides background itself, per window
    (``scores_background``): the harness gives it a vocabulary whose class 0 is background and
    takes the argmax of what :meth:`segment` returns.
    """

    scores_background = True

    def __init__(self, config: GroupViTConfig) -> None:
        super().__init__(config)
        _check(config)
        self.tokenizer = load_tokenizer(config.tokenizer)
        self.model = GroupViTModel(hf_config(config, self.tokenizer))
        official_init(self.model)
        if config.multi_label:  # as officially: only a model trained with prompts has this temperature
            self.prompt_logit_scale = nn.Parameter(torch.tensor(config.initial_logit_scale))
        blocks = sum(config.depths)
        rates = torch.linspace(0, config.drop_path, blocks).tolist() if blocks else []
        starts = [sum(config.depths[:i]) for i in range(len(config.depths))]
        self._drop_path = [rates[s : s + d] for s, d in zip(starts, config.depths)]

    # -- image tower -------------------------------------------------------------------------------
    def encode_image(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The final group tokens after the last LayerNorm ``[B, G, C]`` and each grouping stage's
        soft assignment ``[B, G_i, L_i]``. Any input size: the positional table is resized to the
        patch grid (the last partial patches are dropped, as the convolution drops them)."""
        vision = self.model.vision_model
        x = vision.embeddings(images, interpolate_pos_encoding=True)
        groups: Tensor | None = None
        soft_maps = []
        for stage, rates in zip(vision.encoder.stages, self._drop_path):
            x, groups, soft = self.run_stage(stage, x, groups, rates)
            if soft is not None:
                soft_maps.append(soft)
        return vision.layernorm(x), soft_maps

    def run_stage(
        self, stage: GroupViTStage, x: Tensor, previous: Tensor | None, rates: list[float]
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """One stage: blocks over image and group tokens, then the grouping block (if any).

        Returns the new tokens, this stage's group tokens before grouping (the next stage's
        projector input) and the soft assignment.
        """
        groups = None
        if stage.group_token is not None:
            groups = stage.group_token.expand(x.shape[0], -1, -1)
            if stage.group_projector is not None:
                groups = groups + stage.group_projector(previous)
            x = torch.cat([x, groups], dim=1)
        for layer, rate in zip(stage.layers, rates):
            attended = layer.self_attn(hidden_states=layer.layer_norm1(x))[0]
            x = x + drop_path(attended, rate, self.training)
            x = x + drop_path(layer.mlp(layer.layer_norm2(x)), rate, self.training)
        if groups is None:
            return x, None, None
        count = stage.group_token.shape[1]
        x, groups = x[:, :-count], x[:, -count:]
        new, soft = self.group(stage.downsample, x, groups)
        return new, groups, soft

    def group(self, block: GroupViTTokenAssign, x: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
        """The grouping block: image tokens ``[B, L, C]`` -> segment tokens ``[B, S, C]``, and the soft
        assignment ``[B, S, L]``. Tokens are pooled by the hard (training: Gumbel) assignment."""
        groups = block.norm_tokens(groups)
        x = block.norm_x(x)
        queries = block.norm_post_tokens(block.mlp_inter(groups))
        queries = block.pre_assign_attn(queries, x)
        attend = block.assign
        logits = (attend.q_proj(queries) @ attend.k_proj(x).transpose(-2, -1)) * attend.scale
        if self.training:
            weights = gumbel_assignment(logits, self.config.gumbel_tau)
        else:
            weights = hard_assignment(logits)
        soft = logits.softmax(-2)
        weights = weights / (weights.sum(-1, keepdim=True) + attend.assign_eps)
        out = attend.proj(weights @ attend.v_proj(x)) + queries
        return out + block.mlp_channels(block.norm_new_x(out)), soft

    def project_image(self, tokens: Tensor) -> Tensor:
        """The image head on ``[B, C]`` or per token on ``[B, T, C]`` (the official 1x1 convolutions)."""
        flat = tokens.reshape(-1, tokens.shape[-1])
        return self.model.visual_projection(flat).reshape(*tokens.shape[:-1], -1)

    # -- text tower ---------------------------------------------------------------------------------
    def embed_text(self, ids: Tensor) -> Tensor:
        """Projected (not normalised) embeddings ``[N, D]`` of token ids ``[N, L]``: the final
        LayerNorm at the end-of-text token, then the text head."""
        pooled = self.model.text_model(input_ids=ids).pooler_output
        return self.model.text_projection(pooled)

    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    # -- inference ------------------------------------------------------------------------------------
    def foreground(self, vocab: Vocabulary) -> Vocabulary:
        """The classes scored by text: all, or all but class 0 when class 0 is background."""
        if not vocab.background_query:
            return vocab
        return Vocabulary(vocab.classes[1:], vocab.templates)

    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        """One embedding per name: projected template embeddings averaged, then normalised."""
        names = self.foreground(vocab).names
        prompts = [template.format(name) for name in names for template in vocab.templates]
        ids = tokenize(self.tokenizer, prompts, self.config.context_length).to(self.device)
        embedded = torch.cat([self.embed_text(chunk) for chunk in ids.split(TEXT_CHUNK)])
        per_name = embedded.reshape(len(names), len(vocab.templates), -1).mean(1)
        return TextState(vocab, F.normalize(per_name, dim=-1))

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Scores ``[B, K, H, W]`` at the window's size: each pixel carries its group's class
        probabilities; with a background class, channel 0 is GroupViT's 0/1 background."""
        tokens, soft_maps = self.encode_image(images)
        height, width = images.shape[-2:]
        patch = self.config.patch_size
        assignment = pixel_groups(soft_maps, (height // patch, width // patch), (height, width))
        groups = F.normalize(self.project_image(tokens), dim=-1)
        window = F.normalize(self.project_image(tokens.mean(1)), dim=-1)
        probs = group_class_probs(groups, window, text.embeddings, self.logit_scale(), self.config.top_k)
        fg = self.foreground(text.vocabulary)
        scores = max_over_names(gather_groups(probs, assignment), fg.name_to_class, fg.num_classes)
        if not text.vocabulary.background_query:
            return scores
        return torch.cat([background(scores, probs, self.config.bg_thresh), scores], dim=1)

    # -- training ------------------------------------------------------------------------------------
    def train_transform(self) -> GroupViTTrainTransform:
        c = self.config
        words = noun_extractor(c.nouns, tags=WORD_TAGS, distinct=False) if c.multi_label else None
        return GroupViTTrainTransform(
            self.tokenizer,
            c.context_length,
            c.train_size,
            c.crop_scale,
            c.auto_augment,
            c.color_jitter,
            c.re_prob,
            words,
            c.multi_label,
            get_templates(c.prompt_templates),
        )

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """``{"loss", "image_text", ["multi_label"], "logit_scale"}``: the image-text contrastive loss
        and, with prompts, the multi-label loss (``multi_label_loss_weight`` x)."""
        images, texts = batch["image"], batch["text"]  # [B, 3, S, S], [B, 1 + K, L]
        if images.shape[0] * world_size() < 2:
            raise ConfigError(
                "GroupViT contrasts each image with the other captions: use a global batch >= 2"
            )
        tokens, _ = self.encode_image(images)
        image = F.normalize(self.project_image(tokens.mean(1)), dim=-1)
        # Caption and prompts in one batch, as the official encode_text does (one BatchNorm batch).
        embedded = F.normalize(self.embed_text(texts.flatten(0, 1)), dim=-1).unflatten(0, texts.shape[:2])
        scale = self.logit_scale()
        terms = {"image_text": image_text_loss(image, embedded[:, 0], scale)}
        if texts.shape[1] > 1:
            ml_scale = self.prompt_logit_scale.exp().clamp(max=self.config.max_logit_scale)
            ml = multi_label_loss(image, embedded[:, 1:], ml_scale)
            terms["multi_label"] = self.config.multi_label_weight * ml
        total = torch.stack(list(terms.values())).sum()
        return {"loss": total, **{k: v.detach() for k, v in terms.items()}, "logit_scale": scale.detach()}

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The official rule (``utils/optimizer.py``): no decay for 1-D parameters and biases; the
        0-dim logit scales and the 3-D group tokens and positional table are decayed."""
        return decay_groups(self.named_parameters(), weight_decay)
