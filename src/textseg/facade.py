"""The Python API: :func:`load`, :func:`predict` and :func:`evaluate` (exported as ``textseg.load``, ...).

Each is the same path as its command (``--weights`` resolution and run restoring, the harness's
resize, windows, post-processing and background, the split check and the results record), so a
number from Python equals the number from the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textseg.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from textseg.api import SegMethod
    from textseg.evaluation.evaluator import EvalResult
    from textseg.loading import ModelRequest


@dataclass(frozen=True)
class Origin:
    """How :func:`load` built a method: what :func:`evaluate` needs for the protocol and the record."""

    request: ModelRequest
    config: Any  # the model configuration load built (reconfigure changes are measured against it)
    weights: dict[str, Any] | None  # as records describe weights


def load(
    method: str | None, weights: str | None = None, preset: str | None = None, **settings: Any
) -> SegMethod:
    """A method ready for inference (eval mode, on the CPU; move it with ``.to(device)``).

    ``method``: a registered name (None when ``weights`` is a ``textseg train`` run folder or
    checkpoint, which restores its method, preset and settings). ``weights``: a released name
    (``"official"``), a weights file, or a run / checkpoint folder. ``settings``: the keys of
    ``--set`` (``pamr=False``, ``clip="path/to/clip"``); settings named in the method's
    ``inference_settings`` can also be changed later with ``method.reconfigure(...)``.
    """
    from textseg.loading import request_model

    request = request_model(method, weights, preset, settings)
    config = request.resolve()
    built, record = request.build(config)
    built.textseg_origin = Origin(request, config.model, record)
    return built.eval()


def _origin(method: SegMethod, what: str) -> Origin:
    origin = getattr(method, "textseg_origin", None)
    if not isinstance(origin, Origin):
        raise ConfigError(
            f"textseg.{what} needs a method made by textseg.load (it knows the method's protocol)"
        )
    return origin


def _classes(classes: str | list[str] | list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    from textseg.commands.predict import parse_classes

    if isinstance(classes, str):
        return parse_classes(classes)
    return [(name,) if isinstance(name, str) else tuple(name) for name in classes]


def predict(
    method: SegMethod,
    image: str | Path | Any,
    classes: str | list[str] | list[tuple[str, ...]],
    *,
    background: bool = True,
    templates: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment one image as ``textseg predict`` does: ``(labels, scores)`` at the image's size.

    ``image``: a path, a PIL image or an ``[H, W, 3]`` uint8 array. ``classes``: ``"cat, dog|puppy"``
    (as ``--classes``) or a list of names (or of synonym tuples). ``labels[y, x]`` indexes
    ``["background", *classes]`` with ``background`` (pixels where no class beats the method's
    ``bg_thresh``, or that the method itself calls background), else ``classes``; ``scores`` are the
    per-class scores ``[K, H, W]`` before the background threshold.
    """
    import numpy as np
    import torch
    from PIL import Image

    from textseg.benchmark import read_image
    from textseg.evaluation.inference import prediction_vocabulary, segment_image
    from textseg.registry import PROTOCOLS
    from textseg.text.templates import get_templates

    protocol = PROTOCOLS.get(_origin(method, "predict").request.resolve().protocol)
    if isinstance(image, str | Path):
        pixels = read_image(image, "image")
    elif isinstance(image, Image.Image):
        pixels = np.array(image.convert("RGB"))
    else:
        pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ConfigError(f"image must be [H, W, 3] RGB, got shape {pixels.shape}")
    vocab, threshold = prediction_vocabulary(
        method, _classes(classes), get_templates(templates or protocol.templates), background
    )
    with torch.no_grad():
        labels, scores = segment_image(method, method.encode_vocabulary(vocab), pixels, protocol, threshold)
    return labels.cpu().numpy().astype(np.int64), scores.cpu().numpy()


def evaluate(
    method: SegMethod,
    benchmark: str,
    *,
    data_root: str | Path | None = None,
    limit: int | None = None,
    allow_incomplete: bool = False,
    protocol: str | None = None,
    synonyms: str | None = None,
    precision: str = "fp32",
    num_workers: int = 2,
    max_windows: int | None = None,
    output: str | Path | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score ``method`` (from :func:`load`) on ``benchmark`` as ``textseg bench`` does.

    The result's ``.metrics`` holds ``mIoU``, ``mAcc`` and ``aAcc`` in percent; ``.per_class_iou``
    the classes'. ``output``: also write the results record into that folder (its path is the
    result's ``record``). Data is read from ``data_root``, else ``$TEXTSEG_DATA``, else ``./data``;
    an incomplete data folder is refused unless ``limit`` or ``allow_incomplete`` says a subset is
    meant (the record then says so). Settings changed with ``method.reconfigure`` are scored and
    recorded. ``max_windows`` defaults by device, as for ``textseg bench``.
    """
    import dataclasses

    from textseg.evaluation.evaluator import evaluate as run_evaluation
    from textseg.evaluation.records import write_record
    from textseg.paths import data_root as default_root
    from textseg.registry import SUITES
    from textseg.scoring import make_record, plan_scoring

    if benchmark in SUITES:
        members = ", ".join(SUITES.get(benchmark).benchmarks)
        raise ConfigError(
            f"textseg.evaluate scores one benchmark, and {benchmark!r} is a suite: evaluate each of {members} "
            f"(or run `textseg bench --dataset {benchmark}`)"
        )
    origin = _origin(method, "evaluate")
    (job,) = plan_scoring(
        origin.request,
        [benchmark],
        default_root(data_root),
        protocol=protocol,
        synonyms=synonyms,
        limit=limit,
        allow_incomplete=allow_incomplete,
    )
    # The preset's settings for this benchmark (e.g. SCLIP's logit scale on VOC21) with the caller's
    # reconfigure changes on top, as `textseg bench` applies them with --set on top.
    changed = _changes(origin.config, method.config)
    wanted = dataclasses.replace(job.config.model, **changed)
    job = dataclasses.replace(
        job,
        config=dataclasses.replace(
            job.config,
            model=wanted,
            overrides={**job.config.overrides, **{k: str(v) for k, v in changed.items()}},
        ),
    )
    scoring = _changes(method.config, wanted)
    previous = {name: getattr(method.config, name) for name in scoring}
    try:
        method.reconfigure(**scoring)
    except ConfigError as exc:
        raise ConfigError(
            f"{benchmark} is scored with other settings of the preset ({', '.join(sorted(scoring))}); load the "
            f"method for it: textseg.load(..., {', '.join(f'{k}={v!r}' for k, v in scoring.items())}) ({exc})"
        ) from exc
    try:
        result = run_evaluation(
            method,
            job.benchmark,
            job.source,
            job.protocol,
            precision=precision,
            limit=limit,
            synonyms=synonyms,
            progress=progress,
            num_workers=num_workers,
            max_windows=max_windows,
        )
    finally:
        method.reconfigure(**previous)
    if output is not None:
        path = write_record(make_record(job, result, origin.weights, limit), output)
        result = dataclasses.replace(result, record=path)
    return result


def _changes(before: Any, after: Any) -> dict[str, Any]:
    """The fields of config ``after`` whose values differ from ``before``'s."""
    import dataclasses

    return {
        f.name: getattr(after, f.name)
        for f in dataclasses.fields(after)
        if getattr(after, f.name) != getattr(before, f.name)
    }
