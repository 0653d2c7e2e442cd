"""``textseg quickstart``: its plan is made of valid commands, and (slow) on the shapes world trained TCL
beats MaskCLIP, which beats the same CLIP with random weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from textseg.cli import build_parser, main
from textseg.errors import ConfigError
from textseg.quickstart import CLIP_PLAN, METHOD_PLANS, Quickstart


def test_every_stage_is_a_textseg_command_that_parses(tmp_path: Path) -> None:
    quickstart = Quickstart(tmp_path / "qs")
    parser = build_parser()
    for stage in quickstart.stages:
        parser.parse_args(list(stage.argv))  # exits (SystemExit) on a bad argument
    labels = [s.argv[s.argv.index("--output") + 1] for s in quickstart.stages if s.argv[0] == "bench"]
    assert [Path(label).name for label in labels] == [
        "clip-random",
        "clip-pretrained",
        "maskclip-random",
        "maskclip-pretrained",
        *METHOD_PLANS,
    ]
    pretrained = str(quickstart.checkpoint("clip"))
    assert pretrained.endswith(f"step-{CLIP_PLAN.steps:08d}")
    for method, plan in METHOD_PLANS.items():  # trained on the pretrained CLIP, scored from its run folder
        (train,) = [s.argv for s in quickstart.stages if s.argv[:3] == ("train", "--method", method)]
        assert f"clip={pretrained}" in train and f"train.checkpoint_every={plan.steps}" in train
        (bench,) = [
            s.argv
            for s in quickstart.stages
            if s.argv[:3] == ("bench", "--weights", str(quickstart.run_dir(method)))
        ]
        assert "--method" not in bench and "--set" not in bench


def test_an_interrupted_quickstart_continues_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run again with the same --out, finished steps are kept and an interrupted one starts again."""
    monkeypatch.setattr("textseg.quickstart.results_table", lambda results: None)
    quickstart = Quickstart(tmp_path / "qs", methods=("tcl",))
    ran: list[str] = []

    def command(argv: list[str], fail_at: str | None = None) -> int:
        stage = next(s for s in quickstart.stages if list(s.argv) == argv)
        ran.append(stage.title)
        if stage.partial is not None:
            assert not (stage.partial / "leftover").exists()  # what an interrupted stage left is gone
        if stage.title == fail_at:
            (stage.partial / "leftover").mkdir(parents=True)
            return 1
        if stage.done is not None:
            target = stage.done if stage.done.suffix == ".json" else stage.done / "record.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("{}")
        return 0

    with pytest.raises(ConfigError, match="failed"):
        quickstart.run(lambda argv: command(argv, fail_at="train tcl (120 steps of 32)"), echo=lambda _: None)
    first = list(ran)
    ran.clear()
    lines: list[str] = []
    quickstart.run(command, echo=lines.append)
    assert first[-1] == ran[0] == "train tcl (120 steps of 32)"  # the interrupted stage runs again
    assert ran == ["train tcl (120 steps of 32)", "score tcl", "rebuild the leaderboard"]
    assert sum("done in an earlier run: kept" in line for line in lines) == len(first) - 1
    shown = next(line for line in lines if "$ textseg train --method tcl" in line)
    assert "'shapes:?n=1000000&seed=0&size=64'" in shown  # pasteable into a shell


def test_bad_requests_are_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="sclip not known here"):
        Quickstart(tmp_path / "qs", methods=("tcl", "sclip"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("mine")
    assert main(["quickstart", "--out", str(tmp_path / "used")]) == 2
    assert "already exists and is not an interrupted quickstart" in capsys.readouterr().err
    assert (tmp_path / "used" / "file").read_text() == "mine"


#: Margins (mIoU points) the learning test asserts, about half the smallest gap measured over four
#: seeds with the quickstart's settings (``textseg quickstart --methods tcl --seed S``, 2 CPU cores):
#:
#:   seed  random CLIP (clip / maskclip)  pretrained (clip / maskclip)  tcl
#:   0     8.4 / 9.1                      25.3 / 34.1                   51.2 (51.1 since TCL's per-window kp step)
#:   1     10.5 / 10.6                    17.6 / 23.8                   30.5
#:   2     8.2 / 8.2                      11.1 / 21.0                   33.9
#:   3     8.4 / 7.5                      12.7 / 32.1                   49.2
#:
#: smallest gaps: maskclip over its random CLIP 12.8, tcl over maskclip 6.7, tcl over random 19.9.
MASKCLIP_OVER_RANDOM = 6.0
TCL_OVER_MASKCLIP = 3.0
TCL_OVER_RANDOM = 10.0


@pytest.mark.slow
def test_on_the_shapes_world_trained_tcl_beats_maskclip_which_beats_random_weights(tmp_path: Path) -> None:
    """The quickstart's own pipeline with seed 0, TCL only (about 2.5 minutes on 2 cores)."""
    table = Quickstart(tmp_path / "qs", methods=("tcl",)).run(main, echo=lambda _: None)
    miou = dict(zip(table["run"], table["mIoU"], strict=True))
    assert miou["maskclip-pretrained"] >= miou["maskclip-random"] + MASKCLIP_OVER_RANDOM, miou
    assert miou["tcl"] >= miou["maskclip-pretrained"] + TCL_OVER_MASKCLIP, miou
    assert miou["tcl"] >= max(miou["clip-random"], miou["maskclip-random"]) + TCL_OVER_RANDOM, miou
