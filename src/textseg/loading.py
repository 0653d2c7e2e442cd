"""Which model a command or a Python call asks for: a method, its preset and settings, its weights.

``--weights`` given a ``textseg train`` run folder (its newest checkpoint) or one of its checkpoint
folders restores the method, preset and settings the run trained with (its ``run.json``): a trained
checkpoint is scored as the model it is, offline, without repeating the training command's
``--set``. Settings given now still win (and are recorded); a ``--method`` or ``--preset`` that
contradicts the run is an error, except that a method built from CLIP weights (``weights_setting``)
takes the CLIP a run exported (``textseg train --method clip``; its checkpoints' ``clip/`` folder).
Any other ``--weights`` (a released name, a file) passes through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from textseg.api import MethodSpec, RunConfig, SegMethod
from textseg.errors import ConfigError, note
from textseg.training.checkpoint import RUN_FILE, TrainedRun, find_trained_run


@dataclass(frozen=True)
class ModelRequest:
    """A resolved request: ``settings`` are the restored run settings with the given ones on top
    (what records list as overrides); ``weights`` is what to load (a run's checkpoint folder)."""

    spec: MethodSpec
    preset: str | None
    settings: dict[str, str]
    weights: str | None
    run: TrainedRun | None = None

    def resolve(self, benchmark: str | None = None) -> RunConfig:
        """The full configuration (per-benchmark settings of the preset applied for ``benchmark``)."""
        from textseg.weights import weights_overrides

        overrides = {**self.settings, **weights_overrides(self.spec, self.weights)}
        config = self.spec.resolve(self.preset, overrides, benchmark=benchmark)
        return dataclasses.replace(config, overrides=self.settings)

    def build(self, config: RunConfig) -> tuple[SegMethod, dict[str, Any] | None]:
        """The method built from ``config`` with its weights, and what a record says about them."""
        from textseg.weights import apply_weights

        method = self.spec.build(config.model)
        return method, apply_weights(method, self.spec, self.weights)


def request_model(
    method: str | None,
    weights: str | None = None,
    preset: str | None = None,
    settings: Mapping[str, Any] = {},
) -> ModelRequest:
    """What ``--method``, ``--weights``, ``--preset`` and ``--set`` ask for (module docstring)."""
    from textseg.leaderboard.reported import overrides_text
    from textseg.registry import METHODS

    given = {key: str(value) for key, value in settings.items()}
    run = find_trained_run(weights) if weights else None
    if run is None:
        if not method:
            raise ConfigError(
                "--method is required (see `textseg list methods`), unless --weights is a `textseg train` "
                "run folder or one of its checkpoints"
            )
        return ModelRequest(METHODS.get(method), preset, given, weights)
    if method and method != run.method and _takes_exported_backbone(METHODS.get(method), run):
        note(f"--weights {weights}: the CLIP trained by {run.method} in {run.checkpoint}, for {method}")
        return ModelRequest(METHODS.get(method), preset, given, str(run.checkpoint))
    conflicts = []
    if method and method != run.method:
        conflicts.append(f"--method {method}, but --weights {weights} was trained as {run.method}")
    if preset and preset != run.preset:
        conflicts.append(f"--preset {preset}, but --weights {weights} was trained with preset {run.preset}")
    if conflicts:
        raise ConfigError("; ".join(conflicts) + ". Leave them out: the run says which model it is.")
    spec = METHODS.get(run.method)
    restored = {
        key: value
        for key, value in run.overrides.items()
        if not key.startswith("train.") and key != spec.weights_setting  # the checkpoint is the weights
    }
    shown = f" ({overrides_text(restored)})" if restored else ""
    note(
        f"--weights {weights}: {run.method}, preset {run.preset}, with the settings of "
        f"{run.run_dir / RUN_FILE}{shown}; loading {run.checkpoint.name}"
    )
    return ModelRequest(spec, run.preset or None, {**restored, **given}, str(run.checkpoint), run)


def _takes_exported_backbone(spec: MethodSpec, run: TrainedRun) -> bool:
    """Whether ``spec`` is built from backbone weights and the run's checkpoint exported a CLIP."""
    from textseg.clip.loading import EXPORTED_CLIP

    return spec.weights_setting is not None and (run.checkpoint / EXPORTED_CLIP / "config.json").is_file()
