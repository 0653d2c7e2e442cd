"""CLIP-DINOiser: Teaching CLIP a few DINO tricks (Wysoczańska et al., ECCV 2024). See README.md.

:mod:`.model` holds the method and its distinctive steps (correlation pooling, the FOUND background
rule, the training targets), :mod:`.transform` the training sample, :mod:`.checkpoint` the released
heads and their converter, :mod:`.config` the settings and presets.
"""

from textseg.api import MethodSpec
from textseg.evaluation.protocol import Protocol
from textseg.methods.clipdinoiser.checkpoint import CHECKPOINTS, convert_checkpoint
from textseg.methods.clipdinoiser.config import PRESETS, CLIPDINOiserConfig
from textseg.methods.clipdinoiser.model import CLIPDINOiser

#: CLIP-DINOiser's evaluation (TCL's code, mmseg 0.27; ``segmentation/configs/_base_/datasets/*.py``):
#: short side 448, long side <= 2048, 448 windows at stride 224 on every benchmark, images divided by
#: 255 (``ImageToTensorV2``; the model applies CLIP's mean/std itself), the 80 ImageNet templates, the
#: datasets' ``CLASSES`` as names (``dining table``, ``potted plant``, COCO-Object's ``aeroplane``)
#: and ``background`` scored as text where a benchmark has it.
PROTOCOL = Protocol(
    name="clipdinoiser",
    version="1",
    summary="CLIP-DINOiser's protocol: short side 448, 448 windows / 224 stride, pixels / 255, 80 templates, "
    "its class names, background as text",
    mean=CLIPDINOiser.input_normalisation[0],
    std=CLIPDINOiser.input_normalisation[1],
    templates="openai80",
    background_query=True,
    benchmarks={
        name: {"synonyms": "clipdinoiser"}
        for name in ("voc21", "voc20", "context60", "context59", "coco_object")
    },
)

SPEC = MethodSpec(
    name="clipdinoiser",
    summary="CLIP-DINOiser: MaskCLIP features pooled by correlations a light head learned from DINO, "
    "FOUND-style background head",
    paper="Wysoczańska, Siméoni, Ramamonjisoa, Bursuc, Trzciński, Pérez. CLIP-DINOiser: Teaching CLIP a few "
    "DINO tricks for open-vocabulary semantic segmentation. ECCV 2024. arXiv:2312.12359",
    config_cls=CLIPDINOiserConfig,
    build=CLIPDINOiser,
    presets=PRESETS,
    checkpoints=CHECKPOINTS,
    convert_checkpoint=convert_checkpoint,
    trainable=True,
    license="Apache-2.0 (official code and heads); CLIP weights: OpenCLIP LAION-2B release (MIT); "
    "DINO and FOUND (training only): Apache-2.0",
)

__all__ = ["PROTOCOL", "SPEC", "CLIPDINOiser", "CLIPDINOiserConfig"]
