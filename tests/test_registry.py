"""The registry: entry-point discovery, outside plugins, duplicates, broken plugins, suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_distribution

from textseg.api import MethodSpec
from textseg.registry import (
    METHODS,
    DuplicateNameError,
    PluginLoadError,
    Registry,
    UnknownNameError,
)


def test_outside_plugin_is_discovered_and_builds(plugin_env: Path) -> None:
    assert "dummy" in METHODS.names()
    entry = METHODS.entry("dummy")
    assert entry.origin == "plugin textseg-dummy-plugin 0.1"
    assert not entry.builtin
    spec = METHODS.get("dummy")
    assert isinstance(spec, MethodSpec)
    method = spec.create("tiny")
    assert method.config.dim == 16


def test_unknown_name_suggests_close_matches(plugin_env: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown method 'dumy'.*Did you mean 'dummy'"):
        METHODS.get("dumy")


def test_runtime_duplicate_names_both_origins(plugin_env: Path) -> None:
    with pytest.raises(DuplicateNameError, match=r"plugin textseg-dummy-plugin 0.1.*registered at runtime"):
        METHODS.register("dummy", "textseg_dummy_plugin:DUMMY")


def test_two_distributions_with_one_name_poison_only_that_name(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = write_distribution(
        tmp_path / "other",
        "other-plugin",
        {"textseg.methods": {"dummy": "textseg_dummy_plugin:BROKEN_OUTPUT"}},
    )
    monkeypatch.syspath_prepend(str(other))
    METHODS.reset()
    with pytest.raises(DuplicateNameError) as info:
        METHODS.get("dummy")
    assert "textseg-dummy-plugin" in str(info.value) and "other-plugin" in str(info.value)
    rows = {row.entry.name: row for row in METHODS.listing()}
    assert rows["dummy"].error is not None


def test_broken_plugin_is_named_and_does_not_hide_others(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = write_distribution(
        tmp_path / "broken", "broken-plugin", {"textseg.methods": {"broken": "textseg_broken_plugin:SPEC"}}
    )
    monkeypatch.syspath_prepend(str(broken))
    METHODS.reset()
    with pytest.raises(
        PluginLoadError, match=r"method 'broken' from plugin broken-plugin 0.1 .*failed to load"
    ):
        METHODS.get("broken")
    rows = {row.entry.name: row for row in METHODS.listing()}
    assert rows["broken"].error is not None and "ImportError" in rows["broken"].error
    assert rows["dummy"].error is None


def test_wrong_object_kind_and_wrong_name_are_rejected(plugin_env: Path) -> None:
    METHODS.register("not-a-spec", "textseg_dummy_plugin:DummyConfig")
    with pytest.raises(PluginLoadError, match="not a MethodSpec"):
        METHODS.get("not-a-spec")
    METHODS.register("alias", "textseg_dummy_plugin:DUMMY")
    with pytest.raises(PluginLoadError, match="calls itself 'dummy'"):
        METHODS.get("alias")


def test_environment_variable_disables_outside_plugins(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEXTSEG_DISABLE_PLUGINS", "1")
    METHODS.reset()
    assert "dummy" not in METHODS.names()


def test_entries_load_lazily(plugin_env: Path) -> None:
    registry: Registry[MethodSpec] = Registry("textseg.methods", "method", "textseg.api:MethodSpec")
    registry.register("lazy", "textseg_no_such_module:SPEC")
    assert "lazy" in registry.names()  # listed without importing anything
    with pytest.raises(PluginLoadError, match="ModuleNotFoundError"):
        registry.get("lazy")
