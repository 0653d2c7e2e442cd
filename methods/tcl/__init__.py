"""TCL: Learning to Generate Text-grounded Mask for Open-world Semantic Segmentation from Only
Image-Text Pairs (Cha, Mun, Roh; CVPR 2023). See README.md in this folder.

The pieces are separate modules so other methods (CoDe) reuse them: :mod:`.decoder` (GDecoder),
:mod:`.grounder` (block copy + decoder + projection copy), :mod:`.masks` (cosine map, Sim2Mask,
Gumbel, positive/negative split), :mod:`.losses`, :mod:`.inference` (``generate_masks``, kp branch,
PAMR placement), :mod:`.transform`, :mod:`.checkpoint`, :mod:`.model` (the method), :mod:`.config`.
"""

from textseg.api import MethodSpec
from textseg.methods.tcl.checkpoint import OFFICIAL, convert_checkpoint
from textseg.methods.tcl.config import PRESETS, TCLConfig
from textseg.methods.tcl.model import TCL

SPEC = MethodSpec(
    name="tcl",
    summary="TCL: text-grounded masks from image-text pairs (frozen CLIP + trained grounder)",
    paper="Cha, Mun, Roh. Learning to Generate Text-grounded Mask for Open-world Semantic Segmentation "
    "from Only Image-Text Pairs. CVPR 2023. arXiv:2212.00785",
    config_cls=TCLConfig,
    build=TCL,
    presets=PRESETS,
    checkpoints={"official": OFFICIAL},
    convert_checkpoint=convert_checkpoint,
    trainable=True,
    license="MIT (official code, kakaobrain/tcl)",
    default_preset="paper",
)

__all__ = ["SPEC", "TCL", "TCLConfig"]
