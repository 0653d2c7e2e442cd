"""The spellings of vision foundation models, and loading one (:func:`load_vfm`).

A spelling is ``NAME`` or ``NAME@WEIGHTS``:

* ``NAME`` — one of :data:`VFM_MODELS` (the ``torch.hub`` names the official code of each method
  uses: ``dino_vitb8``, ``dinov2_vitb14_reg``, ``sam_vit_b``, ...), or ``timm:ARCH.TAG`` for another
  timm ``VisionTransformer``, or a tiny random stand-in (``tiny-dino8``, ``tiny-dino16``,
  ``tiny-dinov2``, ``tiny-dinov2-reg``, ``tiny-sam``: seconds to build, no download, for tests);
* ``@WEIGHTS`` — where the weights come from: nothing (the release: timm's copy on the Hugging Face
  Hub, ``timm/ARCH.TAG``, ``model.safetensors``, from the cache when offline), ``@random``
  (random weights, seed 0: dry runs of the full-size architecture; what the tiny stand-ins always
  have unless given a file), or ``@PATH`` (a local file, in
  the official layout, e.g. ``dino_vitbase8_pretrain.pth``, ``dinov2_vitb14_reg4_pretrain.pth``,
  ``sam_vit_b_01ec64.pth``, or in timm's; read with :func:`textseg.weights.read_state_dict`, mapped
  by timm's own ``checkpoint_filter_fn`` and loaded strictly).

No ``torch.hub`` call happens at run time and no file runs code. The architecture always comes
from timm; the official checkpoints convert to it exactly (DINOv2's registers: timm adds the class
token's position to the class token and keeps positions for the patches only, which computes the
same).
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from textseg.backbones.vfm import Kind, VisionFoundationModel
from textseg.clip.positions import PositionMode
from textseg.errors import ConfigError, WeightsError


@dataclass(frozen=True)
class VFMEntry:
    """One loadable model: its timm architecture (and release tag), family and how to run it."""

    name: str
    timm_name: str
    family: str
    summary: str
    kind: Kind = "vit"
    positions: PositionMode = "scale"
    antialias: bool = False
    #: Arguments of the timm class for a tiny random stand-in (``timm_name`` is then a class name).
    tiny: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def download(self) -> bool:
        return self.tiny is None


def _dino(name: str, arch: str, what: str) -> VFMEntry:
    return VFMEntry(name, f"{arch}.dino", "dino", f"DINO {what} (facebookresearch/dino hub {name})")


def _dinov2(name: str, arch: str, what: str) -> VFMEntry:
    # The hub's register models resize positions by size with antialiasing, the others by +0.1 scale.
    registers = dict(positions="size", antialias=True) if name.endswith("_reg") else {}
    summary = f"DINOv2 {what} (facebookresearch/dinov2 hub {name})"
    return VFMEntry(name, f"{arch}.lvd142m", "dinov2", summary, **registers)


def _sam(name: str, arch: str, what: str) -> VFMEntry:
    summary = f"SAM {what} image encoder with its neck, 1024x1024 input (segment-anything {name})"
    return VFMEntry(name, f"{arch}.sa1b", "sam", summary, kind="sam")


_TINY_VIT = dict(img_size=64, embed_dim=32, depth=2, num_heads=2, num_classes=0, qkv_bias=True)
_TINY_DINOV2 = dict(_TINY_VIT, img_size=56, patch_size=14, init_values=0.5)

#: Every named model. The tiny stand-ins have the structure of the family they stand for.
VFM_MODELS: dict[str, VFMEntry] = {
    e.name: e
    for e in (
        _dino("dino_vits16", "vit_small_patch16_224", "ViT-S/16"),
        _dino("dino_vits8", "vit_small_patch8_224", "ViT-S/8"),
        _dino("dino_vitb16", "vit_base_patch16_224", "ViT-B/16"),
        _dino("dino_vitb8", "vit_base_patch8_224", "ViT-B/8"),
        _dinov2("dinov2_vits14", "vit_small_patch14_dinov2", "ViT-S/14"),
        _dinov2("dinov2_vitb14", "vit_base_patch14_dinov2", "ViT-B/14"),
        _dinov2("dinov2_vitl14", "vit_large_patch14_dinov2", "ViT-L/14"),
        _dinov2("dinov2_vitg14", "vit_giant_patch14_dinov2", "ViT-g/14"),
        _dinov2("dinov2_vits14_reg", "vit_small_patch14_reg4_dinov2", "ViT-S/14 with 4 registers"),
        _dinov2("dinov2_vitb14_reg", "vit_base_patch14_reg4_dinov2", "ViT-B/14 with 4 registers"),
        _dinov2("dinov2_vitl14_reg", "vit_large_patch14_reg4_dinov2", "ViT-L/14 with 4 registers"),
        _dinov2("dinov2_vitg14_reg", "vit_giant_patch14_reg4_dinov2", "ViT-g/14 with 4 registers"),
        _sam("sam_vit_b", "samvit_base_patch16", "ViT-B"),
        _sam("sam_vit_l", "samvit_large_patch16", "ViT-L"),
        _sam("sam_vit_h", "samvit_huge_patch16", "ViT-H"),
        VFMEntry(
            "mae_vitb16",
            "vit_base_patch16_224.mae",
            "mae",
            "MAE ViT-B/16 encoder (facebookresearch/mae mae_pretrain_vit_base), positions resized by size",
            positions="size",
        ),
        VFMEntry(
            "tiny-dino8",
            "VisionTransformer",
            "dino",
            "tiny random DINO-style ViT, patch 8 (tests)",
            tiny=dict(_TINY_VIT, patch_size=8),
        ),
        VFMEntry(
            "tiny-dino16",
            "VisionTransformer",
            "dino",
            "tiny random DINO-style ViT, patch 16 (tests)",
            tiny=dict(_TINY_VIT, patch_size=16),
        ),
        VFMEntry(
            "tiny-dinov2",
            "VisionTransformer",
            "dinov2",
            "tiny random DINOv2-style ViT, patch 14, layer scale (tests)",
            tiny=_TINY_DINOV2,
        ),
        VFMEntry(
            "tiny-dinov2-reg",
            "VisionTransformer",
            "dinov2",
            "tiny random DINOv2-style ViT with 4 registers (tests)",
            positions="size",
            antialias=True,
            tiny=dict(_TINY_DINOV2, reg_tokens=4, no_embed_class=True),
        ),
        VFMEntry(
            "tiny-sam",
            "VisionTransformerSAM",
            "sam",
            "tiny random SAM-style encoder: windowed + global blocks, relative positions, neck (tests)",
            kind="sam",
            tiny=dict(
                img_size=64,
                patch_size=16,
                embed_dim=32,
                depth=2,
                num_heads=2,
                window_size=2,
                global_attn_indexes=(1,),
                use_rel_pos=True,
                neck_chans=16,
                num_classes=0,
            ),
        ),
    )
}

#: Seed of random weights (tiny stand-ins and ``@random``).
RANDOM_SEED = 0
TIMM_PREFIX = "timm:"
#: What to do when a model's weights are not available, for messages.
LOCAL_VFM_FIX = (
    "Give a local file with --set vfm=NAME@PATH (the official checkpoint or timm's model.safetensors), "
    "or NAME@random for random weights."
)


def parse_vfm(spelling: str) -> tuple[VFMEntry, str | None]:
    """``NAME[@WEIGHTS]`` -> the entry and the weights part (None: the release)."""
    name, _, weights = spelling.partition("@")
    if name.startswith(TIMM_PREFIX):
        arch = name[len(TIMM_PREFIX) :]
        return VFMEntry(name, arch, "timm", f"timm {arch}", positions="size"), weights or None
    if name not in VFM_MODELS:
        close = difflib.get_close_matches(name, list(VFM_MODELS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown vision foundation model {name!r}.{hint} Known: {', '.join(VFM_MODELS)}, or timm:ARCH.TAG"
        )
    return VFM_MODELS[name], weights or None


def _build(entry: VFMEntry) -> torch.nn.Module:
    """The timm module of ``entry`` with random weights (seed :data:`RANDOM_SEED`)."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        if entry.tiny is not None:
            from timm.models import VisionTransformer, VisionTransformerSAM

            cls = {"VisionTransformer": VisionTransformer, "VisionTransformerSAM": VisionTransformerSAM}
            model = cls[entry.timm_name](**entry.tiny)
        else:
            arch = entry.timm_name.split(".")[0]
            try:
                model = timm.create_model(arch, pretrained=False, num_classes=0)
            except RuntimeError as exc:  # timm: "Unknown model"
                raise ConfigError(f"{entry.name}: timm has no architecture {arch!r}") from exc
    return model.eval().requires_grad_(False)


def _release_file(entry: VFMEntry) -> Path:
    from textseg.hub import hub_file

    if "." not in entry.timm_name:
        raise ConfigError(f"{entry.name}: give a release tag (timm:ARCH.TAG), @PATH or @random")
    return hub_file(
        f"timm/{entry.timm_name}", "model.safetensors", f"the weights of {entry.name}", LOCAL_VFM_FIX
    )


def _load_weights(model: torch.nn.Module, entry: VFMEntry, path: Path, spelling: str) -> None:
    from textseg.weights import read_state_dict

    if not path.is_file():
        raise WeightsError(f"{spelling!r}: no weights file at {path}. {LOCAL_VFM_FIX}")
    state, _ignored = read_state_dict(path)
    if entry.kind == "sam":
        from timm.models.vision_transformer_sam import checkpoint_filter_fn
    else:
        from timm.models.vision_transformer import checkpoint_filter_fn
    state = checkpoint_filter_fn(state, model)
    state = {k: v for k, v in state.items() if not k.startswith("head.")}  # classifier heads are not used
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit
        raise WeightsError(f"{path} does not hold the weights of {entry.name}: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path} does not hold the weights of {entry.name} ({entry.timm_name}): missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


def load_vfm(spelling: str) -> VisionFoundationModel:
    """The frozen model ``spelling`` names (see the module docstring), in eval mode, float32."""
    entry, weights = parse_vfm(spelling)
    model = _build(entry)
    if weights == "random":
        print(
            f"textseg: note: {spelling}: random weights (seed {RANDOM_SEED}), for dry runs only",
            file=sys.stderr,
        )
    elif weights is not None:
        _load_weights(model, entry, Path(weights).expanduser(), spelling)
    elif entry.tiny is None:
        _load_weights(model, entry, _release_file(entry), spelling)
    return VisionFoundationModel(
        model.float(),
        spelling=spelling,
        family=entry.family,
        kind=entry.kind,
        positions=entry.positions,
        antialias=entry.antialias,
    )


# -- what `textseg list backbones` prints ---------------------------------------------------------
@dataclass(frozen=True)
class BackboneRow:
    """One spelling of a backbone setting: what it loads and whether that needs a download."""

    setting: str  # the config field that takes it: clip or vfm
    spelling: str
    loads: str
    download: str  # "no", "yes", "yes (cached)", or what decides it


#: CLIP spellings; hub ids are examples (any transformers CLIP repository works).
CLIP_ROWS: tuple[tuple[str, str, str | None], ...] = (
    (
        "openai/clip-vit-base-patch16",
        "OpenAI CLIP ViT-B/16 from the hub (the default of every CLIP method)",
        "hub",
    ),
    ("openai/clip-vit-large-patch14", "OpenAI CLIP ViT-L/14 from the hub", "hub"),
    ("openai/clip-vit-large-patch14-336", "OpenAI CLIP ViT-L/14@336 from the hub", "hub"),
    (
        "FOLDER",
        "a transformers CLIP folder (save_pretrained; a hub snapshot; a clip-method checkpoint)",
        None,
    ),
    ("FILE.pt", "an OpenAI-format file (e.g. ViT-B-16.pt), tokenizer from OpenAI's BPE merges", None),
    (
        "open_clip:ARCH/TAG",
        "an OpenCLIP release (e.g. open_clip:ViT-H-14/laion2b_s32b_b79k), converted",
        "open_clip",
    ),
    ("open_clip:ARCH/FILE", "an OpenCLIP checkpoint file for architecture ARCH, converted", None),
    ("open_clip:ARCH", "OpenCLIP architecture ARCH with random weights (seed 0): dry runs", None),
    ("open_clip:textseg-tiny-vit", "tiny random OpenCLIP ViT, GELU (tests); -quickgelu: QuickGELU", None),
    ("tiny", "tiny random transformers CLIP with a small BPE tokenizer (tests, --preset tiny)", None),
)


def _download(kind: str | None, spelling: str) -> str:
    from textseg.hub import is_cached

    if kind is None:
        return "no"
    if kind == "open_clip":
        return "yes"
    repo, filename = (spelling, "config.json") if kind == "hub" else kind.split("|")
    return "yes (cached)" if is_cached(repo, filename) else "yes"


def backbone_rows() -> list[BackboneRow]:
    """Every CLIP and vision-foundation-model spelling with what it loads (for ``textseg list``)."""
    rows = [BackboneRow("clip", s, loads, _download(kind, s)) for s, loads, kind in CLIP_ROWS]
    for entry in VFM_MODELS.values():
        hub = None if entry.tiny is not None else f"timm/{entry.timm_name}|model.safetensors"
        rows.append(
            BackboneRow("vfm", entry.name, f"{entry.summary} [timm {entry.timm_name}]", _download(hub, ""))
        )
    rows += [
        BackboneRow(
            "vfm", "NAME@PATH", "NAME with weights from a local file (official or timm layout)", "no"
        ),
        BackboneRow("vfm", "NAME@random", "NAME's architecture with random weights (seed 0): dry runs", "no"),
        BackboneRow("vfm", "timm:ARCH.TAG", "another timm ViT release (positions resized by size)", "yes"),
    ]
    return rows
