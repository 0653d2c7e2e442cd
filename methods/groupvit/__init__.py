"""GroupViT: Semantic Segmentation Emerges from Text Supervision (Xu et al., CVPR 2022). See README.md.

:mod:`.grouping` holds the distinctive steps (straight-through Gumbel assignment, the chained
group maps, the group-to-class scores and the background rule), :mod:`.model` the method,
:mod:`.losses` the two contrastive losses, :mod:`.transform` the training sample (caption plus
word prompts), :mod:`.checkpoint` the released weights and converters, :mod:`.config` the presets.
"""

from textseg.api import MethodSpec
from textseg.evaluation.protocol import Protocol
from textseg.methods.groupvit.checkpoint import CHECKPOINTS, convert_checkpoint
from textseg.methods.groupvit.config import PRESETS, GroupViTConfig
from textseg.methods.groupvit.model import GroupViT

#: GroupViT's own evaluation (``segmentation/configs/_base_/datasets/*.py``, ``default.yml``): TCL's
#: geometry (TCL inherited it: short side 448, long side <= 2048, 448 windows at stride 224,
#: ImageNet mean/std), one template "a photo of a {}." and GroupViT's class names where its
#: dataset classes rename them (VOC and Context: plant, monitor, table / airplane).
PROTOCOL = Protocol(
    name="groupvit",
    version="1",
    summary="GroupViT's protocol: short side 448, 448 windows / 224 stride, ImageNet norm, 'a photo of a {}.', "
    "its class names",
    templates="simple",
    benchmarks={name: {"synonyms": "groupvit"} for name in ("voc21", "context60", "coco_object")},
)

SPEC = MethodSpec(
    name="groupvit",
    summary="GroupViT: hierarchical grouping ViT trained from image-text pairs alone (text encoder from scratch)",
    paper="Xu, De Mello, Liu, Byeon, Breuel, Kautz, Wang. GroupViT: Semantic Segmentation Emerges from Text "
    "Supervision. CVPR 2022. arXiv:2202.11094",
    config_cls=GroupViTConfig,
    build=GroupViT,
    presets=PRESETS,
    checkpoints=CHECKPOINTS,
    convert_checkpoint=convert_checkpoint,
    trainable=True,
    license="NVIDIA Source Code License (official code and weights; non-commercial)",
)

__all__ = ["PROTOCOL", "SPEC", "GroupViT", "GroupViTConfig"]
