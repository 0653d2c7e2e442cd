"""Typed overrides: parsing, coercion, nested keys, unknown keys with suggestions, preset resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from textseg.api import MethodSpec, Preset
from textseg.config import apply_overrides, parse_assignments
from textseg.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    layers: int = 2


@dataclass(frozen=True)
class Example:
    pamr: bool = True
    bg_thresh: float = 0.4
    steps: int = 10
    name: str = "x"
    dilations: tuple[int, ...] = (1, 2)
    size: tuple[int, int] = (3, 4)
    clip: str | None = None
    mode: Literal["a", "b"] = "a"
    inner: Inner = field(default_factory=Inner)


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", "b.c = x=y", "a=2"]) == {"a": "2", "b.c": "x=y"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["nokey"])


def test_values_are_converted_to_field_types() -> None:
    cfg = apply_overrides(
        Example(),
        {
            "pamr": "false",
            "bg_thresh": "0.5",
            "steps": "1e3",
            "dilations": "1,2,4,8",
            "size": "[5, 6]",
            "clip": "none",
            "mode": "b",
            "inner.layers": "1",
        },
    )
    assert cfg == Example(False, 0.5, 1000, "x", (1, 2, 4, 8), (5, 6), None, "b", Inner(1))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pamr", "maybe", "true or false"),
        ("steps", "1.5", "integer"),
        ("size", "1,2,3", "needs 2 values"),
        ("mode", "c", "must be one of"),
        ("bg_tresh", "0.1", "Did you mean bg_thresh"),
        ("name.x", "1", "not a group of settings"),
    ],
)
def test_bad_overrides_say_what_is_wrong(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Example(), {key: value})


def test_spec_resolve_layers_preset_benchmark_and_overrides() -> None:
    spec = MethodSpec(
        name="m",
        summary="",
        paper="",
        config_cls=Example,
        build=lambda cfg: None,  # type: ignore[arg-type,return-value]
        presets={
            "paper": Preset(
                "p", model={"bg_thresh": 0.3}, train={"lr": 1e-3}, benchmarks={"voc21": {"steps": 5}}
            ),
            "tiny": Preset("t"),
        },
    )
    run = spec.resolve("paper", {"pamr": "false", "train.steps": "7"}, benchmark="voc21")
    assert (run.model.bg_thresh, run.model.steps, run.model.pamr) == (0.3, 5, False)
    assert (run.train.lr, run.train.steps) == (1e-3, 7)
    assert spec.resolve("paper", benchmark="ade20k").model.steps == 10
    with pytest.raises(ConfigError, match=r"no preset 'papr'.*Did you mean paper"):
        spec.resolve("papr")


def test_vocabulary_keeps_names_verbatim() -> None:
    from textseg.api import Vocabulary

    vocab = Vocabulary.from_names(["bed ", "sky, wall", "wood "])
    assert vocab.classes == (("bed ",), ("sky", "wall"), ("wood ",))
    assert vocab.name_to_class == (0, 1, 1, 2)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("bg_thresh=nan", "bg_thresh expects a finite number, got 'nan'"),
        ("bg_thresh=inf", "bg_thresh expects a finite number, got 'inf'"),
        ("bg_thresh=1.5", "bg_thresh must be in [0, 1], got 1.5"),
        ("train.lr=-1", "train.lr must be in (0, inf), got -1"),
        ("train.lr=nan", "train.lr expects a finite number"),
        ("train.betas=0.9,1", "train.betas must be in [0, 1), got 1"),
        ("train.grad_clip=0", "train.grad_clip: cannot use '0': train.grad_clip must be in (0, inf), got 0"),
    ],
)
def test_non_finite_and_out_of_range_settings_are_refused_with_the_range(setting: str, message: str) -> None:
    from textseg.registry import METHODS

    key, _, value = setting.partition("=")
    with pytest.raises(ConfigError) as info:
        METHODS.get("tcl").resolve("tiny", {key: value})
    assert message in str(info.value)


def test_cli_refuses_a_nan_setting_before_building_anything(capsys: pytest.CaptureFixture[str]) -> None:
    from textseg.cli import main

    assert (
        main(["bench", "--method", "tcl", "--preset", "tiny", "--dataset", "voc21", "--set", "bg_thresh=nan"])
        == 2
    )
    assert "bg_thresh expects a finite number" in capsys.readouterr().err
    assert (
        main(["train", "--method", "tcl", "--preset", "tiny", "--data", "x.tar", "--set", "train.lr=-1"]) == 2
    )
    assert "train.lr must be in (0, inf), got -1" in capsys.readouterr().err
