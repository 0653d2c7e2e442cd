"""Evaluation protocols: named, versioned settings the harness applies identically to every method.

A protocol is data. Adding one (e.g. the SCLIP family's resolutions and windows) needs no change
to the evaluator: register a :class:`Protocol` under the ``textseg.protocols`` entry-point group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textseg.config import apply_overrides
from textseg.errors import ConfigError

if TYPE_CHECKING:
    from textseg.api import SegMethod
    from textseg.benchmark import BenchmarkSpec

#: ImageNet statistics in 0-255 units, as mmsegmentation's Normalize takes them (TCL, GroupViT).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
#: CLIP's statistics in 0-255 units (the SCLIP family).
CLIP_MEAN = (122.771, 116.746, 104.094)
CLIP_STD = (68.501, 66.632, 70.323)


@dataclass(frozen=True)
class Protocol:
    """How images are resized, windowed and normalised, and how class names become text.

    The image is resized so its short side is ``short_side`` unless the long side would exceed
    ``max_long_side`` (mmsegmentation's keep-ratio Resize with scale ``(max_long_side, short_side)``),
    then cut into ``crop`` x ``crop`` windows at ``stride`` (``crop=None``: the whole image at once).
    ``benchmarks`` overrides any field for one benchmark.
    """

    name: str
    version: str
    summary: str
    short_side: int = 448
    max_long_side: int = 2048
    crop: int | None = 448
    stride: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    templates: str = "tcl9"
    synonyms: str | None = None
    background_query: bool = False
    benchmarks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def for_benchmark(self, benchmark: str) -> Protocol:
        """This protocol with ``benchmark``'s overrides applied."""
        return apply_overrides(
            dataclasses.replace(self, benchmarks={}),
            self.benchmarks.get(benchmark, {}),
            what=f"protocol {self.name}",
        )


#: TCL's unified protocol (kakaobrain/tcl, mmseg 0.27 configs): short side 448, 448x448 windows at
#: stride 224, ImageNet mean/std, the nine "custom" templates, background never a text query.
TCL = Protocol(
    name="tcl",
    version="2",  # 2: mmseg's normalisation exactly; 1 was 1 ulp off on 36% of values (evaluation.preprocess)
    summary="TCL's unified protocol: short side 448, 448 windows / 224 stride, ImageNet norm, 9 templates",
)


def choose_protocol(benchmark: BenchmarkSpec, preset_protocol: str, given: str | None = None) -> Protocol:
    """The protocol ``benchmark`` is scored with: ``given`` (``--protocol``) if any; else the
    benchmark's own (``BenchmarkSpec.protocol``) unless the preset's protocol has settings for it;
    else the preset's."""
    from textseg.registry import PROTOCOLS

    if given:
        return PROTOCOLS.get(given)
    preset = PROTOCOLS.get(preset_protocol)
    if benchmark.protocol and benchmark.name not in preset.benchmarks:
        return PROTOCOLS.get(benchmark.protocol)
    return preset


def check_input_normalisation(method: SegMethod, protocol: Protocol) -> None:
    """Refuse ``protocol`` when it normalises crops otherwise than ``method.input_normalisation``."""
    wanted = method.input_normalisation
    given = (tuple(protocol.mean), tuple(protocol.std))
    if wanted is None or given == (tuple(wanted[0]), tuple(wanted[1])):
        return
    raise ConfigError(
        f"{type(method).__name__} normalises its input itself and needs crops with mean {wanted[0]} and std "
        f"{wanted[1]} (0-255 scale), but protocol {protocol.name!r} gives mean {given[0]} and std {given[1]}: "
        "its scores would be silently wrong. Score it under its own protocol (leave out --protocol) or one "
        "that normalises the same way."
    )
