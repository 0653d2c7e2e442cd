"""Prompt template sets, by name. Protocols and methods refer to them by name so records stay readable."""

from __future__ import annotations

from textseg.errors import ConfigError

#: TCL's "custom" set (datasets/templates.py in kakaobrain/tcl): the 7 "sub-ImageNet" templates
#: plus two plural forms. The unified protocol embeds every class with all nine.
TCL9: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of a {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
    "a photo of many {}.",
    "a photo of {}s.",
)

#: The 80 ImageNet prompt templates published with CLIP (OpenAI's zero-shot ImageNet notebook), in
#: their published order. The SCLIP family embeds every class with all 80; official MaskCLIP with these
#: plus five scene templates; CoDe's kg loss samples one of them.
OPENAI80: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

#: The single template GroupViT evaluates with.
SIMPLE: tuple[str, ...] = ("a photo of a {}.",)

#: The seven "sub-ImageNet" templates alone (TCL9's first seven): FreeDA's and Talk2DINO's
#: ``sub_imagenet_template``, with which Talk2DINO evaluates.
IMAGENET7: tuple[str, ...] = TCL9[:7]

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "tcl9": TCL9,
    "openai80": OPENAI80,
    "simple": SIMPLE,
    "imagenet7": IMAGENET7,
}


def get_templates(name: str) -> tuple[str, ...]:
    """The template set called ``name``."""
    try:
        return TEMPLATE_SETS[name]
    except KeyError:
        raise ConfigError(f"unknown template set {name!r}; known: {', '.join(TEMPLATE_SETS)}") from None
