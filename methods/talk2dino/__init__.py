"""Talk2DINO: Bridging Self-Supervised Vision Backbones with Language for Open-Vocabulary Segmentation
(Barsellotti, Bianchi et al., ICCV 2025). See README.md.

:mod:`.alignment` holds the distinctive steps (attention-weighted head embeddings, ``max_score``
head selection and its loss, background cleaning), :mod:`.model` the method and its projection,
:mod:`.transform` the training sample, :mod:`.checkpoint` the released weights and converter,
:mod:`.config` the presets.
"""

from textseg.api import MethodSpec
from textseg.evaluation.protocol import Protocol
from textseg.methods.talk2dino.checkpoint import CHECKPOINTS, convert_checkpoint
from textseg.methods.talk2dino.config import PRESETS, Talk2DINOConfig
from textseg.methods.talk2dino.model import Talk2DINO

#: Talk2DINO's evaluation (``segmentation/configs/_base_/datasets/*.py``, ``eval_*.yml``): TCL's
#: geometry (short side 448, long side <= 2048, 448 windows at stride 224) and mmseg's class names,
#: with the seven ``sub_imagenet_template`` prompts. The official pipeline hands 0-255 BGR windows
#: to the model, which normalises them with ImageNet's statistics itself: the same numbers as this
#: protocol's normalisation.
PROTOCOL = Protocol(
    name="talk2dino",
    version="1",
    summary="Talk2DINO's protocol: short side 448, 448 windows / 224 stride, ImageNet norm, 7 sub-ImageNet templates",
    templates="imagenet7",
)

SPEC = MethodSpec(
    name="talk2dino",
    summary="Talk2DINO: CLIP text embeddings projected into frozen DINOv2's patch space, trained on captions",
    paper="Barsellotti, Bianchi, Messina, Carrara, Cornia, Baraldi, Falchi, Cucchiara. Talking to DINO: "
    "Bridging Self-Supervised Vision Backbones with Language for Open-Vocabulary Segmentation. ICCV 2025. "
    "arXiv:2411.19331",
    config_cls=Talk2DINOConfig,
    build=Talk2DINO,
    presets=PRESETS,
    checkpoints=CHECKPOINTS,
    convert_checkpoint=convert_checkpoint,
    trainable=True,
    license="Talk2DINO code: no license file in the repository (UNVERIFIED terms); DINOv2: Apache-2.0",
)

__all__ = ["PROTOCOL", "SPEC", "Talk2DINO", "Talk2DINOConfig"]
