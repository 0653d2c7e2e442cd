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

#: The single template GroupViT evaluates with.
SIMPLE: tuple[str, ...] = ("a photo of a {}.",)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"tcl9": TCL9, "simple": SIMPLE}


def get_templates(name: str) -> tuple[str, ...]:
    """The template set called ``name``."""
    try:
        return TEMPLATE_SETS[name]
    except KeyError:
        raise ConfigError(f"unknown template set {name!r}; known: {', '.join(TEMPLATE_SETS)}") from None
