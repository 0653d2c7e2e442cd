"""The command line: version, listing with origins, user errors as messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_distribution

from textseg import __version__
from textseg.cli import main
from textseg.registry import METHODS


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"textseg {__version__}"


def test_list_methods_shows_plugin_with_origin(plugin_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("dummy"))
    assert "plugin textseg-dummy-plugin 0.1" in line and "test-only method" in line and "[trainable]" in line


def test_list_survives_broken_plugin(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write_distribution(
        tmp_path / "broken", "broken-plugin", {"textseg.methods": {"broken": "textseg_broken_plugin:SPEC"}}
    )
    monkeypatch.syspath_prepend(str(broken))
    METHODS.reset()
    assert main(["list", "methods"]) == 0
    captured = capsys.readouterr()
    assert "broken" in captured.out and "BROKEN" in captured.out
    assert "broken-plugin" in captured.err and "failed to load" in captured.err
    assert any(
        line.strip().startswith("dummy") and "BROKEN" not in line for line in captured.out.splitlines()
    )


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "textseg", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"textseg {__version__}"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out
