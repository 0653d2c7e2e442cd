"""CLIP towers through transformers: loading (hub id, folder, OpenAI file, OpenCLIP), dense image features with
named last-block variants, positional-embedding interpolation, and text encoding with template
ensembles and an embedding cache."""

from textseg.clip.backbone import CLIPBackbone, backbone_state
from textseg.clip.last_block import LAST_BLOCKS, LastBlock, get_last_block
from textseg.clip.loading import DEFAULT_CLIP, load_clip
from textseg.clip.padding import pad_to_multiple, unpad_scores
from textseg.clip.positions import POSITION_MODES, interpolate_positions
from textseg.clip.text import TEMPLATE_AVERAGES, TextTower
from textseg.clip.vision import VisionTower

__all__ = [
    "DEFAULT_CLIP",
    "LAST_BLOCKS",
    "POSITION_MODES",
    "TEMPLATE_AVERAGES",
    "CLIPBackbone",
    "LastBlock",
    "TextTower",
    "VisionTower",
    "backbone_state",
    "get_last_block",
    "interpolate_positions",
    "load_clip",
    "pad_to_multiple",
    "unpad_scores",
]
