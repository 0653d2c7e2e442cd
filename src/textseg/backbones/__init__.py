"""Backbones behind one door: CLIP (transformers, OpenAI files, OpenCLIP) and vision foundation
models (DINO, DINOv2, SAM's image encoder, MAE).

A method names its backbones in its config, as strings the user can change with ``--set``, and
asks this layer for them; it never imports open_clip, timm or torch.hub itself.

**CLIP** (the ``clip`` setting): :func:`load_clip_backbone` (= :meth:`textseg.clip.CLIPBackbone.load`)
takes a hub id, a transformers folder, an OpenAI-format file, ``open_clip:ARCH[/TAG|/FILE]`` or
``tiny`` and returns a :class:`~textseg.clip.CLIPBackbone`: every kind is converted into
transformers' CLIP modules, so the dense last-block variants (:data:`textseg.clip.LAST_BLOCKS`:
MaskCLIP's ``self``/``value``, SCLIP's ``csa``, ClearCLIP's ``qq``, NACLIP's ``naclip``), position
interpolation and the text tower work the same on each (:mod:`textseg.clip.loading`,
:mod:`textseg.clip.openclip`; ``blocks`` is :mod:`textseg.clip.blocks`)::

    clip = load_clip_backbone("open_clip:ViT-B-16/laion2b_s34b_b88k")
    x, grid = clip.vision.tokens_before_last(images, "scale")       # blocks 1 .. L-1
    feats = clip.vision.dense(images, "qq", "scale")                 # [B, D, h, w] projected
    layer = clip.vision.last_layer                                   # q_proj / k_proj / v_proj / out_proj
    outs, grid = clip.vision.block_outputs(images, "scale")          # input of block i = outs[i]
    q, k, v = blocks.qkv(layer.self_attn, layer.layer_norm1(x))      # per head [B, heads, 1 + h*w, d]
    probs = blocks.attention_map(layer.self_attn, layer.layer_norm1(x))  # softmax(s q kᵀ) per head

**Vision foundation models** (a ``vfm`` setting): :func:`load_vfm` takes ``NAME[@WEIGHTS]``
(:mod:`textseg.backbones.catalogue`: ``dino_vitb8``, ``dino_vitb16``, ``dinov2_vitb14_reg``,
``sam_vit_b``, ``mae_vitb16``, ..., and the tiny stand-ins ``tiny-dino8``, ``tiny-dino16``,
``tiny-dinov2``, ``tiny-dinov2-reg``, ``tiny-sam``) and returns a :class:`VisionFoundationModel`;
calling it gives :class:`VFMFeatures` (:mod:`textseg.backbones.vfm`)::

    vfm = load_vfm("dinov2_vitb14_reg")                              # or "tiny-dinov2-reg" in tests
    out = vfm(vfm.renormalize(images, mean_01, std_01), qkv=True)  # CLIP's mean/std on the 0-1 scale
    out.patches          # [B, C, h, w] final-norm patch tokens (ProxyCLIP's, Talk2DINO's features)
    out.q, out.k, out.v  # [B, heads, P + h*w, d] last block, per head (P = 1 + registers)
    out.cls_attention()  # [B, heads, h*w] CLS -> patch logits, registers excluded (Talk2DINO)
    out.head_map("v")    # [B, C, h, w] last-block values, heads concatenated (CLIP-DINOiser)

:func:`backbone_rows` lists every spelling (``textseg list backbones``).
"""

from textseg.backbones.catalogue import VFM_MODELS, BackboneRow, VFMEntry, backbone_rows, load_vfm, parse_vfm
from textseg.backbones.vfm import IMAGENET_MEAN, IMAGENET_STD, VFMFeatures, VisionFoundationModel
from textseg.clip.backbone import CLIPBackbone


def load_clip_backbone(source: str, tokenizer: str | None = None, text_cache: bool = True) -> CLIPBackbone:
    """A frozen :class:`~textseg.clip.CLIPBackbone` from any CLIP spelling (see the module docstring)."""
    return CLIPBackbone.load(source, tokenizer, text_cache=text_cache)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VFM_MODELS",
    "BackboneRow",
    "CLIPBackbone",
    "VFMEntry",
    "VFMFeatures",
    "VisionFoundationModel",
    "backbone_rows",
    "load_clip_backbone",
    "load_vfm",
    "parse_vfm",
]
