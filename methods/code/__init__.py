"""CoDe: Image-Text Co-Decomposition for Text-Supervised Semantic Segmentation (Wu, Chang, Chuang,
Chen, Liu, Chen, Hu, Chuang, Lin; CVPR 2024). See README.md in this folder.

Built on TCL's pieces (:mod:`textseg.methods.tcl`): :mod:`.prompts` (noun prompt, word
highlighting), :mod:`.text_segmenter`, :mod:`.labels` (BPE pseudo-labels), :mod:`.losses`,
:mod:`.transform`, :mod:`.checkpoint` (the release, the converter), :mod:`.model`, :mod:`.config`.
"""

from textseg.api import MethodSpec
from textseg.methods.code.checkpoint import OFFICIAL, convert_checkpoint
from textseg.methods.code.config import PRESETS, CoDeConfig
from textseg.methods.code.model import CoDe

SPEC = MethodSpec(
    name="code",
    summary="CoDe: image-text co-decomposition (TCL's grounder + noun prompt, text segmenter, highlighting)",
    paper="Wu, Chang, Chuang, Chen, Liu, Chen, Hu, Chuang, Lin. Image-Text Co-Decomposition for "
    "Text-Supervised Semantic Segmentation. CVPR 2024. arXiv:2404.04231",
    config_cls=CoDeConfig,
    build=CoDe,
    presets=PRESETS,
    checkpoints={"official": OFFICIAL},
    convert_checkpoint=convert_checkpoint,
    trainable=True,
    license="no license file in the official repository (072jiajia/Image-Text-Co-Decomposition)",
    default_preset="paper",
)

__all__ = ["SPEC", "CoDe", "CoDeConfig"]
