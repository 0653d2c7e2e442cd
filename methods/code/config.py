"""CoDe's settings and presets. Defaults are the official values (072jiajia/Image-Text-Co-Decomposition
``configs/{default,experiment_configs,eval}.yml`` and constants hard-coded in ``models/tcl``).

:class:`CoDeConfig` extends :class:`~textseg.methods.tcl.config.TCLConfig`: the image segmenter,
its masks, its losses and the inference pipeline are TCL's, configured as CoDe configures them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textseg.api import Preset
from textseg.clip.text import TemplateAverage
from textseg.config import NonNegative, Probability
from textseg.methods.tcl.config import PAPER_TRAIN as TCL_PAPER_TRAIN
from textseg.methods.tcl.config import PRESETS as TCL_PRESETS
from textseg.methods.tcl.config import TCLConfig
from textseg.testing.contract import CONTRACT_NOUNS
from textseg.text.nouns import NounConfig


@dataclass(frozen=True)
class CoDeConfig(TCLConfig):
    """TCL's settings (see :class:`TCLConfig`) with CoDe's values, plus CoDe's own.

    Changed from TCL: one gated convolution per decoder stage (``decoder_double=False``); area
    prior 0.25 with weight 0.5 (``pos_area``, ``area_w``) and negative-area weight 0.05
    (``neg_area_w``); training crops with scale 0.9-1 and a flip only (no RandAugment, colour
    jitter or erasing); ``text_average="unit"``: the kp branch averages L2-normalised template
    embeddings (the mask branch uses no templates, see below).

    Noun prompt: ``n_ctx`` learned context vectors after the start token, initialised from the
    token embeddings of ``ctx_init`` followed by ``x`` tokens; the class name or noun follows.

    Text segmenter: ``text_decoder_layers`` / ``text_decoder_heads`` of a transformer as wide as
    the text tower, on its last hidden states; per-token logit ``text_mask_w * cos + text_mask_b``
    (initial values) against a fixed 0 background logit.

    Losses: ``kg_w`` (knowledge-guided: noun prompt vs a random ``kg_templates`` sentence),
    ``tseg_w`` (word-mask cross-entropy; ``tseg_other_weight`` is the class weight of label 0,
    the caption's other nouns), ``hcl_w`` (highlighted region vs highlighted words); TCL's
    ``tcl_w`` (feature- and image-level), ``tv_w`` and the area terms as above.

    Data: ``num_nouns`` distinct nouns per caption (fewer: the sample is skipped), extracted by
    ``nouns`` (:class:`textseg.text.nouns.NounConfig`: ``nltk`` officially, or ``lexicon``).

    Prompts: the region prompt is a ``region_prompt_size`` square image (resized bilinearly to the
    input), the word prompt one token embedding per text position; ``learn_region_prompt`` /
    ``learn_word_prompt`` switch their training off (they stay zero, as officially).
    """

    decoder_double: bool = False
    area_w: NonNegative = 0.5
    neg_area_w: NonNegative | None = 0.05
    pos_area: Probability = 0.25
    crop_scale: tuple[float, float] = (0.9, 1.0)
    auto_augment: str | None = None
    color_jitter: NonNegative = 0.0
    re_prob: Probability = 0.0
    text_average: TemplateAverage = "unit"
    n_ctx: int = 16
    ctx_init: str = "A photo of"
    text_decoder_layers: int = 2
    text_decoder_heads: int = 8
    text_mask_w: float = 10.0
    text_mask_b: float = 0.0
    kg_w: NonNegative = 8.0
    kg_templates: str = "openai80"
    tseg_w: NonNegative = 1.0
    tseg_other_weight: Probability = 0.5
    hcl_w: NonNegative = 0.5
    num_nouns: int = 2
    nouns: NounConfig = field(default_factory=NounConfig)
    region_prompt_size: int = 224
    learn_region_prompt: bool = True
    learn_word_prompt: bool = True


#: configs/experiment_configs.yml as scripts/train.sh runs it: TCL's recipe (AdamW eps 1e-6, wd 0.05,
#: 15k warmup from 1e-4, cosine to 50k, min lr 4e-5, clip 5, fp16, lr scaled by global batch / 4096)
#: with 16 images per process on 4 GPUs and base lr 3.2e-4 (5e-6 and 6.25e-7 at batch 64).
PAPER_TRAIN = {**TCL_PAPER_TRAIN, "batch_size": 16, "lr": 3.2e-4}

PRESETS = {
    "paper": Preset(
        "the published recipe: PAMR on, background 0.4, kp_w 0.3; CC3M+CC12M training, 4 x 16, NLTK nouns",
        model={"pamr": True, "bg_thresh": 0.4, "kp_w": 0.3},
        train=PAPER_TRAIN,
    ),
    "tiny": Preset(
        "CPU-sized for tests: tiny random CLIP, 96 px training crops, 2 PAMR iterations, lexicon nouns, "
        "the copied block unfreezes at step 2",
        model={
            "clip": "tiny",
            "image_size": 96,
            "ust_steps": 2,
            "pamr_iterations": 2,
            "nouns": {"backend": "lexicon", "lexicon": CONTRACT_NOUNS},
        },
        train=TCL_PRESETS["tiny"].train,
    ),
}
