"""Every registered method passes the shared contract; the checker itself catches broken methods."""

from __future__ import annotations

from pathlib import Path

import pytest

from textseg.registry import METHODS
from textseg.testing.contract import check_method, check_training


@pytest.mark.parametrize("name", METHODS.names())
def test_registered_method_passes_contract(name: str) -> None:
    check_method(METHODS.get(name))


def test_contract_passes_for_a_plugin_method(plugin_env: Path) -> None:
    check_method(METHODS.get("dummy"))


def test_contract_catches_non_finite_scores(plugin_env: Path) -> None:
    import textseg_dummy_plugin

    with pytest.raises(AssertionError, match="non-finite"):
        check_method(textseg_dummy_plugin.BROKEN_OUTPUT)


def test_param_groups_may_hold_frozen_parameters_but_never_pretrained_ones(plugin_env: Path) -> None:
    import textseg_dummy_plugin

    class Staged(textseg_dummy_plugin.DummyMethod):
        """Embeddings frozen now (a later step would unfreeze them), listed in the groups all the same."""

        def on_train_step(self, step: int) -> None:
            self.words.requires_grad_(step >= 10)

        def param_groups(self, weight_decay: float) -> list[dict]:
            return [{"params": list(self.parameters()), "weight_decay": weight_decay}]

    check_training(Staged(textseg_dummy_plugin.DummyConfig()))

    class ListsPretrained(Staged):
        pretrained_prefixes = ("words.",)

    with pytest.raises(AssertionError, match="pretrained"):
        check_training(ListsPretrained(textseg_dummy_plugin.DummyConfig()))
