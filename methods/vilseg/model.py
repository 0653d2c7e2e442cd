"""ViL-Seg: a ViT and a text transformer trained with cross-modal and vision contrast, plus an online
clustering head whose clusters are classified against class-name embeddings at test time."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.clip import load_clip
from textseg.contrastive import clip_loss
from textseg.errors import ConfigError
from textseg.methods.vilseg.clustering import ClusterHead, classify_clusters
from textseg.methods.vilseg.config import VilSegConfig
from textseg.methods.vilseg.encoders import (
    VisionTower,
    build_vit,
    clip_text_state,
    hf_clip_vision_to_timm,
    text_tower,
    vit_from_clip_config,
)
from textseg.methods.vilseg.losses import iic_loss, local_global_loss
from textseg.methods.vilseg.transform import VilSegTrainTransform, sample_boxes, unflip

#: CLIP clamps its logit scale at 100.
MAX_LOGIT_SCALE = math.log(100.0)
#: Prompts encoded per text-tower call in ``encode_vocabulary``.
TEXT_CHUNK = 256


def _check(config: VilSegConfig) -> None:
    if config.num_clusters < 2:
        raise ConfigError(f"num_clusters must be at least 2, got {config.num_clusters}")
    low, high = config.cluster_scale
    if not 0 < low <= high <= 1:
        raise ConfigError(f"cluster_scale must satisfy 0 < low <= high <= 1, got {config.cluster_scale}")
    if not 0.0 <= config.teacher_momentum < 1.0:
        raise ConfigError(f"teacher_momentum must be in [0, 1), got {config.teacher_momentum}")


class VilSeg(SegMethod):
    """The method; see ``README.md`` for what is verified and what is reconstructed."""

    inference_settings = ("score_temperature", "bg_thresh")

    def __init__(self, config: VilSegConfig) -> None:
        super().__init__(config)
        _check(config)
        clip, self.tokenizer = load_clip(config.clip)
        clip_state = clip.state_dict()
        embed_dim = clip.config.projection_dim
        vision_config = clip.config.vision_config

        if config.vision_init == "clip":
            self.visual = VisionTower(vit_from_clip_config(vision_config), embed_dim)
            self.visual.load_state_dict(hf_clip_vision_to_timm(clip_state, vision_config.num_hidden_layers))
        else:
            vit = build_vit(
                width=config.vit_width,
                depth=config.vit_depth,
                heads=config.vit_heads,
                patch_size=config.patch_size,
                image_size=config.vit_image_size,
                mlp_ratio=4.0,
                act=vision_config.hidden_act,
                eps=vision_config.layer_norm_eps,
            )
            self.visual = VisionTower(vit, embed_dim)
        patch = self.visual.vit.patch_embed.patch_size[0]
        if config.global_size % patch:
            raise ConfigError(
                f"global_size {config.global_size} must be a multiple of the patch size {patch}: the "
                "clustering loss pairs the patches of two views by their position in the image"
            )
        self.text = text_tower(clip.config.text_config, embed_dim)
        if config.text_init == "clip":
            self.text.load_state_dict(clip_text_state(clip_state))
        if "clip" in (config.vision_init, config.text_init):
            scale = clip.logit_scale.item()
        else:
            scale = math.log(1 / config.init_temperature)
        self.logit_scale = nn.Parameter(torch.tensor(scale))
        self.cluster_head = ClusterHead(embed_dim, config.num_clusters, config.cluster_head)
        self.teacher: VisionTower | None = None
        if config.vision_teacher == "ema":
            self.teacher = copy.deepcopy(self.visual).requires_grad_(False)
        self._teacher_step = -1

    # -- text ----------------------------------------------------------------------------------
    def embed_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """L2-normalised joint-space embeddings of tokenised texts (CLIP's EOS pooling + projection)."""
        out = self.text(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(out.text_embeds, dim=-1)

    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        """One embedding per name: the re-normalised mean over the vocabulary's templates."""
        prompts = [template.format(name) for name in vocab.names for template in vocab.templates]
        chunks = []
        for start in range(0, len(prompts), TEXT_CHUNK):
            tokens = self.tokenizer(
                prompts[start : start + TEXT_CHUNK],
                padding=True,
                truncation=True,
                max_length=self.config.context_length,
                return_tensors="pt",
            ).to(self.device)
            chunks.append(self.embed_text(tokens["input_ids"], tokens["attention_mask"]))
        per_prompt = torch.cat(chunks).reshape(len(vocab.names), len(vocab.templates), -1)
        return TextState(vocab, F.normalize(per_prompt.mean(1), dim=-1))

    # -- inference -----------------------------------------------------------------------------
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Softmax-over-classes scores of each patch's cluster, ``[B, K, h, w]`` (see README, Scores)."""
        _, patches = self.visual(images)
        patches = F.normalize(patches, dim=-1)
        assign = self.cluster_head(patches).argmax(-1)
        scores = classify_clusters(
            patches,
            assign,
            text.embeddings,
            torch.tensor(text.vocabulary.name_to_class, device=images.device),
            text.vocabulary.num_classes,
            self.config.num_clusters,
            self.config.score_temperature,
        )
        height, width = images.shape[-2:]
        grid_h, grid_w = scores.shape[-2:]
        patch = self.visual.vit.patch_embed.patch_size
        if (grid_h * patch[0], grid_w * patch[1]) != (height, width):
            # The ViT padded the input to whole patches: drop the padded border at pixel level.
            scores = F.interpolate(scores, (grid_h * patch[0], grid_w * patch[1]), mode="bilinear")
            scores = scores[..., :height, :width]
        return scores

    # -- training ------------------------------------------------------------------------------
    def train_transform(self) -> VilSegTrainTransform:
        return VilSegTrainTransform(self.config, self.tokenizer)

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        cfg = self.config
        image, image_aug = batch["image"], batch["image_aug"]
        size = len(image)
        global_emb, patches = self.visual(torch.cat([image, image_aug]))
        image_emb = F.normalize(global_emb[:size], dim=-1)
        text_emb = self.embed_text(batch["input_ids"], batch["attention_mask"])
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        terms = {"cross_modal": clip_loss(image_emb, text_emb, scale)}

        local = batch["local"]
        if cfg.vision_weight and local.shape[1]:
            queries = F.normalize(self.visual(local.flatten(0, 1))[0], dim=-1)
            if self.teacher is not None:
                with torch.no_grad():
                    keys = F.normalize(self.teacher(image)[0], dim=-1)
            else:
                keys = image_emb
            terms["vision"] = local_global_loss(queries, keys, cfg.vision_temperature)

        if cfg.cluster_weight:
            dense = F.normalize(patches.detach() if cfg.cluster_detach else patches, dim=-1)
            probs = self.cluster_head(dense).softmax(-1)  # [2B, h, w, C]
            second = unflip(probs[size:], batch["flip"])
            first = sample_boxes(probs[:size].permute(0, 3, 1, 2), batch["box"], second.shape[1:3])
            terms["cluster"] = iic_loss(
                first.permute(0, 2, 3, 1).flatten(0, 2),
                second.flatten(0, 2),
                cfg.cluster_lambda,
                cfg.cluster_global_stats,
            )

        weights = {
            "cross_modal": cfg.cross_weight,
            "vision": cfg.vision_weight,
            "cluster": cfg.cluster_weight,
        }
        loss = sum(weights[name] * value for name, value in terms.items())
        return {
            "loss": loss,
            **{name: value.detach() for name, value in terms.items()},
            "logit_scale": scale.detach(),
        }

    def on_train_step(self, step: int) -> None:
        """Move the EMA teacher once per optimisation step (the hook may repeat a step under accumulation)."""
        if self.teacher is None or step == self._teacher_step:
            return
        self._teacher_step = step
        if step == 0:
            return
        momentum = self.config.teacher_momentum
        with torch.no_grad():
            for teacher, student in zip(self.teacher.parameters(), self.visual.parameters()):
                teacher.mul_(momentum).add_(student.detach(), alpha=1 - momentum)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Decay on matrices only; the new heads get ``head_lr`` (as an explicit group ``lr``) if set."""
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            is_head = name.startswith("cluster_head.")
            groups.setdefault((is_head, param.ndim >= 2), []).append(param)
        out = []
        for (is_head, decay), params in groups.items():
            group: dict[str, Any] = {"params": params, "weight_decay": weight_decay if decay else 0.0}
            if is_head and self.config.head_lr is not None:
                group["lr"] = self.config.head_lr
            out.append(group)
        return out
