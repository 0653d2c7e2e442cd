"""The method contract: what a plugin exports (:class:`MethodSpec`) and what it builds (:class:`SegMethod`).

A method answers three requests and owns nothing else: no loop, no device, no distributed setup,
no dataset path, no metric. The harness (``textseg.evaluation``) resizes, cuts windows, averages,
upsamples, adds the background channel and scores; the trainer (``textseg.training``) owns the
optimisation loop. Keeping methods this narrow is what makes their numbers comparable.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from textseg.config import apply_overrides
from textseg.errors import ConfigError, TextsegError
from textseg.training.config import TrainConfig


# --------------------------------------------------------------------------------------------
# Text side
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Vocabulary:
    """The classes a method must score, each with one or more names (synonyms), and the templates.

    The score of a class with several names is the best score over its names. ``background_query``
    is True when ``classes[0]`` is background, to be scored as text (the SCLIP-family name files do
    this) or, for a method with ``scores_background``, decided by the method itself; otherwise
    background, where a benchmark has it, is not in the vocabulary at all and the harness adds a
    constant channel at the method's threshold.
    """

    classes: tuple[tuple[str, ...], ...]
    templates: tuple[str, ...] = ("a photo of a {}.",)
    background_query: bool = False

    def __post_init__(self) -> None:
        if not self.classes or any(not names for names in self.classes):
            raise ConfigError("a vocabulary needs at least one class, and every class at least one name")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ConfigError(f"every prompt template needs a '{{}}' placeholder: {self.templates}")

    @classmethod
    def from_names(
        cls,
        names: Sequence[str | Sequence[str]],
        templates: Sequence[str] = ("a photo of a {}.",),
        background_query: bool = False,
    ) -> Vocabulary:
        """Build from class names; a string holding ``", "`` is split into synonyms.

        Names are kept verbatim, whitespace included: the official code formats them into the
        templates as they are (ADE20K's ``'bed '`` gives TCL the prompt ``"a photo of bed s."``).
        """
        classes = tuple(
            tuple(n for n in (name.split(", ") if isinstance(name, str) else name) if n.strip())
            for name in names
        )
        return cls(classes, tuple(templates), background_query)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name of every class, flattened in class order."""
        return tuple(name for names in self.classes for name in names)

    @property
    def name_to_class(self) -> tuple[int, ...]:
        """For each entry of :attr:`names`, the index of its class."""
        return tuple(i for i, names in enumerate(self.classes) for _ in names)


@dataclass
class TextState:
    """A vocabulary encoded once per benchmark by :meth:`SegMethod.encode_vocabulary`.

    ``embeddings`` is the common case (one row per class or per name, as the method chooses);
    ``extras`` holds anything else a method needs at inference (e.g. CoDe's prompt-learned class
    embeddings beside its template embeddings). Methods may subclass this.
    """

    vocabulary: Vocabulary
    embeddings: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Training side
# --------------------------------------------------------------------------------------------
class ImageTextSample(TypedDict):
    """One image-caption pair as every image-text source yields it (before the method's transform)."""

    image: Any  # PIL.Image.Image, RGB
    caption: str
    key: str


class SkipSample(Exception):
    """Raised by a method's transform for a sample it cannot use (e.g. a caption with fewer than
    two nouns for CoDe). The data pipeline skips it and counts it under ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TrainingNotSupportedError(TextsegError):
    """The method is training-free."""


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------
class SegMethod(nn.Module, abc.ABC):
    """A segmentation method: an ``nn.Module`` that answers three requests.

    * :meth:`encode_vocabulary` once per benchmark (class names x templates -> :class:`TextState`);
    * :meth:`segment` for every batch of image crops -> per-class scores ``[B, K, h, w]``;
    * :meth:`training_step` for every training batch -> ``{"loss": total, **named terms}``.

    Optional hooks: :meth:`postprocess` (whole-image step some protocols need after the windows are
    merged), :meth:`train_transform` / :meth:`collate` (run in the data workers),
    :meth:`param_groups`, :meth:`on_train_step` and :meth:`export` for the trainer.

    ``pretrained_prefixes`` lists state-dict prefixes filled from pretrained weights when the method
    is built (a frozen CLIP): a checkpoint may leave them out, and saved weights omit them.

    ``scores_per_name``: :meth:`segment` returns one channel per *name* (``vocab.names``, synonyms
    included) and :meth:`postprocess` reduces them to one per class. The SCLIP family needs this:
    its softmax runs over every name of the merged, full-size logits before the synonym max.

    ``scores_background``: the method decides background itself, window by window (GroupViT).
    On benchmarks with a background class the harness then passes a vocabulary whose class 0 is
    background (``background_query``), :meth:`segment` returns that channel with the others, and
    the label is the plain argmax: no threshold is applied after the windows are merged.

    ``input_normalisation``: for a method that normalises its crops itself, the ``(mean, std)``
    (0-255 scale, as :class:`~textseg.evaluation.protocol.Protocol` gives them) its :meth:`segment`
    must receive (CLIP-DINOiser: pixels / 255); the harness refuses a protocol that differs, since
    the number would be silently wrong. None: the protocol's normalisation is the method's input.
    """

    pretrained_prefixes: tuple[str, ...] = ()
    scores_per_name: bool = False
    scores_background: bool = False
    input_normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    #: Config fields that only change inference (PAMR, TCL's kp branch, thresholds): they may be
    #: changed on a built method with :meth:`reconfigure`, without building it or reading weights again.
    inference_settings: tuple[str, ...] = ()

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def reconfigure(self, **settings: Any) -> SegMethod:
        """Change inference-only settings in place (``pamr=False``, ``kp_w=0.5``, ``bg_thresh=0.3``):
        comparing variants of one checkpoint costs no rebuild and no second read of its weights.

        Values are checked as ``--set`` values are. Any other setting changes the model itself and is
        refused (build the method again with it)."""
        fixed = sorted(set(settings) - set(self.inference_settings))
        if fixed:
            changeable = ", ".join(self.inference_settings) or "none"
            raise ConfigError(
                f"{type(self).__name__}: {', '.join(fixed)} changes the model, not only inference: build it "
                f"again with that setting (e.g. textseg.load(..., {fixed[0]}=...)). Settings reconfigure can "
                f"change: {changeable}."
            )
        device = self.device
        self.config = apply_overrides(self.config, settings, what=f"{type(self).__name__} config")
        self.configure_inference()
        return self.to(device)

    def configure_inference(self) -> None:
        """(Re)build the parts that :attr:`inference_settings` control from ``self.config``; methods
        with such parts call it from ``__init__``, and :meth:`reconfigure` calls it after a change."""

    @abc.abstractmethod
    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        """Encode every class (names x templates) once; the result is reused for every image."""

    @abc.abstractmethod
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Per-class scores ``[B, K, h, w]`` for normalised crops ``[B, 3, H, W]``.

        ``K`` is :meth:`score_channels` (``text.vocabulary.num_classes`` unless
        ``scores_per_name``); ``h, w`` may be below ``H, W`` (the harness upsamples bilinearly).
        After :meth:`postprocess`, scores must be comparable with the method's ``bg_thresh``.
        """

    def score_channels(self, vocab: Vocabulary) -> int:
        """How many channels :meth:`segment` returns for ``vocab``: one per class, or one per name."""
        return len(vocab.names) if self.scores_per_name else vocab.num_classes

    def postprocess(self, scores: Tensor, images: Tensor, text: TextState) -> Tensor:
        """Whole-image step after windows are merged and upsampled to the label's size.

        ``scores`` is ``[B, score_channels, H, W]`` at label resolution; ``images`` are the
        normalised inputs at protocol resolution. Returns ``[B, num_classes, H, W]``. The default
        returns ``scores`` unchanged. The SCLIP family uses it for the softmax over all names, the
        synonym max and PAMR on the full image.
        """
        return scores

    def background_threshold(self) -> float:
        """The constant background score used on benchmarks whose class 0 is background."""
        value = getattr(self.config, "bg_thresh", None)
        if value is None:
            raise ConfigError(
                f"{type(self).__name__} has no bg_thresh setting, so it cannot score benchmarks with a "
                "background class"
            )
        return float(value)

    # -- training (trainable methods only) ----------------------------------------------------
    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Losses for one batch: ``{"loss": total, "<term>": value, ...}``."""
        raise TrainingNotSupportedError(f"{type(self).__name__} is training-free")

    def train_transform(self) -> Callable[[ImageTextSample], dict[str, Any]]:
        """A picklable callable turning one :class:`ImageTextSample` into tensors (in data workers).

        It may raise :class:`SkipSample`. Keep it light: it is sent to every worker process.
        """
        raise TrainingNotSupportedError(f"{type(self).__name__} is training-free")

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch transformed samples; the default stacks tensors with ``default_collate``."""
        return default_collate(samples)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]] | None:
        """Optimizer parameter groups; None lets the trainer apply its default (no decay on 1-D and bias).

        Groups cover every trainable parameter and may also hold parameters that are frozen now
        but that :meth:`on_train_step` unfreezes later (TCL's copied block): the optimizer is built
        once, and AdamW skips parameters without gradients. Pretrained parameters are never listed.
        """
        return None

    def on_train_step(self, step: int) -> None:
        """Called by the trainer before each optimisation step (TCL unfreezes a block at 30k)."""

    def export(self, folder: Path) -> None:
        """Write files other tools load into each training checkpoint ``folder``, beside the trainer's
        ``weights.safetensors`` (the ``clip`` method writes its CLIP as a CLIP folder ``clip/``).
        Called on the main process only; the checkpoint folder is renamed into place afterwards."""

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The state dict without pretrained parts: what a checkpoint of this method holds."""
        return {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith(self.pretrained_prefixes or ("\0",))
        }

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# What a plugin exports
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A named recipe: model settings, training settings, the evaluation protocol it was published
    with, and per-benchmark model settings (e.g. SCLIP's logit scale on VOC21)."""

    summary: str
    model: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    protocol: str = "tcl"
    benchmarks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """Released weights: a URL (downloaded once into the cache and verified) or a local path.

    ``manual_filename`` is for a URL textseg cannot download (e.g. Google Drive): the user fetches
    the file by hand into ``<cache>/weights/<method>/<manual_filename>``, and ``--weights <name>``
    reads it from there or says where to get it and where to put it.
    """

    source: str
    sha256: str | None = None
    summary: str = ""
    preset: str | None = None
    manual_filename: str | None = None


#: Converts a state dict in the official repository's naming to this method's naming. It must
#: raise :class:`textseg.errors.WeightsError` listing keys that fit nowhere.
Converter = Callable[[Mapping[str, Tensor], SegMethod], dict[str, Tensor]]


@dataclass(frozen=True)
class RunConfig:
    """A fully resolved configuration: what a results record stores about the method."""

    method: str
    preset: str
    overrides: Mapping[str, str]
    model: Any
    train: TrainConfig
    protocol: str
    benchmark: str | None = None


@dataclass(frozen=True)
class MethodSpec:
    """Everything textseg needs to know about a method, exported by its plugin.

    ``presets`` must hold ``tiny`` (CPU-sized, used by the contract tests) and, for published
    methods, ``paper`` (the published recipe). ``checkpoints`` names released weights
    (``official``); ``convert_checkpoint`` maps a state dict in the official code's naming onto
    this implementation. ``weights_setting`` is for methods whose only weights are a pretrained
    backbone (the training-free CLIP methods: ``"clip"``): ``--weights`` then fills that setting and
    the method is built straight from those weights, instead of being built and overwritten.
    """

    name: str
    summary: str
    paper: str
    config_cls: type
    build: Callable[[Any], SegMethod]
    presets: Mapping[str, Preset]
    checkpoints: Mapping[str, Checkpoint] = field(default_factory=dict)
    convert_checkpoint: Converter | None = None
    weights_setting: str | None = None
    trainable: bool = False
    license: str = ""
    default_preset: str = "paper"

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.config_cls):
            raise TypeError(f"method {self.name!r}: config_cls must be a dataclass")
        if "tiny" not in self.presets:
            raise TypeError(f"method {self.name!r}: a 'tiny' preset is required (the contract tests use it)")
        if self.default_preset not in self.presets:
            raise TypeError(f"method {self.name!r}: default preset {self.default_preset!r} is not defined")
        if self.weights_setting is not None and self.weights_setting not in {
            f.name for f in dataclasses.fields(self.config_cls)
        }:
            raise TypeError(
                f"method {self.name!r}: weights_setting {self.weights_setting!r} is not a config field"
            )

    def preset(self, name: str | None) -> Preset:
        name = name or self.default_preset
        if name not in self.presets:
            close = difflib.get_close_matches(name, list(self.presets), n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"method {self.name!r} has no preset {name!r}.{hint} Presets: {', '.join(self.presets)}."
            )
        return self.presets[name]

    def resolve(
        self,
        preset: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        benchmark: str | None = None,
    ) -> RunConfig:
        """Preset, then its per-benchmark settings, then ``overrides`` (``train.*`` keys go to training)."""
        name = preset or self.default_preset
        chosen = self.preset(name)
        overrides = dict(overrides or {})
        train_overrides = {
            k.removeprefix("train."): v for k, v in overrides.items() if k.startswith("train.")
        }
        model_overrides = {k: v for k, v in overrides.items() if not k.startswith("train.")}
        model = apply_overrides(self.config_cls(), chosen.model, what=f"{self.name} config")
        if benchmark is not None:
            model = apply_overrides(model, chosen.benchmarks.get(benchmark, {}), what=f"{self.name} config")
        model = apply_overrides(model, model_overrides, what=f"{self.name} config")
        train = apply_overrides(TrainConfig(), chosen.train, what="train")
        train = apply_overrides(train, train_overrides, what="train")
        return RunConfig(
            method=self.name,
            preset=name,
            overrides={k: str(v) for k, v in overrides.items()},
            model=model,
            train=train,
            protocol=chosen.protocol,
            benchmark=benchmark,
        )

    def create(self, preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> SegMethod:
        """Build the method from a preset and overrides (pretrained parts loaded, nothing else)."""
        return self.build(self.resolve(preset, overrides).model)
