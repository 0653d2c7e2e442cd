"""Shared fixtures. Tests never touch the network: the hub is forced offline and caches go to a temp dir."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test session gets its own textseg cache (the tiny CLIP is built there once)."""
    previous = os.environ.get("TEXTSEG_CACHE")
    os.environ["TEXTSEG_CACHE"] = str(tmp_path_factory.mktemp("textseg-cache"))
    yield
    if previous is None:
        os.environ.pop("TEXTSEG_CACHE", None)
    else:
        os.environ["TEXTSEG_CACHE"] = previous


def write_distribution(root: Path, name: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """Create an installed-looking distribution (``*.dist-info``) under ``root`` with entry points."""
    dist_info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def plugin_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An outside plugin distribution providing the test-only ``dummy`` method, on sys.path and in
    PYTHONPATH (so subprocesses see it too). Registries are rescanned before and after."""
    from textseg.registry import BENCHMARKS, METHODS, PROTOCOLS, SUITES

    site = write_distribution(
        tmp_path / "site",
        "textseg-dummy-plugin",
        {"textseg.methods": {"dummy": "textseg_dummy_plugin:DUMMY"}},
    )
    for path in (str(PLUGINS), str(site)):
        monkeypatch.syspath_prepend(path)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(PLUGINS), str(site), os.environ.get("PYTHONPATH", "")])
    )
    for registry in (METHODS, BENCHMARKS, PROTOCOLS, SUITES):
        registry.reset()
    yield site
    for registry in (METHODS, BENCHMARKS, PROTOCOLS, SUITES):
        registry.reset()
    sys.modules.pop("textseg_dummy_plugin", None)


@pytest.fixture
def toy_plugin_env(plugin_env: Path) -> Iterator[Path]:
    """``plugin_env`` plus a second outside distribution with the test-only ``toy`` benchmarks and
    ``toy`` protocol (tests/plugins/textseg_toy_benchmark.py), for the harness and ``bench`` tests."""
    from textseg.registry import BENCHMARKS, PROTOCOLS

    write_distribution(
        plugin_env,
        "textseg-toy-benchmark",
        {
            "textseg.benchmarks": {
                name: f"textseg_toy_benchmark:{attr}"
                for name, attr in (("toy", "TOY"), ("toy_bg", "TOY_BG"), ("toy_reduce", "TOY_REDUCE"))
            },
            "textseg.protocols": {"toy": "textseg_toy_benchmark:TOY_PROTOCOL"},
        },
    )
    for registry in (BENCHMARKS, PROTOCOLS):
        registry.reset()
    yield plugin_env
    sys.modules.pop("textseg_toy_benchmark", None)


NUM_IMAGES = 5  # odd, so two processes get unequal shares


@pytest.fixture
def bench_inputs(toy_plugin_env: Path, tmp_path: Path) -> dict[str, Path]:
    """Synthetic toy data for every toy benchmark, and seeded dummy weights."""
    from textseg.registry import BENCHMARKS, METHODS
    from textseg.weights import save_weights

    root = tmp_path / "data"
    for name in ("toy", "toy_bg"):
        spec = BENCHMARKS.get(name)
        spec.write_synthetic(root, NUM_IMAGES, seed=7)
    import torch

    torch.manual_seed(0)
    weights = save_weights(METHODS.get("dummy").create("tiny"), tmp_path / "dummy.safetensors")
    return {"root": root, "weights": weights, "out": tmp_path / "records"}
