"""Every registered method passes the shared contract; the checker itself catches broken methods."""

from __future__ import annotations

from pathlib import Path

import pytest

from textseg.registry import METHODS
from textseg.testing.contract import check_method


@pytest.mark.parametrize("name", METHODS.names())
def test_registered_method_passes_contract(name: str) -> None:
    check_method(METHODS.get(name))


def test_contract_passes_for_a_plugin_method(plugin_env: Path) -> None:
    check_method(METHODS.get("dummy"))


def test_contract_catches_non_finite_scores(plugin_env: Path) -> None:
    import textseg_dummy_plugin

    with pytest.raises(AssertionError, match="non-finite"):
        check_method(textseg_dummy_plugin.BROKEN_OUTPUT)
