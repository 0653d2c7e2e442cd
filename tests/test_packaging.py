"""Packaging: every package folder is listed in pyproject, and built-ins register through entry points."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_folders() -> set[str]:
    found = set()
    for base, prefix in (
        (ROOT / "src" / "textseg", "textseg"),
        (ROOT / "methods", "textseg.methods"),
        (ROOT / "benchmarks", "textseg.benchmarks"),
    ):
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((prefix, *rel)))
    return found


def test_every_package_folder_is_listed_in_pyproject() -> None:
    packages = PYPROJECT["tool"]["setuptools"]["packages"]
    listed = set(packages)
    missing = _package_folders() - listed
    assert not missing, (
        f"add these packages to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    )
    stale = listed - _package_folders()
    assert not stale, f"pyproject lists packages that do not exist: {sorted(stale)}"
    assert len(packages) == len(listed), "a package is listed twice"


def test_installed_entry_points_match_pyproject() -> None:
    """The installed metadata is current (reinstall after editing entry points in pyproject)."""
    declared = PYPROJECT["project"]["entry-points"]
    for group, entries in declared.items():
        installed = {
            ep.name: ep.value for ep in metadata.entry_points(group=group) if ep.dist.name == "textseg"
        }
        assert installed == dict(entries), f"entry points of {group} differ; run `pip install -e .` again"


def test_builtin_entry_points_import() -> None:
    from textseg.registry import BENCHMARKS, METHODS, PROTOCOLS

    for registry in (METHODS, BENCHMARKS, PROTOCOLS):
        for row in registry.listing():
            if row.entry.builtin:
                assert row.error is None, row.error


def test_the_readme_marks_the_ci_test_command() -> None:
    """.ci/run runs the second line after the marker (inside a bash block); a README edit must keep it."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert "<!-- ci: test command -->" in lines, "README.md lost the '<!-- ci: test command -->' marker"
    start = lines.index("<!-- ci: test command -->")
    assert lines[start + 1] == "```bash" and lines[start + 2].startswith("pytest"), lines[start : start + 3]
